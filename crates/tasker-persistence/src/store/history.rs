//! History rows: the `*_transitions` tables that record every state change. Rows are gathered
//! per transaction ([`History`]) and written at its end, or written by the statement that makes
//! the change itself ([`history_ctes`], PostgreSQL).

use sea_orm::{ConnectionTrait, Value};

use super::changes::TransitionRow;
use super::sql::{HistoryRows, flip_then_insert, insert_history, insert_rows_flipping};
use crate::error::StoreError;

/// The columns of a history table whose owner column is `owner`.
const fn transition_columns(owner: &'static str) -> [&'static str; 7] {
    [
        owner,
        "from_state",
        "to_state",
        "sort_key",
        "most_recent",
        "metadata",
        "created_at",
    ]
}

const STEP_TRANSITIONS: &str = "tasker_workflow_step_transitions";
const STEP_COLUMNS: [&str; 7] = transition_columns("workflow_step_id");
const TASK_TRANSITIONS: &str = "tasker_task_transitions";
const TASK_COLUMNS: [&str; 7] = transition_columns("task_id");

fn transition_values(rows: Vec<TransitionRow>, now: i64) -> Vec<Vec<Value>> {
    rows.into_iter().map(|r| r.into_values(now)).collect()
}

/// The history rows of one transaction, gathered as its changes are made and written at its
/// end however many phases (outcomes, finalization, claims, task starts) added rows: one
/// statement for both tables on PostgreSQL (step and task rows together), two per table on
/// SQLite. Each owner's last row becomes its current one (`most_recent`), whatever its phase
/// said, so a step failed and claimed again in one transaction keeps one current row.
#[derive(Debug, Default)]
pub(crate) struct History {
    steps: Vec<TransitionRow>,
    tasks: Vec<TransitionRow>,
}

impl History {
    /// Adds step history rows, oldest first.
    pub(crate) fn steps(&mut self, rows: impl IntoIterator<Item = TransitionRow>) {
        self.steps.extend(rows);
    }

    /// Adds task history rows, oldest first.
    pub(crate) fn tasks(&mut self, rows: impl IntoIterator<Item = TransitionRow>) {
        self.tasks.extend(rows);
    }

    /// Writes every row gathered, clearing the owners' earlier current rows.
    pub(crate) async fn write<C: ConnectionTrait>(
        self,
        db: &C,
        now: i64,
    ) -> Result<(), StoreError> {
        insert_history(
            db,
            vec![
                HistoryRows {
                    table: STEP_TRANSITIONS,
                    columns: &STEP_COLUMNS,
                    rows: transition_values(current_last(self.steps), now),
                },
                HistoryRows {
                    table: TASK_TRANSITIONS,
                    columns: &TASK_COLUMNS,
                    rows: transition_values(current_last(self.tasks), now),
                },
            ],
        )
        .await
    }

    /// Whether no row was gathered.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.tasks.is_empty()
    }

    /// Writes the rows gathered so far and starts afresh, before a statement that writes
    /// history of its own (whose rows must come after these). No statement when empty.
    pub(crate) async fn flush<C: ConnectionTrait>(
        &mut self,
        db: &C,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        std::mem::take(self).write(db, now).await
    }
}

/// Whose history a statement writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owners {
    Steps,
    Tasks,
}

impl Owners {
    /// Their history table and its columns (the owner's id first).
    pub(super) fn table(self) -> (&'static str, &'static [&'static str; 7]) {
        match self {
            Owners::Steps => (STEP_TRANSITIONS, &STEP_COLUMNS),
            Owners::Tasks => (TASK_TRANSITIONS, &TASK_COLUMNS),
        }
    }
}

/// PostgreSQL: two data-modifying CTEs, `{name}_flip` and `{name}`, that write history rows
/// inside the statement making the changes, which saves the statement [`History::write`]
/// would cost. `rows` yields the rows (unions of [`Change::select`](super::changes::Change::select)
/// lists over the changed rows' CTE); `owners` is a subquery naming their owners, whose
/// current rows are cleared first.
pub(crate) fn history_ctes(name: &str, of: Owners, owners: &str, rows: &str) -> String {
    let (table, columns) = of.table();
    let insert = format!(
        "INSERT INTO {table} ({}) SELECT * FROM ({rows}) AS r",
        columns.join(", ")
    );
    flip_then_insert(name, table, columns[0], owners, &insert)
}

/// SQLite: what [`history_ctes`] writes, as two statements of one script (a transaction sent
/// as one call): the owners' current rows cleared, then the rows inserted.
pub(crate) fn history_statements(of: Owners, owners: &str, rows: &str) -> [String; 2] {
    let (table, columns) = of.table();
    [
        format!(
            "UPDATE {table} SET most_recent = FALSE WHERE most_recent AND {} IN ({owners})",
            columns[0]
        ),
        format!(
            "INSERT INTO {table} ({}) SELECT * FROM ({rows}) AS r",
            columns.join(", ")
        ),
    ]
}

/// `rows` with only each owner's last row marked current.
fn current_last(mut rows: Vec<TransitionRow>) -> Vec<TransitionRow> {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    for row in rows.iter_mut().rev() {
        let last = seen.insert(row.id());
        row.set_most_recent(last);
    }
    rows
}

/// Writes history rows of `of`; `flip` first clears their owners' current `most_recent` rows.
pub(crate) async fn write_transitions<C: ConnectionTrait>(
    db: &C,
    of: Owners,
    rows: Vec<TransitionRow>,
    now: i64,
    flip: bool,
) -> Result<(), StoreError> {
    let (table, columns) = of.table();
    let rows = transition_values(rows, now);
    insert_rows_flipping(db, table, columns, rows, flip.then_some(columns[0])).await
}
