//! Listing, annotations, health counts, analytics, template lookup and migrations.

use std::time::Duration;

use serde_json::json;
use tasker_domain::TaskState;
use tasker_persistence::{ConnectOptions, StepOutcome, Store, TaskFilter};

use crate::support::*;

#[tokio::test]
async fn templates_resolve_latest_by_semver() {
    on_each_database(|store, _| async move {
        for version in ["1.2.0", "1.10.0", "1.9.3"] {
            let mut t = diamond();
            t.version = version.parse()?;
            register(&store, &t).await;
        }
        let latest = store.find_template("default", "diamond", None).await?;
        assert_eq!(latest.template.version.to_string(), "1.10.0");
        let exact = store
            .find_template("default", "diamond", Some(&"1.9.3".parse()?))
            .await?;
        assert_eq!(exact.template.version.to_string(), "1.9.3");
        assert_eq!(exact.named_step_ids.len(), 4);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tasks_list_filter_and_paginate() {
    on_each_database(|store, _| async move {
        let diamond = register(&store, &diamond()).await;
        let mut other = shape("other", &[("x", &[])], 3);
        other.namespace_name = "ops".into();
        let other = register(&store, &other).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                create(&store, &diamond, request_for(&diamond.template))
                    .await
                    .task_id,
            );
        }
        let ops = create(&store, &other, request_for(&other.template))
            .await
            .task_id;
        store
            .annotate_task(ids[1], "review", json!({"ticket": "T-1"}), t0())
            .await?;

        let page = store
            .list_tasks(&TaskFilter {
                namespace: Some("ops".into()),
                ..Default::default()
            })
            .await?;
        assert_eq!((page.total, page.items[0].task_id), (1, ops));
        let page = store
            .list_tasks(&TaskFilter {
                name: Some("diamond".into()),
                limit: Some(2),
                offset: Some(2),
                ..Default::default()
            })
            .await?;
        assert_eq!((page.total, page.items.len()), (3, 1));
        let annotated = TaskFilter {
            annotation: Some(("review".into(), "ticket".into(), json!("T-1"))),
            ..Default::default()
        };
        let page = store.list_tasks(&annotated).await?;
        assert_eq!(
            page.items.iter().map(|t| t.task_id).collect::<Vec<_>>(),
            [ids[1]]
        );
        let page = store
            .list_tasks(&TaskFilter {
                state: Some(TaskState::Complete),
                ..Default::default()
            })
            .await?;
        assert_eq!(page.total, 0);
        assert_eq!(
            store.annotations(ids[1]).await?,
            [("review".to_owned(), json!({"ticket": "T-1"}))]
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn health_counts_come_from_real_rows() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &shape("timed", &[("only", &[])], 1)).await;
        for (i, secs) in [2.0, 4.0, 6.0].into_iter().enumerate() {
            create(&store, &registered, request_for(&registered.template)).await;
            let claimed = store
                .claim_ready_steps("w", 1, Duration::from_secs(30), t0())
                .await?
                .into_steps();
            let outcome = if i == 2 {
                StepOutcome::Failure(tasker_persistence::StepFailure {
                    step_id: claimed[0].step_id,
                    attempt: 1,
                    error: tasker_domain::StepError::retryable("nope"),
                    retry_delay: Duration::ZERO,
                })
            } else {
                StepOutcome::Success {
                    step_id: claimed[0].step_id,
                    attempt: 1,
                    results: json!({}),
                }
            };
            store.record_outcomes("w", vec![outcome], at(secs)).await?;
        }
        create(&store, &registered, request_for(&registered.template)).await;
        let health = store.health_counts(t0()).await?;
        assert_eq!(health.tasks_by_state.get("complete"), Some(&2));
        assert_eq!(health.tasks_by_state.get("error"), Some(&1));
        assert_eq!(health.tasks_by_state.get("pending"), Some(&1));
        assert_eq!(health.ready_steps, 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn migrations_roll_down_and_up_again() {
    on_each_database_url(|url, _| async move {
        use tasker_migrations::{Migrator, MigratorTrait};
        let store = Store::connect(&url, &ConnectOptions::default()).await?;
        assert!(store.schema_status().await?.is_current());
        let migrator = sea_orm::Database::connect(url.as_str()).await?;
        Migrator::down(&migrator, None).await?;
        assert!(store.find_template("default", "x", None).await.is_err());
        assert!(!store.schema_status().await?.is_current());
        Migrator::up(&migrator, None).await?;
        assert!(store.schema_status().await?.is_current());
        register(&store, &diamond()).await;
        migrator.close().await?;
        store.close().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_backlog_counts_ready_steps_and_steps_in_backoff() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &shape("pair", &[("a", &[]), ("b", &[])], 3)).await;
        assert_eq!(
            store.backlog(t0()).await?,
            tasker_persistence::Backlog::default()
        );
        create(&store, &registered, request_for(&registered.template)).await;
        let backlog = store.backlog(t0()).await?;
        assert_eq!((backlog.ready, backlog.waiting), (2, 0));
        let claimed = store
            .claim_ready_steps("w", 1, Duration::from_secs(30), t0())
            .await?
            .into_steps();
        assert_eq!(
            store.backlog(t0()).await?.ready,
            1,
            "a claimed step is not ready"
        );
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: claimed[0].step_id,
            attempt: 1,
            error: tasker_domain::StepError::retryable("later"),
            retry_delay: Duration::from_secs(10),
        });
        store.record_outcomes("w", vec![failure], t0()).await?;
        let backlog = store.backlog(t0()).await?;
        assert_eq!((backlog.ready, backlog.waiting), (1, 1), "one in backoff");
        let backlog = store.backlog(at(20.0)).await?;
        assert_eq!(
            (backlog.ready, backlog.waiting),
            (2, 0),
            "the backoff is over"
        );
        let health = store.health_counts(t0()).await?;
        assert_eq!(
            (
                health.retrying_steps,
                health.exhausted_steps,
                health.retries
            ),
            (1, 0, 0),
            "one step waits for its second attempt"
        );
        let again = store
            .claim_ready_steps("w", 2, Duration::from_secs(30), at(20.0))
            .await?
            .into_steps();
        let retried = again
            .iter()
            .find(|s| s.step_id == claimed[0].step_id)
            .expect("the step in backoff is claimed again");
        assert_eq!(retried.attempt, 2);
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: retried.step_id,
            attempt: 2,
            error: tasker_domain::StepError::permanent("gave up", "GAVE_UP"),
            retry_delay: Duration::ZERO,
        });
        store.record_outcomes("w", vec![failure], at(21.0)).await?;
        let health = store.health_counts(at(21.0)).await?;
        assert_eq!(
            (
                health.retrying_steps,
                health.exhausted_steps,
                health.retries
            ),
            (0, 1, 1),
            "a permanent error leaves no attempt; the second attempt was a retry"
        );
        let pool = store.pool_status().expect("a pooled connection");
        assert!(pool.size >= 1 && pool.idle <= pool.size, "{pool:?}");
        assert_eq!(pool.in_use(), pool.size - pool.idle);
        assert!(pool.max >= pool.size && pool.max > 1, "{pool:?}");
        assert!((0.0..=1.0).contains(&pool.utilisation()), "{pool:?}");
        Ok(())
    })
    .await;
}
