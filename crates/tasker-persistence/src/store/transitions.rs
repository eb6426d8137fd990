//! State changes with their history rows, the task counters they move, and finalization.
//!
//! Counters kept on each task, derived from its steps' states:
//! - `done_steps`: complete or resolved manually;
//! - `blocked_steps`: in error with no next attempt (permanent, exhausted, or not retryable);
//! - `active_steps`: running, or pending/error with a next attempt and every parent done.
//!
//! A task with no active step can make no more progress: it is final, `complete` when every
//! step is done and `error` otherwise. That is the whole finalization rule, checked in the same
//! transaction as the change that zeroes the counter.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use serde_json::json;
use tasker_domain::{StepId, StepState, TaskId, TaskState};
use tasker_state_machine::{StepGuard, TaskGuard, Transition, TransitionOutcome, step, task};
use uuid::Uuid;

use super::changes::{Change, State, StepChange, TaskChange, TransitionRow, changes};
use super::history::{History, Owners, history_ctes, write_transitions};
use super::sql::{
    Db, commit, for_update, get, lock_tasks, max_params, params, query_in_chunks, retrying, stmt,
};
use super::{ChangedStep, RecordReport, Store};
use crate::error::StoreError;
use crate::time::to_micros;

changes! {
    /// Finalization of a pending task whose steps are all done (resolved by hand before any
    /// ran): it starts first, so its history reads like any other task's.
    task FINALIZE_START: Pending => InProgress;
    /// Finalization: no step can make progress and every step is done.
    task FINALIZE_COMPLETE: InProgress => Complete, guard "done_steps = total_steps, read in the same transaction";
    /// Finalization: no step can make progress and some step is not done.
    task FINALIZE_ERROR: InProgress => Error;
    /// Finalization of a task that never started: its only runnable steps failed for good.
    task FINALIZE_PENDING_ERROR: Pending => Error;
    /// A task in error sent back to work.
    task REOPEN: Error => Pending;
    /// Cancelling a task cancels its steps that have not run.
    step CANCEL_PENDING: Pending => Cancelled;
    /// Cancelling a task cancels its running steps (their outcomes are then refused).
    step CANCEL_RUNNING: InProgress => Cancelled;
    /// Retrying a task in error gives its exhausted steps a fresh attempt budget.
    step RESET: Error => Pending;
}

/// The changes that finalize a task in `from` with no active step: to `complete` when every
/// step is done, to `error` otherwise. Empty for a task that is not running or waiting.
pub(super) fn finalization(from: TaskState, all_done: bool) -> &'static [TaskChange] {
    match (from, all_done) {
        (TaskState::Pending, true) => &[FINALIZE_START, FINALIZE_COMPLETE],
        (TaskState::InProgress, true) => &[FINALIZE_COMPLETE],
        (TaskState::Pending, false) => &[FINALIZE_PENDING_ERROR],
        (TaskState::InProgress, false) => &[FINALIZE_ERROR],
        _ => &[],
    }
}

/// The history metadata of a finalization's change to `to`, for a task with `done` of `total`
/// steps done.
fn finalization_metadata(to: TaskState, done: i32, total: i32) -> serde_json::Value {
    match to {
        TaskState::Complete => json!({"reason": "all_steps_done", "total_steps": total}),
        TaskState::Error => {
            json!({"reason": "steps_in_error", "done_steps": done, "total_steps": total})
        }
        _ => json!({"reason": "finalizing"}),
    }
}

/// [`finalization_metadata`] in SQL on `backend`, over a finalized task row's `done_steps`
/// and `total_steps`. Keys in the order `serde_json` writes them (SQLite's `json_object`
/// keeps its arguments' order; `jsonb` sorts them itself).
fn finalization_metadata_sql(backend: DbBackend, to: TaskState) -> String {
    let object = json_object(backend);
    match to {
        TaskState::Complete => {
            format!("{object}('reason', 'all_steps_done', 'total_steps', total_steps)")
        }
        TaskState::Error => format!(
            "{object}('done_steps', done_steps, 'reason', 'steps_in_error', 'total_steps', total_steps)"
        ),
        _ => format!("{object}('reason', 'finalizing')"),
    }
}

/// The SQL function that builds a JSON object from key and value arguments on `backend`.
pub(crate) fn json_object(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "jsonb_build_object",
        _ => "json_object",
    }
}

/// The states a task can be finalized from.
const FINALIZED_FROM: [TaskState; 2] = [TaskState::Pending, TaskState::InProgress];

