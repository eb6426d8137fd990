//! Group-committed creation: many tasks in one transaction, each with its own result.

use serde_json::json;
use tasker_domain::{DefaultIdentity, HashIdentity, TaskRequest, TaskState, TemplateId};
use tasker_persistence::{CreateTaskOptions, CreatedTask, RegisteredTemplate, Store, StoreError};
use tasker_template::TaskTemplate;

use crate::support::*;

/// The stored steps of `created`, by name in template order, with their parent counts.
async fn stored_steps(store: &Store, created: &CreatedTask) -> Vec<(String, u32)> {
    store
        .steps(created.task_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.unfinished_parents))
        .collect()
}

#[tokio::test]
async fn many_tasks_are_written_together_and_each_bad_request_fails_alone() {
    on_each_database(|store, backend| async move {
        let diamond = register(&store, &diamond()).await;
        let typed = register(
            &store,
            &template(
                "name: typed\nschema:\n  type: object\n  required: [n]\nstep_templates:\n  \
                 - name: a\n    handler_class: X\n    skippable: true\n  \
                 - name: b\n    handler_class: X\n    depends_on_steps: [a]\n    skippable: true\n",
            ),
        )
        .await;
        let plain = || CreateTaskOptions {
            now: t0(),
            identity: &DefaultIdentity,
            correlation_id: None,
            trace_parent: None,
        };
        let hashed = HashIdentity::new();
        let hashed = |now| CreateTaskOptions {
            now,
            identity: &hashed,
            correlation_id: None,
            trace_parent: None,
        };
        // One task exists already, by identity.
        let existing = request_for(&typed.template).context(json!({"n": 0}));
        store.create_task(&typed, &existing, &hashed(t0())).await?;
        assert_eq!(counts(&store).await, (1, 2));

        // 60 diamonds (more rows than one SQLite statement takes), and among them: an invalid
        // context, a bypass of an unknown step, the existing identity, the same new identity
        // twice, and a task whose every step is bypassed (complete at creation).
        let good = request_for(&diamond.template);
        let bad_context = request_for(&typed.template).context(json!({"m": 1}));
        let bad_bypass = request_for(&typed.template)
            .context(json!({"n": 1}))
            .bypass_steps(["zz"]);
        let twice = request_for(&typed.template).context(json!({"n": 2}));
        let bypassed = request_for(&typed.template)
            .context(json!({"n": 3}))
            .bypass_steps(["a", "b"]);
        let mut requests: Vec<(&_, &TaskRequest, CreateTaskOptions<'_>)> =
            (0..60).map(|_| (&diamond, &good, plain())).collect();
        requests.insert(3, (&typed, &bad_context, hashed(t0())));
        requests.insert(10, (&typed, &bad_bypass, hashed(t0())));
        requests.insert(20, (&typed, &existing, hashed(t0())));
        requests.insert(30, (&typed, &twice, hashed(at(1.0))));
        requests.insert(40, (&typed, &twice, hashed(at(1.0))));
        requests.insert(50, (&typed, &bypassed, hashed(at(2.0))));
        let results = store.create_tasks(&requests).await;
        assert_eq!(results.len(), 66, "{backend}");

        assert!(
            matches!(&results[3], Err(StoreError::InvalidContext(_))),
            "{backend}: {:?}",
            results[3]
        );
        assert_eq!(
            results[10].as_ref().unwrap_err().to_string(),
            "cannot bypass step `zz`: no such step"
        );
        assert!(
            matches!(&results[20], Err(StoreError::DuplicateTask { .. })),
            "{backend}: {:?}",
            results[20]
        );
        let first = results[30]
            .as_ref()
            .expect("the first of two identical requests");
        match &results[40] {
            Err(StoreError::DuplicateTask { identity_hash }) => {
                assert_eq!(identity_hash, &first.identity_hash)
            }
            other => panic!("{backend}: expected DuplicateTask, got {other:?}"),
        }
        let all_bypassed = results[50].as_ref().unwrap();
        assert_eq!(all_bypassed.state, TaskState::Complete);
        assert_eq!(all_bypassed.skipped, ["a", "b"]);
        let history: Vec<_> = store
            .task_transitions(all_bypassed.task_id)
            .await?
            .into_iter()
            .map(|t| (t.to_state, t.most_recent))
            .collect();
        assert_eq!(
            history,
            [
                ("in_progress".to_owned(), false),
                ("complete".to_owned(), true)
            ]
        );

        let created: Vec<&CreatedTask> = results
            .iter()
            .enumerate()
            .filter(|(i, _)| ![3, 10, 20, 30, 40, 50].contains(i))
            .map(|(_, r)| r.as_ref().unwrap())
            .collect();
        assert_eq!(created.len(), 60);
        let mut ids: Vec<_> = created.iter().map(|c| c.task_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 60, "every caller gets its own task");
        for task in &created {
            assert_eq!(task.state, TaskState::Pending);
            assert_eq!(
                stored_steps(&store, task).await,
                [
                    ("a".to_owned(), 0),
                    ("b".to_owned(), 1),
                    ("c".to_owned(), 1),
                    ("d".to_owned(), 2)
                ],
                "{backend}"
            );
            let stored = store.task(task.task_id).await?;
            assert_eq!(
                (stored.correlation_id.as_str(), stored.active_steps),
                (task.correlation_id.as_str(), 1)
            );
        }
        // 1 existing + 60 diamonds + one of the twins + the bypassed one; nothing else.
        assert_eq!(counts(&store).await, (63, 2 + 240 + 2 + 2), "{backend}");
        let claimed = store
            .claim_ready_steps("w", 1_000, std::time::Duration::from_secs(30), t0())
            .await?;
        assert_eq!(
            claimed.len(),
            61,
            "{backend}: each diamond's root and the twin's first step"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_task_the_database_refuses_fails_alone_and_the_others_are_stored() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        // A catalogue entry that names a template row that does not exist: the task's foreign
        // key fails inside the shared write.
        let mut broken = registered.clone();
        broken.named_task_id = TemplateId(registered.named_task_id.get() + 1_000_000);
        let request = request_for(&registered.template);
        let options = || CreateTaskOptions {
            now: t0(),
            identity: &DefaultIdentity,
            correlation_id: None,
            trace_parent: None,
        };
        let requests = vec![
            (&registered, &request, options()),
            (&broken, &request, options()),
            (&registered, &request, options()),
        ];
        let results = store.create_tasks(&requests).await;
        assert!(
            matches!(&results[1], Err(StoreError::Database(_))),
            "{backend}: {:?}",
            results[1]
        );
        for i in [0, 2] {
            let created = results[i].as_ref().unwrap();
            assert_eq!(stored_steps(&store, created).await.len(), 4, "{backend}");
        }
        assert_eq!(
            counts(&store).await,
            (2, 8),
            "{backend}: nothing of the refused task"
        );
        assert!(store.create_tasks(&[]).await.is_empty());
        Ok(())
    })
    .await;
}

/// Edges stored in all.
async fn edge_count(store: &Store) -> u64 {
    row_count(store, "tasker_workflow_step_edges", "name").await
}

/// A batch with no bypassed step (on PostgreSQL one statement writes it all, on SQLite one call
/// of three statements): a task whose identity exists, before the batch or earlier in it, is
/// reported and leaves no row, step or edge, and every other task is stored whole.
#[tokio::test]
async fn a_batch_reports_each_duplicate_and_stores_the_others_whole() {
    on_each_database(|store, backend| async move {
        let diamond = register(&store, &diamond()).await;
        let hashed = HashIdentity::new();
        let options = |now| CreateTaskOptions {
            now,
            identity: &hashed,
            correlation_id: None,
            trace_parent: None,
        };
        let existing = request_for(&diamond.template).context(json!({"n": 0}));
        store
            .create_task(&diamond, &existing, &options(t0()))
            .await?;
        let fresh: Vec<TaskRequest> = (1..=5)
            .map(|n| request_for(&diamond.template).context(json!({"n": n})))
            .collect();
        let mut requests: Vec<(&_, &TaskRequest, CreateTaskOptions<'_>)> = fresh
            .iter()
            .map(|request| (&diamond, request, options(at(1.0))))
            .collect();
        // The existing identity, and the first fresh request again.
        requests.insert(2, (&diamond, &existing, options(t0())));
        requests.push((&diamond, &fresh[0], options(at(1.0))));
        let results = store.create_tasks(&requests).await;
        assert_eq!(results.len(), 7, "{backend}");
        for duplicate in [2, 6] {
            assert!(
                matches!(&results[duplicate], Err(StoreError::DuplicateTask { .. })),
                "{backend}: {duplicate}: {:?}",
                results[duplicate]
            );
        }
        let first = results[0].as_ref().unwrap();
        match &results[6] {
            Err(StoreError::DuplicateTask { identity_hash }) => {
                assert_eq!(identity_hash, &first.identity_hash, "{backend}")
            }
            other => panic!("{backend}: expected DuplicateTask, got {other:?}"),
        }
        for i in [0, 1, 3, 4, 5] {
            let created = results[i].as_ref().unwrap();
            assert_eq!(
                stored_steps(&store, created).await,
                [
                    ("a".to_owned(), 0),
                    ("b".to_owned(), 1),
                    ("c".to_owned(), 1),
                    ("d".to_owned(), 2)
                ],
                "{backend}"
            );
        }
        // The existing task and five new ones; four edges per diamond.
        assert_eq!(counts(&store).await, (6, 24), "{backend}");
        assert_eq!(edge_count(&store).await, 24, "{backend}");
        Ok(())
    })
    .await;
}

/// A template with a context schema (a default) and two skippable steps, one after the other.
fn typed_template() -> TaskTemplate {
    template(
        "name: typed\nnamespace_name: shop\nversion: 2.1.0\nschema:\n  type: object\n  \
         properties:\n    n: { type: integer, default: 5 }\nstep_templates:\n  \
         - name: a\n    handler_class: X\n    skippable: true\n  \
         - name: b\n    handler_class: X\n    depends_on_steps: [a]\n    skippable: true\n  \
         - name: c\n    handler_class: X\n",
    )
}

/// Requests for [`typed_template`] that fill every column: nested JSON with a null, a number
/// past i64, text beyond ASCII, tags, a nanosecond request time; unbypassed, partly bypassed,
/// and with every skippable step bypassed.
fn typed_requests(typed: &RegisteredTemplate) -> [TaskRequest; 3] {
    let base = || {
        let mut request = request_for(&typed.template)
            .context(json!({"z": {"y": [1, 2.5, "ü"], "x": null}, "big": u64::MAX}));
        request.tags = vec!["vip".into(), "eu".into()];
        request.initiator = "alice".into();
        request.source_system = "shop-web".into();
        request.reason = "checkout".into();
        request.requested_at = Some(t0() + chrono::Duration::nanoseconds(1_234_567));
        request
    };
    [
        base(),
        base().bypass_steps(["a"]),
        base().bypass_steps(["a", "b"]),
    ]
}

/// What a prepared task says it will be once stored is what reading it back gives: pending,
/// partly bypassed, and complete at creation.
#[tokio::test]
async fn a_prepared_tasks_record_is_the_task_as_stored() {
    on_each_database(|store, backend| async move {
        let typed = register(&store, &typed_template()).await;
        let requests = typed_requests(&typed);
        for request in &requests {
            let options = CreateTaskOptions {
                now: at(3.5) + chrono::Duration::nanoseconds(999),
                identity: &DefaultIdentity,
                correlation_id: Some("order-1".into()),
                trace_parent: None,
            };
            let prepared = Store::prepare_task(&typed, request, &options)?;
            let record = prepared.record();
            let created = store.create_prepared(vec![prepared]).await.remove(0)?;
            assert_eq!(record.task_id, created.task_id);
            assert_eq!(record.context["n"], 5, "{backend}: the schema's default");
            assert_eq!(record, store.task(created.task_id).await?, "{backend}");
        }
        Ok(())
    })
    .await;
}

/// Rows of `table` in all: an UPDATE that changes nothing counts them.
async fn row_count(store: &Store, table: &str, column: &str) -> u64 {
    let txn = store.begin().await.unwrap();
    let rows = txn
        .execute(
            &format!("UPDATE {table} SET {column} = {column}"),
            Vec::<tasker_persistence::SqlValue>::new(),
        )
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    rows
}

/// Deleting a task deletes its steps, edges and history with it and leaves other tasks whole
/// (SQLite's foreign keys cascade; PostgreSQL, which checks no key on those rows, has a trigger).
#[tokio::test]
async fn deleting_a_task_deletes_its_steps_edges_and_history() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let gone = create(&store, &registered, request_for(&registered.template)).await;
        let kept = create(&store, &registered, request_for(&registered.template)).await;
        // Both tasks start and complete their first step: step and task history rows.
        let claimed = store
            .claim_ready_steps("w", 10, std::time::Duration::from_secs(60), t0())
            .await?;
        assert_eq!(claimed.len(), 2, "{backend}");
        let outcomes: Vec<_> = claimed.steps().map(|s| success(s, json!({}))).collect();
        store.record_outcomes("w", outcomes, at(1.0)).await?;
        let tables = [
            ("tasker_workflow_steps", "name"),
            ("tasker_workflow_step_edges", "name"),
            ("tasker_workflow_step_transitions", "sort_key"),
            ("tasker_task_transitions", "sort_key"),
        ];
        let mut before = Vec::new();
        for (table, column) in tables {
            before.push(row_count(&store, table, column).await);
        }
        assert_eq!(before, [8, 8, 4, 2], "{backend}: two tasks' rows");

        let txn = store.begin().await?;
        let deleted = txn
            .execute(
                "DELETE FROM tasker_tasks WHERE task_id = $1",
                [tasker_persistence::SqlValue::Uuid(Some(
                    gone.task_id.as_uuid(),
                ))],
            )
            .await?;
        txn.commit().await?;
        assert_eq!(deleted, 1, "{backend}");

        let mut after = Vec::new();
        for (table, column) in tables {
            after.push(row_count(&store, table, column).await);
        }
        assert_eq!(after, [4, 4, 2, 1], "{backend}: the kept task's rows");
        assert_eq!(stored_steps(&store, &kept).await.len(), 4, "{backend}");
        assert_eq!(
            store.task_transitions(kept.task_id).await?.len(),
            1,
            "{backend}"
        );
        Ok(())
    })
    .await;
}

