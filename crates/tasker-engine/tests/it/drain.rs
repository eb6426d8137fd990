//! Graceful shutdown: a draining engine claims nothing more, records what finishes within the
//! grace, and gives back the rest without using up attempts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState};
use tasker_engine::tasker_events::names::step;
use tasker_engine::{Clock, ManualClock, NoopHandler, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;
use tokio::sync::Notify;

use crate::support::*;

/// Finishes when the test says so.
struct WhenTold(Arc<Notify>);

#[async_trait::async_trait]
impl StepHandler for WhenTold {
    async fn handle(&self, _: StepContext) -> Result<Value, StepError> {
        self.0.notified().await;
        Ok(json!({"finished": true}))
    }
}

/// Runs until cancelled.
struct Stuck;

#[async_trait::async_trait]
impl StepHandler for Stuck {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.cancellation.cancelled().await;
        Err(StepError::retryable("stopped"))
    }
}

const TWO: &str = "name: two\nstep_templates:\n  - name: finishes\n    handler_class: test::told\n  \
                   - name: stuck\n    handler_class: test::stuck\n";

#[tokio::test]
async fn a_drain_records_what_finishes_and_gives_back_the_rest_without_using_an_attempt() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let told = Arc::new(Notify::new());
        let registry = registry_of([
            (
                "test::told",
                Arc::new(WhenTold(told.clone())) as Arc<dyn StepHandler>,
            ),
            ("test::stuck", Arc::new(Stuck)),
        ]);
        let first = engine_with(&db.store, &clock, registry);
        let template = template(TWO);
        first
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let mut events = first.subscribe();
        let created = first.create_task(request(&template)).await.unwrap();
        first.start();
        for _ in 0..2 {
            wait_for(&mut events, |e| e.name == step::BEFORE_HANDLE).await;
        }
        // The grace (30 s) runs from here, on the engine's clock.
        let draining = tokio::spawn(first.drain());
        told.notify_one();
        wait_for(&mut events, |e| e.name == step::COMPLETED).await;
        assert!(
            !draining.is_finished(),
            "`stuck` still runs within the grace"
        );
        clock.advance(Duration::from_secs(31));
        draining.await.unwrap();
        let steps = db.store.steps(created.task_id).await.unwrap();
        assert_eq!(
            (steps[0].state, steps[0].attempts),
            (StepState::Complete, 1),
            "recorded within the grace"
        );
        let stuck = &steps[1];
        assert_eq!(stuck.state, StepState::Pending, "given back, ready again");
        assert_eq!(
            stuck.attempts, 0,
            "the attempt count is what it was before the claim"
        );
        assert_eq!(stuck.claim_owner, None);
        assert!(stuck.next_attempt_at.is_some_and(|at| at <= clock.now()));
        let history = db.store.step_transitions(stuck.step_id).await.unwrap();
        assert_eq!(history.last().unwrap().to_state, "pending");
        assert_eq!(history.last().unwrap().metadata["reason"], "released");

        // Another engine runs it as its first attempt.
        let healthy = registry_of([
            ("test::told", Arc::new(NoopHandler) as Arc<dyn StepHandler>),
            ("test::stuck", Arc::new(NoopHandler)),
        ]);
        let second = engine_with(&db.store, &clock, healthy);
        second
            .register_template(template.clone(), true)
            .await
            .unwrap();
        let task = drive(&second, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let stuck = &db.store.steps(created.task_id).await.unwrap()[1];
        assert_eq!((stuck.state, stuck.attempts), (StepState::Complete, 1));
        second.shutdown().await;
    })
    .await;
}
