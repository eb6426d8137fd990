//! Indexes for the analytics reports, which read a time window of two tables that had no
//! index on the time they filter by:
//! - `idx_tasks_completed`: tasks that finished in a window (`completed_at`). Partial, so tasks
//!   still running are not in it.
//! - `idx_step_transitions_attempt_end`: the transitions that end an attempt (out of
//!   `in_progress`), by time. Partial, so the step history's other rows (most of them) cost
//!   nothing to write.
//!
//! Tasks created in a window already have `idx_tasks_created` and
//! `idx_tasks_named_task_created`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Partial indexes have no portable builder; this SQL means the same on SQLite and PostgreSQL.
const INDEXES: &[(&str, &str)] = &[
    (
        "idx_tasks_completed",
        "CREATE INDEX idx_tasks_completed ON tasker_tasks (completed_at) \
         WHERE completed_at IS NOT NULL",
    ),
    (
        "idx_step_transitions_attempt_end",
        "CREATE INDEX idx_step_transitions_attempt_end ON tasker_workflow_step_transitions \
         (created_at) WHERE from_state = 'in_progress'",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (_, sql) in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