/// PostgreSQL: [`finalization`] inside a statement that moves a task's counters, for an
/// `UPDATE tasker_tasks` whose new counters leave `idle` true when no step is active and
/// `all_done` true when every step is done (SQL over the row's old values, as `SET` sees them).
/// `set` is the `SET` list that finalizes such a task (state, `complete`, `completed_at`, sort
/// key; `$1` is now), unchanged otherwise.
pub(crate) fn finalizing_set(idle: &str, all_done: &str) -> String {
    let mut state = Vec::with_capacity(4);
    let mut keys = Vec::with_capacity(4);
    for from in FINALIZED_FROM {
        for done in [true, false] {
            let path = finalization(from, done);
            let Some(last) = path.last() else { continue };
            let when = format!(
                "WHEN tasker_tasks.state = {} AND {}({all_done})",
                from.sql(),
                if done { "" } else { "NOT " }
            );
            state.push(format!("{when} THEN {}", last.to().sql()));
            keys.push(format!("{when} THEN {}", 10 * path.len()));
        }
    }
    let finalizing = format!(
        "({idle}) AND tasker_tasks.state IN ({})",
        FINALIZED_FROM.map(|s| s.sql()).join(", ")
    );
    format!(
        "state = CASE WHEN {finalizing} THEN CASE {state} END ELSE tasker_tasks.state END, \
         complete = CASE WHEN {finalizing} THEN ({all_done}) ELSE tasker_tasks.complete END, \
         completed_at = CASE WHEN {finalizing} THEN $1 ELSE tasker_tasks.completed_at END, \
         last_sort_key = tasker_tasks.last_sort_key + CASE WHEN {finalizing} THEN CASE {keys} END ELSE 0 END",
        state = state.join(" "),
        keys = keys.join(" "),
    )
}

/// PostgreSQL: the history rows of the finalizations [`finalizing_set`] made, as a query over
/// `rows`, a CTE of the updated task rows with their state before (`was`), new state, counters
/// and sort key.
pub(crate) fn finalized_history(name: &str, rows: &str) -> String {
    let (owners, selects) = finalized_rows(DbBackend::Postgres, rows);
    history_ctes(name, Owners::Tasks, &owners, &selects)
}

/// The history rows of the finalizations [`finalizing_set`] made on `backend`, as a query over
/// `rows` (a table expression of the updated task rows with their state before, `was`, new
/// state, counters and sort key), and a query of the tasks they belong to.
pub(crate) fn finalized_rows(backend: DbBackend, rows: &str) -> (String, String) {
    let mut selects = Vec::new();
    for from in FINALIZED_FROM {
        for done in [true, false] {
            let path = finalization(from, done);
            let Some(last) = path.last() else { continue };
            for (i, change) in path.iter().enumerate() {
                let behind = 10 * (path.len() - 1 - i);
                selects.push(format!(
                    "{} FROM {rows} WHERE was = {} AND state = {}",
                    change.select(
                        "task_id",
                        &format!("last_sort_key - {behind}"),
                        i + 1 == path.len(),
                        &finalization_metadata_sql(backend, change.to()),
                        "$1"
                    ),
                    from.sql(),
                    last.to().sql(),
                ));
            }
        }
    }
    let finalized = format!(
        "SELECT task_id FROM {rows} WHERE was IN ({}) AND state <> was",
        FINALIZED_FROM.map(|s| s.sql()).join(", ")
    );
    (finalized, selects.join(" UNION ALL "))
}

/// Changes to one task's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TaskDelta {
    pub active: i32,
    pub done: i32,
    pub blocked: i32,
}

/// The counters a step contributes to, from its state and scheduling columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepFlags {
    pub active: bool,
    pub done: bool,
    pub blocked: bool,
}

impl StepFlags {
    pub(crate) fn of(
        state: StepState,
        next_attempt_at: Option<i64>,
        unfinished_parents: i32,
    ) -> Self {
        let waiting =
            matches!(state, StepState::Pending | StepState::Error) && next_attempt_at.is_some();
        Self {
            active: state == StepState::InProgress || (waiting && unfinished_parents == 0),
            done: state.is_done(),
            blocked: state == StepState::Error && next_attempt_at.is_none(),
        }
    }

    pub(crate) fn delta_to(self, after: StepFlags) -> TaskDelta {
        let d = |a: bool, b: bool| i32::from(b) - i32::from(a);
        TaskDelta {
            active: d(self.active, after.active),
            done: d(self.done, after.done),
            blocked: d(self.blocked, after.blocked),
        }
    }
}

