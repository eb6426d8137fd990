//! Outcomes: what an attempt did, recorded only while its claim still holds — same owner, same
//! attempt, still in progress — so a stale worker cannot overwrite a newer attempt. Recording
//! also releases the children of completed steps, moves the tasks' counters and finalizes the
//! tasks left with nothing to run.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use serde_json::json;
use tasker_domain::codes;
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskState};
use uuid::Uuid;

use super::changes::{State, StepChange, changes};
use super::claims::{CLAIM, ClaimArgs, claim_metadata_sql, filter_clause};
use super::history::{History, Owners, history_ctes};
use super::sql::{
    Db, commit, get, json, lock_tasks, max_params, micros, params, query_in_chunks, retrying,
    skip_locked, stmt,
};
use super::transitions::{
    StepFlags, TaskDelta, add, apply_task_deltas, finalized_history, finalizing_set, json_object,
    release_children,
};
use super::{RecordReport, RecordedStep, StepFailure, StepOutcome, Store};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

changes! {
    /// A successful attempt, recorded while its claim holds.
    step COMPLETE: InProgress => Complete;
    /// A failed attempt (or an expired lease), recorded while its claim holds.
    step FAIL: InProgress => Error;
}

impl Store {
    /// Records a batch of outcomes in one transaction, each only where `owner`'s claim on that
    /// attempt still holds; the others come back in [`RecordReport::rejected`].
    pub async fn record_outcomes(
        &self,
        owner: &str,
        outcomes: impl AsRef<[StepOutcome]>,
        now: DateTime<Utc>,
    ) -> Result<RecordReport, StoreError> {
        let outcomes = outcomes.as_ref();
        retrying(|| async move {
            let txn = self.write_txn().await?;
            let claimed = outcomes.iter().map(|o| (owner, o)).collect();
            let now = to_micros(now);
            let mut history = History::default();
            let report = record_in(&txn, claimed, now, &mut history).await?;
            history.write(&txn, now).await?;
            commit(txn).await?;
            Ok(report)
        })
        .await
    }

    /// Fails every attempt whose lease has expired (a crashed or stalled worker) as a retryable
    /// `LEASE_EXPIRED` error, so the step runs again while attempts remain.
    pub async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<RecordReport, StoreError> {
        retrying(|| self.reclaim_expired_once(now)).await
    }

    async fn reclaim_expired_once(&self, now: DateTime<Utc>) -> Result<RecordReport, StoreError> {
        let backend = self.db_backend();
        let txn = self.write_txn().await?;
        let now_micros = to_micros(now);
        let (lease_now, values) = self.lease_clock.now(backend, 1, now_micros);
        let values: Vec<Value> = values.into_iter().collect();
        // The lock order: the tasks of the expired steps first, then the steps.
        lock_tasks(
            &txn,
            &format!(
                "SELECT task_id FROM tasker_workflow_steps WHERE lease_expires_at IS NOT NULL \
                 AND lease_expires_at < {lease_now} AND state = {}",
                FAIL.from().sql()
            ),
            values.clone(),
        )
        .await?;
        let rows = txn
            .rows(stmt(
                backend,
                format!(
                    "SELECT workflow_step_id, claim_owner, attempts, lease_expires_at FROM tasker_workflow_steps \
                     WHERE lease_expires_at IS NOT NULL AND lease_expires_at < {lease_now} AND state = {}{}",
                    FAIL.from().sql(),
                    skip_locked(backend)
                ),
                values,
            ))
            .await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in rows {
            let owner: Option<String> = get(&row, "claim_owner")?;
            let expired: i64 = get(&row, "lease_expires_at")?;
            let error =
                StepError::retryable("lease expired before the attempt reported an outcome")
                    .with_code(codes::LEASE_EXPIRED)
                    .with_context(
                        json!({"claim_owner": owner, "lease_expired_at": from_micros(expired)}),
                    );
            outcomes.push((
                owner.unwrap_or_default(),
                StepOutcome::Failure(StepFailure {
                    step_id: StepId(get(&row, "workflow_step_id")?),
                    attempt: u32::try_from(get::<i32>(&row, "attempts")?).unwrap_or(0),
                    error,
                    retry_delay: Duration::ZERO,
                }),
            ));
        }
        let pairs = outcomes.iter().map(|(o, s)| (o.as_str(), s)).collect();
        let mut history = History::default();
        let report = record_in(&txn, pairs, now_micros, &mut history).await?;
        history.write(&txn, now_micros).await?;
        commit(txn).await?;
        Ok(report)
    }
}

