//! A caller's own transaction: an application's writes and a task commit or roll back together.

use tasker_domain::{DefaultIdentity, HashIdentity, IdentityStrategy};
use tasker_persistence::{CreateTaskOptions, SqlValue, Store, StoreError};

use crate::support::*;

fn options(identity: &dyn IdentityStrategy) -> CreateTaskOptions<'_> {
    CreateTaskOptions {
        now: t0(),
        identity,
        correlation_id: None,
        trace_parent: None,
    }
}

/// The application's own table, created and committed in a transaction of its own.
async fn orders_table(store: &Store) -> anyhow::Result<()> {
    let txn = store.begin().await?;
    txn.execute(
        "CREATE TABLE app_orders (order_id BIGINT PRIMARY KEY, state TEXT NOT NULL, \
         task_id UUID, details JSONB)",
        [],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Rows of `app_orders` with this id and state: an UPDATE that changes nothing counts them.
async fn orders(store: &Store, order_id: i64, state: &str) -> anyhow::Result<u64> {
    let txn = store.begin().await?;
    let n = txn
        .execute(
            "UPDATE app_orders SET state = state WHERE order_id = $1 AND state = $2",
            [order_id.into(), state.into()],
        )
        .await?;
    txn.rollback().await?;
    Ok(n)
}

#[tokio::test]
async fn a_task_and_the_applications_own_rows_commit_together() {
    on_each_database(|store, backend| async move {
        assert_eq!(store.backend().as_str(), backend);
        orders_table(&store).await?;
        let registered = register(&store, &diamond()).await;
        let txn = store.begin().await?;
        assert_eq!(txn.backend(), store.backend());
        let created = Store::create_task_in(
            &txn,
            &registered,
            &request_for(&registered.template),
            &options(&DefaultIdentity),
        )
        .await?;
        let inserted = txn
            .execute(
                "INSERT INTO app_orders (order_id, state, task_id, details) VALUES ($1, $2, $3, $4)",
                [
                    42_i64.into(),
                    "submitted".into(),
                    created.task_id.into(),
                    serde_json::json!({"lines": 3}).into(),
                ],
            )
            .await?;
        assert_eq!(inserted, 1, "{backend}");
        txn.commit().await?;
        assert_eq!(store.task(created.task_id).await?.total_steps, 4);
        assert_eq!(orders(&store, 42, "submitted").await?, 1, "{backend}");
        assert_eq!(counts(&store).await, (1, 4));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_rolled_back_creation_leaves_nothing_behind() {
    on_each_database(|store, _| async move {
        orders_table(&store).await?;
        let registered = register(&store, &diamond()).await;
        let txn = store.begin().await?;
        txn.execute(
            "INSERT INTO app_orders (order_id, state) VALUES ($1, $2)",
            [7_i64.into(), "submitted".into()],
        )
        .await?;
        let created = Store::create_task_in(
            &txn,
            &registered,
            &request_for(&registered.template),
            &options(&DefaultIdentity),
        )
        .await?;
        txn.rollback().await?;
        assert!(matches!(
            store.task(created.task_id).await,
            Err(StoreError::TaskNotFound(_))
        ));
        assert_eq!(counts(&store).await, (0, 0));
        assert_eq!(orders(&store, 7, "submitted").await?, 0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_dropped_transaction_rolls_back_and_releases_what_it_held() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let identity = HashIdentity::new();
        let request = request_for(&registered.template);
        let txn = store.begin().await?;
        let dropped =
            Store::create_task_in(&txn, &registered, &request, &options(&identity)).await?;
        drop(txn);
        // The same identity again: refused as a duplicate had the first task been kept, and
        // blocked (PostgreSQL) or busy (SQLite) had its transaction been left open.
        let created = store
            .create_task(&registered, &request, &options(&identity))
            .await?;
        assert_eq!(created.identity_hash, dropped.identity_hash, "{backend}");
        assert!(matches!(
            store.task(dropped.task_id).await,
            Err(StoreError::TaskNotFound(_))
        ));
        assert_eq!(counts(&store).await, (1, 4));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_refused_statement_names_the_problem_and_the_transaction_rolls_back() {
    on_each_database(|store, backend| async move {
        orders_table(&store).await?;
        let registered = register(&store, &diamond()).await;
        let txn = store.begin().await?;
        let created = Store::create_task_in(
            &txn,
            &registered,
            &request_for(&registered.template),
            &options(&DefaultIdentity),
        )
        .await?;
        let err = txn
            .execute("INSERT INTO app_missing (id) VALUES ($1)", [1_i64.into()])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{backend}: {err}");
        assert!(err.to_string().contains("app_missing"), "{backend}: {err}");
        assert!(
            !err.is_transient(),
            "{backend}: a missing table is not transient"
        );
        txn.rollback().await?;
        assert!(matches!(
            store.task(created.task_id).await,
            Err(StoreError::TaskNotFound(_))
        ));
        assert_eq!(counts(&store).await, (0, 0));

        // A typed NULL reaches the database as NULL, and its constraint names the column.
        let txn = store.begin().await?;
        let err = txn
            .execute(
                "INSERT INTO app_orders (order_id, state) VALUES ($1, $2)",
                [1_i64.into(), SqlValue::Text(None)],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("state"), "{backend}: {err}");
        drop(txn);
        assert_eq!(orders(&store, 1, "submitted").await?, 0);
        Ok(())
    })
    .await;
}

/// On SQLite a store's writes run on one connection of their own, so the writes of one process
/// wait for each other in turn and never meet SQLite's lock: with no busy timeout at all, where
/// a second connection's write would fail at once as locked, concurrent creations all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_sqlite_concurrent_writes_of_one_store_queue_for_its_writer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("queue.db").display()
    );
    let store = Store::connect(
        &url,
        &tasker_persistence::ConnectOptions {
            sqlite_busy_timeout: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
    .await?;
    let registered = register(&store, &diamond()).await;
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..24 {
        let (store, registered) = (store.clone(), registered.clone());
        writers.spawn(async move {
            let request = request_for(&registered.template).context(serde_json::json!({ "n": n }));
            store
                .create_task(&registered, &request, &options(&DefaultIdentity))
                .await
        });
    }
    let mut created = std::collections::HashSet::new();
    while let Some(joined) = writers.join_next().await {
        created.insert(joined??.task_id);
    }
    assert_eq!(created.len(), 24);
    for task_id in created {
        assert_eq!(store.task(task_id).await?.total_steps, 4);
    }
    store.close().await;
    Ok(())
}

/// On SQLite the store checkpoints its write-ahead log itself, off the writer's path: after
/// writes its checkpointer runs with no caller asking (woken by a count of write transactions
/// or by its timer). PostgreSQL has none.
#[tokio::test]
async fn on_sqlite_the_store_checkpoints_its_wal_in_the_background() -> anyhow::Result<()> {
    on_each_database(|store, backend| async move {
        let Some(mut runs) = store.wal_checkpoints() else {
            assert_eq!(backend, "postgres");
            return Ok(());
        };
        let before = *runs.borrow_and_update();
        let registered = register(&store, &diamond()).await;
        for n in 0..50 {
            let request = request_for(&registered.template).context(serde_json::json!({ "n": n }));
            store
                .create_task(&registered, &request, &options(&DefaultIdentity))
                .await?;
        }
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            runs.wait_for(|n| *n > before),
        )
        .await??;
        Ok(())
    })
    .await;
    Ok(())
}
