//! SQLite: the coordinator's hand-off (a batch of successes recorded, then a claim) as one call
//! to the driver.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every call is a hand-over to
//! that thread and back, which costs more than SQLite's work on a small statement. So the
//! hand-off's statements go as one string. No statement can read another's answer, so each
//! finds the outcomes' steps by their claims still holding (in progress, same attempt, same
//! owner) and runs before the completion that ends the claims: the children are released, the
//! tasks' counters move, the tasks left with no active step are finalized, and then the steps
//! are completed. The claim's statements follow. SQLite has one writer, and the transaction
//! running the string is it: nothing changes the rows between the statements.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use tasker_domain::{StepId, StepState, TaskId, TaskState};
use uuid::Uuid;

use super::changes::State;
use super::claims::{
    ClaimRows, claim_values, finish_claim, parents_column, sqlite_claim, sqlite_claim_rows,
    unlimited_clause,
};
use super::history::History;
use super::outcomes::{
    COMPLETE, Completion, Success, completion, recorded, success_metadata, task_state,
};
use super::sql::{Db, STATEMENT_SEPARATOR, get, micros, stmt};
use super::transitions::{FINALIZED_FROM, finalization, finalization_history, finalizing_set};
use super::{ClaimBatch, ClaimFilter, LeaseClock, RecordReport, StepOutcome};
use crate::error::StoreError;

/// The most successes one call records: each statement lists them all, and SQLite finds
/// numbered parameters by a linear search, so a string's cost grows with the square of its
/// batch. Larger batches take the statement-per-phase path.
const MAX_SUCCESSES: usize = 16;

/// The kinds of the string's rows; the claim's statements return kinds 0 to 2.
const DONE: i32 = 10;
const RELEASED: i32 = 11;
const FINALIZED: i32 = 12;

/// The claim a hand-off makes after recording: up to `limit` (> 0) steps that `filter` allows,
/// for the recording's owner, with leases of `lease` microseconds on `clock`; when
/// `only_if_readied`, only if the outcomes readied a step.
pub(super) struct HandOffClaim<'a> {
    pub clock: LeaseClock,
    pub limit: usize,
    pub lease: std::time::Duration,
    pub filter: &'a ClaimFilter,
    pub only_if_readied: bool,
}

/// The successes of `outcomes`, if a hand-off of them is one call: on SQLite, claiming without
/// namespace limits, a batch of 1 to [`MAX_SUCCESSES`] successes of distinct steps.
pub(super) fn one_call<'a>(
    backend: DbBackend,
    owner: &'a str,
    outcomes: &'a [StepOutcome],
    filter: &ClaimFilter,
) -> Option<Vec<Success<'a>>> {
    if backend != DbBackend::Sqlite
        || !filter.limits.is_empty()
        || outcomes.is_empty()
        || outcomes.len() > MAX_SUCCESSES
    {
        return None;
    }
    let mut successes: Vec<Success<'a>> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let StepOutcome::Success {
            step_id,
            attempt,
            results,
        } = outcome
        else {
            return None;
        };
        if successes.iter().any(|(_, id, _, _)| id == step_id) {
            return None;
        }
        successes.push((owner, *step_id, *attempt, results));
    }
    Some(successes)
}

