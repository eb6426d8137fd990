//! Events across processes: on PostgreSQL, an engine's task and step events reach a subscriber
//! of another engine (its own pool and bus) through LISTEN/NOTIFY, in order.

use std::sync::Arc;
use std::time::Duration;

use tasker_domain::TaskState;
use tasker_engine::tasker_events::names::task;
use tasker_engine::tasker_events::{Category, Interest};
use tasker_engine::testing::task_sequence;
use tasker_engine::{Engine, ManualClock};
use tasker_persistence::testing::{Backend, on_each_database};
use tasker_persistence::{ConnectOptions, LeaseClock, Store};

use crate::support::*;

/// A second engine on the same database with its own pool and bus: another process, as far as
/// the relay can tell.
async fn watcher(url: &str, clock: &ManualClock) -> Engine {
    let store = Store::connect(
        url,
        &ConnectOptions {
            max_connections: 4,
            // Leases on the test's manual clock, as on the first engine's store.
            lease_clock: LeaseClock::Caller,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Engine::builder(store)
        .config(config())
        .clock(Arc::new(clock.clone()))
        .owner("watcher")
        .build()
        .unwrap()
}

#[tokio::test]
async fn another_engine_sees_relayed_task_and_step_events_in_order() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let worker = engine(&db.store, &clock);
        if db.backend == Backend::Sqlite {
            assert!(
                worker.relay_events().await.unwrap().is_none(),
                "SQLite serves one process"
            );
            return;
        }
        let watcher = watcher(&db.url, &clock).await;
        // The watcher listens; the worker relays what it does.
        let watcher_relay = watcher
            .relay_events()
            .await
            .unwrap()
            .expect("PostgreSQL relays");
        let mut seen = watcher.events().stream(
            vec![
                Interest::Category(Category::Task),
                Interest::Category(Category::Step),
            ],
            1024,
        );
        let worker_relay = worker
            .relay_events()
            .await
            .unwrap()
            .expect("PostgreSQL relays");
        let mut local = worker.subscribe();

        let template = template(
            "name: relayed\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  \
             - name: b\n    handler_class: tasker::noop\n    depends_on_step: a\n",
        );
        worker
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let created = worker.create_task(request(&template)).await.unwrap();
        assert_eq!(
            drive(&worker, &clock, created.task_id).await.state,
            TaskState::Complete
        );

        let mut remote = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = seen.recv().await {
                let done =
                    event.task_id() == Some(created.task_id) && event.name == task::COMPLETED;
                remote.push(event);
                if done {
                    break;
                }
            }
        })
        .await
        .expect("the relayed task.completed arrives");
        assert_eq!(
            task_sequence(&remote, created.task_id),
            task_sequence(&local.drain(), created.task_id),
            "the same events in the same order"
        );
        assert!(
            remote
                .iter()
                .all(|e| e.relayed_from.as_deref() == Some(worker.owner()))
        );
        // The watcher can see the last NOTIFY before the worker's relay task, resumed after the
        // commit, counts it: let that task run.
        tokio::time::timeout(Duration::from_secs(30), async {
            while worker_relay.stats().sent() < 9 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the worker's relay counts what it sent");
        assert_eq!(worker_relay.stats().failed(), 0);
        assert!(watcher_relay.stats().received() >= 9);
        // The worker ignores its own echoes: nothing relayed was published on its bus twice.
        assert_eq!(worker_relay.stats().received(), 0);
        worker.shutdown().await;
    })
    .await;
}

/// A draining worker's last events still reach other processes: the relay keeps sending after
/// the engine shut down, and [`tasker_engine::Relay::stop`] sends what is queued before it ends.
#[tokio::test]
async fn events_published_while_stopping_are_relayed_by_stop() {
    on_each_database(|db| async move {
        if db.backend == Backend::Sqlite {
            return;
        }
        let clock = ManualClock::new(t0());
        let worker = engine(&db.store, &clock);
        let watcher = watcher(&db.url, &clock).await;
        let _watcher_relay = watcher.relay_events().await.unwrap().expect("relays");
        let mut seen = watcher
            .events()
            .stream(vec![Interest::Category(Category::Custom)], 64);
        let worker_relay = worker.relay_events().await.unwrap().expect("relays");
        for bus in [worker.events(), watcher.events()] {
            bus.register_custom("drain.last_words", None, "test")
                .unwrap();
        }
        // The worker shuts down first, as a drain does; its last events come after.
        worker.shutdown().await;
        for n in 0..3 {
            worker
                .events()
                .publish_custom(
                    "drain.last_words",
                    t0(),
                    tasker_engine::tasker_events::CustomPayload {
                        task_id: None,
                        step_id: None,
                        step_name: None,
                        labels: None,
                        data: serde_json::json!({ "n": n }),
                    },
                )
                .unwrap();
        }
        worker_relay.stop().await;
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while received.len() < 3 {
                let event = seen.recv().await.expect("the watcher's bus stays open");
                received.push(event);
            }
        })
        .await
        .expect("all three events published after shutdown are relayed");
        let numbers: Vec<_> = received
            .iter()
            .map(|e| match &e.payload {
                tasker_engine::tasker_events::Payload::Custom(custom) => custom.data["n"].clone(),
                other => panic!("not a custom event: {other:?}"),
            })
            .collect();
        assert_eq!(numbers, [0, 1, 2].map(|n| serde_json::json!(n)));
        assert!(
            received
                .iter()
                .all(|e| e.relayed_from.as_deref() == Some(worker.owner()))
        );
    })
    .await;
}
