//! Concurrent `create_task` calls are written together, each caller getting its own task or
//! its own error.

use std::collections::HashSet;

use serde_json::json;
use tasker_engine::tasker_events::Payload;
use tasker_engine::{EngineError, ManualClock};
use tasker_persistence::StoreError;
use tasker_persistence::testing::on_each_database;

use crate::support::*;

const CALLERS: usize = 12;
const PER_CALLER: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creators_each_get_their_own_task_and_a_bad_request_fails_alone() {
    on_each_database(|db| async move {
        let backend = db.backend.as_str();
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let chain = template(
            "name: chain\nschema:\n  type: object\n  required: [caller]\n  properties:\n    caller: { type: integer }\n    \
             kind: { type: string, default: plain }\nstep_templates:\n  - name: s0\n    handler_class: tasker::noop\n  \
             - name: s1\n    handler_class: tasker::noop\n    depends_on_steps: [s0]\n  \
             - name: s2\n    handler_class: tasker::noop\n    depends_on_steps: [s1]\n  \
             - name: s3\n    handler_class: tasker::noop\n    depends_on_steps: [s2]\n",
        );
        engine.register_template(chain.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        // Every caller creates its tasks back to back; every third caller's fifth request has an
        // invalid context.
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let engine = engine.clone();
                let chain = chain.clone();
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    for k in 0..PER_CALLER {
                        let bad = caller % 3 == 0 && k == 4;
                        let context = if bad {
                            json!({"caller": "not a number", "k": k})
                        } else {
                            json!({"caller": caller, "k": k})
                        };
                        let result = engine.create_task(request(&chain).context(context.clone())).await;
                        outcomes.push((context, result));
                    }
                    outcomes
                })
            })
            .collect();
        let mut created = Vec::new();
        let mut refused = 0;
        for caller in callers {
            for (context, result) in caller.await.unwrap() {
                match result {
                    Ok(task) => {
                        let mut expected = context.clone();
                        expected["kind"] = json!("plain");
                        assert_eq!(task.context, expected, "{backend}: the caller's own task");
                        created.push(task);
                    }
                    Err(EngineError::Store(StoreError::InvalidContext(errors))) => {
                        assert!(context["caller"].is_string(), "{backend}: {context}");
                        assert_eq!(errors[0].path, "/caller");
                        refused += 1;
                    }
                    Err(other) => panic!("{backend}: unexpected error {other}"),
                }
            }
        }
        assert_eq!(refused, CALLERS / 3, "{backend}");
        assert_eq!(created.len(), CALLERS * PER_CALLER - CALLERS / 3);
        let ids: HashSet<_> = created.iter().map(|t| t.task_id).collect();
        assert_eq!(ids.len(), created.len(), "{backend}: no task is handed to two callers");
        for task in &created {
            let stored = db.store.task(task.task_id).await.unwrap();
            assert_eq!(stored.context, task.context, "{backend}");
            assert_eq!(stored.total_steps, 4);
            let steps = db.store.steps(task.task_id).await.unwrap();
            let stored_ids: Vec<_> = steps.iter().map(|s| s.step_id).collect();
            let created_ids: Vec<_> = task.steps.iter().map(|(_, id)| *id).collect();
            assert_eq!(stored_ids, created_ids, "{backend}");
        }
        let health = db.store.health_counts(t0()).await.unwrap();
        let tasks: u64 = health.tasks_by_state.values().sum();
        let steps: u64 = health.steps_by_state.values().sum();
        assert_eq!(
            (tasks, steps),
            (created.len() as u64, 4 * created.len() as u64),
            "{backend}: nothing stored for the refused requests"
        );
        let mut announced = HashSet::new();
        while let Some(event) = events.try_recv() {
            if let Payload::Task(p) = &event.payload
                && event.name == "task.initialize_requested"
            {
                assert_eq!(p.total_steps, Some(4));
                assert!(announced.insert(p.task_id), "{backend}: announced once");
            }
        }
        assert_eq!(announced, ids, "{backend}: one task.initialize_requested per created task");

        // The batched tasks run like any others.
        engine.start();
        engine.wait_until_idle().await;
        for task in &created {
            let stored = db.store.task(task.task_id).await.unwrap();
            assert_eq!(stored.state, tasker_domain::TaskState::Complete, "{backend}");
        }
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bulk_creation_answers_each_request_in_order_and_a_bad_one_fails_alone() {
    on_each_database(|db| async move {
        let backend = db.backend.as_str();
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let pair = template(
            "name: pair\nschema:\n  type: object\n  required: [n]\n  properties:\n    n: { type: integer }\n\
             step_templates:\n  - name: a\n    handler_class: tasker::noop\n  - name: b\n    handler_class: tasker::noop\n    depends_on_step: a\n",
        );
        engine.register_template(pair.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        // More than one transaction's worth, with a bad context and an unknown template inside.
        let total = 2 * tasker_engine::BULK_BATCH + 40;
        let unknown = tasker_engine::BULK_BATCH + 10;
        let requests: Vec<_> = (0..total)
            .map(|n| match n {
                7 => request(&pair).context(json!({"n": "seven"})),
                n if n == unknown => tasker_domain::TaskRequest::new("nope"),
                n => request(&pair).context(json!({"n": n})),
            })
            .collect();
        let results = engine.create_tasks(requests).await;
        assert_eq!(results.len(), total, "{backend}");
        for (n, result) in results.iter().enumerate() {
            match n {
                7 => assert!(
                    matches!(result, Err(EngineError::Store(StoreError::InvalidContext(_)))),
                    "{backend}: {result:?}"
                ),
                n if n == unknown => assert!(
                    matches!(result, Err(EngineError::UnknownTemplate { .. })),
                    "{backend}"
                ),
                n => {
                    let task = result.as_ref().unwrap();
                    assert_eq!(task.context["n"], json!(n), "{backend}: answers in request order");
                }
            }
        }
        let health = db.store.health_counts(t0()).await.unwrap();
        let stored: u64 = health.tasks_by_state.values().sum();
        assert_eq!(
            stored,
            (total - 2) as u64,
            "{backend}: nothing stored for the refused"
        );
        let announced = events
            .drain()
            .iter()
            .filter(|e| e.name == "task.initialize_requested")
            .count();
        assert_eq!(announced, total - 2, "{backend}");
        engine.start();
        engine.wait_until_idle().await;
        let health = db.store.health_counts(t0()).await.unwrap();
        assert_eq!(
            health.tasks_by_state.get("complete").copied(),
            Some((total - 2) as u64),
            "{backend}: the bulk-created tasks run"
        );
        engine.shutdown().await;
    })
    .await;
}