/// Records `successes` (all `owner`'s) and makes `claim` in one call inside `txn`'s
/// transaction; the history rows of every change join `history`.
pub(super) async fn record_and_claim<C: ConnectionTrait>(
    txn: &C,
    owner: &str,
    successes: &[Success<'_>],
    now: i64,
    claim: Option<HandOffClaim<'_>>,
    history: &mut History,
) -> Result<(RecordReport, ClaimBatch), StoreError> {
    let backend = DbBackend::Sqlite;
    let (expiry, lease, limit) = match &claim {
        Some(c) => {
            let (expiry, lease) = c.clock.expiry(backend, 2, now, micros(c.lease));
            (expiry, lease, c.limit)
        }
        None => (String::new(), Value::BigInt(None), 0),
    };
    let recording = completion(
        successes,
        claim_values(owner, lease, now, limit),
        "$3",
        "",
        DONE,
    );
    let mut sql = recording_statements(&recording, "$3");
    if let Some(c) = &claim {
        let mut only = unlimited_clause(c.filter);
        if c.only_if_readied {
            only.push_str(&readied_gate(&recording.ids));
        }
        sql.push_str(STATEMENT_SEPARATOR);
        sql.push_str(&sqlite_claim(&expiry, &only, &parents_column(backend)));
    }
    let rows = txn.rows(stmt(backend, sql, recording.values)).await?;
    let mut done: HashMap<Uuid, QueryResult> = HashMap::with_capacity(successes.len());
    let mut ready = Vec::new();
    let mut finalized = Vec::new();
    let mut claim_rows = Vec::new();
    for row in rows {
        match get::<i32>(&row, "kind")? {
            DONE => {
                done.insert(get(&row, "workflow_step_id")?, row);
            }
            RELEASED => {
                if get::<bool>(&row, "ready")? {
                    ready.push(StepId(get(&row, "workflow_step_id")?));
                }
            }
            FINALIZED => finalized.push(row),
            _ => claim_rows.push(row),
        }
    }
    let mut report = RecordReport::default();
    for (_, step_id, _, _) in successes {
        match done.remove(&step_id.as_uuid()) {
            Some(row) => {
                recorded(
                    &mut report,
                    Some(history),
                    *step_id,
                    &row,
                    COMPLETE,
                    |attempts, _| success_metadata(attempts),
                )?;
            }
            None => report.rejected.push(*step_id),
        }
    }
    // A stable order, as the statements' is not.
    ready.sort();
    report.newly_ready = ready;
    report.finalized = finalized_tasks(finalized, history)?;
    let batch = match claim {
        None => ClaimBatch::default(),
        Some(_) => {
            let mut rows = ClaimRows::default();
            rows.claimed = sqlite_claim_rows(claim_rows, &mut rows.retried, &mut rows.started)?;
            finish_claim(txn, owner, now, rows, false, true, history).await?
        }
    };
    Ok((report, batch))
}

/// The recording's statements, joined: release, counters, finalization (one statement per
/// state a task is finalized from, so each row names the state it left), completion. `now` is
/// the parameter holding now.
fn recording_statements(recording: &Completion, now: &str) -> String {
    let Completion {
        v, holds, update, ..
    } = recording;
    let waiting = waiting();
    // The steps whose claims still hold, with their tasks.
    let held = format!(
        "{v}, held AS (SELECT workflow_step_id, task_id FROM tasker_workflow_steps, v WHERE {holds})"
    );
    let mut statements = vec![
        // Each child loses one unfinished parent per parent completed; those left with none
        // and a next attempt are ready.
        format!(
            "WITH {held} UPDATE tasker_workflow_steps SET updated_at = {now}, \
             unfinished_parents = unfinished_parents - c.n \
             FROM (SELECT to_step_id, COUNT(*) AS n FROM tasker_workflow_step_edges \
             WHERE from_step_id IN (SELECT workflow_step_id FROM held) GROUP BY to_step_id) AS c \
             WHERE workflow_step_id = c.to_step_id \
             RETURNING {RELEASED} AS kind, workflow_step_id, \
             (unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND state IN ({waiting})) AS ready"
        ),
        // A completed step leaves `active` for `done`; a child it readied joins `active` (a
        // child of a step in progress was not ready before, so each ready one was readied now).
        format!(
            "WITH {held}, finished AS (SELECT task_id, COUNT(*) AS n FROM held GROUP BY task_id), \
             woken AS (SELECT c.task_id, COUNT(DISTINCT c.workflow_step_id) AS n \
             FROM tasker_workflow_step_edges e JOIN tasker_workflow_steps c ON c.workflow_step_id = e.to_step_id \
             WHERE e.from_step_id IN (SELECT workflow_step_id FROM held) AND c.unfinished_parents = 0 \
             AND c.next_attempt_at IS NOT NULL AND c.state IN ({waiting}) GROUP BY c.task_id) \
             UPDATE tasker_tasks SET active_steps = active_steps - f.n + COALESCE(w.n, 0), \
             done_steps = done_steps + f.n, updated_at = {now} \
             FROM finished f LEFT JOIN woken w ON w.task_id = f.task_id WHERE tasker_tasks.task_id = f.task_id"
        ),
    ];
    let set = finalizing_set("active_steps = 0", "done_steps = total_steps", now);
    for from in FINALIZED_FROM {
        statements.push(format!(
            "WITH {held} UPDATE tasker_tasks SET {set}, updated_at = {now} \
             WHERE task_id IN (SELECT task_id FROM held) AND state = {from} AND active_steps = 0 \
             RETURNING {FINALIZED} AS kind, task_id, {from} AS was, state, done_steps, total_steps, last_sort_key",
            from = from.sql(),
        ));
    }
    statements.push(format!("WITH {v} {update}"));
    statements.join(STATEMENT_SEPARATOR)
}

/// The claim's further condition when it is made only if the outcomes readied a step: a child
/// of one of the steps `ids` names is ready. (Its parent is complete now, and a child of a step
/// in progress is never ready.)
fn readied_gate(ids: &str) -> String {
    format!(
        " AND EXISTS (SELECT 1 FROM tasker_workflow_step_edges g \
         JOIN tasker_workflow_steps r ON r.workflow_step_id = g.to_step_id \
         WHERE g.from_step_id IN ({ids}) AND r.unfinished_parents = 0 \
         AND r.next_attempt_at IS NOT NULL AND r.state IN ({}))",
        waiting()
    )
}

/// The states of a step waiting for an attempt, as an SQL list: one with a next attempt and
/// no unfinished parent is ready.
fn waiting() -> String {
    [StepState::Pending.sql(), StepState::Error.sql()].join(", ")
}

/// The tasks the string finalized (its `FINALIZED` rows), in id order, with their history rows
/// added to `history`.
fn finalized_tasks(
    mut rows: Vec<QueryResult>,
    history: &mut History,
) -> Result<Vec<(TaskId, TaskState)>, StoreError> {
    let mut tasks = Vec::with_capacity(rows.len());
    rows.sort_by_key(|row| get::<Uuid>(row, "task_id").unwrap_or_default());
    for row in rows {
        let task_id: Uuid = get(&row, "task_id")?;
        let was = task_state(&row, "was")?;
        let state = task_state(&row, "state")?;
        let done: i32 = get(&row, "done_steps")?;
        let total: i32 = get(&row, "total_steps")?;
        let path = finalization(was, done == total);
        let steps = i32::try_from(path.len()).unwrap_or(0);
        let before = get::<i32>(&row, "last_sort_key")? - 10 * steps;
        finalization_history(history, task_id, path, before, done, total);
        tasks.push((TaskId(task_id), state));
    }
    Ok(tasks)
}
