//! PostgreSQL only: the foreign keys that every task creation and every hand-off checked row by
//! row are replaced by a trigger that keeps what they were for, deleting a task's rows with it.
//!
//! PostgreSQL checks a foreign key with a query per inserted row, which also locks the
//! referenced row. A 4-step diamond task paid 16 such checks to be created (each step's task
//! and catalogue entry, each edge's two steps), and every history row another (its step or
//! task): measured, the checks were about half of the server's work of creating a task.
//! Tasker never needs them to refuse a row: a task's steps and edges are written by the
//! statement (or transaction) that writes the task, only where the task row went in, and
//! history rows are written by the statements that change the row they describe.
//!
//! What the keys also did is cascade a deletion. The trigger does that instead: deleting tasks
//! deletes their steps, edges, step and task history (annotations keep their own key, which is
//! not on a hot path). The keys from tasks to their template and from annotations stay.
//!
//! SQLite keeps every key: its checks are lookups inside the writing process, cheap next to a
//! PostgreSQL query, and SQLite cannot drop a constraint without rebuilding the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// `(table, constraint, its definition)`: the keys dropped, and how `down` restores them.
const KEYS: &[(&str, &str, &str)] = &[
    (
        "tasker_workflow_steps",
        "tasker_workflow_steps_task_id_fkey",
        "FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE",
    ),
    (
        "tasker_workflow_steps",
        "tasker_workflow_steps_named_step_id_fkey",
        "FOREIGN KEY (named_step_id) REFERENCES tasker_named_steps (named_step_id) ON DELETE CASCADE",
    ),
    (
        "tasker_workflow_step_edges",
        "tasker_workflow_step_edges_from_step_id_fkey",
        "FOREIGN KEY (from_step_id) REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE",
    ),
    (
        "tasker_workflow_step_edges",
        "tasker_workflow_step_edges_to_step_id_fkey",
        "FOREIGN KEY (to_step_id) REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE",
    ),
    (
        "tasker_workflow_step_transitions",
        "tasker_workflow_step_transitions_workflow_step_id_fkey",
        "FOREIGN KEY (workflow_step_id) REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE",
    ),
    (
        "tasker_task_transitions",
        "tasker_task_transitions_task_id_fkey",
        "FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE",
    ),
];

/// Deleting tasks deletes their rows, once per statement (a statement-level trigger sees every
/// deleted task at once). Edges and step history go before the steps they name.
const CASCADE: &str = "
CREATE FUNCTION tasker_delete_task_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM tasker_workflow_step_edges e USING tasker_workflow_steps s, gone g
    WHERE s.task_id = g.task_id AND e.from_step_id = s.workflow_step_id;
  DELETE FROM tasker_workflow_step_transitions h USING tasker_workflow_steps s, gone g
    WHERE s.task_id = g.task_id AND h.workflow_step_id = s.workflow_step_id;
  DELETE FROM tasker_workflow_steps s USING gone g WHERE s.task_id = g.task_id;
  DELETE FROM tasker_task_transitions h USING gone g WHERE h.task_id = g.task_id;
  RETURN NULL;
END $$;
CREATE TRIGGER tasker_tasks_delete_rows AFTER DELETE ON tasker_tasks
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION tasker_delete_task_rows();
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, name, _) in KEYS {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
                .await?;
        }
        db.execute_unprepared(CASCADE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "DROP TRIGGER IF EXISTS tasker_tasks_delete_rows ON tasker_tasks; \
             DROP FUNCTION IF EXISTS tasker_delete_task_rows()",
        )
        .await?;
        for (table, name, definition) in KEYS {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
            ))
            .await?;
        }
        Ok(())
    }
}
