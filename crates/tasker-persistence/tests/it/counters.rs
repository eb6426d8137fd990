//! The store's own counts of statements and transactions, which the benchmarks report per step.

use crate::support::*;

/// Statements and transactions a store has counted so far.
fn counts(store: &tasker_persistence::Store) -> (u64, u64) {
    (store.statements(), store.transactions())
}

#[tokio::test]
async fn a_callers_transaction_counts_its_statements_but_not_begin_or_commit() {
    on_each_database(|store, backend| async move {
        let before = counts(&store);
        let txn = store.begin().await?;
        txn.execute("CREATE TABLE app_counted (id BIGINT PRIMARY KEY)", [])
            .await?;
        txn.execute("INSERT INTO app_counted (id) VALUES ($1)", [7i64.into()])
            .await?;
        txn.commit().await?;
        assert_eq!(counts(&store), (before.0 + 2, before.1 + 1), "{backend}");

        // A failed statement is sent, so it counts; the rollback does not.
        let before = counts(&store);
        let txn = store.begin().await?;
        let failed = txn
            .execute("INSERT INTO app_counted (id) VALUES ($1)", [7i64.into()])
            .await;
        assert!(failed.is_err(), "{backend}: a duplicate key was accepted");
        txn.rollback().await?;
        assert_eq!(counts(&store), (before.0 + 1, before.1 + 1), "{backend}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn store_calls_move_the_counters_of_every_clone() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let clone = store.clone();
        let before = counts(&store);
        let created = create(&clone, &registered, request_for(&registered.template)).await;
        let (statements, transactions) = counts(&store);
        // Creation is one transaction of a few multi-row statements, never one per step; on
        // PostgreSQL the rows are one statement.
        assert_eq!(transactions, before.1 + 1, "{backend}");
        let creation = statements - before.0;
        let expected = if backend == "postgres" { 1..=1 } else { 2..=8 };
        assert!(
            expected.contains(&creation),
            "{backend}: creating a 4-step task took {creation} statements"
        );

        // Reading a task is one statement and no transaction.
        let before = counts(&clone);
        store.task(created.task_id).await?;
        assert_eq!(counts(&clone), (before.0 + 1, before.1), "{backend}");
        Ok(())
    })
    .await;
}
