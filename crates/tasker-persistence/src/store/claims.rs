//! Claims, leases and outcomes: the engine's hot path.
//!
//! A claim takes up to N ready steps across all tasks in one transaction (PostgreSQL
//! `FOR UPDATE SKIP LOCKED`; SQLite's single writer under `BEGIN IMMEDIATE`), moving each
//! `pending → in_progress` (or `error → pending → in_progress` for a retry) and setting the
//! owner and lease. An outcome is recorded only while that claim still holds — same owner,
//! same attempt, still in progress — so a stale worker cannot overwrite a newer attempt.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use serde_json::json;
use tasker_domain::codes;
use tasker_domain::{StepError, StepId, TaskId, TemplateId};
use uuid::Uuid;

use super::changes::{State, changes};
use super::sql::{
    Db, commit, get, lock_tasks, max_params, params, query_in_chunks, retrying, skip_locked, stmt,
    template_id,
};
use super::transitions::{
    History, StepFlags, TaskDelta, add, apply_task_deltas, release_children, write_step_transitions,
};
use super::{
    Claim, ClaimBatch, ClaimFilter, ClaimedStep, LeaseClock, RecordReport, RecordedStep,
    StepFailure, StepInputs, StepOutcome, Store,
};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

changes! {
    /// A claim starts an attempt of a ready step.
    step CLAIM: Pending => InProgress, guard "candidates are selected with unfinished_parents = 0";
    /// A claim of a step in error whose next attempt is due goes back to pending first (the
    /// retry), in the same statement.
    step RETRY: Error => Pending;
    /// A claim starts the pending tasks of the steps it takes.
    task START: Pending => InProgress;
    /// An engine gives back a claim it will not finish (a graceful shutdown): the step is as it
    /// was before the claim. Not a transition anyone may request; the machine lists it apart.
    step RELEASE: InProgress => Pending, internal;
    /// A successful attempt, recorded while its claim holds.
    step COMPLETE: InProgress => Complete;
    /// A failed attempt (or an expired lease), recorded while its claim holds.
    step FAIL: InProgress => Error;
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn json(value: serde_json::Value) -> Value {
    Value::Json(Some(Box::new(value)))
}

impl Store {
    /// Claims up to `limit` ready steps for `owner` with a lease of `lease`, oldest first.
    pub async fn claim_ready_steps(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<ClaimBatch, StoreError> {
        self.claim_ready_steps_where(owner, limit, lease, now, &ClaimFilter::default())
            .await
    }

    /// [`Store::claim_ready_steps`], taking only steps `filter` allows.
    pub async fn claim_ready_steps_where(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
        filter: &ClaimFilter,
    ) -> Result<ClaimBatch, StoreError> {
        if limit == 0 || filter.named_task_ids.as_ref().is_some_and(Vec::is_empty) {
            return Ok(ClaimBatch::default());
        }
        retrying(|| async move {
            let txn = self.write_txn().await?;
            let now = to_micros(now);
            let mut history = History::default();
            let batch = claim_in(
                &txn,
                self.lease_clock,
                owner,
                limit,
                lease,
                now,
                filter,
                &mut history,
            )
            .await?;
            history.write(&txn, now).await?;
            commit(txn).await?;
            Ok(batch)
        })
        .await
    }

    /// [`Store::record_outcomes`] and then [`Store::claim_ready_steps`] in one transaction: the
    /// coordinator's hand-off costs one commit instead of two, and the steps the outcomes made
    /// ready can be claimed at once. Either both happen or neither does; on an error the caller
    /// still holds the outcomes (taken by reference) and may try again.
    pub async fn record_outcomes_and_claim(
        &self,
        owner: &str,
        outcomes: impl AsRef<[StepOutcome]>,
        now: DateTime<Utc>,
        claim_limit: usize,
        lease: Duration,
    ) -> Result<(RecordReport, ClaimBatch), StoreError> {
        self.record_outcomes_and_claim_where(
            owner,
            outcomes,
            now,
            claim_limit,
            lease,
            &ClaimFilter::default(),
        )
        .await
    }

    /// [`Store::record_outcomes_and_claim`], claiming only steps `filter` allows.
    pub async fn record_outcomes_and_claim_where(
        &self,
        owner: &str,
        outcomes: impl AsRef<[StepOutcome]>,
        now: DateTime<Utc>,
        claim_limit: usize,
        lease: Duration,
        filter: &ClaimFilter,
    ) -> Result<(RecordReport, ClaimBatch), StoreError> {
        let claim_limit = if filter.named_task_ids.as_ref().is_some_and(Vec::is_empty) {
            0
        } else {
            claim_limit
        };
        let now = to_micros(now);
        let outcomes = outcomes.as_ref();
        retrying(|| async move {
            let txn = self.write_txn().await?;
            if claim_limit > 0 {
                // Limit locks come before the row locks recording takes (the lock order).
                lock_limits(&txn, filter).await?;
            }
            let claimed = outcomes.iter().map(|o| (owner, o)).collect();
            // The history of the outcomes, the finalizations and the claims: written once.
            let mut history = History::default();
            let report = record_in(&txn, claimed, now, &mut history).await?;
            let batch = if claim_limit == 0 {
                ClaimBatch::default()
            } else {
                claim_in(
                    &txn,
                    self.lease_clock,
                    owner,
                    claim_limit,
                    lease,
                    now,
                    filter,
                    &mut history,
                )
                .await?
            };
            history.write(&txn, now).await?;
            commit(txn).await?;
            Ok((report, batch))
        })
        .await
    }

    /// The earliest future time at which a step whose parents are done becomes claimable (a
    /// backoff expiring), for the engine's timer. Steps already due are not counted.
    pub async fn next_attempt_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.next_wake_times(now).await?.0)
    }

    /// The earliest lease expiry among live claims, for the engine's reclaim timer.
    pub async fn next_lease_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                "SELECT MIN(lease_expires_at) AS due FROM tasker_workflow_steps WHERE lease_expires_at IS NOT NULL",
                vec![],
            ))
            .await?;
        Ok(match row {
            Some(row) => get::<Option<i64>>(&row, "due")?.map(from_micros),
            None => None,
        })
    }

    /// [`Store::next_attempt_due`] and [`Store::next_lease_expiry`] in one statement, for an
    /// engine about to sleep: `(next attempt due, next lease expiry)`.
    pub async fn next_wake_times(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                "SELECT (SELECT MIN(next_attempt_at) FROM tasker_workflow_steps \
                 WHERE unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND next_attempt_at > $1) AS due, \
                 (SELECT MIN(lease_expires_at) FROM tasker_workflow_steps WHERE lease_expires_at IS NOT NULL) AS expiry",
                vec![to_micros(now).into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok((None, None));
        };
        Ok((
            get::<Option<i64>>(&row, "due")?.map(from_micros),
            get::<Option<i64>>(&row, "expiry")?.map(from_micros),
        ))
    }

    /// Extends the leases `owner` holds on `steps`; returns the steps it still held (the others
    /// were reclaimed, finished by an operator, or never claimed by `owner`).
    pub async fn extend_leases(
        &self,
        owner: &str,
        steps: &[StepId],
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<StepId>, StoreError> {
        let now = to_micros(now);
        let ids: Vec<Value> = steps.iter().map(|s| Value::from(s.as_uuid())).collect();
        let (expiry, lease) = self
            .lease_clock
            .expiry(self.db_backend(), 1, now, micros(lease));
        let rows = query_in_chunks(
            &self.db,
            &format!(
                "UPDATE tasker_workflow_steps SET lease_expires_at = {expiry}, updated_at = $2 \
                 WHERE claim_owner = $3 AND state = {} AND workflow_step_id IN ({{ids}}) \
                 RETURNING workflow_step_id",
                CLAIM.to().sql()
            ),
            vec![lease, now.into(), owner.into()],
            &ids,
        )
        .await?;
        rows.iter()
            .map(|row| get::<Uuid>(row, "workflow_step_id").map(StepId))
            .collect()
    }

    /// Gives back `owner`'s claims on `steps` without using up their attempts: each step still
    /// claimed by `owner` goes from `in_progress` back to `pending`, ready at once for any
    /// engine, with its attempt count as it was before the claim (history row
    /// `in_progress → pending`, reason `released`). For an engine that shuts down with attempts
    /// still running. Returns the steps released.
    pub async fn release_claims(
        &self,
        owner: &str,
        steps: &[StepId],
        now: DateTime<Utc>,
    ) -> Result<Vec<StepId>, StoreError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_micros(now);
        let ids: Vec<Value> = steps.iter().map(|s| Value::from(s.as_uuid())).collect();
        retrying(|| {
            let ids = &ids;
            async move {
                let txn = self.write_txn().await?;
                // The lock order: the steps' tasks first. Their counters do not move: a running
                // step and a ready one both count as active.
                if txn.get_database_backend() == DbBackend::Postgres {
                    query_in_chunks(
                        &txn,
                        "SELECT task_id FROM tasker_tasks WHERE task_id IN \
                         (SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id IN ({ids})) \
                         ORDER BY task_id FOR UPDATE",
                        vec![],
                        ids,
                    )
                    .await?;
                }
                let rows = query_in_chunks(
                    &txn,
                    &format!(
                        "UPDATE tasker_workflow_steps SET state = {to}, in_process = FALSE, claim_owner = NULL, \
                         lease_expires_at = NULL, attempts = attempts - 1, next_attempt_at = $1, updated_at = $1, \
                         last_sort_key = last_sort_key + 10 \
                         WHERE claim_owner = $2 AND state = {from} AND workflow_step_id IN ({{ids}}) \
                         RETURNING workflow_step_id, last_sort_key, attempts",
                        from = RELEASE.from().sql(),
                        to = RELEASE.to().sql(),
                    ),
                    vec![now.into(), owner.into()],
                    ids,
                )
                .await?;
                let mut released = Vec::with_capacity(rows.len());
                let mut history = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: Uuid = get(row, "workflow_step_id")?;
                    released.push(StepId(id));
                    history.push(RELEASE.row(
                        id,
                        get(row, "last_sort_key")?,
                        true,
                        json!({"reason": "released", "claim_owner": owner, "attempts": get::<i32>(row, "attempts")?}),
                    ));
                }
                write_step_transitions(&txn, history, now, true).await?;
                commit(txn).await?;
                Ok(released)
            }
        })
        .await
    }

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

    /// The task context, inputs and parents' results of each step, for its handler. (A claim
    /// already returns these for the steps it takes, in each [`Claim::inputs`].)
    pub async fn step_inputs(&self, steps: &[StepId]) -> Result<Vec<StepInputs>, StoreError> {
        let ids: Vec<Value> = steps.iter().map(|s| Value::from(s.as_uuid())).collect();
        let rows = query_in_chunks(
            &self.db,
            "SELECT s.workflow_step_id, s.inputs, t.context, t.correlation_id, t.trace_parent, t.created_at FROM tasker_workflow_steps s \
             JOIN tasker_tasks t ON t.task_id = s.task_id WHERE s.workflow_step_id IN ({ids})",
            vec![],
            &ids,
        )
        .await?;
        let parents = query_in_chunks(
            &self.db,
            "SELECT e.to_step_id, p.name, p.results FROM tasker_workflow_step_edges e \
             JOIN tasker_workflow_steps p ON p.workflow_step_id = e.from_step_id WHERE e.to_step_id IN ({ids})",
            vec![],
            &ids,
        )
        .await?;
        let mut parent_results: HashMap<Uuid, BTreeMap<String, serde_json::Value>> = HashMap::new();
        for row in parents {
            let results: Option<serde_json::Value> = get(&row, "results")?;
            parent_results
                .entry(get(&row, "to_step_id")?)
                .or_default()
                .insert(
                    get(&row, "name")?,
                    results.unwrap_or(serde_json::Value::Null),
                );
        }
        let mut by_id: HashMap<Uuid, StepInputs> = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = get(&row, "workflow_step_id")?;
            by_id.insert(
                id,
                StepInputs {
                    step_id: StepId(id),
                    task_context: get(&row, "context")?,
                    correlation_id: get(&row, "correlation_id")?,
                    trace_parent: get(&row, "trace_parent")?,
                    task_created_at: from_micros(get(&row, "created_at")?),
                    inputs: get(&row, "inputs")?,
                    parent_results: parent_results.remove(&id).unwrap_or_default(),
                },
            );
        }
        steps
            .iter()
            .map(|s| {
                by_id
                    .remove(&s.as_uuid())
                    .ok_or(StoreError::StepNotFound(*s))
            })
            .collect()
    }
}