/// A store that cannot reach its database fails a batch of new tasks as unavailable (callers
/// answer "try again later"), not as a statement the database refused, on either database.
#[tokio::test]
async fn a_batch_on_a_closed_store_fails_each_task_as_unavailable() {
    on_each_database(|store, backend| async move {
        let diamond = register(&store, &diamond()).await;
        let options = CreateTaskOptions {
            now: t0(),
            identity: &DefaultIdentity,
            correlation_id: None,
            trace_parent: None,
        };
        let prepared = (1..=3)
            .map(|n| {
                let request = request_for(&diamond.template).context(json!({"n": n}));
                Store::prepare_task(&diamond, &request, &options)
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.close().await;
        let results = store.create_prepared(prepared).await;
        assert_eq!(results.len(), 3, "{backend}");
        for result in results {
            let err = result.expect_err("the store is closed");
            assert!(err.is_unavailable(), "{backend}: {err:?}");
        }
        Ok(())
    })
    .await;
}

/// A batch written in the caller's transaction is stored as laid out, as a batch written on
/// its own is (on PostgreSQL the two send their rows in different forms: JSON in a
/// transaction, binary arrays on the pool).
#[tokio::test]
async fn a_batch_in_a_callers_transaction_is_stored_as_laid_out() {
    on_each_database(|store, backend| async move {
        let typed = register(&store, &typed_template()).await;
        let options = CreateTaskOptions {
            now: at(3.5),
            identity: &DefaultIdentity,
            correlation_id: Some("order-2".into()),
            trace_parent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let prepared = typed_requests(&typed)
            .iter()
            .map(|request| Store::prepare_task(&typed, request, &options))
            .collect::<Result<Vec<_>, _>>()?;
        let records: Vec<_> = prepared.iter().map(|p| p.record()).collect();
        let txn = store.begin().await?;
        let created = Store::create_prepared_in(&txn, prepared).await?;
        txn.commit().await?;
        assert_eq!(created.len(), 3, "{backend}");
        for (record, created) in records.iter().zip(created) {
            let created = created?;
            assert_eq!(record, &store.task(created.task_id).await?, "{backend}");
            assert_eq!(store.steps(created.task_id).await?.len(), 3, "{backend}");
        }
        Ok(())
    })
    .await;
}
