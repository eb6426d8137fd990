//! The claim's statements without namespace limits: PostgreSQL's one statement that claims,
//! starts the claimed steps' pending tasks and writes the history, SQLite's three statements of
//! one call, and the start of the tasks apart from the claim that a claim with limits needs.
//!
//! Where a statement starts pending tasks found by their ids, the tasks' state is only a filter
//! (`state || ''`, never an index condition): the planners (PostgreSQL's generic plan made while
//! the tables had no statistics, SQLite's without any) otherwise found the tasks through the
//! state index, reading every pending task and testing each against the ids, once per claim.

use std::sync::LazyLock;

use sea_orm::DbBackend;

use super::super::changes::State;
use super::super::history::{Owners, history_ctes};
use super::super::sql::STATEMENT_SEPARATOR;
use super::{CLAIM, CLAIM_RETURNING, RETRY, START, claim_metadata_sql, claim_set};

/// The one-statement claim's history CTEs, built once: a retried step's error → pending row,
/// each claimed step's pending → in_progress row, each started task's row.
static CLAIM_HISTORY: LazyLock<(String, String)> = LazyLock::new(|| {
    let step_history = history_ctes(
        "claim_history",
        Owners::Steps,
        "SELECT workflow_step_id FROM claimed",
        &format!(
            "{} FROM claimed WHERE candidate_state = {retried} UNION ALL {} FROM claimed",
            RETRY.select(
                "workflow_step_id",
                "last_sort_key - 10",
                false,
                "jsonb_build_object('reason', 'retry', 'retry_attempt', attempts)",
                "$3"
            ),
            CLAIM.select(
                "workflow_step_id",
                "last_sort_key",
                true,
                &claim_metadata_sql(DbBackend::Postgres, "$1"),
                "$3"
            ),
            retried = RETRY.from().sql(),
        ),
    );
    let task_history = history_ctes(
        "start_history",
        Owners::Tasks,
        "SELECT task_id FROM started",
        &format!(
            "{} FROM started",
            START.select(
                "task_id",
                "last_sort_key",
                true,
                "jsonb_build_object('reason', 'steps_claimed')",
                "$3"
            )
        ),
    );
    (step_history, task_history)
});

/// The one-statement claim (PostgreSQL without namespace limits), `only` the candidates' extra
/// filter, `expiry` the lease's SQL and `parents` [`super::parent_results`]; parameters `$1`
/// owner, `$2` lease, `$3` now, `$4` limit. [`super::claim_in`] says how it is built.
pub(super) fn one_statement_claim_sql(only: &str, expiry: &str, parents: &str) -> String {
    let ready = format!(
        "unfinished_parents = 0 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $3{only}"
    );
    let (step_history, task_history) = &*CLAIM_HISTORY;
    format!(
        "WITH head AS (SELECT workflow_step_id, task_id FROM tasker_workflow_steps WHERE {ready} \
         ORDER BY next_attempt_at LIMIT $4), \
         locked AS (SELECT task_id FROM tasker_tasks WHERE task_id = ANY (ARRAY (SELECT task_id FROM head)) \
         AND state || '' = {pending} ORDER BY task_id FOR UPDATE SKIP LOCKED), \
         candidates AS (SELECT workflow_step_id AS candidate_id, state AS candidate_state \
         FROM tasker_workflow_steps WHERE workflow_step_id = ANY (ARRAY (SELECT workflow_step_id FROM head)) \
         AND {ready} AND (SELECT COUNT(*) FROM locked) >= 0 \
         AND (task_id IN (SELECT task_id FROM locked) OR (SELECT p.state FROM tasker_tasks p \
         WHERE p.task_id = tasker_workflow_steps.task_id) <> {pending}) \
         ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
         claimed AS ({set} WHERE workflow_step_id = ANY (ARRAY (SELECT candidate_id FROM candidates)) \
         AND state IN ({pending_step}, {retried}) \
         RETURNING {CLAIM_RETURNING}, {parents}, \
         CASE WHEN workflow_step_id = ANY (ARRAY (SELECT candidate_id FROM candidates \
         WHERE candidate_state = {retried})) THEN {retried} ELSE {pending_step} END AS candidate_state, \
         task_id = ANY (ARRAY (SELECT task_id FROM locked)) AS starts), \
         started AS (UPDATE tasker_tasks SET state = {running}, last_sort_key = last_sort_key + 10, updated_at = $3 \
         WHERE task_id = ANY (ARRAY (SELECT task_id FROM claimed WHERE starts)) \
         AND state || '' = {pending} RETURNING task_id, last_sort_key), \
         {step_history}, {task_history} \
         SELECT c.*, s.last_sort_key AS started_sort_key FROM claimed c LEFT JOIN started s ON s.task_id = c.task_id",
        pending = START.from().sql(),
        running = START.to().sql(),
        set = claim_set(expiry),
        pending_step = CLAIM.from().sql(),
        retried = RETRY.from().sql(),
    )
}

