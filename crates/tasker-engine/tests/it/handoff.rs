//! What a hand-off costs: the coordinator's write transactions between two steps of a chain,
//! and none at all before a new task's first steps when the engine that creates it runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tasker_domain::{StepError, StepId, StepState, TaskState};
use tasker_engine::tasker_events::names::step;
use tasker_engine::testing::wait_for;
use tasker_engine::{Engine, EngineConfig, ManualClock, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;
use tokio::sync::Semaphore;

use crate::support::*;

/// Finishes an attempt for each permit the test adds; counts the attempts started.
struct Gate(Arc<Semaphore>, Arc<AtomicUsize>);

#[async_trait::async_trait]
impl StepHandler for Gate {
    async fn handle(&self, _step: StepContext) -> Result<Value, StepError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0
            .acquire()
            .await
            .expect("the gate stays open")
            .forget();
        Ok(json!({}))
    }
}

/// Waits (yielding to the engine) until `step` runs and the coordinator sleeps.
async fn asleep_while_running(engine: &Engine, step: StepId) {
    loop {
        let state = engine.store().step(step).await.unwrap().state;
        if state == StepState::InProgress && engine.next_wake_up().is_some() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_chain_hands_off_in_one_transaction_per_step_and_never_claims_in_vain() {
    on_each_database(|db| async move {
        let gate = Arc::new(Semaphore::new(0));
        let clock = ManualClock::new(t0());
        let engine = engine_with(
            &db.store,
            &clock,
            registry_with("test::gate", Arc::new(Gate(gate.clone(), Arc::default()))),
        );
        let t = template(
            "name: chain\nstep_templates:\n  \
             - name: a\n    handler_class: test::gate\n  \
             - name: b\n    handler_class: test::gate\n    depends_on_step: a\n  \
             - name: c\n    handler_class: test::gate\n    depends_on_step: b\n  \
             - name: d\n    handler_class: test::gate\n    depends_on_step: c\n",
        );
        engine.register_template(t.clone(), false).await.unwrap();
        let created = engine.create_task(request(&t)).await.unwrap();
        engine.start();
        asleep_while_running(&engine, created.steps[0].1).await;
        for (name, step) in &created.steps[1..] {
            let before = db.store.transactions();
            gate.add_permits(1);
            asleep_while_running(&engine, *step).await;
            // Recording the finished step and claiming `name` is one transaction; the pass
            // after it must not claim again while nothing new can be ready.
            assert_eq!(
                db.store.transactions() - before,
                1,
                "{}: the hand-off to {name}",
                db.backend
            );
        }
        gate.add_permits(1);
        let task = engine.wait_for_task(created.task_id).await.unwrap();
        assert_eq!(task.state, TaskState::Complete);
        engine.shutdown().await;
    })
    .await;
}

/// An engine running `test::gate` steps with `config`, the gate, and the count of attempts
/// started; and a chain `a → b` of them, registered.
async fn gated(
    store: &tasker_persistence::Store,
    config: EngineConfig,
) -> (
    Engine,
    Arc<Semaphore>,
    Arc<AtomicUsize>,
    tasker_template::TaskTemplate,
) {
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let registry = registry_with("test::gate", Arc::new(Gate(gate.clone(), started.clone())));
    let engine = engine_configured(store, &ManualClock::new(t0()), registry, config);
    let t = template(
        "name: pair\nstep_templates:\n  \
         - name: a\n    handler_class: test::gate\n  \
         - name: b\n    handler_class: test::gate\n    depends_on_step: a\n",
    );
    engine.register_template(t.clone(), false).await.unwrap();
    (engine, gate, started, t)
}

/// Starts `engine` and yields until its coordinator sleeps.
async fn start_and_settle(engine: &Engine) {
    engine.start();
    while engine.next_wake_up().is_none() {
        tokio::task::yield_now().await;
    }
}

/// A session of its own holding `table` in `EXCLUSIVE` mode (reads go on, writes wait) until
/// it commits.
async fn locked(
    db: &tasker_persistence::testing::TestDatabase,
    table: &str,
) -> tasker_persistence::testing::Session {
    let session = db.session().await;
    session.execute("BEGIN").await.unwrap();
    session
        .execute(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
        .await
        .unwrap();
    session
}

/// Yields to the engine until `count` attempts have started and the coordinator sleeps again.
async fn started_and_asleep(engine: &Engine, started: &AtomicUsize, count: usize) {
    while started.load(Ordering::SeqCst) < count || engine.next_wake_up().is_none() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_running_engine_claims_a_new_task_s_first_steps_in_the_creation_itself() {
    on_each_database(|db| async move {
        let (engine, gate, started, t) = gated(&db.store, config()).await;
        start_and_settle(&engine).await;
        let before = db.store.transactions();
        let created = engine.create_task(request(&t)).await.unwrap();
        // Claimed by the creation's write, before the coordinator ran again.
        let a = db.store.step(created.steps[0].1).await.unwrap();
        assert_eq!(
            (a.state, a.claim_owner.as_deref(), a.attempts),
            (StepState::InProgress, Some(engine.owner()), 1),
            "{}",
            db.backend
        );
        let task = db.store.task(created.task_id).await.unwrap();
        assert_eq!(task.state, TaskState::InProgress, "{}", db.backend);
        started_and_asleep(&engine, &started, 1).await;
        assert_eq!(
            db.store.transactions() - before,
            1,
            "{}: the creation alone; the coordinator ran its claim without one of its own",
            db.backend
        );
        gate.add_permits(2);
        let task = engine.wait_for_task(created.task_id).await.unwrap();
        assert_eq!(task.state, TaskState::Complete, "{}", db.backend);
        assert_eq!(started.load(Ordering::SeqCst), 2, "each step ran once");
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn creation_claims_nothing_beyond_the_engine_s_room_or_once_it_drains() {
    on_each_database(|db| async move {
        let config = EngineConfig {
            max_concurrent_steps: 1,
            ..config()
        };
        let (engine, gate, started, t) = gated(&db.store, config).await;
        // Not running yet: nothing is claimed at creation.
        let waiting = engine.create_task(request(&t)).await.unwrap();
        let a = db.store.step(waiting.steps[0].1).await.unwrap();
        assert_eq!(a.state, StepState::Pending, "{}", db.backend);
        engine.start();
        started_and_asleep(&engine, &started, 1).await;
        // The one slot is taken by the first task's step: the second task is left pending.
        let second = engine
            .create_task(request(&t).context(json!({"n": 2})))
            .await
            .unwrap();
        let a2 = db.store.step(second.steps[0].1).await.unwrap();
        assert_eq!(
            (a2.state, a2.claim_owner),
            (StepState::Pending, None),
            "{}",
            db.backend
        );
        assert_eq!(
            db.store.task(second.task_id).await.unwrap().state,
            TaskState::Pending
        );
        gate.add_permits(4);
        for id in [waiting.task_id, second.task_id] {
            let task = engine.wait_for_task(id).await.unwrap();
            assert_eq!(task.state, TaskState::Complete, "{}", db.backend);
        }
        assert_eq!(started.load(Ordering::SeqCst), 4);
        // A drained engine claims nothing at creation either: the task waits for any engine.
        engine.drain().await;
        let after = engine
            .create_task(request(&t).context(json!({"n": 3})))
            .await
            .unwrap();
        let a3 = db.store.step(after.steps[0].1).await.unwrap();
        assert_eq!(
            (a3.state, a3.claim_owner),
            (StepState::Pending, None),
            "{}",
            db.backend
        );
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_claim_made_as_the_engine_drains_is_given_back_without_using_an_attempt() {
    on_each_database(|db| async move {
        // The race needs a creation's write held back while the engine drains: a table lock,
        // which PostgreSQL has.
        if db.backend != tasker_persistence::testing::Backend::Postgres {
            return;
        }
        let (engine, _gate, _started, t) = gated(&db.store, config()).await;
        start_and_settle(&engine).await;
        // The creation claims (the coordinator takes claims), then waits to write.
        let session = locked(&db, "tasker_tasks").await;
        let creating = tokio::spawn({
            let engine = engine.clone();
            let request = request(&t);
            async move { engine.create_task(request).await }
        });
        assert_eq!(db.lock_waiters().await, 1, "the creation waits to write");
        // Meanwhile the engine drains and its coordinator stops: the claim reaches no one.
        engine.drain().await;
        session.execute("COMMIT").await.unwrap();
        let created = creating.await.unwrap().unwrap();
        // Given back at once: ready for any engine, its attempt not used.
        let a = db.store.step(created.steps[0].1).await.unwrap();
        assert_eq!(
            (a.state, a.claim_owner, a.attempts, a.lease_expires_at),
            (StepState::Pending, None, 0, None)
        );
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_outcome_recorded_as_a_listener_arrives_is_published_from_what_the_engine_knows() {
    on_each_database(|db| async move {
        // A listener must arrive while the outcome is being written: a table lock holds the
        // write back, which PostgreSQL has.
        if db.backend != tasker_persistence::testing::Backend::Postgres {
            return;
        }
        let (engine, gate, started, t) = gated(&db.store, config()).await;
        start_and_settle(&engine).await;
        // `a` runs, nobody listens.
        let created = engine.create_task(request(&t)).await.unwrap();
        started_and_asleep(&engine, &started, 1).await;
        let session = locked(&db, "tasker_workflow_steps").await;
        gate.add_permits(1);
        assert_eq!(
            db.lock_waiters().await,
            1,
            "a's outcome waits to be written"
        );
        // A listener arrives before the write commits.
        let mut events = engine.subscribe();
        let calls = db.store.calls();
        session.execute("COMMIT").await.unwrap();
        let done = wait_for(&mut events, |e| e.name == step::COMPLETED).await;
        assert_eq!(done.step_id(), Some(created.steps[0].1));
        started_and_asleep(&engine, &started, 2).await;
        // The hand-off is the only call: the event is built from what the engine knew of the
        // attempt, not read back from the store.
        assert_eq!(db.store.calls() - calls, 1, "store calls for a's hand-off");
        gate.add_permits(1);
        let task = engine.wait_for_task(created.task_id).await.unwrap();
        assert_eq!(task.state, TaskState::Complete);
        engine.shutdown().await;
    })
    .await;
}

/// Logs each attempt as (task, step) and succeeds.
struct Logged(Arc<std::sync::Mutex<Vec<(tasker_domain::TaskId, String)>>>);

#[async_trait::async_trait]
impl StepHandler for Logged {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        self.0
            .lock()
            .unwrap()
            .push((step.task_id, step.step_name.to_string()));
        Ok(json!({}))
    }
}

#[tokio::test]
async fn a_crowd_of_diamonds_in_a_small_engine_runs_each_step_once_after_its_parents() {
    on_each_database(|db| async move {
        // More ready than there is room for while outcomes come in: on PostgreSQL the claim
        // of the rest runs alongside each recording.
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let engine = engine_configured(
            &db.store,
            &ManualClock::new(t0()),
            registry_with("test::logged", Arc::new(Logged(log.clone()))),
            EngineConfig {
                max_concurrent_steps: 6,
                ..config()
            },
        );
        let t = template(
            "name: diamond\nstep_templates:\n  \
             - name: a\n    handler_class: test::logged\n  \
             - name: b\n    handler_class: test::logged\n    depends_on_step: a\n  \
             - name: c\n    handler_class: test::logged\n    depends_on_step: a\n  \
             - name: d\n    handler_class: test::logged\n    depends_on_steps: [b, c]\n",
        );
        engine.register_template(t.clone(), false).await.unwrap();
        let created: Vec<_> = engine
            .create_tasks((0..40).map(|_| request(&t)).collect())
            .await
            .into_iter()
            .map(|created| created.unwrap().task_id)
            .collect();
        engine.start();
        for task_id in &created {
            // A claim that never reached the coordinator would leave its task running.
            let task = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                engine.wait_for_task(*task_id),
            )
            .await
            .expect("every task finishes")
            .unwrap();
            assert_eq!(task.state, TaskState::Complete, "{}", db.backend);
            for step in db.store.steps(*task_id).await.unwrap() {
                assert_eq!(
                    step.attempts, 1,
                    "{}: {} of {task_id}",
                    db.backend, step.name
                );
            }
        }
        engine.shutdown().await;
        let log = log.lock().unwrap();
        for task_id in &created {
            let order: Vec<&str> = log
                .iter()
                .filter(|(task, _)| task == task_id)
                .map(|(_, step)| step.as_str())
                .collect();
            assert!(
                matches!(order[..], ["a", "b" | "c", "b" | "c", "d"]) && order[1] != order[2],
                "{}: {task_id} ran {order:?}",
                db.backend
            );
        }
    })
    .await;
}
