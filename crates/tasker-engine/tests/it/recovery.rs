//! Crash recovery through leases, and several engines sharing one database.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, TaskState};
use tasker_engine::{Engine, EngineConfig, ManualClock, StepContext, StepHandler, SystemClock};
use tasker_persistence::testing::on_each_database;
use tasker_persistence::{ConnectOptions, Store};

use crate::support::*;

struct Hang;

#[async_trait::async_trait]
impl StepHandler for Hang {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.cancellation.cancelled().await;
        Err(StepError::retryable("interrupted"))
    }
}

const JOB: &str = "name: job\nstep_templates:\n  - name: work\n    handler_class: test::work\n  - name: report\n    handler_class: tasker::noop\n    depends_on_step: work\n";

#[tokio::test]
async fn a_claim_abandoned_by_a_dead_engine_runs_again_after_its_lease() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let crashing = registry_with("test::work", Arc::new(Hang));
        let first = engine_with(&db.store, &clock, crashing);
        let template = template(JOB);
        first
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let mut events = first.subscribe();
        let created = first.create_task(request(&template)).await.unwrap();
        first.start();
        wait_for(&mut events, |e| {
            e.name == tasker_engine::tasker_events::names::step::EXECUTION_REQUESTED
        })
        .await;
        first.shutdown().await; // the process dies mid-attempt: nothing is recorded

        let healthy = registry_with("test::work", Arc::new(tasker_engine::NoopHandler));
        let second = engine_with(&db.store, &clock, healthy);
        second
            .register_template(template.clone(), true)
            .await
            .unwrap();
        let mut seen = second.subscribe();
        second.start();
        second.wait_until_idle().await;
        assert_eq!(
            db.store.task(created.task_id).await.unwrap().state,
            TaskState::InProgress,
            "the lease still holds"
        );
        clock.advance(Duration::from_secs(31));
        let task = drive(&second, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        // The reclaiming engine publishes the abandoned attempt's failure, looked up from the
        // database, then runs the retry.
        let events = seen.drain();
        expect_test::expect![[r#"
            step.failed work#1
            observability.step.backoff work#1
            step.retry_requested work#2
            step.execution_requested work#2
            step.before_handle work#2
            step.completed work#2
            step.execution_requested report#1
            step.before_handle report#1
            step.completed report#1
            task.completed"#]]
        .assert_eq(&tasker_engine::testing::task_sequence(&events, created.task_id).join("\n"));
        let failed = events.iter().find(|e| e.name == "step.failed").unwrap();
        let tasker_engine::tasker_events::Payload::Step(p) = &failed.payload else {
            panic!("step payload")
        };
        assert_eq!(
            p.error.as_ref().and_then(|e| e.error_code.as_deref()),
            Some("LEASE_EXPIRED")
        );
        let work = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(work.attempts, 2, "the abandoned attempt counts");
        let history = db.store.step_transitions(work.step_id).await.unwrap();
        let failure = history.iter().find(|t| t.to_state == "error").unwrap();
        assert_eq!(failure.metadata["error_code"], "LEASE_EXPIRED");
        second.shutdown().await;
    })
    .await;
}

/// Fails the test if two engines ever run the same step at the same time.
struct Exclusive {
    running: Mutex<HashSet<String>>,
    overlaps: Mutex<usize>,
    runs: Mutex<usize>,
}

#[async_trait::async_trait]
impl StepHandler for Exclusive {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let key = step.step_id.to_string();
        if !self.running.lock().unwrap().insert(key.clone()) {
            *self.overlaps.lock().unwrap() += 1;
        }
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        self.running.lock().unwrap().remove(&key);
        *self.runs.lock().unwrap() += 1;
        Ok(json!({}))
    }
}

#[tokio::test]
async fn two_engines_on_one_database_never_run_the_same_attempt() {
    on_each_database(|db| async move {
        let shared = Arc::new(Exclusive { running: Mutex::default(), overlaps: Mutex::default(), runs: Mutex::default() });
        let config = EngineConfig { poll_interval: Duration::from_millis(20), max_concurrent_steps: 8, claim_batch_size: 4, ..config() };
        let mut engines = Vec::new();
        for name in ["engine-a", "engine-b"] {
            // Each engine has its own connection pool, as a separate process would.
            let store = Store::connect(&db.url, &ConnectOptions { max_connections: 4, ..Default::default() }).await.unwrap();
            let registry = registry_with("test::exclusive", shared.clone());
            let engine = Engine::builder(store).config(config.clone()).clock(Arc::new(SystemClock)).registry(registry).owner(name).build().unwrap();
            engines.push(engine);
        }
        let template = template(
            "name: shared\nstep_templates:\n  - name: a\n    handler_class: test::exclusive\n  - name: b\n    handler_class: test::exclusive\n    depends_on_step: a\n  \
             - name: c\n    handler_class: test::exclusive\n    depends_on_step: a\n  - name: d\n    handler_class: test::exclusive\n    depends_on_steps: [b, c]\n",
        );
        for engine in &engines {
            engine.register_template(template.clone(), true).await.unwrap();
        }
        let mut tasks = Vec::new();
        for _ in 0..15 {
            tasks.push(engines[0].create_task(request(&template)).await.unwrap().task_id);
        }
        for engine in &engines {
            engine.start();
        }
        for task in tasks {
            let record = tokio::time::timeout(Duration::from_secs(120), engines[1].wait_for_task(task)).await.expect("tasks finish").unwrap();
            assert_eq!(record.state, TaskState::Complete);
        }
        assert_eq!(*shared.overlaps.lock().unwrap(), 0, "an attempt ran on two engines at once");
        assert_eq!(*shared.runs.lock().unwrap(), 60, "every step ran exactly once");
        let owners: HashSet<String> = {
            let mut owners = HashSet::new();
            for task in db.store.list_tasks(&Default::default()).await.unwrap().items {
                for step in db.store.steps(task.task_id).await.unwrap() {
                    for t in db.store.step_transitions(step.step_id).await.unwrap() {
                        if let Some(owner) = t.metadata.get("claim_owner").and_then(Value::as_str) {
                            owners.insert(owner.to_owned());
                        }
                    }
                }
            }
            owners
        };
        assert!(owners.iter().all(|o| o == "engine-a" || o == "engine-b"), "{owners:?}");
        for engine in &engines {
            engine.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_idle_engine_reclaims_a_lease_that_expired_between_upkeeps_and_then_sleeps() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: lapse\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n",
        );
        engine
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        // A process that claimed the step with a 5 s lease and died.
        let ghost = db
            .store
            .claim_ready_steps("ghost", 10, Duration::from_secs(5), t0())
            .await
            .unwrap();
        assert_eq!(ghost.len(), 1);
        engine.start();
        engine.wait_until_idle().await;
        // Upkeep ran at t0 and runs next at t0 + 10 s (lease 30 s / 3); the lease expires at
        // t0 + 5 s, between the two.
        assert_eq!(
            engine.next_wake_up(),
            Some(t0() + Duration::from_secs(1)),
            "the poll interval"
        );
        clock.set(t0() + Duration::from_secs(6));
        engine.wait_until_idle().await;
        let step = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(
            step.attempts, 2,
            "the expired claim was reclaimed and run again at once"
        );
        assert_eq!(
            db.store.task(created.task_id).await.unwrap().state,
            TaskState::Complete
        );
        // Nothing left to do: the next wake-up is the poll interval away, not a millisecond.
        assert_eq!(engine.next_wake_up(), Some(t0() + Duration::from_secs(7)));
        engine.shutdown().await;
    })
    .await;
}