pub(crate) fn add(deltas: &mut HashMap<Uuid, TaskDelta>, task: Uuid, delta: TaskDelta) {
    let entry = deltas.entry(task).or_default();
    entry.active += delta.active;
    entry.done += delta.done;
    entry.blocked += delta.blocked;
}

/// Decrements the unfinished-parent counts of the children of `finished` steps; children whose
/// count reaches zero and that have a next attempt become active. Returns them.
pub(crate) async fn release_children<C: ConnectionTrait>(
    db: &C,
    finished: &[Uuid],
    now: i64,
    deltas: &mut HashMap<Uuid, TaskDelta>,
) -> Result<Vec<StepId>, StoreError> {
    if finished.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = finished.iter().copied().map(Value::from).collect();
    // One statement per chunk of finished parents: count them per child through the (from, to)
    // index and decrement each child by its count. Cost follows the edges leaving the finished
    // steps, never the size of the task or a child's fan-in. Chunks hold disjoint parents, so a
    // child decremented by two chunks ends right; its last returned row is the current one.
    let updated = query_in_chunks(
        db,
        "UPDATE tasker_workflow_steps SET updated_at = $1, unfinished_parents = unfinished_parents - c.n \
         FROM (SELECT to_step_id, COUNT(*) AS n FROM tasker_workflow_step_edges \
               WHERE from_step_id IN ({ids}) GROUP BY to_step_id) AS c \
         WHERE workflow_step_id = c.to_step_id \
         RETURNING workflow_step_id, task_id, state, unfinished_parents, next_attempt_at",
        vec![now.into()],
        &ids,
    )
    .await?;
    let mut latest: HashMap<Uuid, QueryResult> = HashMap::with_capacity(updated.len());
    for row in updated {
        latest.insert(get(&row, "workflow_step_id")?, row);
    }
    let mut rows: Vec<QueryResult> = latest.into_values().collect();
    // A stable order for the ready list.
    rows.sort_by_key(|row| get::<Uuid>(row, "workflow_step_id").unwrap_or_default());
    let mut ready = Vec::new();
    for row in rows {
        let state: String = get(&row, "state")?;
        let state: StepState = state
            .parse()
            .map_err(|e| StoreError::malformed("step state", e))?;
        let unfinished: i32 = get(&row, "unfinished_parents")?;
        let next: Option<i64> = get(&row, "next_attempt_at")?;
        if unfinished == 0 && StepFlags::of(state, next, 0).active && state != StepState::InProgress
        {
            let step: Uuid = get(&row, "workflow_step_id")?;
            add(
                deltas,
                get(&row, "task_id")?,
                TaskDelta {
                    active: 1,
                    ..Default::default()
                },
            );
            ready.push(StepId(step));
        }
    }
    Ok(ready)
}

/// Applies counter deltas and finalizes tasks left with no active step; the finalizations'
/// history rows join `history`. `locked`: the caller already holds the tasks' row locks
/// (recording takes them first), so they are not taken again.
pub(crate) async fn apply_task_deltas<C: ConnectionTrait>(
    db: &C,
    deltas: HashMap<Uuid, TaskDelta>,
    now: i64,
    history: &mut History,
    locked: bool,
) -> Result<Vec<(TaskId, TaskState)>, StoreError> {
    let backend = db.get_database_backend();
    let mut tasks: Vec<(Uuid, TaskDelta)> = deltas.into_iter().collect();
    tasks.sort_unstable_by_key(|(id, _)| *id);
    // The counters of every task in the batch move in one statement per chunk. On PostgreSQL
    // the rows are first locked in id order, so two engines updating overlapping tasks queue
    // instead of deadlocking (a set UPDATE locks in no particular order); SQLite has one writer.
    if backend == DbBackend::Postgres && tasks.len() > 1 && !locked {
        let ids: Vec<Value> = tasks.iter().map(|(id, _)| Value::from(*id)).collect();
        query_in_chunks(
            db,
            "SELECT task_id FROM tasker_tasks WHERE task_id IN ({ids}) ORDER BY task_id FOR UPDATE",
            vec![],
            &ids,
        )
        .await?;
    }
    let mut rows: HashMap<Uuid, QueryResult> = HashMap::with_capacity(tasks.len());
    for chunk in tasks.chunks(((max_params(backend) - 1) / 4).max(1)) {
        let mut values: Vec<Value> = Vec::with_capacity(1 + chunk.len() * 4);
        values.push(now.into());
        let mut tuples = Vec::with_capacity(chunk.len());
        for (task_id, delta) in chunk {
            tuples.push(format!("({})", params(values.len() + 1, 4)));
            values.push((*task_id).into());
            values.push(delta.active.into());
            values.push(delta.done.into());
            values.push(delta.blocked.into());
        }
        let sql = format!(
            "UPDATE tasker_tasks SET active_steps = active_steps + v.column2, done_steps = done_steps + v.column3, \
             blocked_steps = blocked_steps + v.column4, updated_at = $1 FROM (VALUES {}) AS v \
             WHERE task_id = v.column1 \
             RETURNING task_id, state, active_steps, done_steps, total_steps, last_sort_key",
            tuples.join(", ")
        );
        for row in db.rows(stmt(backend, sql, values)).await? {
            rows.insert(get(&row, "task_id")?, row);
        }
    }
    let mut ordered = Vec::with_capacity(tasks.len());
    for (task_id, _) in tasks {
        let row = rows
            .remove(&task_id)
            .ok_or(StoreError::TaskNotFound(TaskId(task_id)))?;
        ordered.push((task_id, row));
    }
    finalize_idle(db, ordered, now, history).await
}

