//! Runtime switches an operator flips while processes run: pausing a namespace or a template
//! (no new claims) and capping a namespace's running step attempts across every process. One
//! row per switch in force, keyed by its kind and target; every change, with who made it, when
//! and why, is kept in a second table that is only ever appended to.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RuntimeSwitches {
    #[sea_orm(iden = "tasker_runtime_switches")]
    Table,
    SwitchId,
    Kind,
    Target,
    Namespace,
    Name,
    Version,
    MaxRunning,
    Reason,
    SetBy,
    SetAt,
}

#[derive(DeriveIden)]
enum RuntimeSwitchChanges {
    #[sea_orm(iden = "tasker_runtime_switch_changes")]
    Table,
    ChangeId,
    Action,
    Kind,
    Target,
    Namespace,
    Name,
    Version,
    MaxRunning,
    Reason,
    ChangedBy,
    ChangedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RuntimeSwitches::Table)
                    .col(
                        ColumnDef::new(RuntimeSwitches::SwitchId)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // `pause` or `limit`.
                    .col(ColumnDef::new(RuntimeSwitches::Kind).text().not_null())
                    // `namespace`, `namespace/name` or `namespace/name@version`.
                    .col(ColumnDef::new(RuntimeSwitches::Target).text().not_null())
                    .col(ColumnDef::new(RuntimeSwitches::Namespace).text().not_null())
                    .col(ColumnDef::new(RuntimeSwitches::Name).text())
                    .col(ColumnDef::new(RuntimeSwitches::Version).text())
                    .col(ColumnDef::new(RuntimeSwitches::MaxRunning).integer())
                    .col(ColumnDef::new(RuntimeSwitches::Reason).text().not_null())
                    .col(ColumnDef::new(RuntimeSwitches::SetBy).text().not_null())
                    .col(
                        ColumnDef::new(RuntimeSwitches::SetAt)
                            .big_integer()
                            .not_null(),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_runtime_switches_kind_target")
                    .table(RuntimeSwitches::Table)
                    .col(RuntimeSwitches::Kind)
                    .col(RuntimeSwitches::Target)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RuntimeSwitchChanges::Table)
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::ChangeId)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // `pause`, `resume`, `limit` or `unlimit`.
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::Action)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RuntimeSwitchChanges::Kind).text().not_null())
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::Target)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::Namespace)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RuntimeSwitchChanges::Name).text())
                    .col(ColumnDef::new(RuntimeSwitchChanges::Version).text())
                    .col(ColumnDef::new(RuntimeSwitchChanges::MaxRunning).integer())
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::Reason)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::ChangedBy)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RuntimeSwitchChanges::ChangedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RuntimeSwitchChanges::Table).take())
            .await?;
        manager
            .drop_table(Table::drop().table(RuntimeSwitches::Table).take())
            .await
    }
}
