//! The hand-off of a coordinator that knows nothing else is ready: its claim can only find the
//! children its own outcomes release, so it claims them by what the recording returns instead
//! of searching the ready set. On PostgreSQL, for a batch of successes, the recording statement
//! claims them itself (`outcomes.rs`, `recording_tail`); otherwise (SQLite, or a batch that
//! names a step twice) a statement after the recording claims them by id in the same
//! transaction. A batch with a failure, whose retry may be due at once, takes the ordinary
//! claim.

use sea_orm::{ConnectionTrait, Value};
use serde_json::json;
use tasker_domain::{StepId, TaskState};

use super::changes::State;
use super::claims::{
    CLAIM, CLAIM_RETURNING, ClaimArgs, claim_batch, claim_of, claim_set, filter_clause,
    one_statement_claim, parent_results,
};
use super::history::History;
use super::outcomes::{Success, record_successes, successes_alone};
use super::sql::{Db, get, micros, params, retrying, stmt};
use super::{ClaimBatch, RecordReport, Store};
use crate::error::StoreError;
use crate::time::from_micros;
use crate::{ClaimFilter, StepOutcome};

impl Store {
    /// Whether recording `outcomes` with a claim of only what they release
    /// ([`FollowingClaim::only_if_readied`](crate::FollowingClaim)) under `filter` is one
    /// statement whose claim takes nothing but the children it releases, none of them visible
    /// to anyone else before it commits: PostgreSQL, no namespace limits, successes only, each
    /// step once. Then another claim can run at the same time on another connection without
    /// the two contending for the same ready steps.
    pub fn hand_off_claims_only_released(
        &self,
        outcomes: &[StepOutcome],
        filter: &ClaimFilter,
    ) -> bool {
        if !one_statement_claim(self.db_backend(), filter) {
            return false;
        }
        let pairs: Vec<(&str, &StepOutcome)> = outcomes.iter().map(|o| ("", o)).collect();
        successes_alone(&pairs).is_some()
    }

    /// PostgreSQL, a hand-off of successes whose claim can only find what they release (the
    /// caller knows nothing else is ready): one statement records the successes and claims
    /// the children they make ready, without `BEGIN` and `COMMIT`, so the hand-off is one round
    /// trip instead of four. When the statement left some of those children ready (past its
    /// limit, not claimable in its snapshot, of a pending task), an ordinary claim of the room
    /// left follows it; the outcomes are recorded whatever that claim does.
    pub(super) async fn record_and_claim_released(
        &self,
        successes: &[Success<'_>],
        claim: ClaimArgs<'_>,
    ) -> Result<(RecordReport, ClaimBatch), StoreError> {
        let claim = &claim;
        let (report, rows) = retrying(|| async move {
            let mut history = History::default();
            record_successes(
                self.one_statement_txn(),
                successes,
                claim.now,
                &mut history,
                Some(claim),
            )
            .await
        })
        .await?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            claims.push(claim_of(row, false)?);
        }
        let mut batch = claim_batch(claims, Vec::new());
        let taken = batch.claims.len();
        if report.newly_ready.len() > taken && taken < claim.limit {
            // The outcomes are recorded: a failure here leaves the children ready for the
            // next claim rather than failing the hand-off.
            match self
                .claim_ready_steps_where(
                    claim.owner,
                    claim.limit - taken,
                    claim.lease,
                    from_micros(claim.now),
                    claim.filter,
                )
                .await
            {
                Ok(more) => batch.absorb(more),
                Err(err) => {
                    tracing::warn!(error = %err, "claiming the steps a hand-off made ready failed; the next claim takes them");
                }
            }
        }
        Ok((report, batch))
    }
}

/// Claims up to `claim.limit` of `released` (children that outcomes recorded in `txn` made
/// ready) that `claim.filter` allows and whose tasks are not pending (a claim of a pending task
/// starts it: the ordinary claim's work), in one statement; their history rows join `history`.
pub(super) async fn claim_released_in<C: ConnectionTrait>(
    txn: &C,
    claim: ClaimArgs<'_>,
    released: &[StepId],
    history: &mut History,
) -> Result<ClaimBatch, StoreError> {
    let backend = txn.get_database_backend();
    let (expiry, lease) = claim
        .clock
        .expiry(backend, 2, claim.now, micros(claim.lease));
    let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
    let mut values: Vec<Value> = vec![claim.owner.into(), lease, claim.now.into(), limit.into()];
    values.extend(released.iter().map(|id| Value::from(id.as_uuid())));
    // `LIMIT +$4`: see `select_candidates`.
    let rows = txn
        .rows(stmt(
            backend,
            format!(
                "{set} WHERE workflow_step_id IN (SELECT workflow_step_id FROM tasker_workflow_steps \
                 WHERE workflow_step_id IN ({ids}) AND state = {ready} AND unfinished_parents = 0 \
                 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $3{only} \
                 AND (SELECT t.state FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) <> {pending} \
                 ORDER BY next_attempt_at, workflow_step_id LIMIT +$4) \
                 RETURNING {CLAIM_RETURNING}, {parents}",
                set = claim_set(&expiry),
                ids = params(5, released.len()),
                ready = CLAIM.from().sql(),
                only = filter_clause(claim.filter),
                pending = TaskState::Pending.sql(),
                parents = parent_results(backend),
            ),
            values,
        ))
        .await?;
    let mut claims = Vec::with_capacity(rows.len());
    for row in &rows {
        let (position, claimed) = claim_of(row, false)?;
        history.steps([CLAIM.row(
            claimed.step.step_id.as_uuid(),
            get(row, "last_sort_key")?,
            true,
            json!({"attempt_number": claimed.step.attempt, "claim_owner": claim.owner}),
        )]);
        claims.push((position, claimed));
    }
    Ok(claim_batch(claims, Vec::new()))
}