/// Finalizes the tasks of `counted` (each with its row as the counters' update returned it:
/// `state, active_steps, done_steps, total_steps, last_sort_key`) left with no active step,
/// in the order given; their history rows join `history`. Returns the tasks finalized.
pub(crate) async fn finalize_idle<C: ConnectionTrait>(
    db: &C,
    counted: Vec<(Uuid, QueryResult)>,
    now: i64,
    history: &mut History,
) -> Result<Vec<(TaskId, TaskState)>, StoreError> {
    let mut finals: Vec<Final> = Vec::new();
    for (task_id, row) in counted {
        let active: i32 = get(&row, "active_steps")?;
        let state: String = get(&row, "state")?;
        let state: TaskState = state
            .parse()
            .map_err(|e| StoreError::malformed("task state", e))?;
        if active > 0 {
            continue;
        }
        let done: i32 = get(&row, "done_steps")?;
        let total: i32 = get(&row, "total_steps")?;
        let path = finalization(state, done == total);
        let (Some(first), Some(last)) = (path.first(), path.last()) else {
            continue;
        };
        let mut sort_key: i32 = get(&row, "last_sort_key")?;
        for change in path {
            sort_key += 10;
            let metadata = finalization_metadata(change.to(), done, total);
            history.tasks([change.row(task_id, sort_key, true, metadata)]);
        }
        finals.push(Final {
            task_id,
            from: first.from(),
            to: last.to(),
            sort_key,
        });
    }
    finalize_together(db, &finals, now).await?;
    Ok(finals
        .into_iter()
        .map(|f| (TaskId(f.task_id), f.to))
        .collect())
}

/// A task [`apply_task_deltas`] finalizes: from the state it read to its final one.
struct Final {
    task_id: Uuid,
    from: TaskState,
    to: TaskState,
    sort_key: i32,
}

