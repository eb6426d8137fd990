//! Claims and leases: the engine's hot path, with the outcomes of `outcomes.rs`.
//!
//! A claim takes up to N ready steps across all tasks in one transaction (PostgreSQL
//! `FOR UPDATE SKIP LOCKED`; SQLite's single writer under `BEGIN IMMEDIATE`), moving each
//! `pending → in_progress` (or `error → pending → in_progress` for a retry) and setting the
//! owner and lease. The coordinator's hand-off records outcomes and claims again in one
//! transaction ([`Store::record_outcomes_and_claim`]); on PostgreSQL, a hand-off whose claim
//! can only find the steps its successes release is one statement (`outcomes.rs`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use serde_json::json;
use tasker_domain::{StepId, TaskId, TemplateId};
use uuid::Uuid;

use super::changes::{State, changes};
use super::handoff::claim_released_in;
use super::history::{History, Owners, write_transitions};
use super::outcomes::{record_in, successes_alone};
use super::sql::{
    Db, commit, get, max_params, micros, query_in_chunks, retrying, skip_locked, stmt, template_id,
};
use super::transitions::json_object;
use super::{
    Claim, ClaimBatch, ClaimFilter, ClaimedStep, FollowingClaim, LeaseClock, RecordReport,
    StepInputs, StepOutcome, Store,
};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};
use limits::{limited_candidates, lock_limits};
use statements::{one_statement_claim_sql, sqlite_claim_sql, start_tasks_apart_sql};

mod limits;
mod statements;

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
        let claim = ClaimArgs {
            clock: self.lease_clock,
            owner,
            limit,
            lease,
            now: to_micros(now),
            filter,
        };
        if one_statement_claim(self.db_backend(), filter) {
            // The claim is one statement, history included: no transaction around it.
            return retrying(|| async move {
                let mut history = History::default();
                let batch = claim_in(self.one_statement_txn(), claim, &mut history).await?;
                debug_assert!(history.is_empty(), "the claim wrote its own history");
                Ok(batch)
            })
            .await;
        }
        retrying(|| async move {
            let txn = self.write_txn().await?;
            let mut history = History::default();
            let batch = claim_in(&txn, claim, &mut history).await?;
            history.write(&txn, claim.now).await?;
            commit(txn).await?;
            Ok(batch)
        })
        .await
    }

    /// [`Store::record_outcomes`] and then [`Store::claim_ready_steps`] in one transaction: the
    /// coordinator's hand-off costs one commit instead of two, and the steps the outcomes made
    /// ready can be claimed at once. Either both happen or neither does (but for the claim that
    /// may follow a one-statement hand-off: [`FollowingClaim::only_if_readied`]); on an error
    /// the caller still holds the outcomes (taken by reference) and may try again.
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
        let claim = FollowingClaim {
            limit: claim_limit,
            lease,
            filter,
            only_if_readied: false,
        };
        self.record_outcomes_and_claim_with(owner, outcomes, now, claim)
            .await
    }

    /// Records `outcomes` and makes `claim` in one transaction, as
    /// [`Store::record_outcomes_and_claim`] does; with [`FollowingClaim::only_if_readied`] the
    /// claim is made only if the outcomes may have readied a step.
    pub async fn record_outcomes_and_claim_with(
        &self,
        owner: &str,
        outcomes: impl AsRef<[StepOutcome]>,
        now: DateTime<Utc>,
        claim: FollowingClaim<'_>,
    ) -> Result<(RecordReport, ClaimBatch), StoreError> {
        let outcomes = outcomes.as_ref();
        let FollowingClaim {
            limit,
            lease,
            filter,
            only_if_readied,
        } = claim;
        let claim_limit = if filter.named_task_ids.as_ref().is_some_and(Vec::is_empty) {
            0
        } else {
            limit
        };
        let now = to_micros(now);
        let claim = ClaimArgs {
            clock: self.lease_clock,
            owner,
            limit: claim_limit,
            lease,
            now,
            filter,
        };
        if only_if_readied {
            let pairs: Vec<(&str, &StepOutcome)> = outcomes.iter().map(|o| (owner, o)).collect();
            if let Some(successes) = successes_alone(&pairs)
                && self.hand_off_in_one_call(&successes, filter)
            {
                return self.record_and_claim_released(&successes, claim).await;
            }
        }
        let failed = outcomes
            .iter()
            .any(|outcome| matches!(outcome, StepOutcome::Failure(_)));
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
            // A capped namespace may have room now: its ready steps were left by a full claim.
            let readied = failed
                || !filter.limits.is_empty()
                || !report.newly_ready.is_empty()
                || !report.reopened.is_empty();
            let batch = if claim_limit == 0 || (only_if_readied && !readied) {
                ClaimBatch::default()
            } else if only_if_readied
                && !failed
                && filter.limits.is_empty()
                && report.newly_ready.len() < max_params(self.db_backend())
            {
                // Only the children the outcomes released can be ready: claimed by their ids,
                // and by the ordinary claim where that left some of them ready.
                let mut batch =
                    claim_released_in(&txn, claim, &report.newly_ready, &mut history).await?;
                if batch.len() < report.newly_ready.len().min(claim_limit) {
                    let rest = ClaimArgs {
                        limit: claim_limit - batch.len(),
                        ..claim
                    };
                    batch.absorb(claim_in(&txn, rest, &mut history).await?);
                }
                batch
            } else {
                claim_in(&txn, claim, &mut history).await?
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
            self.writer(),
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
                write_transitions(&txn, Owners::Steps, history, now, true).await?;
                commit(txn).await?;
                Ok(released)
            }
        })
        .await
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