/// How many outcomes one completion statement carries on `backend`.
fn completions_per_statement(backend: DbBackend) -> usize {
    ((max_params(backend) - 1) / 4).max(1)
}

/// A success to record: `(owner, step, attempt, results)`.
pub(super) type Success<'a> = (&'a str, StepId, u32, &'a serde_json::Value);

/// One completion statement's parts.
pub(super) struct Completion {
    /// Its parameters: `$1` now, then four per success.
    pub(super) values: Vec<Value>,
    /// The `v` CTE of the successes.
    pub(super) v: String,
    /// The steps of `v` as an indexable condition on `workflow_step_id` (a list of their
    /// parameters, `$2, $6, …`), so the statement reads them by primary key whatever the
    /// planner estimates of `v`.
    pub(super) by_id: String,
}

/// The [`Completion`] of `chunk`.
pub(super) fn completion(chunk: &[Success<'_>], now: i64) -> Completion {
    let mut values: Vec<Value> = Vec::with_capacity(1 + chunk.len() * 4);
    values.push(now.into());
    let mut tuples = Vec::with_capacity(chunk.len());
    let mut ids = Vec::with_capacity(chunk.len());
    for (owner, step_id, attempt, results) in chunk {
        ids.push(format!("${}", values.len() + 1));
        tuples.push(format!("({})", params(values.len() + 1, 4)));
        values.push(step_id.as_uuid().into());
        values.push(i32::try_from(*attempt).unwrap_or(i32::MAX).into());
        values.push((*owner).into());
        values.push(json((*results).clone()));
    }
    let v = format!(
        "v (step, attempt, owner, results) AS (VALUES {})",
        tuples.join(", ")
    );
    let by_id = format!("workflow_step_id IN ({})", ids.join(", "));
    Completion { values, v, by_id }
}

/// The `UPDATE` that completes the steps of `v` (`step`, `attempt`, `owner`, `results`) whose
/// claims hold, reading them by the primary key as `by_id` says, with `and` added to its
/// condition; `$1` is now.
fn completing_update(by_id: &str, and: &str) -> String {
    completing_update_returning(by_id, and, "")
}

/// [`completing_update`] with `answer` (columns, each followed by a comma) ahead of the
/// columns it returns.
pub(super) fn completing_update_returning(by_id: &str, and: &str, answer: &str) -> String {
    format!(
        "UPDATE tasker_workflow_steps SET state = {to}, processed = TRUE, processed_at = $1, \
         results = v.results, in_process = FALSE, claim_owner = NULL, lease_expires_at = NULL, updated_at = $1, \
         last_sort_key = last_sort_key + 10 FROM v \
         WHERE {by_id} AND workflow_step_id = v.step AND state = {from} \
         AND attempts = v.attempt AND claim_owner = v.owner{and} \
         RETURNING {answer}workflow_step_id, task_id, last_sort_key, attempts, next_attempt_at",
        from = COMPLETE.from().sql(),
        to = COMPLETE.to().sql(),
    )
}

/// Completes `successes` where their claims hold, one statement per chunk; returns the updated
/// rows by step id (a refused outcome has none).
async fn complete_together<C: ConnectionTrait>(
    db: &C,
    successes: &[Success<'_>],
    now: i64,
) -> Result<HashMap<Uuid, QueryResult>, StoreError> {
    let backend = db.get_database_backend();
    let mut rows = HashMap::with_capacity(successes.len());
    for chunk in successes.chunks(completions_per_statement(backend)) {
        let Completion { values, v, by_id } = completion(chunk, now);
        let update = completing_update(&by_id, "");
        for row in db
            .rows(stmt(backend, format!("WITH {v} {update}"), values))
            .await?
        {
            rows.insert(get(&row, "workflow_step_id")?, row);
        }
    }
    Ok(rows)
}

/// What [`complete_release_count`] returns, by `kind`: a completed step, a child made ready,
/// a task's counted row; [`CLAIMED`] a claimed child; [`NOT_READY`] a child still waiting.
pub(super) const DONE: i32 = 0;
pub(super) const READY: i32 = 1;
pub(super) const COUNTED: i32 = 2;
pub(super) const NOT_READY: i32 = 4;

/// The recording statement of [`complete_release_count`] for the successes of the `v` CTE
/// (`step`, `attempt`, `owner`, `results`), found by `by_id`, a condition on
/// `workflow_step_id`, then `tail` ([`recording_tail`], which `claims` the children made ready
/// or not); `$1` is now.
fn recording(v: &str, by_id: &str, tail: &str, claims: bool) -> String {
    // A statement that claims has `done` return the results it stored too: a claimed child's
    // parents completed here are read from it (`done_results`), since the statement's
    // snapshot shows their old rows.
    let update = completing_update_returning(
        by_id,
        " AND (SELECT COUNT(*) FROM locked) >= 0",
        if claims {
            "tasker_workflow_steps.results, "
        } else {
            ""
        },
    );
    format!(
        "WITH {v}, \
         locked AS (SELECT task_id, state AS was FROM tasker_tasks WHERE task_id = ANY (ARRAY \
         (SELECT task_id FROM tasker_workflow_steps WHERE {by_id})) ORDER BY task_id FOR UPDATE), \
         done AS ({update}), {tail}"
    )
}

/// The part of [`recording`] after `done` without a claim, built once.
static RECORDING_TAIL: LazyLock<String> = LazyLock::new(|| recording_tail(None));

/// How a recording statement claims the children its outcomes make ready, as SQL (see
/// [`recording_tail`]).
struct ClaimSql {
    /// The claim's owner (a parameter).
    owner: String,
    /// The claims' lease expiry.
    expiry: String,
    /// The most children to claim (a parameter).
    limit: String,
    /// A condition on the child's row (`AND …`) that the claim's filter adds.
    only: String,
}

/// The claim kind of a recording statement's answer, ahead of the others.
pub(super) const CLAIMED: i32 = 3;

/// The part of [`recording`] after `done`: the release of the children, the counters' update
/// with its finalizing `SET` list (a task is final when its counters leave no step active),
/// both history CTEs and the answer.
///
/// With `claim`, the release also claims children it makes ready, in the same `UPDATE`: a row
/// one statement updates cannot be updated again by a later CTE of it, so the claim is the
/// release's own `SET`, each column switched on one condition. A child is claimable when the
/// statement's snapshot already shows it ready but for the parents completed here (every other
/// parent complete, so the results it is handed are final), its task is not pending (a claim
/// of a pending task starts it: the ordinary claim's work) and the filter allows it; the
/// claimable are ranked by id and the first `limit` taken, each checked again on the row as it
/// stands when updated. A child readied with the help of a parent another engine completed
/// after the snapshot (the task rows are locked first, so that engine's recording has
/// committed) is released and reported ready but not taken here: this snapshot holds that
/// parent's old results. The claimed children's history rows are written by the statement too
/// (`claim_history`), and they lead the answer (kind [`CLAIMED`]) with the columns a claim
/// returns, their parents' results read from the outcomes where this statement stored them.
fn recording_tail(claim: Option<&ClaimSql>) -> String {
    let history = history_ctes(
        "done_history",
        Owners::Steps,
        "SELECT workflow_step_id FROM done",
        &format!(
            "{} FROM done",
            COMPLETE.select(
                "workflow_step_id",
                "last_sort_key",
                true,
                &success_metadata_sql(DbBackend::Postgres),
                "$1"
            )
        ),
    );
    let finalizing = finalizing_set(
        "active_steps - f.n + f.w = 0",
        "done_steps + f.n = total_steps",
    );
    let finalized = finalized_history("final_history", "counted");
    let waiting = [StepState::Pending.sql(), StepState::Error.sql()].join(", ");
    let mut claim_set = String::new();
    let mut released_from = String::from(
        "(SELECT e.to_step_id, COUNT(*) AS n FROM done d JOIN tasker_workflow_step_edges e \
         ON e.from_step_id = d.workflow_step_id GROUP BY e.to_step_id)",
    );
    let mut taken = String::from("FALSE");
    let mut claimed_columns = "";
    let mut claim_history = String::new();
    let mut claimed_answer = String::new();
    let mut answer_nulls = "";
    if let Some(ClaimSql {
        owner,
        expiry,
        limit,
        only,
    }) = claim
    {
        let take = format!(
            "c.rank <= {limit} AND unfinished_parents = c.n AND next_attempt_at IS NOT NULL \
             AND next_attempt_at <= $1 AND state = {pending}",
            pending = CLAIM.from().sql(),
        );
        let switched = |column: &str, value: &str| {
            format!(", {column} = CASE WHEN {take} THEN {value} ELSE {column} END")
        };
        for (column, value) in [
            ("state", CLAIM.to().sql().to_string()),
            ("in_process", "TRUE".to_owned()),
            ("claim_owner", owner.clone()),
            ("lease_expires_at", expiry.clone()),
            ("attempts", "attempts + 1".to_owned()),
            ("last_attempted_at", "$1".to_owned()),
            ("next_attempt_at", "NULL".to_owned()),
            ("last_sort_key", "last_sort_key + 10".to_owned()),
        ] {
            claim_set.push_str(&switched(column, &value));
        }
        released_from = format!(
            "(SELECT to_step_id, n, CASE WHEN claimable THEN row_number() OVER \
             (ORDER BY claimable DESC, to_step_id) END AS rank FROM (SELECT e.to_step_id, COUNT(*) AS n, \
             (tasker_workflow_steps.unfinished_parents = COUNT(*) AND tasker_workflow_steps.next_attempt_at IS NOT NULL \
             AND tasker_workflow_steps.next_attempt_at <= $1 AND tasker_workflow_steps.state = {pending} \
             AND l.was <> {pending_task}{only}) AS claimable \
             FROM done d JOIN tasker_workflow_step_edges e ON e.from_step_id = d.workflow_step_id \
             JOIN tasker_workflow_steps ON tasker_workflow_steps.workflow_step_id = e.to_step_id \
             JOIN locked l ON l.task_id = tasker_workflow_steps.task_id \
             GROUP BY e.to_step_id, tasker_workflow_steps.workflow_step_id, l.was) AS g)",
            pending = CLAIM.from().sql(),
            pending_task = TaskState::Pending.sql(),
        );
        taken = format!(
            "(state = {claimed} AND claim_owner = {owner} AND last_attempted_at = $1)",
            claimed = CLAIM.to().sql(),
        );
        claimed_columns =
            ", name, retry_limit, position, inputs, lease_expires_at, attempts, last_sort_key";
        // The results of the steps completed here, by step id, for their claimed children: one
        // lookup per parent (a scan of `v` per parent cost the statement |v| rows each). It is
        // `MATERIALIZED`, built once: inlined, PostgreSQL built the object again per lookup.
        claim_history = format!(
            ", done_results AS MATERIALIZED (SELECT jsonb_object_agg(workflow_step_id::text, results) AS m FROM done), {}",
            history_ctes(
                "claim_history",
                Owners::Steps,
                "SELECT workflow_step_id FROM released WHERE taken",
                &format!(
                    "{} FROM released WHERE taken",
                    CLAIM.select(
                        "workflow_step_id",
                        "last_sort_key",
                        true,
                        &claim_metadata_sql(DbBackend::Postgres, owner),
                        "$1"
                    )
                ),
            )
        );
        claimed_answer = format!(
            "SELECT {CLAIMED} AS kind, r.workflow_step_id AS id, r.task_id, r.last_sort_key, r.attempts, \
             NULL::bigint AS next_attempt_at, NULL::text AS state, NULL::text AS was, \
             r.workflow_step_id, r.name, r.retry_limit, r.position, r.inputs, r.lease_expires_at, \
             t.named_task_id, t.context, t.correlation_id, t.trace_parent, t.created_at AS task_created_at, \
             (SELECT json_agg((SELECT json_build_array(p.name, COALESCE((SELECT m -> p.workflow_step_id::text \
             FROM done_results), p.results)) \
             FROM tasker_workflow_steps p WHERE p.workflow_step_id = e.from_step_id))::text \
             FROM tasker_workflow_step_edges e WHERE e.to_step_id = r.workflow_step_id) AS parent_results \
             FROM released r JOIN tasker_tasks t ON t.task_id = r.task_id WHERE r.taken UNION ALL "
        );
        answer_nulls = ", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL";
    }
    format!(
        "released AS (UPDATE tasker_workflow_steps SET updated_at = $1, unfinished_parents = unfinished_parents - c.n{claim_set} \
         FROM {released_from} AS c \
         WHERE workflow_step_id = c.to_step_id \
         RETURNING workflow_step_id, task_id, \
         (unfinished_parents = 0 AND (next_attempt_at IS NOT NULL AND state IN ({waiting}) OR {taken})) AS ready, \
         {taken} AS taken{claimed_columns}), \
         finished AS (SELECT task_id, COUNT(*) FILTER (WHERE completed) AS n, COUNT(*) FILTER (WHERE NOT completed) AS w \
         FROM (SELECT task_id, TRUE AS completed FROM done UNION ALL SELECT task_id, FALSE FROM released WHERE ready) AS x \
         GROUP BY task_id HAVING COUNT(*) FILTER (WHERE completed) > 0), \
         counted AS (UPDATE tasker_tasks SET active_steps = active_steps - f.n + f.w, \
         done_steps = done_steps + f.n, updated_at = $1, {finalizing} \
         FROM finished f JOIN locked l ON l.task_id = f.task_id WHERE tasker_tasks.task_id = f.task_id \
         RETURNING tasker_tasks.task_id, tasker_tasks.state, l.was, done_steps, total_steps, last_sort_key), \
         {history}, {finalized}{claim_history} \
         {claimed_answer}SELECT {DONE} AS kind, workflow_step_id AS id, task_id, last_sort_key, attempts, next_attempt_at, \
         NULL::text AS state, NULL::text AS was{answer_nulls} FROM done \
         UNION ALL SELECT {READY}, workflow_step_id, task_id, NULL, NULL, NULL, NULL, NULL{answer_nulls} FROM released WHERE ready \
         UNION ALL SELECT {COUNTED}, task_id, task_id, NULL, NULL, NULL, state, was{answer_nulls} FROM counted"
    )
}

/// Batches of up to this many successes are recorded with a `VALUES` list of parameters,
/// larger ones with [`RECORDING_JSON`].
const RECORDING_VALUES_MAX: usize = 16;

/// The recording statement for more than [`RECORDING_VALUES_MAX`] successes, built once: `$2`
/// is the successes as one JSON array of `{step, attempt, owner, boxed}` objects (`boxed`, the
/// results as a one-element array: `json_to_recordset` reads a bare JSON `null` as SQL NULL,
/// and results of `null` are stored as JSON's `null`, as the other recording statements store
/// them), and the steps are found from an array of their ids read once.
static RECORDING_JSON: LazyLock<String> =
    LazyLock::new(|| recording(JSON_V, JSON_BY_ID, &RECORDING_TAIL, false));

/// [`RECORDING_JSON`]'s `v` CTE and its condition on `workflow_step_id`.
const JSON_V: &str = "v AS (SELECT step, attempt, owner, boxed -> 0 AS results \
     FROM json_to_recordset($2::json) AS x(step uuid, attempt integer, owner text, boxed jsonb))";
const JSON_BY_ID: &str = "workflow_step_id = ANY (ARRAY (SELECT step FROM v))";

/// One success in [`RECORDING_JSON`]'s parameter.
#[derive(serde::Serialize)]
struct SuccessRow<'a> {
    step: Uuid,
    attempt: i32,
    owner: &'a str,
    boxed: [&'a serde_json::Value; 1],
}

/// PostgreSQL, a batch of successes that fits one statement: the whole of recording in one
/// statement, history and finalization included. It locks the steps' task rows in id order
/// (the lock order: tasks before steps; the completion's one-time filter waits for it),
/// completes the steps whose claims hold, decrements their children's unfinished parents and
/// moves each task's counters: a completed step leaves `active` for `done`, a child it made
/// ready joins `active` (children are always of their parent's task), and a task left with no
/// active step is finalized in the same update. It writes the completed steps' history rows
/// (`done_history`) and the finalized tasks' (`final_history`). The answer is the completed rows
/// (`kind` 0), the children made ready (1) and the tasks' counted rows (2) with their state
/// before (`was`) and after.
///
/// A large batch's successes are one JSON parameter, so the statement's text is the same
/// whatever its size: with a `VALUES` list of parameters the text differs by batch size, and
/// each new text costs a round trip to prepare it and a plan made afresh (B1's batches of about
/// a hundred outcomes ran 8–15 % faster so). A small batch keeps the `VALUES` list: its few
/// texts are prepared once per connection, and with the exact row count the planner chose plans
/// that recorded a single outcome in 0.91 ms against 1.19 ms from JSON.
///
/// `finished` counts each task's completed steps (`n`) and the children they made ready (`w`)
/// in one pass, so that the counters' update joins two CTEs, not four: the planner takes each
/// CTE for one row and joined them as nested loops that rescanned one per row of the other.
///
/// The children are found from `done` by a join on the edges' `from_step_id` index. The
/// planner takes a data-modifying CTE for one row, so this is an index probe per completed
/// step whatever the tables' statistics say; the earlier form (the edges filtered by the id
/// list, then semi-joined with `done`) was planned, once the tables had statistics, as a
/// nested loop that read every edge once per completed step (37 ms for 84 steps of 8,000).
///
/// With `claim`, the statement also claims the children its outcomes make ready (see
/// [`recording_tail`]); its parameters follow the successes'.
async fn complete_release_count<C: ConnectionTrait>(
    db: &C,
    successes: &[Success<'_>],
    now: i64,
    claim: Option<&ClaimArgs<'_>>,
) -> Result<Vec<QueryResult>, StoreError> {
    let with_claim = |values: &mut Vec<Value>| {
        claim.map(|claim| {
            let first = values.len() + 1;
            let (expiry, lease) =
                claim
                    .clock
                    .expiry(DbBackend::Postgres, first + 1, now, micros(claim.lease));
            values.push(claim.owner.into());
            values.push(lease);
            values.push(i64::try_from(claim.limit).unwrap_or(i64::MAX).into());
            recording_tail(Some(&ClaimSql {
                owner: format!("${first}"),
                expiry,
                limit: format!("${}", first + 2),
                only: filter_clause(claim.filter),
            }))
        })
    };
    if successes.len() <= RECORDING_VALUES_MAX {
        let Completion {
            mut values,
            v,
            by_id,
        } = completion(successes, now);
        let tail = with_claim(&mut values);
        let tail = tail.as_deref().unwrap_or(&RECORDING_TAIL);
        return db
            .rows(stmt(
                DbBackend::Postgres,
                recording(&v, &by_id, tail, claim.is_some()),
                values,
            ))
            .await;
    }
    let rows: Vec<SuccessRow<'_>> = successes
        .iter()
        .map(|(owner, step_id, attempt, results)| SuccessRow {
            step: step_id.as_uuid(),
            attempt: i32::try_from(*attempt).unwrap_or(i32::MAX),
            owner,
            boxed: [results],
        })
        .collect();
    let payload =
        serde_json::to_string(&rows).map_err(|e| StoreError::malformed("step results", e))?;
    let mut values: Vec<Value> = vec![now.into(), payload.into()];
    let sql = match with_claim(&mut values) {
        Some(tail) => recording(JSON_V, JSON_BY_ID, &tail, true),
        None => RECORDING_JSON.clone(),
    };
    db.rows(stmt(DbBackend::Postgres, sql, values)).await
}

/// [`record_in`] for a batch that [`complete_release_count`] records in one statement, with
/// the rows of the children it claimed (with `claim`).
pub(super) async fn record_successes<C: ConnectionTrait>(
    db: &C,
    successes: &[Success<'_>],
    now: i64,
    history: &mut History,
    claim: Option<&ClaimArgs<'_>>,
) -> Result<(RecordReport, Vec<QueryResult>), StoreError> {
    // Rows gathered earlier in the transaction come before the statement's own.
    history.flush(db, now).await?;
    let rows = complete_release_count(db, successes, now, claim).await?;
    report_of(successes, rows)
}

/// The report of a recording's answer (rows by `kind`: [`DONE`], [`READY`], [`COUNTED`],
/// [`CLAIMED`], [`NOT_READY`]) for `successes`, with the rows of the children it claimed.
pub(super) fn report_of(
    successes: &[Success<'_>],
    rows: Vec<QueryResult>,
) -> Result<(RecordReport, Vec<QueryResult>), StoreError> {
    let mut done = HashMap::with_capacity(successes.len());
    let mut ready = Vec::new();
    let mut counted = Vec::new();
    let mut claimed = Vec::new();
    for row in rows {
        let id: Uuid = get(&row, "id")?;
        match get::<i32>(&row, "kind")? {
            DONE => {
                done.insert(id, row);
            }
            READY => ready.push(StepId(id)),
            CLAIMED => claimed.push(row),
            COUNTED => counted.push((id, row)),
            _ => {}
        }
    }
    let mut report = RecordReport::default();
    for (_, step_id, _, _) in successes {
        match done.remove(&step_id.as_uuid()) {
            // The statement wrote the history row.
            Some(row) => {
                recorded(
                    &mut report,
                    None,
                    *step_id,
                    &row,
                    COMPLETE,
                    |attempts, _| success_metadata(attempts),
                )?;
            }
            None => report.rejected.push(*step_id),
        }
    }
    // A stable order, as the statement's is not.
    ready.sort();
    report.newly_ready = ready;
    // The statement finalized the tasks it left with no active step.
    counted.sort_by_key(|(id, _)| *id);
    for (task_id, row) in counted {
        let state = task_state(&row, "state")?;
        if state != task_state(&row, "was")?
            && matches!(state, TaskState::Complete | TaskState::Error)
        {
            report.finalized.push((TaskId(task_id), state));
        }
    }
    Ok((report, claimed))
}

/// The task state in `row`'s `column`.
fn task_state(row: &QueryResult, column: &str) -> Result<TaskState, StoreError> {
    get::<String>(row, column)?
        .parse()
        .map_err(|e| StoreError::malformed("task state", e))
}

/// The history metadata of a recorded success.
fn success_metadata(attempts: u32) -> serde_json::Value {
    json!({"attempt_number": attempts})
}

/// [`success_metadata`] in SQL on `backend`, over a completed row's `attempts`.
pub(super) fn success_metadata_sql(backend: DbBackend) -> String {
    format!("{}('attempt_number', attempts)", json_object(backend))
}

/// The history metadata of a recorded `outcome`, after `attempts` attempts, with its next
/// attempt due at `next`.
fn metadata(outcome: &StepOutcome, attempts: u32, next: Option<i64>) -> serde_json::Value {
    match outcome {
        StepOutcome::Success { .. } => success_metadata(attempts),
        StepOutcome::Failure(failure) => json!({
            "attempt_number": attempts,
            "error_message": failure.error.message,
            "error_code": failure.error.error_code,
            "retry_available": next.is_some(),
            "backoff_until": next.map(from_micros),
        }),
    }
}

/// Notes an outcome recorded as `row` (`task_id, last_sort_key, attempts, next_attempt_at`):
/// its history row (`metadata` from the attempts and the next attempt's time), unless the
/// statement wrote it (`history` is `None`), and its place in `report`. Returns its task and
/// the next attempt's time.
fn recorded(
    report: &mut RecordReport,
    history: Option<&mut History>,
    step_id: StepId,
    row: &QueryResult,
    change: StepChange,
    metadata: impl FnOnce(u32, Option<i64>) -> serde_json::Value,
) -> Result<(Uuid, Option<i64>), StoreError> {
    let task_id: Uuid = get(row, "task_id")?;
    let next: Option<i64> = get(row, "next_attempt_at")?;
    let attempts = u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0);
    if let Some(history) = history {
        history.steps([change.row(
            step_id.as_uuid(),
            get(row, "last_sort_key")?,
            true,
            metadata(attempts, next),
        )]);
    }
    report.recorded.push(RecordedStep {
        step_id,
        task_id: TaskId(task_id),
        state: change.to(),
        attempts,
        next_attempt_at: next.map(from_micros),
    });
    Ok((task_id, next))
}

/// The successes of `outcomes` when they are all successes of distinct steps that one
/// recording statement takes on PostgreSQL ([`record_successes`]).
pub(super) fn successes_alone<'a>(
    outcomes: &[(&'a str, &'a StepOutcome)],
) -> Option<Vec<Success<'a>>> {
    let mut seen = std::collections::HashSet::with_capacity(outcomes.len());
    let mut together = Vec::with_capacity(outcomes.len());
    for (owner, outcome) in outcomes {
        let StepOutcome::Success {
            step_id,
            attempt,
            results,
        } = outcome
        else {
            return None;
        };
        if !seen.insert(*step_id) {
            return None;
        }
        together.push((*owner, *step_id, *attempt, results));
    }
    (!together.is_empty() && together.len() <= completions_per_statement(DbBackend::Postgres))
        .then_some(together)
}

/// Records `(owner, outcome)` pairs inside `db`'s transaction.
pub(crate) async fn record_in<C: ConnectionTrait>(
    db: &C,
    outcomes: Vec<(&str, &StepOutcome)>,
    now: i64,
    history: &mut History,
) -> Result<RecordReport, StoreError> {
    let backend = db.get_database_backend();
    if backend == DbBackend::Postgres
        && let Some(together) = successes_alone(&outcomes)
    {
        return Ok(record_successes(db, &together, now, history, None).await?.0);
    }
    // Successes, the bulk of any batch, are written by one statement per chunk; a step named
    // twice in the batch and every failure take the one-row statements below, in order.
    let mut named: HashMap<StepId, usize> = HashMap::with_capacity(outcomes.len());
    for (_, outcome) in &outcomes {
        *named.entry(outcome.step_id()).or_default() += 1;
    }
    let together: Vec<Success<'_>> = outcomes
        .iter()
        .filter_map(|(owner, outcome)| match outcome {
            StepOutcome::Success {
                step_id,
                attempt,
                results,
            } if named[step_id] == 1 => Some((*owner, *step_id, *attempt, results)),
            _ => None,
        })
        .collect();
    // The lock order: the outcomes' task rows first (their counters move below), then the
    // steps.
    if backend == DbBackend::Postgres && !outcomes.is_empty() {
        let ids: Vec<Value> = outcomes
            .iter()
            .map(|(_, o)| Value::from(o.step_id().as_uuid()))
            .collect();
        query_in_chunks(
            db,
            "SELECT task_id FROM tasker_tasks WHERE task_id IN \
             (SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id IN ({ids})) \
             ORDER BY task_id FOR UPDATE",
            vec![],
            &ids,
        )
        .await?;
    }
    let mut report = RecordReport::default();
    let mut completed = Vec::new();
    let mut deltas: HashMap<Uuid, TaskDelta> = HashMap::new();
    let running = StepFlags::of(CLAIM.to(), None, 0);
    let mut completed_rows = complete_together(db, &together, now).await?;
    drop(together);
    for (owner, outcome) in outcomes {
        let row = match outcome {
            StepOutcome::Success { step_id, .. } if named[step_id] == 1 => {
                completed_rows.remove(&step_id.as_uuid())
            }
            // A step named again in the batch: in order, one statement each (the first success
            // leaves the step complete, so a later one is refused).
            StepOutcome::Success {
                step_id,
                attempt,
                results,
            } => complete_together(db, &[(owner, *step_id, *attempt, results)], now)
                .await?
                .remove(&step_id.as_uuid()),
            StepOutcome::Failure(failure) => {
                let error = serde_json::to_value(&failure.error)
                    .map_err(|e| StoreError::malformed("step error", e))?;
                db.row(stmt(
                    backend,
                    format!(
                        "UPDATE tasker_workflow_steps SET state = {to}, in_process = FALSE, claim_owner = NULL, \
                         lease_expires_at = NULL, last_error = $2, last_failure_at = $1, backoff_request_seconds = $3, \
                         next_attempt_at = CASE WHEN $4 AND retryable AND attempts < retry_limit THEN $5 ELSE NULL END, \
                         updated_at = $1, last_sort_key = last_sort_key + 10 \
                         WHERE workflow_step_id = $6 AND state = {from} AND attempts = $7 AND claim_owner = $8 \
                         RETURNING task_id, last_sort_key, attempts, next_attempt_at",
                        from = FAIL.from().sql(),
                        to = FAIL.to().sql(),
                    ),
                    vec![
                        now.into(),
                        json(error),
                        failure.retry_delay.as_secs_f64().into(),
                        (!failure.error.is_permanent()).into(),
                        now.saturating_add(micros(failure.retry_delay)).into(),
                        failure.step_id.as_uuid().into(),
                        i32::try_from(failure.attempt).unwrap_or(i32::MAX).into(),
                        owner.into(),
                    ],
                ))
                .await?
            }
        };
        let step_id = outcome.step_id();
        let Some(row) = row else {
            report.rejected.push(step_id);
            continue;
        };
        let change = match outcome {
            StepOutcome::Success { .. } => {
                completed.push(step_id.as_uuid());
                COMPLETE
            }
            StepOutcome::Failure(_) => FAIL,
        };
        let (task_id, next) =
            recorded(&mut report, Some(history), step_id, &row, change, |a, n| {
                metadata(outcome, a, n)
            })?;
        add(
            &mut deltas,
            task_id,
            running.delta_to(StepFlags::of(change.to(), next, 0)),
        );
    }
    report.newly_ready = release_children(db, &completed, now, &mut deltas).await?;
    // The outcomes' tasks were locked above; the deltas are theirs.
    report.finalized = apply_task_deltas(db, deltas, now, history, true).await?;
    Ok(report)
}