/// SQLite's claim in one call (without namespace limits), as three statements of one string:
/// the candidates with the state each had (kind 0), the start of the pending tasks of those to
/// be claimed (kind 2), then the claim (kind 1); `only`, `expiry`, `parents` and the parameters
/// as for [`one_statement_claim_sql`].
pub(super) fn sqlite_claim_sql(only: &str, expiry: &str, parents: &str) -> String {
    let candidates = format!(
        "SELECT workflow_step_id FROM tasker_workflow_steps WHERE unfinished_parents = 0 \
         AND next_attempt_at IS NOT NULL AND next_attempt_at <= $3{only} \
         ORDER BY next_attempt_at LIMIT +$4"
    );
    format!(
        "SELECT 0 AS kind, workflow_step_id, state FROM tasker_workflow_steps \
         WHERE workflow_step_id IN ({candidates}){STATEMENT_SEPARATOR}\
         UPDATE tasker_tasks SET state = {running}, last_sort_key = last_sort_key + 10, updated_at = $3 \
         WHERE state || '' = {pending} AND task_id IN (SELECT task_id FROM tasker_workflow_steps \
         WHERE workflow_step_id IN ({candidates}) AND state IN ({ready}, {retried})) \
         RETURNING 2 AS kind, task_id, last_sort_key{STATEMENT_SEPARATOR}\
         {set} WHERE state IN ({ready}, {retried}) AND workflow_step_id IN ({candidates}) \
         RETURNING 1 AS kind, {CLAIM_RETURNING}, {parents}",
        set = claim_set(expiry),
        ready = CLAIM.from().sql(),
        retried = RETRY.from().sql(),
        pending = START.from().sql(),
        running = START.to().sql(),
    )
}