/// The condition (`AND …`, on a step row) by which `filter`'s named tasks are claimed: those
/// allowed, and without namespace limits not those paused (with them, `limited_candidates`
/// excludes the paused).
pub(super) fn filter_clause(filter: &ClaimFilter) -> String {
    let mut only = match &filter.named_task_ids {
        None => String::new(),
        Some(ids) => named_tasks_clause(ids, true),
    };
    if filter.limits.is_empty() {
        only.push_str(&named_tasks_clause(&filter.paused_named_task_ids, false));
    }
    only
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

/// Up to `limit` ready steps that `clause` allows, oldest first; on PostgreSQL their pending
/// tasks are locked first (the lock order) and the steps with `SKIP LOCKED`.
async fn select_candidates<C: ConnectionTrait>(
    txn: &C,
    clause: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<QueryResult>, StoreError> {
    let backend = txn.get_database_backend();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let ready = format!(
        "unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1{clause}"
    );
    if backend != DbBackend::Postgres {
        // `LIMIT +$2`, not `LIMIT $2`: SQLite compiles a statement whose limit is a bare
        // parameter for the value bound, and compiles it again whenever another is bound.
        return txn
            .rows(stmt(
                backend,
                format!("SELECT workflow_step_id, state FROM tasker_workflow_steps WHERE {ready} ORDER BY next_attempt_at LIMIT +$2"),
                vec![now.into(), limit.into()],
            ))
            .await;
    }
    // The lock order: a claim that starts a pending task locks that task row before any step
    // row. Tasks already running are not touched by a claim, so their rows are not locked. As
    // in the one-statement claim, no lock is waited for, and a candidate of a task pending in
    // this snapshot must be of one locked here.
    let locked = txn
        .rows(stmt(
            backend,
            format!(
                "SELECT task_id FROM tasker_tasks WHERE task_id = ANY (ARRAY \
                 (SELECT task_id FROM tasker_workflow_steps WHERE {ready} ORDER BY next_attempt_at LIMIT $2)) \
                 AND state || '' = {pending} ORDER BY task_id FOR UPDATE SKIP LOCKED",
                pending = START.from().sql(),
            ),
            vec![now.into(), limit.into()],
        ))
        .await?;
    // The locked tasks as one array parameter (`{id,id,…}`), however many there are.
    let mut ids = Vec::with_capacity(locked.len());
    for row in &locked {
        ids.push(get::<Uuid>(row, "task_id")?.to_string());
    }
    let values: Vec<Value> = vec![
        now.into(),
        limit.into(),
        format!("{{{}}}", ids.join(",")).into(),
    ];
    txn.rows(stmt(
        backend,
        format!(
            "SELECT workflow_step_id, state FROM tasker_workflow_steps WHERE {ready} \
             AND (task_id = ANY (CAST($3 AS uuid[])) OR (SELECT p.state FROM tasker_tasks p \
             WHERE p.task_id = tasker_workflow_steps.task_id) <> {pending}) \
             ORDER BY next_attempt_at LIMIT $2{}",
            skip_locked(backend),
            pending = START.from().sql(),
        ),
        values,
    ))
    .await
}

/// What a claim returns of each step it takes (after `RETURNING`).
pub(super) const CLAIM_RETURNING: &str = "workflow_step_id, task_id, name, attempts, retry_limit, last_sort_key, position, inputs, lease_expires_at, \
     (SELECT t.named_task_id FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS named_task_id, \
     (SELECT t.context FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS context, \
     (SELECT t.correlation_id FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS correlation_id, \
     (SELECT t.trace_parent FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS trace_parent, \
     (SELECT t.created_at FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS task_created_at";

/// The `UPDATE … SET` that starts an attempt of each claimed step, parameters `$1` owner, `$2`
/// lease (as `expiry` uses it) and `$3` now. A candidate is pending, or in error with its next
/// attempt due (a retry, which writes two history rows, hence its sort key moves by 20).
pub(super) fn claim_set(expiry: &str) -> String {
    claim_set_with("$1", expiry, "$3")
}

/// [`claim_set`] with the owner and now as the SQL `owner` and `now` (parameters).
pub(super) fn claim_set_with(owner: &str, expiry: &str, now: &str) -> String {
    format!(
        "UPDATE tasker_workflow_steps SET state = {claimed}, in_process = TRUE, claim_owner = {owner}, \
         lease_expires_at = {expiry}, attempts = attempts + 1, last_attempted_at = {now}, next_attempt_at = NULL, \
         updated_at = {now}, last_sort_key = last_sort_key + (CASE WHEN state = {retried} THEN 20 ELSE 10 END)",
        claimed = CLAIM.to().sql(),
        retried = RETRY.from().sql(),
    )
}

/// A claim's history metadata (as a claim by the steps' ids writes it) in SQL on
/// `backend`, over a claimed row's `attempts`, with `owner` the SQL of the claim's owner.
pub(super) fn claim_metadata_sql(backend: DbBackend, owner: &str) -> String {
    let cast = if backend == DbBackend::Postgres {
        "::text"
    } else {
        ""
    };
    format!(
        "{}('attempt_number', attempts, 'claim_owner', {owner}{cast})",
        json_object(backend)
    )
}

/// Whether [`claim_in`] is one statement that claims, starts the tasks and writes the history:
/// on PostgreSQL without namespace limits.
pub(super) fn one_statement_claim(backend: DbBackend, filter: &ClaimFilter) -> bool {
    filter.limits.is_empty() && backend == DbBackend::Postgres
}

/// What a claim asks for: up to `limit` (> 0) ready steps that `filter` allows, for `owner`,
/// with leases of `lease` on `clock`, at `now` (microseconds).
#[derive(Clone, Copy)]
pub(super) struct ClaimArgs<'a> {
    pub(super) clock: LeaseClock,
    pub(super) owner: &'a str,
    pub(super) limit: usize,
    pub(super) lease: Duration,
    pub(super) now: i64,
    pub(super) filter: &'a ClaimFilter,
}

/// Makes `claim` inside `txn`'s transaction (or as one statement of its own, where
/// [`one_statement_claim`]); the history rows of the claims and of the tasks they start are
/// written by the statement itself on PostgreSQL without limits, else they join `history`.
async fn claim_in<C: ConnectionTrait>(
    txn: &C,
    claim: ClaimArgs<'_>,
    history: &mut History,
) -> Result<ClaimBatch, StoreError> {
    let ClaimArgs {
        clock,
        owner,
        limit,
        lease,
        now,
        filter,
    } = claim;
    let backend = txn.get_database_backend();
    let (expiry, lease) = clock.expiry(backend, 2, now, micros(lease));
    // Named task ids are integers the engine read from the catalogue, written inline so the
    // statement's parameters stay the same. Without namespace limits the candidates also
    // exclude paused named tasks here; with them, `limited_candidates` does.
    let only = filter_clause(filter);
    // `$1` owner, `$2` lease, `$3` now, `$4` limit: the parameters of the one-call claims.
    let claim_values = || -> Vec<Value> {
        vec![
            owner.into(),
            lease.clone(),
            now.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ]
    };
    let parents = parent_results(backend);
    // The state each candidate had, where the candidates were read apart from the claim.
    let mut retried: HashMap<Uuid, bool> = HashMap::new();
    // Tasks the claim's statements started, with their new sort keys.
    let mut started: Vec<(Uuid, i32)> = Vec::new();
    let one_statement = one_statement_claim(backend, filter);
    // Whether the claim's own statements start the pending tasks of the claimed steps (else a
    // statement after the claim starts those its rows name pending).
    let starts_tasks = one_statement || (filter.limits.is_empty() && backend == DbBackend::Sqlite);
    let claimed = if one_statement {
        // One statement: lock the pending tasks of the candidates (the lock order: task rows
        // before step rows; the candidates' one-time filter waits for it), take the candidates
        // with SKIP LOCKED, and start their attempts. The first `$4` ready steps (`head`) are
        // read once; the tasks are found by their task ids as an array; their state is only a
        // filter (`|| ''` keeps it from being an index condition, where they are locked and
        // where they start), so the statement's generic plan cannot walk every pending task
        // once per candidate, as a semi-join planned on small tables did, nor once per claim,
        // as the start did through the state index (`statements.rs`). The candidates are
        // `head`'s steps, by primary key: read from the whole ready set, they were every ready
        // step, each refused row (a step of a pending task another claim had locked) costing a
        // probe of its task, 1,872 probes for 128 claims in B1. A claim that skips some of
        // `head` takes fewer than `$4`; the next claim takes the rest.
        //
        // The tasks are locked with SKIP LOCKED too, and a candidate of a task pending in the
        // statement's snapshot must be of one `locked` holds. A claim that waited for a task
        // row could wait for one started since its snapshot and now held by another engine's
        // recording, while that engine's claim waited for a row this claim held: two claims
        // deadlocked so. And a task of a step past `head` would be locked by its start, after
        // step rows: the candidates are `head`'s steps only.
        //
        // The tasks of the claimed steps that `locked` holds (those pending) start in the same
        // statement; each claimed row carries its task's new sort key when it started it.
        //
        // The claimed steps and the started tasks are found by arrays read once (`= ANY
        // (ARRAY …)`), primary-key probes whatever the planner estimates: joined to the
        // candidates, the steps were read whole into a hash join once the tables had
        // statistics, and without statistics the candidates were rescanned once per claimed
        // step; `locked` and `claimed` were joined to the tasks as nested loops that rescanned
        // one CTE per row of the other. Each claimed row's state before the claim (a retry or
        // not) and whether its task starts are read from arrays too.
        //
        // The statement writes the history of its claims and starts too (after the rows gathered
        // earlier in the transaction, written first): a retried step's error → pending row, then
        // each claimed step's pending → in_progress row, and each started task's row.
        history.flush(txn, now).await?;
        txn.rows(stmt(
            backend,
            one_statement_claim_sql(&only, &expiry, &parents),
            claim_values(),
        ))
        .await?
    } else if starts_tasks {
        // SQLite, one call: the candidates with the state each had (kind 0), the start of
        // the pending tasks of those to be claimed (kind 2), then the claim (kind 1), as three
        // statements of one string. Nothing else writes between them: SQLite has one writer,
        // and this transaction is it. The limit is `+$4`: a bare parameter would have SQLite
        // compile the three statements again whenever the limit bound differs from the last.
        // The start finds the tasks by id, not through the state index (`statements.rs`).
        let rows = txn
            .rows(stmt(
                backend,
                sqlite_claim_sql(&only, &expiry, &parents),
                claim_values(),
            ))
            .await?;
        let mut claimed = Vec::with_capacity(rows.len() / 2);
        for row in rows {
            match get::<i32>(&row, "kind")? {
                0 => {
                    retried.insert(
                        get(&row, "workflow_step_id")?,
                        get::<String>(&row, "state")? == RETRY.from().name(),
                    );
                }
                2 => started.push((get(&row, "task_id")?, get(&row, "last_sort_key")?)),
                _ => claimed.push(row),
            }
        }
        claimed
    } else {
        let candidates = if filter.limits.is_empty() {
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
                 RETURNING {CLAIM_RETURNING}, {parents}, \
                 (SELECT t.state FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) AS task_state",
                set = claim_set(&expiry),
                ready = CLAIM.from().sql(),
                retried = RETRY.from().sql(),
            ),
            vec![owner.into(), lease.clone(), now.into()],
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
        // The one-statement claim wrote its history rows itself.
        if was_retry && !one_statement {
            history.steps([RETRY.row(
                step_id,
                sort_key - 10,
                false,
                json!({"reason": "retry", "retry_attempt": attempt}),
            )]);
        }
        if !one_statement {
            history.steps([CLAIM.row(
                step_id,
                sort_key,
                true,
                json!({"attempt_number": attempt, "claim_owner": owner}),
            )]);
        }
        if one_statement {
            if let Some(sort_key) = get::<Option<i32>>(row, "started_sort_key")?
                && !started.iter().any(|(id, _)| *id == task_id)
            {
                started.push((task_id, sort_key));
            }
        } else if !starts_tasks
            && get::<String>(row, "task_state")? == START.from().name()
            && !task_ids.contains(&task_id)
        {
            // Only a pending task needs starting: no statement at all when none is.
            task_ids.push(task_id);
        }
        claims.push(claim_of(row, was_retry)?);
    }
    let task_values: Vec<Value> = task_ids.iter().copied().map(Value::from).collect();
    let started_apart = query_in_chunks(
        txn,
        &start_tasks_apart_sql(),
        vec![now.into()],
        &task_values,
    )
    .await?;
    for row in started_apart {
        started.push((get(&row, "task_id")?, get(&row, "last_sort_key")?));
    }
    let mut started_tasks = Vec::with_capacity(started.len());
    for (task_id, sort_key) in started {
        started_tasks.push(TaskId(task_id));
        if !one_statement {
            history.tasks([START.row(task_id, sort_key, true, json!({"reason": "steps_claimed"}))]);
        }
    }
    Ok(claim_batch(claims, started_tasks))
}

/// The batch of `claims` (with their steps' template positions) and `started_tasks`: the claims
/// grouped by task in template order, for a stable hand-off to the engine.
pub(super) fn claim_batch(
    mut claims: Vec<(i32, Claim)>,
    mut started_tasks: Vec<TaskId>,
) -> ClaimBatch {
    claims.sort_by_key(|(position, claim)| (claim.step.task_id, *position));
    started_tasks.sort();
    ClaimBatch {
        claims: claims.into_iter().map(|(_, claim)| claim).collect(),
        started_tasks,
    }
}

/// The claim a claimed `row` holds (the columns of [`CLAIM_RETURNING`] and `parent_results`;
/// `was_retry`: the attempt is a retry), with the step's position in its template.
pub(super) fn claim_of(row: &QueryResult, was_retry: bool) -> Result<(i32, Claim), StoreError> {
    let step_id = StepId(get(row, "workflow_step_id")?);
    let attempt: i32 = get(row, "attempts")?;
    let inputs = StepInputs {
        step_id,
        task_context: get(row, "context")?,
        correlation_id: get(row, "correlation_id")?,
        trace_parent: get(row, "trace_parent")?,
        task_created_at: from_micros(get(row, "task_created_at")?),
        inputs: get(row, "inputs")?,
        parent_results: parse_parent_results(get(row, "parent_results")?)?,
    };
    let step = ClaimedStep {
        step_id,
        task_id: TaskId(get(row, "task_id")?),
        named_task_id: template_id(row, "named_task_id")?,
        name: get(row, "name")?,
        attempt: u32::try_from(attempt).unwrap_or(0),
        retry_limit: u32::try_from(get::<i32>(row, "retry_limit")?).unwrap_or(0),
        retried: was_retry,
        lease_expires_at: from_micros(get(row, "lease_expires_at")?),
    };
    Ok((get::<i32>(row, "position")?, Claim { inputs, step }))
}

/// The `parent_results` column of a claim's `RETURNING` ([`parents_json`]).
pub(super) fn parent_results(backend: DbBackend) -> String {
    format!(
        "(SELECT {} FROM tasker_workflow_step_edges e \
         WHERE e.to_step_id = tasker_workflow_steps.workflow_step_id) AS parent_results",
        parents_json(backend)
    )
}

/// The claim's aggregate over a step's edges from its parents (`e`): a JSON array of
/// `[name, results]` pairs as text, so both databases hand back the same thing. PostgreSQL's
/// `json_agg` gives NULL for no parents, SQLite's `json_group_array` gives `[]`. Each parent is
/// read by its own subquery on the primary key rather than by a join: PostgreSQL keeps a
/// prepared statement's generic plan, and one made while the steps table was small joined by
/// reading the whole table once per claimed step.
fn parents_json(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            "json_agg((SELECT json_build_array(p.name, p.results) FROM tasker_workflow_steps p \
             WHERE p.workflow_step_id = e.from_step_id))::text"
        }
        _ => {
            "json_group_array((SELECT json_array(p.name, json(p.results)) FROM tasker_workflow_steps p \
             WHERE p.workflow_step_id = e.from_step_id))"
        }
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
