//! The W3C trace context (`traceparent`) a task was created under, so that every attempt of
//! its steps, whichever process runs it and however much later, joins the task's trace.
//! Nullable: tasks created with tracing off, or before this column existed, have none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    #[sea_orm(iden = "tasker_tasks")]
    Table,
    TraceParent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(ColumnDef::new(Tasks::TraceParent).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::TraceParent)
                    .take(),
            )
            .await
    }
}
