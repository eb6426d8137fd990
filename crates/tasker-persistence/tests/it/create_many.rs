//! Group-committed creation: many tasks in one transaction, each with its own result.

use serde_json::json;
use tasker_domain::{DefaultIdentity, HashIdentity, TaskRequest, TaskState};
use tasker_persistence::{CreateTaskOptions, CreatedTask, Store, StoreError};

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
        // A catalogue entry that names a step row that does not exist: the steps' foreign key
        // fails inside the shared transaction.
        let mut broken = registered.clone();
        for id in broken.named_step_ids.values_mut() {
            *id += 1_000_000;
        }
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
