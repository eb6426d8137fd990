//! The hand-off of a coordinator that knows nothing else is ready: its claim can only find the
//! children its own outcomes release, so it claims them by what the recording returns instead
//! of searching the ready set. On PostgreSQL, for a batch of successes, the recording statement
//! claims them itself (`outcomes.rs`, `recording_tail`); on SQLite, for up to
//! [`SCRIPT_SUCCESSES_MAX`] successes, one script does (`sqlite_hand_off`); either way an
//! ordinary claim follows, in a transaction of its own, where children were left ready.
//! Otherwise (a larger batch on SQLite, a step named twice, namespace limits) a statement after
//! the recording claims them by id in the same transaction. A batch with a failure, whose
//! retry may be due at once, takes the ordinary claim.

use sea_orm::{ConnectionTrait, DbBackend, Value};
use serde_json::json;
use tasker_domain::{StepId, StepState, TaskState};

use super::changes::State;
use super::claims::{
    CLAIM, CLAIM_RETURNING, ClaimArgs, claim_batch, claim_metadata_sql, claim_of, claim_set,
    claim_set_with, filter_clause, one_statement_claim, parent_results,
};
use super::history::{History, Owners, history_statements};
use super::outcomes::{
    CLAIMED, COMPLETE, COUNTED, Completion, DONE, NOT_READY, READY, Success,
    completing_update_returning, completion, record_successes, report_of, success_metadata_sql,
    successes_alone,
};
use super::script::Waiting;
use super::sql::{Db, get, micros, params, retrying, stmt};
use super::transitions::{finalized_rows, finalizing_set};
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

    /// Whether a hand-off of `successes` under `filter` whose claim can only find what they
    /// release is one call to the database ([`Store::record_and_claim_released`]): no
    /// namespace limits, and on SQLite a batch small enough for one script.
    pub(super) fn hand_off_in_one_call(
        &self,
        successes: &[Success<'_>],
        filter: &ClaimFilter,
    ) -> bool {
        filter.limits.is_empty()
            && (self.db_backend() == DbBackend::Postgres || successes.len() <= SCRIPT_SUCCESSES_MAX)
    }

    /// A hand-off of successes whose claim can only find what they release (the caller knows
    /// nothing else is ready), in one call to the database: on PostgreSQL one statement
    /// records the successes and claims the children they make ready, without `BEGIN` and
    /// `COMMIT`, so the hand-off is one round trip instead of four; on SQLite one script does
    /// ([`sqlite_hand_off`]). When the call left some of those children ready (past its limit,
    /// not claimable in its snapshot, of a pending task), an ordinary claim of the room left
    /// follows it; the outcomes are recorded whatever that claim does.
    pub(super) async fn record_and_claim_released(
        &self,
        successes: &[Success<'_>],
        claim: ClaimArgs<'_>,
    ) -> Result<(RecordReport, ClaimBatch), StoreError> {
        let claim = &claim;
        let (report, rows) = if self.db_backend() == DbBackend::Postgres {
            retrying(|| async move {
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
            .await?
        } else {
            let (statements, values) = sqlite_hand_off(successes, claim);
            report_of(
                successes,
                self.script(&statements, values, Waiting::Awake).await?,
            )?
        };
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
    let sql = released_claim(
        backend,
        &claim_set(&expiry),
        &params(5, released.len()),
        ("$3", "$4"),
        claim.filter,
        "",
    );
    let rows = txn.rows(stmt(backend, sql, values)).await?;
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

/// The statement that claims, with `set` ([`claim_set`]), up to `limit` of the steps
/// `candidates` (SQL listing step ids) that are ready at `now` (`now` and `limit` are SQL),
/// that `filter` allows and whose tasks are not pending; it returns `answer` (columns, each
/// followed by a comma) and what a claim returns.
fn released_claim(
    backend: DbBackend,
    set: &str,
    candidates: &str,
    (now, limit): (&str, &str),
    filter: &ClaimFilter,
    answer: &str,
) -> String {
    // `LIMIT +$n`: see `select_candidates`.
    format!(
        "{set} WHERE workflow_step_id IN (SELECT workflow_step_id FROM tasker_workflow_steps \
         WHERE workflow_step_id IN ({candidates}) AND state = {ready} AND unfinished_parents = 0 \
         AND next_attempt_at IS NOT NULL AND next_attempt_at <= {now}{only} \
         AND (SELECT t.state FROM tasker_tasks t WHERE t.task_id = tasker_workflow_steps.task_id) <> {pending} \
         ORDER BY next_attempt_at, workflow_step_id LIMIT +{limit}) \
         RETURNING {answer}{CLAIM_RETURNING}, {parents}",
        ready = CLAIM.from().sql(),
        only = filter_clause(filter),
        pending = TaskState::Pending.sql(),
        parents = parent_results(backend),
    )
}

/// Hand-offs of up to this many successes on SQLite are one script ([`sqlite_hand_off`]):
/// the successes are parameters, which SQLite looks up at a cost that grows with the square
/// of their number, and each batch size is a statement text of its own in the driver's cache.
const SCRIPT_SUCCESSES_MAX: usize = 16;

/// SQLite's temporary table of the steps a hand-off script completes, kept on the writer's
/// connection (created by the first script to run on it) and emptied by each script.
const DONE_STEPS: &str = "temp.tasker_handoff_done";

/// SQLite: the statements and parameters of a [`Store::script`] that records `successes`
/// and claims the children they make ready, as the PostgreSQL recording statement does, in
/// one call to the driver. The steps whose claims hold are noted first (with their tasks'
/// states) in a temporary table, so that every later statement works from the steps this
/// transaction completed, which the completed rows alone cannot tell (a step completed
/// earlier looks the same). Then, in turn: the steps completed; their children's unfinished
/// parents counted down; the tasks' counters moved and any task left with no active step
/// finalized; the children made ready claimed, up to the limit; the history rows of the
/// completions, the claims and the finalizations written. The answer's rows are those of the
/// PostgreSQL statement, by `kind` (a child still waiting is [`NOT_READY`]).
fn sqlite_hand_off(successes: &[Success<'_>], claim: &ClaimArgs<'_>) -> (Vec<String>, Vec<Value>) {
    const SQLITE: DbBackend = DbBackend::Sqlite;
    let Completion {
        mut values,
        v,
        by_id,
    } = completion(successes, claim.now);
    let owner = format!("${}", values.len() + 1);
    values.push(claim.owner.into());
    let (expiry, lease) =
        claim
            .clock
            .expiry(SQLITE, values.len() + 1, claim.now, micros(claim.lease));
    values.push(lease);
    let limit = format!("${}", values.len() + 1);
    values.push(i64::try_from(claim.limit).unwrap_or(i64::MAX).into());

    // The completed steps (`d`) with their edges to their children (`e`). `CROSS JOIN` keeps
    // the temporary table the outer loop, its steps' edges read by index: SQLite plans without
    // statistics and, with a plain join, read every edge of the database (probing the table
    // once per edge) in each statement that finds the children.
    let done_edges = format!(
        "{DONE_STEPS} d CROSS JOIN tasker_workflow_step_edges e ON e.from_step_id = d.step"
    );
    let children = format!("SELECT e.to_step_id FROM {done_edges}");
    let waiting = [StepState::Pending.sql(), StepState::Error.sql()].join(", ");
    let ready =
        format!("unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND state IN ({waiting})");
    // A child of a step this transaction completed had unfinished parents until now, so one
    // running under this owner's claim since now was claimed here.
    let claimed = format!(
        "workflow_step_id IN ({children}) AND state = {running} AND claim_owner = {owner} \
         AND last_attempted_at = $1",
        running = CLAIM.to().sql(),
    );
    let step_history = history_statements(
        Owners::Steps,
        &format!(
            "SELECT step FROM {DONE_STEPS} \
             UNION ALL SELECT workflow_step_id FROM tasker_workflow_steps WHERE {claimed}"
        ),
        &format!(
            "{} FROM tasker_workflow_steps WHERE workflow_step_id IN (SELECT step FROM {DONE_STEPS}) \
             UNION ALL {} FROM tasker_workflow_steps WHERE {claimed}",
            COMPLETE.select(
                "workflow_step_id",
                "last_sort_key",
                true,
                &success_metadata_sql(SQLITE),
                "$1"
            ),
            CLAIM.select(
                "workflow_step_id",
                "last_sort_key",
                true,
                &claim_metadata_sql(SQLITE, &owner),
                "$1"
            ),
        ),
    );
    let (finalized, finalized_history) = finalized_rows(
        SQLITE,
        &format!(
            "(SELECT t.task_id, t.state, d.was, t.done_steps, t.total_steps, t.last_sort_key \
             FROM tasker_tasks t JOIN (SELECT task, MIN(was) AS was FROM {DONE_STEPS} GROUP BY task) d \
             ON d.task = t.task_id)"
        ),
    );
    let task_history = history_statements(Owners::Tasks, &finalized, &finalized_history);
    let mut statements = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {DONE_STEPS} (step PRIMARY KEY, task NOT NULL, was NOT NULL)"
        ),
        format!("DELETE FROM {DONE_STEPS}"),
        format!(
            "WITH {v} INSERT INTO {DONE_STEPS} (step, task, was) \
             SELECT s.workflow_step_id, s.task_id, \
             (SELECT t.state FROM tasker_tasks t WHERE t.task_id = s.task_id) \
             FROM v JOIN tasker_workflow_steps s ON s.workflow_step_id = v.step \
             WHERE s.{by_id} AND s.state = {running} AND s.attempts = v.attempt AND s.claim_owner = v.owner",
            running = COMPLETE.from().sql(),
        ),
        format!(
            "WITH {v} {}",
            completing_update_returning(
                &by_id,
                "",
                &format!("{DONE} AS kind, workflow_step_id AS id, ")
            )
        ),
        format!(
            "UPDATE tasker_workflow_steps SET updated_at = $1, unfinished_parents = unfinished_parents - c.n \
             FROM (SELECT e.to_step_id, COUNT(*) AS n FROM {done_edges} GROUP BY e.to_step_id) AS c \
             WHERE workflow_step_id = c.to_step_id \
             RETURNING CASE WHEN {ready} THEN {READY} ELSE {NOT_READY} END AS kind, workflow_step_id AS id"
        ),
        format!(
            "UPDATE tasker_tasks SET active_steps = active_steps - f.n + f.w, done_steps = done_steps + f.n, \
             updated_at = $1, {finalizing} \
             FROM (SELECT task, SUM(completed) AS n, SUM(1 - completed) AS w FROM \
             (SELECT task, 1 AS completed FROM {DONE_STEPS} UNION ALL SELECT task_id, 0 \
             FROM tasker_workflow_steps WHERE workflow_step_id IN ({children}) AND {ready}) \
             GROUP BY task) AS f \
             WHERE task_id = f.task \
             RETURNING {COUNTED} AS kind, task_id AS id, state, \
             (SELECT d.was FROM {DONE_STEPS} d WHERE d.task = tasker_tasks.task_id LIMIT 1) AS was",
            finalizing = finalizing_set(
                "active_steps - f.n + f.w = 0",
                "done_steps + f.n = total_steps",
            ),
        ),
        released_claim(
            SQLITE,
            &claim_set_with(&owner, &expiry, "$1"),
            &children,
            ("$1", &limit),
            claim.filter,
            &format!("{CLAIMED} AS kind, workflow_step_id AS id, "),
        ),
    ];
    statements.extend(step_history);
    statements.extend(task_history);
    (statements, values)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ConnectionTrait, TransactionTrait};
    use serde_json::json;
    use tasker_domain::StepId;

    use super::super::claims::ClaimArgs;
    use super::super::plans::{sqlite_plan, sqlite_store};
    use super::sqlite_hand_off;
    use crate::{ClaimFilter, LeaseClock};

    #[tokio::test]
    async fn sqlite_hand_off_reads_no_table_whole() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = sqlite_store(&dir).await;
        let results = json!({"ok": true});
        let successes = [
            ("owner", StepId(uuid::Uuid::from_u128(1)), 1, &results),
            ("owner", StepId(uuid::Uuid::from_u128(2)), 1, &results),
        ];
        let filter = ClaimFilter::default();
        let claim = ClaimArgs {
            clock: LeaseClock::Caller,
            owner: "owner",
            limit: 8,
            lease: Duration::from_secs(30),
            now: 0,
            filter: &filter,
        };
        let (statements, values) = sqlite_hand_off(&successes, &claim);
        // The temporary table lives on one connection: plan every statement on it.
        let txn = store.connection().begin().await.expect("begin");
        txn.execute_unprepared(&statements[0])
            .await
            .expect("create the temporary table");
        // Every statement after the table's `CREATE` and the `DELETE` that empties it (which
        // SQLite does without a plan).
        for statement in &statements[2..] {
            let plan = sqlite_plan(&txn, statement, &values).await;
            assert!(!plan.is_empty(), "no plan for: {statement}");
            for line in &plan {
                // Only the statements' own small sets may be scanned: the temporary table
                // (`d`), the successes (`v`), grouped subqueries (`c`, `f`) and constants.
                let Some(scanned) = line.strip_prefix("SCAN ") else {
                    continue;
                };
                let what = scanned.split_whitespace().next().unwrap_or_default();
                assert!(
                    ["d", "v", "c", "f", "temp.tasker_handoff_done"].contains(&what)
                        || what.starts_with("(subquery-")
                        || scanned.contains("CONSTANT ROW"),
                    "{line}\nin: {statement}"
                );
            }
        }
        txn.rollback().await.expect("rollback");
        store.close().await;
    }
}
