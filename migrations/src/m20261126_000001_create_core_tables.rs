//! The core schema: catalogue tables (namespaces, named tasks and steps, dependent systems,
//! annotation types, object maps) and runtime tables (tasks, workflow steps, edges, transition
//! histories, annotations).
//!
//! The current state is a column on tasks and steps, beside what readiness needs
//! (`unfinished_parents`, `next_attempt_at`, claim owner and lease); histories are append-only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum TaskNamespaces {
    #[sea_orm(iden = "tasker_task_namespaces")]
    Table,
    TaskNamespaceId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NamedTasks {
    #[sea_orm(iden = "tasker_named_tasks")]
    Table,
    NamedTaskId,
    TaskNamespaceId,
    Name,
    Version,
    VersionMajor,
    VersionMinor,
    VersionPatch,
    Description,
    Configuration,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DependentSystems {
    #[sea_orm(iden = "tasker_dependent_systems")]
    Table,
    DependentSystemId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NamedSteps {
    #[sea_orm(iden = "tasker_named_steps")]
    Table,
    NamedStepId,
    DependentSystemId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NamedTasksNamedSteps {
    #[sea_orm(iden = "tasker_named_tasks_named_steps")]
    Table,
    Id,
    NamedTaskId,
    NamedStepId,
    Skippable,
    DefaultRetryable,
    DefaultRetryLimit,
}

#[derive(DeriveIden)]
enum AnnotationTypes {
    #[sea_orm(iden = "tasker_annotation_types")]
    Table,
    AnnotationTypeId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DependentSystemObjectMaps {
    #[sea_orm(iden = "tasker_dependent_system_object_maps")]
    Table,
    DependentSystemObjectMapId,
    DependentSystemOneId,
    DependentSystemTwoId,
    RemoteIdOne,
    RemoteIdTwo,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    #[sea_orm(iden = "tasker_tasks")]
    Table,
    TaskId,
    NamedTaskId,
    State,
    Complete,
    RequestedAt,
    Initiator,
    SourceSystem,
    Reason,
    BypassSteps,
    Tags,
    Context,
    IdentityHash,
    CorrelationId,
    TotalSteps,
    DoneSteps,
    BlockedSteps,
    ActiveSteps,
    LastSortKey,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum WorkflowSteps {
    #[sea_orm(iden = "tasker_workflow_steps")]
    Table,
    WorkflowStepId,
    TaskId,
    NamedStepId,
    Name,
    Position,
    State,
    Retryable,
    RetryLimit,
    Attempts,
    Skippable,
    Processed,
    ProcessedAt,
    InProcess,
    ClaimOwner,
    LeaseExpiresAt,
    NextAttemptAt,
    BackoffRequestSeconds,
    LastAttemptedAt,
    LastFailureAt,
    UnfinishedParents,
    TotalParents,
    Inputs,
    Results,
    LastError,
    LastSortKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkflowStepEdges {
    #[sea_orm(iden = "tasker_workflow_step_edges")]
    Table,
    Id,
    FromStepId,
    ToStepId,
    Name,
}

#[derive(DeriveIden)]
enum TaskTransitions {
    #[sea_orm(iden = "tasker_task_transitions")]
    Table,
    Id,
    TaskId,
    FromState,
    ToState,
    SortKey,
    MostRecent,
    Metadata,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WorkflowStepTransitions {
    #[sea_orm(iden = "tasker_workflow_step_transitions")]
    Table,
    Id,
    WorkflowStepId,
    FromState,
    ToState,
    SortKey,
    MostRecent,
    Metadata,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TaskAnnotations {
    #[sea_orm(iden = "tasker_task_annotations")]
    Table,
    TaskAnnotationId,
    TaskId,
    AnnotationTypeId,
    Annotation,
    CreatedAt,
    UpdatedAt,
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .take()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().take()
}

fn time(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().take()
}

fn int(col: impl IntoIden, default: i32) -> ColumnDef {
    ColumnDef::new(col)
        .integer()
        .not_null()
        .default(default)
        .take()
}

fn flag(col: impl IntoIden, default: bool) -> ColumnDef {
    ColumnDef::new(col)
        .boolean()
        .not_null()
        .default(default)
        .take()
}

fn fk(
    from_table: impl IntoIden,
    from_col: impl IntoIden,
    to_table: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

/// Partial indexes have no portable builder; this SQL means the same on SQLite and PostgreSQL.
const PARTIAL_INDEXES: &[&str] = &[
    // The claim query: ready steps in next-attempt order. Only rows whose parents are all done
    // and that have a next attempt scheduled are in it, so its size is the ready frontier, not
    // the table.
    "CREATE INDEX idx_steps_claimable ON tasker_workflow_steps (next_attempt_at) \
     WHERE unfinished_parents = 0 AND next_attempt_at IS NOT NULL",
    // Lease expiry: only claimed rows.
    "CREATE INDEX idx_steps_lease ON tasker_workflow_steps (lease_expires_at) \
     WHERE lease_expires_at IS NOT NULL",
    // At most one current transition per task and per step, enforced by the database.
    "CREATE UNIQUE INDEX idx_task_transitions_most_recent ON tasker_task_transitions (task_id) \
     WHERE most_recent",
    "CREATE UNIQUE INDEX idx_step_transitions_most_recent ON tasker_workflow_step_transitions \
     (workflow_step_id) WHERE most_recent",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskNamespaces::Table)
                    .col(id(TaskNamespaces::TaskNamespaceId))
                    .col(text(TaskNamespaces::Name).unique_key())
                    .col(ColumnDef::new(TaskNamespaces::Description).text())
                    .col(time(TaskNamespaces::CreatedAt))
                    .col(time(TaskNamespaces::UpdatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NamedTasks::Table)
                    .col(id(NamedTasks::NamedTaskId))
                    .col(
                        ColumnDef::new(NamedTasks::TaskNamespaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(text(NamedTasks::Name))
                    .col(text(NamedTasks::Version))
                    .col(
                        ColumnDef::new(NamedTasks::VersionMajor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NamedTasks::VersionMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NamedTasks::VersionPatch)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(NamedTasks::Description).text())
                    .col(
                        ColumnDef::new(NamedTasks::Configuration)
                            .json_binary()
                            .not_null(),
                    )
                    .col(time(NamedTasks::CreatedAt))
                    .col(time(NamedTasks::UpdatedAt))
                    .foreign_key(&mut fk(
                        NamedTasks::Table,
                        NamedTasks::TaskNamespaceId,
                        TaskNamespaces::Table,
                        TaskNamespaces::TaskNamespaceId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_named_tasks_identity")
                    .table(NamedTasks::Table)
                    .col(NamedTasks::TaskNamespaceId)
                    .col(NamedTasks::Name)
                    .col(NamedTasks::Version)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DependentSystems::Table)
                    .col(id(DependentSystems::DependentSystemId))
                    .col(text(DependentSystems::Name).unique_key())
                    .col(ColumnDef::new(DependentSystems::Description).text())
                    .col(time(DependentSystems::CreatedAt))
                    .col(time(DependentSystems::UpdatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NamedSteps::Table)
                    .col(id(NamedSteps::NamedStepId))
                    .col(
                        ColumnDef::new(NamedSteps::DependentSystemId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(text(NamedSteps::Name))
                    .col(ColumnDef::new(NamedSteps::Description).text())
                    .col(time(NamedSteps::CreatedAt))
                    .col(time(NamedSteps::UpdatedAt))
                    .foreign_key(&mut fk(
                        NamedSteps::Table,
                        NamedSteps::DependentSystemId,
                        DependentSystems::Table,
                        DependentSystems::DependentSystemId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_named_steps_system_name")
                    .table(NamedSteps::Table)
                    .col(NamedSteps::DependentSystemId)
                    .col(NamedSteps::Name)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NamedTasksNamedSteps::Table)
                    .col(id(NamedTasksNamedSteps::Id))
                    .col(
                        ColumnDef::new(NamedTasksNamedSteps::NamedTaskId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NamedTasksNamedSteps::NamedStepId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(flag(NamedTasksNamedSteps::Skippable, false))
                    .col(flag(NamedTasksNamedSteps::DefaultRetryable, true))
                    .col(int(NamedTasksNamedSteps::DefaultRetryLimit, 3))
                    .foreign_key(&mut fk(
                        NamedTasksNamedSteps::Table,
                        NamedTasksNamedSteps::NamedTaskId,
                        NamedTasks::Table,
                        NamedTasks::NamedTaskId,
                    ))
                    .foreign_key(&mut fk(
                        NamedTasksNamedSteps::Table,
                        NamedTasksNamedSteps::NamedStepId,
                        NamedSteps::Table,
                        NamedSteps::NamedStepId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_named_tasks_named_steps_pair")
                    .table(NamedTasksNamedSteps::Table)
                    .col(NamedTasksNamedSteps::NamedTaskId)
                    .col(NamedTasksNamedSteps::NamedStepId)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AnnotationTypes::Table)
                    .col(id(AnnotationTypes::AnnotationTypeId))
                    .col(text(AnnotationTypes::Name).unique_key())
                    .col(ColumnDef::new(AnnotationTypes::Description).text())
                    .col(time(AnnotationTypes::CreatedAt))
                    .col(time(AnnotationTypes::UpdatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DependentSystemObjectMaps::Table)
                    .col(id(DependentSystemObjectMaps::DependentSystemObjectMapId))
                    .col(
                        ColumnDef::new(DependentSystemObjectMaps::DependentSystemOneId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DependentSystemObjectMaps::DependentSystemTwoId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(text(DependentSystemObjectMaps::RemoteIdOne))
                    .col(text(DependentSystemObjectMaps::RemoteIdTwo))
                    .col(time(DependentSystemObjectMaps::CreatedAt))
                    .col(time(DependentSystemObjectMaps::UpdatedAt))
                    .foreign_key(&mut fk(
                        DependentSystemObjectMaps::Table,
                        DependentSystemObjectMaps::DependentSystemOneId,
                        DependentSystems::Table,
                        DependentSystems::DependentSystemId,
                    ))
                    .foreign_key(&mut fk(
                        DependentSystemObjectMaps::Table,
                        DependentSystemObjectMaps::DependentSystemTwoId,
                        DependentSystems::Table,
                        DependentSystems::DependentSystemId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_object_maps_unique")
                    .table(DependentSystemObjectMaps::Table)
                    .col(DependentSystemObjectMaps::DependentSystemOneId)
                    .col(DependentSystemObjectMaps::DependentSystemTwoId)
                    .col(DependentSystemObjectMaps::RemoteIdOne)
                    .col(DependentSystemObjectMaps::RemoteIdTwo)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(
                        ColumnDef::new(Tasks::TaskId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tasks::NamedTaskId).big_integer().not_null())
                    .col(text(Tasks::State))
                    .col(flag(Tasks::Complete, false))
                    .col(time(Tasks::RequestedAt))
                    .col(text(Tasks::Initiator))
                    .col(text(Tasks::SourceSystem))
                    .col(text(Tasks::Reason))
                    .col(ColumnDef::new(Tasks::BypassSteps).json_binary().not_null())
                    .col(ColumnDef::new(Tasks::Tags).json_binary().not_null())
                    .col(ColumnDef::new(Tasks::Context).json_binary().not_null())
                    .col(text(Tasks::IdentityHash).unique_key())
                    .col(text(Tasks::CorrelationId))
                    .col(int(Tasks::TotalSteps, 0))
                    .col(int(Tasks::DoneSteps, 0))
                    .col(int(Tasks::BlockedSteps, 0))
                    .col(int(Tasks::ActiveSteps, 0))
                    .col(int(Tasks::LastSortKey, 0))
                    .col(time(Tasks::CreatedAt))
                    .col(time(Tasks::UpdatedAt))
                    .col(ColumnDef::new(Tasks::CompletedAt).big_integer())
                    .foreign_key(&mut fk(
                        Tasks::Table,
                        Tasks::NamedTaskId,
                        NamedTasks::Table,
                        NamedTasks::NamedTaskId,
                    ))
                    .take(),
            )
            .await?;
        for (name, cols) in [
            (
                "idx_tasks_named_task_created",
                vec![Tasks::NamedTaskId, Tasks::CreatedAt],
            ),
            (
                "idx_tasks_state_created",
                vec![Tasks::State, Tasks::CreatedAt],
            ),
            ("idx_tasks_created", vec![Tasks::CreatedAt]),
        ] {
            let mut index = Index::create().name(name).table(Tasks::Table).take();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(WorkflowSteps::Table)
                    .col(
                        ColumnDef::new(WorkflowSteps::WorkflowStepId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WorkflowSteps::TaskId).uuid().not_null())
                    .col(
                        ColumnDef::new(WorkflowSteps::NamedStepId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(text(WorkflowSteps::Name))
                    .col(int(WorkflowSteps::Position, 0))
                    .col(text(WorkflowSteps::State))
                    .col(flag(WorkflowSteps::Retryable, true))
                    .col(int(WorkflowSteps::RetryLimit, 3))
                    .col(int(WorkflowSteps::Attempts, 0))
                    .col(flag(WorkflowSteps::Skippable, false))
                    .col(flag(WorkflowSteps::Processed, false))
                    .col(ColumnDef::new(WorkflowSteps::ProcessedAt).big_integer())
                    .col(flag(WorkflowSteps::InProcess, false))
                    .col(ColumnDef::new(WorkflowSteps::ClaimOwner).text())
                    .col(ColumnDef::new(WorkflowSteps::LeaseExpiresAt).big_integer())
                    .col(ColumnDef::new(WorkflowSteps::NextAttemptAt).big_integer())
                    .col(ColumnDef::new(WorkflowSteps::BackoffRequestSeconds).double())
                    .col(ColumnDef::new(WorkflowSteps::LastAttemptedAt).big_integer())
                    .col(ColumnDef::new(WorkflowSteps::LastFailureAt).big_integer())
                    .col(int(WorkflowSteps::UnfinishedParents, 0))
                    .col(int(WorkflowSteps::TotalParents, 0))
                    .col(
                        ColumnDef::new(WorkflowSteps::Inputs)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WorkflowSteps::Results).json_binary())
                    .col(ColumnDef::new(WorkflowSteps::LastError).json_binary())
                    .col(int(WorkflowSteps::LastSortKey, 0))
                    .col(time(WorkflowSteps::CreatedAt))
                    .col(time(WorkflowSteps::UpdatedAt))
                    .foreign_key(&mut fk(
                        WorkflowSteps::Table,
                        WorkflowSteps::TaskId,
                        Tasks::Table,
                        Tasks::TaskId,
                    ))
                    .foreign_key(&mut fk(
                        WorkflowSteps::Table,
                        WorkflowSteps::NamedStepId,
                        NamedSteps::Table,
                        NamedSteps::NamedStepId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_steps_task_name")
                    .table(WorkflowSteps::Table)
                    .col(WorkflowSteps::TaskId)
                    .col(WorkflowSteps::Name)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WorkflowStepEdges::Table)
                    .col(id(WorkflowStepEdges::Id))
                    .col(
                        ColumnDef::new(WorkflowStepEdges::FromStepId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WorkflowStepEdges::ToStepId)
                            .uuid()
                            .not_null(),
                    )
                    .col(text(WorkflowStepEdges::Name))
                    .foreign_key(&mut fk(
                        WorkflowStepEdges::Table,
                        WorkflowStepEdges::FromStepId,
                        WorkflowSteps::Table,
                        WorkflowSteps::WorkflowStepId,
                    ))
                    .foreign_key(&mut fk(
                        WorkflowStepEdges::Table,
                        WorkflowStepEdges::ToStepId,
                        WorkflowSteps::Table,
                        WorkflowSteps::WorkflowStepId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_edges_from_to")
                    .table(WorkflowStepEdges::Table)
                    .col(WorkflowStepEdges::FromStepId)
                    .col(WorkflowStepEdges::ToStepId)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_edges_to")
                    .table(WorkflowStepEdges::Table)
                    .col(WorkflowStepEdges::ToStepId)
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskTransitions::Table)
                    .col(id(TaskTransitions::Id))
                    .col(ColumnDef::new(TaskTransitions::TaskId).uuid().not_null())
                    .col(ColumnDef::new(TaskTransitions::FromState).text())
                    .col(text(TaskTransitions::ToState))
                    .col(
                        ColumnDef::new(TaskTransitions::SortKey)
                            .integer()
                            .not_null(),
                    )
                    .col(flag(TaskTransitions::MostRecent, true))
                    .col(
                        ColumnDef::new(TaskTransitions::Metadata)
                            .json_binary()
                            .not_null(),
                    )
                    .col(time(TaskTransitions::CreatedAt))
                    .foreign_key(&mut fk(
                        TaskTransitions::Table,
                        TaskTransitions::TaskId,
                        Tasks::Table,
                        Tasks::TaskId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_task_transitions_sort")
                    .table(TaskTransitions::Table)
                    .col(TaskTransitions::TaskId)
                    .col(TaskTransitions::SortKey)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WorkflowStepTransitions::Table)
                    .col(id(WorkflowStepTransitions::Id))
                    .col(
                        ColumnDef::new(WorkflowStepTransitions::WorkflowStepId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WorkflowStepTransitions::FromState).text())
                    .col(text(WorkflowStepTransitions::ToState))
                    .col(
                        ColumnDef::new(WorkflowStepTransitions::SortKey)
                            .integer()
                            .not_null(),
                    )
                    .col(flag(WorkflowStepTransitions::MostRecent, true))
                    .col(
                        ColumnDef::new(WorkflowStepTransitions::Metadata)
                            .json_binary()
                            .not_null(),
                    )
                    .col(time(WorkflowStepTransitions::CreatedAt))
                    .foreign_key(&mut fk(
                        WorkflowStepTransitions::Table,
                        WorkflowStepTransitions::WorkflowStepId,
                        WorkflowSteps::Table,
                        WorkflowSteps::WorkflowStepId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_step_transitions_sort")
                    .table(WorkflowStepTransitions::Table)
                    .col(WorkflowStepTransitions::WorkflowStepId)
                    .col(WorkflowStepTransitions::SortKey)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskAnnotations::Table)
                    .col(id(TaskAnnotations::TaskAnnotationId))
                    .col(ColumnDef::new(TaskAnnotations::TaskId).uuid().not_null())
                    .col(
                        ColumnDef::new(TaskAnnotations::AnnotationTypeId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskAnnotations::Annotation)
                            .json_binary()
                            .not_null(),
                    )
                    .col(time(TaskAnnotations::CreatedAt))
                    .col(time(TaskAnnotations::UpdatedAt))
                    .foreign_key(&mut fk(
                        TaskAnnotations::Table,
                        TaskAnnotations::TaskId,
                        Tasks::Table,
                        Tasks::TaskId,
                    ))
                    .foreign_key(&mut fk(
                        TaskAnnotations::Table,
                        TaskAnnotations::AnnotationTypeId,
                        AnnotationTypes::Table,
                        AnnotationTypes::AnnotationTypeId,
                    ))
                    .take(),
            )
            .await?;
        for (name, col) in [
            ("idx_annotations_task", TaskAnnotations::TaskId),
            ("idx_annotations_type", TaskAnnotations::AnnotationTypeId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(TaskAnnotations::Table)
                        .col(col)
                        .take(),
                )
                .await?;
        }
        let db = manager.get_connection();
        for sql in PARTIAL_INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dependants first.
        let tables: [DynIden; 13] = [
            TaskAnnotations::Table.into_iden(),
            WorkflowStepTransitions::Table.into_iden(),
            TaskTransitions::Table.into_iden(),
            WorkflowStepEdges::Table.into_iden(),
            WorkflowSteps::Table.into_iden(),
            Tasks::Table.into_iden(),
            DependentSystemObjectMaps::Table.into_iden(),
            AnnotationTypes::Table.into_iden(),
            NamedTasksNamedSteps::Table.into_iden(),
            NamedSteps::Table.into_iden(),
            DependentSystems::Table.into_iden(),
            NamedTasks::Table.into_iden(),
            TaskNamespaces::Table.into_iden(),
        ];
        for table in tables {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        Ok(())
    }
}
