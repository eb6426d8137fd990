//! What a hand-off costs: the coordinator's write transactions between two steps of a chain.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepId, StepState, TaskState};
use tasker_engine::{Engine, ManualClock, Registry, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;
use tokio::sync::Semaphore;

use crate::support::*;

/// Finishes an attempt for each permit the test adds.
struct Gate(Arc<Semaphore>);

#[async_trait::async_trait]
impl StepHandler for Gate {
    async fn handle(&self, _step: StepContext) -> Result<Value, StepError> {
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
        let registry = Arc::new(Registry::with_builtins());
        registry
            .register_step_handler("test::gate", Arc::new(Gate(gate.clone())))
            .unwrap();
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
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