/// Moves every task of `finals` to its final state, one statement per chunk, each conditional
/// on the state read before (as every state change is): a task that changed meanwhile is a
/// conflict and the transaction is rolled back.
async fn finalize_together<C: ConnectionTrait>(
    db: &C,
    finals: &[Final],
    now: i64,
) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    for chunk in finals.chunks(((max_params(backend) - 1) / 4).max(1)) {
        let mut values: Vec<Value> = Vec::with_capacity(1 + chunk.len() * 4);
        values.push(now.into());
        let mut tuples = Vec::with_capacity(chunk.len());
        for f in chunk {
            tuples.push(format!("({})", params(values.len() + 1, 4)));
            values.push(f.task_id.into());
            values.push(f.from.name().into());
            values.push(f.to.name().into());
            values.push(f.sort_key.into());
        }
        let sql = format!(
            "UPDATE tasker_tasks SET state = v.column3, complete = (v.column3 = {complete}), completed_at = $1, \
             last_sort_key = v.column4, updated_at = $1 FROM (VALUES {tuples}) AS v \
             WHERE task_id = v.column1 AND state = v.column2 RETURNING task_id",
            complete = TaskState::Complete.sql(),
            tuples = tuples.join(", "),
        );
        let updated: std::collections::HashSet<Uuid> = db
            .rows(stmt(backend, sql, values))
            .await?
            .iter()
            .map(|row| get::<Uuid>(row, "task_id"))
            .collect::<Result<_, _>>()?;
        if let Some(lost) = chunk.iter().find(|f| !updated.contains(&f.task_id)) {
            return Err(conflict(
                "task",
                lost.task_id.to_string(),
                lost.from.name(),
                "changed",
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Moves a step from `expected` to `to`, writing its history row, its counters and its
    /// children's readiness in one transaction. Conditional on `expected`: of two concurrent
    /// writers exactly one wins, the other gets [`StoreError::Conflict`]. Meant for operators and
    /// tools (manual resolution with `results`, cancellation, a reset to pending); the engine
    /// uses claims and [`Store::record_outcomes`].
    pub async fn transition_step(
        &self,
        step_id: StepId,
        expected: StepState,
        to: StepState,
        results: Option<serde_json::Value>,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(TransitionOutcome<StepState>, RecordReport), StoreError> {
        retrying(|| {
            self.transition_step_once(
                step_id,
                expected,
                to,
                results.clone(),
                metadata.clone(),
                now,
            )
        })
        .await
    }

    async fn transition_step_once(
        &self,
        step_id: StepId,
        expected: StepState,
        to: StepState,
        results: Option<serde_json::Value>,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(TransitionOutcome<StepState>, RecordReport), StoreError> {
        let txn = self.write_txn().await?;
        let backend = self.db_backend();
        let now = to_micros(now);
        // The lock order: the task row, then the step row. The step's flags and the task's
        // counters are computed from rows no other writer can change until this commits.
        lock_tasks(
            &txn,
            "SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id = $1",
            vec![step_id.as_uuid().into()],
        )
        .await?;
        let row = txn
            .row(stmt(
                backend,
                format!(
                    "SELECT task_id, state, next_attempt_at, unfinished_parents, total_parents, last_sort_key, attempts \
                     FROM tasker_workflow_steps WHERE workflow_step_id = $1{}",
                    for_update(backend)
                ),
                vec![step_id.as_uuid().into()],
            ))
            .await?
            .ok_or(StoreError::StepNotFound(step_id))?;
        let state: String = get(&row, "state")?;
        let state: StepState = state
            .parse()
            .map_err(|e| StoreError::malformed("step state", e))?;
        if state != expected {
            return Err(conflict(
                "step",
                step_id.to_string(),
                expected.as_str(),
                state.as_str(),
            ));
        }
        let unfinished: i32 = get(&row, "unfinished_parents")?;
        let total_parents: i32 = get(&row, "total_parents")?;
        let guard = StepGuard {
            total_parents: usize::try_from(total_parents).unwrap_or(0),
            done_parents: usize::try_from(total_parents - unfinished).unwrap_or(0),
        };
        let transition = match step::transition(expected, to, Some(guard))? {
            TransitionOutcome::AlreadyInState(s) => {
                return Ok((
                    TransitionOutcome::AlreadyInState(s),
                    RecordReport::default(),
                ));
            }
            TransitionOutcome::Transitioned(t) => t,
        };
        let task_id: Uuid = get(&row, "task_id")?;
        let next: Option<i64> = get(&row, "next_attempt_at")?;
        let before = StepFlags::of(state, next, unfinished);
        let new_next = match to {
            StepState::Pending => Some(now),
            _ => None,
        };
        let after = StepFlags::of(to, new_next, unfinished);
        let sort_key = get::<i32>(&row, "last_sort_key")? + 10;
        let results_value = results.map(|r| Value::Json(Some(Box::new(r))));
        let updated = txn
            .exec(stmt(
                backend,
                "UPDATE tasker_workflow_steps SET state = $1, next_attempt_at = $2, last_sort_key = $3, updated_at = $4, \
                 in_process = $5, claim_owner = CASE WHEN $5 THEN claim_owner ELSE NULL END, \
                 lease_expires_at = CASE WHEN $5 THEN lease_expires_at ELSE NULL END, \
                 attempts = attempts + $6, last_attempted_at = CASE WHEN $6 = 1 THEN $4 ELSE last_attempted_at END, \
                 processed = $7, processed_at = CASE WHEN $7 THEN $4 ELSE processed_at END, \
                 results = COALESCE($8, results) \
                 WHERE workflow_step_id = $9 AND state = $10",
                vec![
                    to.as_str().into(),
                    new_next.into(),
                    sort_key.into(),
                    now.into(),
                    (to == StepState::InProgress).into(),
                    i32::from(to == StepState::InProgress).into(),
                    to.is_done().into(),
                    results_value.unwrap_or(Value::Json(None)),
                    step_id.as_uuid().into(),
                    expected.as_str().into(),
                ],
            ))
            .await?;
        if updated.rows_affected() != 1 {
            return Err(conflict(
                "step",
                step_id.to_string(),
                expected.as_str(),
                "changed",
            ));
        }
        write_transitions(
            &txn,
            Owners::Steps,
            vec![Change::checked(&transition).row(step_id.as_uuid(), sort_key, true, metadata)],
            now,
            true,
        )
        .await?;
        let mut deltas = HashMap::new();
        add(&mut deltas, task_id, before.delta_to(after));
        let mut report = RecordReport::default();
        // Resolving or retrying a step of a task in error reopens the task in the same
        // transaction, so the step (or its released children) is never claimable while the task
        // still reads `error`.
        if matches!(to, StepState::ResolvedManually | StepState::Pending)
            && reopen_in(&txn, TaskId(task_id), now).await?
        {
            report.reopened.push(TaskId(task_id));
        }
        if after.done && !before.done {
            report.newly_ready =
                release_children(&txn, &[step_id.as_uuid()], now, &mut deltas).await?;
        }
        let mut history = History::default();
        report.finalized = apply_task_deltas(&txn, deltas, now, &mut history, true).await?;
        history.write(&txn, now).await?;
        commit(txn).await?;
        Ok((TransitionOutcome::Transitioned(transition), report))
    }

    /// Moves a task from `expected` to `to` with its history row, conditional on `expected`.
    /// Cancelling also cancels the task's unfinished steps (running handlers learn of it when
    /// their outcome is refused, or sooner through the engine's cancellation token). Sending a
    /// task in `error` back to `pending` resets its exhausted steps to a fresh attempt budget.
    pub async fn transition_task(
        &self,
        task_id: TaskId,
        expected: TaskState,
        to: TaskState,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<TransitionOutcome<TaskState>, StoreError> {
        self.transition_task_with_steps(task_id, expected, to, metadata, now)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Store::transition_task`], also returning the steps the transition moved (cancelled
    /// with a cancelled task; reset to pending when a task in error goes back to pending), each
    /// with the state it came from, read from the same statements that changed them.
    pub async fn transition_task_with_steps(
        &self,
        task_id: TaskId,
        expected: TaskState,
        to: TaskState,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(TransitionOutcome<TaskState>, Vec<ChangedStep>), StoreError> {
        retrying(|| self.transition_task_once(task_id, expected, to, metadata.clone(), now)).await
    }

    async fn transition_task_once(
        &self,
        task_id: TaskId,
        expected: TaskState,
        to: TaskState,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(TransitionOutcome<TaskState>, Vec<ChangedStep>), StoreError> {
        let txn = self.write_txn().await?;
        let backend = self.db_backend();
        let now = to_micros(now);
        let id: Value = task_id.as_uuid().into();
        // The lock order: the task row first, then (cancelling or retrying) its steps.
        let row = txn
            .row(stmt(
                backend,
                format!(
                    "SELECT state, done_steps, total_steps, last_sort_key FROM tasker_tasks WHERE task_id = $1{}",
                    for_update(backend)
                ),
                vec![id.clone()],
            ))
            .await?
            .ok_or(StoreError::TaskNotFound(task_id))?;
        let state: String = get(&row, "state")?;
        let state: TaskState = state
            .parse()
            .map_err(|e| StoreError::malformed("task state", e))?;
        if state != expected {
            return Err(conflict(
                "task",
                task_id.to_string(),
                expected.as_str(),
                state.as_str(),
            ));
        }
        let guard = TaskGuard {
            total_steps: usize::try_from(get::<i32>(&row, "total_steps")?).unwrap_or(0),
            done_steps: usize::try_from(get::<i32>(&row, "done_steps")?).unwrap_or(0),
        };
        let transition: Transition<TaskState> = match task::transition(expected, to, Some(guard))? {
            TransitionOutcome::AlreadyInState(s) => {
                return Ok((TransitionOutcome::AlreadyInState(s), Vec::new()));
            }
            TransitionOutcome::Transitioned(t) => t,
        };
        let sort_key = get::<i32>(&row, "last_sort_key")? + 10;
        let finished = matches!(
            to,
            TaskState::Complete
                | TaskState::Error
                | TaskState::Cancelled
                | TaskState::ResolvedManually
        );
        let updated = txn
            .exec(stmt(
                backend,
                "UPDATE tasker_tasks SET state = $1, complete = $2, last_sort_key = $3, updated_at = $4, \
                 completed_at = CASE WHEN $5 THEN $4 ELSE NULL END WHERE task_id = $6 AND state = $7",
                vec![
                    to.as_str().into(),
                    (to == TaskState::Complete).into(),
                    sort_key.into(),
                    now.into(),
                    finished.into(),
                    id.clone(),
                    expected.as_str().into(),
                ],
            ))
            .await?;
        if updated.rows_affected() != 1 {
            return Err(conflict(
                "task",
                task_id.to_string(),
                expected.as_str(),
                "changed",
            ));
        }
        write_transitions(
            &txn,
            Owners::Tasks,
            vec![Change::checked(&transition).row(task_id.as_uuid(), sort_key, true, metadata)],
            now,
            true,
        )
        .await?;
        let steps = match to {
            TaskState::Cancelled => cancel_steps(&txn, task_id, now).await?,
            TaskState::Pending if expected == TaskState::Error => {
                let reset = reset_blocked_steps(&txn, task_id, now).await?;
                if reset.is_empty() {
                    // Nothing would run: the task would wait in `pending` forever. Refuse, and
                    // the dropped transaction leaves the task as it was.
                    let cancelled = txn
                        .rows(stmt(
                            backend,
                            format!(
                                "SELECT name FROM tasker_workflow_steps WHERE task_id = $1 AND state = {} \
                                 ORDER BY position",
                                StepState::Cancelled.sql()
                            ),
                            vec![id.clone()],
                        ))
                        .await?
                        .iter()
                        .map(|row| get::<String>(row, "name"))
                        .collect::<Result<Vec<_>, _>>()?;
                    return Err(StoreError::NothingToRetry { task_id, cancelled });
                }
                reset
            }
            _ => Vec::new(),
        };
        commit(txn).await?;
        Ok((TransitionOutcome::Transitioned(transition), steps))
    }
}

impl Store {
    /// Sends a task in `error` back to `pending` without touching its steps, for when an
    /// operator has resolved what blocked it. If nothing can run, it is finalized again at once
    /// (`complete` when every step is now done). Returns the task's state afterwards.
    pub async fn reopen_task(
        &self,
        task_id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<TaskState, StoreError> {
        retrying(|| self.reopen_task_once(task_id, now)).await
    }

    async fn reopen_task_once(
        &self,
        task_id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<TaskState, StoreError> {
        let txn = self.write_txn().await?;
        let now = to_micros(now);
        if !reopen_in(&txn, task_id, now).await? {
            let task = self.task(task_id).await?;
            return Err(conflict(
                "task",
                task_id.to_string(),
                "error",
                task.state.as_str(),
            ));
        }
        let mut deltas = HashMap::new();
        deltas.insert(task_id.as_uuid(), TaskDelta::default());
        let mut history = History::default();
        let finalized = apply_task_deltas(&txn, deltas, now, &mut history, true).await?;
        history.write(&txn, now).await?;
        commit(txn).await?;
        Ok(finalized
            .first()
            .map_or(TaskState::Pending, |(_, state)| *state))
    }
}

/// Moves a task in `error` back to `pending` with its history row; `false` when it was not in
/// error. The caller applies deltas afterwards, which finalizes it again if nothing can run.
async fn reopen_in<C: ConnectionTrait>(
    db: &C,
    task_id: TaskId,
    now: i64,
) -> Result<bool, StoreError> {
    let row = db
        .row(stmt(
            db.get_database_backend(),
            format!(
                "UPDATE tasker_tasks SET state = {to}, complete = FALSE, completed_at = NULL, \
                 last_sort_key = last_sort_key + 10, updated_at = $1 WHERE task_id = $2 AND state = {from} \
                 RETURNING last_sort_key",
                from = REOPEN.from().sql(),
                to = REOPEN.to().sql(),
            ),
            vec![now.into(), task_id.as_uuid().into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    write_transitions(
        db,
        Owners::Tasks,
        vec![REOPEN.row(
            task_id.as_uuid(),
            get(&row, "last_sort_key")?,
            true,
            json!({"reason": "reopened"}),
        )],
        now,
        true,
    )
    .await?;
    Ok(true)
}

async fn cancel_steps<C: ConnectionTrait>(
    db: &C,
    task_id: TaskId,
    now: i64,
) -> Result<Vec<ChangedStep>, StoreError> {
    let backend = db.get_database_backend();
    // One statement per from-state, so each history row states where the step came from.
    let mut history = Vec::new();
    let mut changed = Vec::new();
    for change in [CANCEL_PENDING, CANCEL_RUNNING] {
        let rows = db
            .rows(stmt(
                backend,
                format!(
                    "UPDATE tasker_workflow_steps SET state = {to}, next_attempt_at = NULL, in_process = FALSE, \
                     claim_owner = NULL, lease_expires_at = NULL, last_sort_key = last_sort_key + 10, updated_at = $1 \
                     WHERE task_id = $2 AND state = {from} \
                     RETURNING workflow_step_id, last_sort_key, name, attempts, retry_limit, position",
                    from = change.from().sql(),
                    to = change.to().sql(),
                ),
                vec![now.into(), task_id.as_uuid().into()],
            ))
            .await?;
        changed.extend(changed_steps(&rows, change)?);
        history.extend(history_rows(
            &rows,
            change,
            json!({"reason": "task_cancelled"}),
        )?);
    }
    // Steps in error have no cancelled transition (Rails table); they just lose their schedule.
    db.exec(stmt(
        backend,
        format!(
            "UPDATE tasker_workflow_steps SET next_attempt_at = NULL, updated_at = $1 WHERE task_id = $2 AND state = {}",
            StepState::Error.sql()
        ),
        vec![now.into(), task_id.as_uuid().into()],
    ))
    .await?;
    db.exec(stmt(
        backend,
        "UPDATE tasker_tasks SET active_steps = 0 WHERE task_id = $1",
        vec![task_id.as_uuid().into()],
    ))
    .await?;
    write_transitions(db, Owners::Steps, history, now, true).await?;
    changed.sort_by_key(|c| c.position);
    Ok(changed)
}

async fn reset_blocked_steps<C: ConnectionTrait>(
    db: &C,
    task_id: TaskId,
    now: i64,
) -> Result<Vec<ChangedStep>, StoreError> {
    let backend = db.get_database_backend();
    let rows = db
        .rows(stmt(
            backend,
            format!(
                "UPDATE tasker_workflow_steps SET state = {to}, attempts = 0, next_attempt_at = $1, \
                 last_sort_key = last_sort_key + 10, updated_at = $1 \
                 WHERE task_id = $2 AND state = {from} AND next_attempt_at IS NULL \
                 RETURNING workflow_step_id, last_sort_key, name, attempts, retry_limit, position",
                from = RESET.from().sql(),
                to = RESET.to().sql(),
            ),
            vec![now.into(), task_id.as_uuid().into()],
        ))
        .await?;
    let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    db.exec(stmt(
        backend,
        "UPDATE tasker_tasks SET active_steps = active_steps + $1, blocked_steps = blocked_steps - $1 WHERE task_id = $2",
        vec![count.into(), task_id.as_uuid().into()],
    ))
    .await?;
    let history = history_rows(
        &rows,
        RESET,
        json!({"reason": "task_retry", "retry_attempt": 0}),
    )?;
    write_transitions(db, Owners::Steps, history, now, true).await?;
    let mut changed = changed_steps(&rows, RESET)?;
    changed.sort_by_key(|c| c.position);
    Ok(changed)
}

/// What an UPDATE returned about the steps it moved (`workflow_step_id`, `name`, `attempts`,
/// `retry_limit`, `position`).
fn changed_steps(rows: &[QueryResult], change: StepChange) -> Result<Vec<ChangedStep>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(ChangedStep {
                step_id: StepId(get(row, "workflow_step_id")?),
                name: get(row, "name")?,
                from_state: change.from(),
                to_state: change.to(),
                attempts: u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0),
                retry_limit: u32::try_from(get::<i32>(row, "retry_limit")?).unwrap_or(0),
                position: u32::try_from(get::<i32>(row, "position")?).unwrap_or(0),
            })
        })
        .collect()
}

/// Current history rows for steps an UPDATE returned (`workflow_step_id`, `last_sort_key`).
fn history_rows(
    rows: &[QueryResult],
    change: StepChange,
    metadata: serde_json::Value,
) -> Result<Vec<TransitionRow>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(change.row(
                get(row, "workflow_step_id")?,
                get(row, "last_sort_key")?,
                true,
                metadata.clone(),
            ))
        })
        .collect()
}

pub(crate) fn conflict(
    entity: &'static str,
    id: String,
    expected: &str,
    actual: &str,
) -> StoreError {
    StoreError::Conflict {
        entity,
        id,
        expected: expected.to_owned(),
        actual: actual.to_owned(),
    }
}