/// ` AND [NOT] EXISTS (...)`: only (or never) steps of tasks of these named tasks. An empty
/// list allows nothing (or excludes nothing).
fn named_tasks_clause(ids: &[TemplateId], allowed: bool) -> String {
    if ids.is_empty() {
        return if allowed {
            " AND 1 = 0".to_owned()
        } else {
            String::new()
        };
    }
    format!(
        " AND {}EXISTS (SELECT 1 FROM tasker_tasks f WHERE f.task_id = tasker_workflow_steps.task_id \
         AND f.named_task_id IN ({}))",
        if allowed { "" } else { "NOT " },
        ids.iter()
            .map(TemplateId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// On PostgreSQL, serializes claims that count a limited namespace's running attempts: one
/// transaction-scoped advisory lock per namespace, in name order, taken before any row lock.
/// (SQLite has one writer at a time already.)
async fn lock_limits<C: ConnectionTrait>(txn: &C, filter: &ClaimFilter) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    if backend != DbBackend::Postgres {
        return Ok(());
    }
    let mut namespaces: Vec<&str> = filter.limits.iter().map(|l| l.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    for namespace in namespaces {
        txn.exec(stmt(
            backend,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            vec![format!("tasker.namespace_limit:{namespace}").into()],
        ))
        .await?;
    }
    Ok(())
}

/// Step attempts in progress (any process) per named task of the limited namespaces.
async fn running_per_named_task<C: ConnectionTrait>(
    txn: &C,
    filter: &ClaimFilter,
) -> Result<HashMap<TemplateId, i64>, StoreError> {
    let ids: Vec<TemplateId> = filter
        .limits
        .iter()
        .flat_map(|l| l.named_task_ids.iter().copied())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = txn
        .rows(stmt(
            txn.get_database_backend(),
            format!(
                "SELECT t.named_task_id AS named_task_id, COUNT(*) AS running \
                 FROM tasker_workflow_steps s JOIN tasker_tasks t ON t.task_id = s.task_id \
                 WHERE s.lease_expires_at IS NOT NULL AND s.state = {} \
                 AND t.named_task_id IN ({}) GROUP BY t.named_task_id",
                CLAIM.to().sql(),
                ids.iter()
                    .map(TemplateId::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![],
        ))
        .await?;
    let mut running = HashMap::with_capacity(rows.len());
    for row in &rows {
        running.insert(
            template_id(row, "named_task_id")?,
            get::<i64>(row, "running")?,
        );
    }
    Ok(running)
}

/// Up to `limit` ready steps that `clause` allows, oldest first; on PostgreSQL their pending
/// tasks are locked first (the lock order) and the steps with `SKIP LOCKED`.
async fn select_candidates<C: ConnectionTrait>(
    txn: &C,
    clause: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<QueryResult>, StoreError> {
    let backend = txn.get_database_backend();
    // The lock order: a claim that starts a pending task locks that task row before any step
    // row. Tasks already running are not touched by a claim, so their rows are not locked.
    if backend == DbBackend::Postgres {
        txn.rows(stmt(
            backend,
            format!(
                "SELECT task_id FROM tasker_tasks WHERE state = {pending} AND task_id IN \
                 (SELECT task_id FROM tasker_workflow_steps WHERE unfinished_parents = 0 \
                 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1{clause} ORDER BY next_attempt_at LIMIT $2) \
                 ORDER BY task_id FOR UPDATE",
                pending = START.from().sql(),
            ),
            vec![now.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .await?;
    }
    txn.rows(stmt(
        backend,
        format!(
            "SELECT workflow_step_id, state FROM tasker_workflow_steps \
             WHERE unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1{clause} \
             ORDER BY next_attempt_at LIMIT $2{}",
            skip_locked(backend)
        ),
        vec![now.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
    ))
    .await
}

/// What a claim returns of each step it takes (after `RETURNING`).
const CLAIM_RETURNING: &str = "workflow_step_id, task_id, name, attempts, retry_limit, last_sort_key, position, inputs, lease_expires_at, \
     (SELECT t.named_task_id FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS named_task_id, \
     (SELECT t.context FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS context, \
     (SELECT t.correlation_id FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS correlation_id, \
     (SELECT t.trace_parent FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS trace_parent, \
     (SELECT t.state FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS task_state, \
     (SELECT t.created_at FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS task_created_at";

/// The `UPDATE … SET` that starts an attempt of each claimed step, parameters `$1` owner, `$2`
/// lease (as `expiry` uses it) and `$3` now. A candidate is pending, or in error with its next
/// attempt due (a retry, which writes two history rows, hence its sort key moves by 20).
fn claim_set(expiry: &str) -> String {
    format!(
        "UPDATE tasker_workflow_steps SET state = {claimed}, in_process = TRUE, claim_owner = $1, \
         lease_expires_at = {expiry}, attempts = attempts + 1, last_attempted_at = $3, next_attempt_at = NULL, \
         updated_at = $3, last_sort_key = last_sort_key + (CASE WHEN state = {retried} THEN 20 ELSE 10 END)",
        claimed = CLAIM.to().sql(),
        retried = RETRY.from().sql(),
    )
}

/// Claims up to `limit` (> 0) ready steps inside `txn`'s transaction, with leases on `clock`;
/// their history rows (and those of the tasks they start) join `history`.
#[allow(clippy::too_many_arguments)]
async fn claim_in<C: ConnectionTrait>(
    txn: &C,
    clock: LeaseClock,
    owner: &str,
    limit: usize,
    lease: Duration,
    now: i64,
    filter: &ClaimFilter,
    history: &mut History,
) -> Result<ClaimBatch, StoreError> {
    let backend = txn.get_database_backend();
    let (expiry, lease) = clock.expiry(backend, 2, now, micros(lease));
    // Named task ids are integers the engine read from the catalogue, written inline so the
    // statement's parameters stay the same.
    let mut only = match &filter.named_task_ids {
        None => String::new(),
        Some(ids) => named_tasks_clause(ids, true),
    };
    let parents = format!(
        "(SELECT {} FROM tasker_workflow_step_edges e JOIN tasker_workflow_steps p \
         ON p.workflow_step_id = e.from_step_id WHERE e.to_step_id = tasker_workflow_steps.workflow_step_id) AS parent_results",
        parents_json(backend)
    );
    // The state each candidate had, where the candidates were read apart from the claim.
    let mut retried: HashMap<Uuid, bool> = HashMap::new();
    let claimed = if filter.limits.is_empty() && backend == DbBackend::Postgres {
        only.push_str(&named_tasks_clause(&filter.paused_named_task_ids, false));
        // One statement: lock the pending tasks of the candidates (the lock order: task rows
        // before step rows; the candidates' one-time filter waits for it), take the candidates
        // with SKIP LOCKED, and start their attempts.
        let ready = format!(
            "unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $3{only}"
        );
        txn.rows(stmt(
            backend,
            format!(
                "WITH locked AS (SELECT task_id FROM tasker_tasks WHERE state = {pending} AND task_id IN \
                 (SELECT task_id FROM tasker_workflow_steps WHERE {ready} ORDER BY next_attempt_at LIMIT $4) \
                 ORDER BY task_id FOR UPDATE), \
                 candidates AS (SELECT workflow_step_id AS candidate_id, state AS candidate_state \
                 FROM tasker_workflow_steps WHERE {ready} AND (SELECT COUNT(*) FROM locked) >= 0 \
                 ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 {set} FROM candidates WHERE workflow_step_id = candidate_id AND state IN ({pending_step}, {retried}) \
                 RETURNING {CLAIM_RETURNING}, {parents}, candidate_state",
                pending = START.from().sql(),
                set = claim_set(&expiry),
                pending_step = CLAIM.from().sql(),
                retried = RETRY.from().sql(),
            ),
            vec![
                owner.into(),
                lease,
                now.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?
    } else {
        let candidates = if filter.limits.is_empty() {
            only.push_str(&named_tasks_clause(&filter.paused_named_task_ids, false));
            select_candidates(txn, &only, now, limit).await?
        } else {
            limited_candidates(txn, filter, &only, now, limit).await?
        };
        if candidates.is_empty() {
            return Ok(ClaimBatch::default());
        }
        let mut ids = Vec::with_capacity(candidates.len());
        for row in &candidates {
            let id: Uuid = get(row, "workflow_step_id")?;
            retried.insert(id, get::<String>(row, "state")? == RETRY.from().name());
            ids.push(Value::from(id));
        }
        query_in_chunks(
            txn,
            &format!(
                "{set} WHERE state IN ({ready}, {retried}) AND workflow_step_id IN ({{ids}}) \
                 RETURNING {CLAIM_RETURNING}, {parents}",
                set = claim_set(&expiry),
                ready = CLAIM.from().sql(),
                retried = RETRY.from().sql(),
            ),
            vec![owner.into(), lease, now.into()],
            &ids,
        )
        .await?
    };
    let mut claims = Vec::with_capacity(claimed.len());
    let mut task_ids: Vec<Uuid> = Vec::new();
    for row in &claimed {
        let step_id: Uuid = get(row, "workflow_step_id")?;
        let task_id: Uuid = get(row, "task_id")?;
        let sort_key: i32 = get(row, "last_sort_key")?;
        let attempt: i32 = get(row, "attempts")?;
        let was_retry = match retried.get(&step_id) {
            Some(was) => *was,
            None => get::<String>(row, "candidate_state")? == RETRY.from().name(),
        };
        if was_retry {
            history.steps([RETRY.row(
                step_id,
                sort_key - 10,
                false,
                json!({"reason": "retry", "retry_attempt": attempt}),
            )]);
        }
        history.steps([CLAIM.row(
            step_id,
            sort_key,
            true,
            json!({"attempt_number": attempt, "claim_owner": owner}),
        )]);
        // Only a pending task needs starting: no statement at all when none is.
        if get::<String>(row, "task_state")? == START.from().name() && !task_ids.contains(&task_id)
        {
            task_ids.push(task_id);
        }
        let step_inputs = StepInputs {
            step_id: StepId(step_id),
            task_context: get(row, "context")?,
            correlation_id: get(row, "correlation_id")?,
            trace_parent: get(row, "trace_parent")?,
            task_created_at: from_micros(get(row, "task_created_at")?),
            inputs: get(row, "inputs")?,
            parent_results: parse_parent_results(get(row, "parent_results")?)?,
        };
        claims.push((
            get::<i32>(row, "position")?,
            Claim {
                inputs: step_inputs,
                step: ClaimedStep {
                    step_id: StepId(step_id),
                    task_id: TaskId(task_id),
                    named_task_id: template_id(row, "named_task_id")?,
                    name: get(row, "name")?,
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    retry_limit: u32::try_from(get::<i32>(row, "retry_limit")?).unwrap_or(0),
                    retried: was_retry,
                    lease_expires_at: from_micros(get(row, "lease_expires_at")?),
                },
            },
        ));
    }
    let task_values: Vec<Value> = task_ids.iter().copied().map(Value::from).collect();
    let started = query_in_chunks(
        txn,
        &format!(
            "UPDATE tasker_tasks SET state = {to}, last_sort_key = last_sort_key + 10, updated_at = $1 \
             WHERE state = {from} AND task_id IN ({{ids}}) RETURNING task_id, last_sort_key",
            from = START.from().sql(),
            to = START.to().sql(),
        ),
        vec![now.into()],
        &task_values,
    )
    .await?;
    let mut started_tasks = Vec::with_capacity(started.len());
    for row in started {
        let task_id: Uuid = get(&row, "task_id")?;
        started_tasks.push(TaskId(task_id));
        history.tasks([START.row(
            task_id,
            get(&row, "last_sort_key")?,
            true,
            json!({"reason": "steps_claimed"}),
        )]);
    }
    // Grouped by task in template order, for a stable hand-off to the engine.
    claims.sort_by_key(|(position, claim)| (claim.step.task_id, *position));
    started_tasks.sort();
    Ok(ClaimBatch {
        claims: claims.into_iter().map(|(_, claim)| claim).collect(),
        started_tasks,
    })
}

/// The candidates of a claim when some namespaces have a limit on running attempts: each
/// limited namespace takes at most its room, then the rest take what is left.
async fn limited_candidates<C: ConnectionTrait>(
    txn: &C,
    filter: &ClaimFilter,
    only: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<QueryResult>, StoreError> {
    lock_limits(txn, filter).await?;
    let running = running_per_named_task(txn, filter).await?;
    let mut excluded = filter.paused_named_task_ids.clone();
    let mut with_room = Vec::new();
    for cap in &filter.limits {
        let used: i64 = cap
            .named_task_ids
            .iter()
            .filter_map(|id| running.get(id))
            .sum();
        let room = i64::from(cap.max_running).saturating_sub(used);
        excluded.extend(&cap.named_task_ids);
        if room > 0 {
            with_room.push((&cap.named_task_ids, usize::try_from(room).unwrap_or(0)));
        }
    }
    let paused = named_tasks_clause(&filter.paused_named_task_ids, false);
    let mut candidates = Vec::new();
    for (ids, room) in with_room {
        let wanted = room.min(limit - candidates.len());
        if wanted == 0 || ids.is_empty() {
            continue;
        }
        let clause = format!("{only}{paused}{}", named_tasks_clause(ids, true));
        candidates.extend(select_candidates(txn, &clause, now, wanted).await?);
    }
    let rest = limit - candidates.len();
    if rest > 0 {
        let clause = format!("{only}{}", named_tasks_clause(&excluded, false));
        candidates.extend(select_candidates(txn, &clause, now, rest).await?);
    }
    Ok(candidates)
}

/// The claim's scalar subquery over a step's parents (`p`): a JSON array of `[name, results]`
/// pairs as text, so both databases hand back the same thing. PostgreSQL's `json_agg` gives
/// NULL for no parents, SQLite's `json_group_array` gives `[]`.
fn parents_json(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "json_agg(json_build_array(p.name, p.results))::text",
        _ => "json_group_array(json_array(p.name, json(p.results)))",
    }
}

/// Reads [`parents_json`]'s text: results by parent name (a parent without results gives
/// `null`, as in [`Store::step_inputs`]).
fn parse_parent_results(
    text: Option<String>,
) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
    let Some(text) = text else {
        return Ok(BTreeMap::new());
    };
    let pairs: Vec<(String, serde_json::Value)> =
        serde_json::from_str(&text).map_err(|e| StoreError::malformed("parents' results", e))?;
    Ok(pairs.into_iter().collect())
}

/// How many outcomes one [`complete_together`] statement carries on `backend`.
fn completions_per_statement(backend: DbBackend) -> usize {
    ((max_params(backend) - 1) / 4).max(1)
}

/// Completes `(owner, step, attempt, results)` where the claim still holds, with one
/// `UPDATE … FROM (VALUES …)` per chunk; returns the updated rows by step id (a refused outcome
/// has none). With `lock_tasks` (PostgreSQL, one chunk) the statement first locks the steps'
/// task rows in id order (the lock order: tasks before steps), in a CTE its one-time filter
/// waits for.
async fn complete_together<C: ConnectionTrait>(
    db: &C,
    successes: &[(&str, StepId, u32, &serde_json::Value)],
    now: i64,
    lock_tasks: bool,
) -> Result<HashMap<Uuid, QueryResult>, StoreError> {
    let backend = db.get_database_backend();
    let mut rows = HashMap::with_capacity(successes.len());
    for chunk in successes.chunks(completions_per_statement(backend)) {
        let mut values: Vec<Value> = Vec::with_capacity(1 + chunk.len() * 4);
        values.push(now.into());
        let mut tuples = Vec::with_capacity(chunk.len());
        for (owner, step_id, attempt, results) in chunk {
            tuples.push(format!("({})", params(values.len() + 1, 4)));
            values.push(step_id.as_uuid().into());
            values.push(i32::try_from(*attempt).unwrap_or(i32::MAX).into());
            values.push((*owner).into());
            values.push(json((*results).clone()));
        }
        let mut with = vec![format!(
            "v (column1, column2, column3, column4) AS (VALUES {})",
            tuples.join(", ")
        )];
        // The step ids again as a list of their parameters: an indexable condition, so the
        // statement reads the steps by primary key whatever the planner estimates of `v`.
        let ids = (0..chunk.len())
            .map(|i| format!("${}", 2 + 4 * i))
            .collect::<Vec<_>>()
            .join(", ");
        let mut locked = "";
        if lock_tasks {
            with.push(format!(
                "locked AS (SELECT task_id FROM tasker_tasks WHERE task_id IN \
                 (SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id IN ({ids})) \
                 ORDER BY task_id FOR UPDATE)"
            ));
            locked = " AND (SELECT COUNT(*) FROM locked) >= 0";
        }
        let sql = format!(
            "WITH {with} \
             UPDATE tasker_workflow_steps SET state = {to}, processed = TRUE, processed_at = $1, \
             results = v.column4, in_process = FALSE, claim_owner = NULL, lease_expires_at = NULL, updated_at = $1, \
             last_sort_key = last_sort_key + 10 FROM v \
             WHERE workflow_step_id IN ({ids}) AND workflow_step_id = v.column1 AND state = {from} \
             AND attempts = v.column2 AND claim_owner = v.column3{locked} \
             RETURNING workflow_step_id, task_id, last_sort_key, attempts, next_attempt_at",
            with = with.join(", "),
            from = COMPLETE.from().sql(),
            to = COMPLETE.to().sql(),
        );
        for row in db.rows(stmt(backend, sql, values)).await? {
            rows.insert(get(&row, "workflow_step_id")?, row);
        }
    }
    Ok(rows)
}

/// Records `(owner, outcome)` pairs inside `db`'s transaction.
pub(crate) async fn record_in<C: ConnectionTrait>(
    db: &C,
    outcomes: Vec<(&str, &StepOutcome)>,
    now: i64,
    history: &mut History,
) -> Result<RecordReport, StoreError> {
    let backend = db.get_database_backend();
    // Successes, the bulk of any batch, are written by one statement per chunk; a step named
    // twice in the batch and every failure take the one-row statements below, in order.
    let mut named: HashMap<StepId, usize> = HashMap::with_capacity(outcomes.len());
    for (_, outcome) in &outcomes {
        *named.entry(outcome.step_id()).or_default() += 1;
    }
    let together: Vec<(&str, StepId, u32, &serde_json::Value)> = outcomes
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
    // steps. When every outcome completes together in one statement, that statement takes the
    // locks itself.
    let lock_within = backend == DbBackend::Postgres
        && together.len() == outcomes.len()
        && together.len() <= completions_per_statement(backend);
    if backend == DbBackend::Postgres && !outcomes.is_empty() && !lock_within {
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
    let mut completed_rows = complete_together(db, &together, now, lock_within).await?;
    drop(together);
    for (owner, outcome) in outcomes {
        let row = match outcome {
            StepOutcome::Success { step_id, .. } if named[step_id] == 1 => {
                completed_rows.remove(&step_id.as_uuid())
            }
            StepOutcome::Success { step_id, attempt, results } => {
                db.row(stmt(
                    backend,
                    format!(
                        "UPDATE tasker_workflow_steps SET state = {to}, processed = TRUE, processed_at = $1, \
                         results = $2, in_process = FALSE, claim_owner = NULL, lease_expires_at = NULL, updated_at = $1, \
                         last_sort_key = last_sort_key + 10 \
                         WHERE workflow_step_id = $3 AND state = {from} AND attempts = $4 AND claim_owner = $5 \
                         RETURNING task_id, last_sort_key, attempts, next_attempt_at",
                        from = COMPLETE.from().sql(),
                        to = COMPLETE.to().sql(),
                    ),
                    vec![
                        now.into(),
                        json(results.clone()),
                        step_id.as_uuid().into(),
                        i32::try_from(*attempt).unwrap_or(i32::MAX).into(),
                        owner.into(),
                    ],
                ))
                .await?
            }
            StepOutcome::Failure(failure) => {
                let error = serde_json::to_value(&failure.error).map_err(|e| StoreError::malformed("step error", e))?;
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
        let task_id: Uuid = get(&row, "task_id")?;
        let next: Option<i64> = get(&row, "next_attempt_at")?;
        let attempts = u32::try_from(get::<i32>(&row, "attempts")?).unwrap_or(0);
        let (change, metadata) = match outcome {
            StepOutcome::Success { .. } => {
                completed.push(step_id.as_uuid());
                (COMPLETE, json!({"attempt_number": attempts}))
            }
            StepOutcome::Failure(failure) => (
                FAIL,
                json!({
                    "attempt_number": attempts,
                    "error_message": failure.error.message,
                    "error_code": failure.error.error_code,
                    "retry_available": next.is_some(),
                    "backoff_until": next.map(from_micros),
                }),
            ),
        };
        let state = change.to();
        add(
            &mut deltas,
            task_id,
            running.delta_to(StepFlags::of(state, next, 0)),
        );
        history.steps([change.row(
            step_id.as_uuid(),
            get(&row, "last_sort_key")?,
            true,
            metadata,
        )]);
        report.recorded.push(RecordedStep {
            step_id,
            task_id: TaskId(task_id),
            state,
            attempts,
            next_attempt_at: next.map(from_micros),
        });
    }
    report.newly_ready = release_children(db, &completed, now, &mut deltas).await?;
    // The outcomes' tasks were locked above; the deltas are theirs.
    report.finalized = apply_task_deltas(db, deltas, now, history, true).await?;
    Ok(report)
}