/// The start of the pending tasks of steps claimed by a claim that did not start them itself
/// (a claim with namespace limits): `{ids}` the tasks, `$1` now.
pub(super) fn start_tasks_apart_sql() -> String {
    format!(
        "UPDATE tasker_tasks SET state = {to}, last_sort_key = last_sort_key + 10, updated_at = $1 \
         WHERE state || '' = {from} AND task_id IN ({{ids}}) RETURNING task_id, last_sort_key",
        from = START.from().sql(),
        to = START.to().sql(),
    )
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

    use super::super::super::plans::{sqlite_plan, sqlite_store};
    use super::super::super::sql::STATEMENT_SEPARATOR;
    use super::super::parent_results;
    use super::{one_statement_claim_sql, sqlite_claim_sql, start_tasks_apart_sql};
    use crate::scratch_db::{create_database, drop_database};
    use crate::{ConnectOptions, LeaseClock, Store};

    /// The index a start must not find pending tasks by.
    const STATE_INDEX: &str = "idx_tasks_state_created";

    /// The claim's lease SQL on `backend` and its parameters, `$1` owner … `$4` limit, with a
    /// lease on the caller's clock.
    fn claim_values(backend: DbBackend) -> (String, Vec<Value>) {
        let (expiry, lease) = LeaseClock::Caller.expiry(backend, 2, 0, 1_000_000);
        let values = vec!["owner".into(), lease, 0_i64.into(), 16_i64.into()];
        (expiry, values)
    }

    /// Asserts that SQLite plans `statement` (a start of pending tasks) on the tasks table and
    /// not through the state index.
    async fn assert_sqlite_start_by_id(store: &Store, statement: &str, values: &[Value]) {
        let plan = sqlite_plan(store.connection(), statement, values).await;
        assert!(
            plan.iter().any(|line| line.contains("tasker_tasks")),
            "the start reads the tasks: {plan:#?}\n{statement}"
        );
        assert!(
            !plan.iter().any(|line| line.contains(STATE_INDEX)),
            "{plan:#?}\n{statement}"
        );
    }

    /// PostgreSQL's generic plan of `sql` (the plan a prepared statement keeps), made on tables
    /// without statistics, as a store's first claims are.
    async fn postgres_generic_plan(store: &Store, sql: &str, values: &str) -> String {
        let txn = store.connection().begin().await.expect("begin");
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await
            .expect("set plan_cache_mode");
        txn.execute_unprepared(&format!("PREPARE planned AS {sql}"))
            .await
            .unwrap_or_else(|err| panic!("PREPARE failed: {err}\n{sql}"));
        let rows = txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("EXPLAIN EXECUTE planned({values})"),
            ))
            .await
            .expect("EXPLAIN EXECUTE");
        let plan = rows
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).expect("plan line"))
            .collect::<Vec<_>>()
            .join("\n");
        txn.execute_unprepared("DEALLOCATE planned")
            .await
            .expect("deallocate");
        txn.rollback().await.expect("rollback");
        plan
    }

    #[tokio::test]
    async fn sqlite_claims_start_their_tasks_by_id_not_by_the_state_index() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = sqlite_store(&dir).await;
        let (expiry, values) = claim_values(DbBackend::Sqlite);
        let parents = parent_results(DbBackend::Sqlite);
        let claim = sqlite_claim_sql("", &expiry, &parents);
        let start = claim
            .split(STATEMENT_SEPARATOR)
            .find(|statement| statement.starts_with("UPDATE tasker_tasks"))
            .expect("the claim starts its pending tasks");
        assert_sqlite_start_by_id(&store, start, &values).await;
        let apart = start_tasks_apart_sql().replace("{ids}", "$2, $3");
        assert_sqlite_start_by_id(&store, &apart, &[0_i64.into(), "a".into(), "b".into()]).await;
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_claims_start_their_tasks_by_id_not_by_the_state_index() {
        let Ok(admin_url) = std::env::var("TASKER_TEST_DATABASE_URL") else {
            return;
        };
        let (url, name) = create_database(&admin_url, "tasker_u_").await;
        // Planned in a task of its own, so the database is dropped however it ends.
        let plans = tokio::spawn(async move {
            let store = Store::connect(&url, &ConnectOptions::default())
                .await
                .expect("open postgres");
            let (expiry, _) = claim_values(DbBackend::Postgres);
            let parents = parent_results(DbBackend::Postgres);
            let claim = postgres_generic_plan(
                &store,
                &one_statement_claim_sql("", &expiry, &parents),
                "'owner', 1000000, 0, 16",
            )
            .await;
            let apart = start_tasks_apart_sql()
                .replace("{ids}", "'00000000-0000-0000-0000-000000000001'::uuid, $2");
            let apart =
                postgres_generic_plan(&store, &apart, "0, '00000000-0000-0000-0000-000000000002'")
                    .await;
            store.close().await;
            [claim, apart]
        })
        .await;
        drop_database(&admin_url, &name).await;
        let plans = plans.unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
        for plan in plans {
            assert!(plan.contains("Update on tasker_tasks"), "{plan}");
            assert!(!plan.contains(STATE_INDEX), "{plan}");
        }
    }
}
