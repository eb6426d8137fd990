//! Cancel, manual resolution, skip and task retry.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState};
use tasker_engine::{EngineEvent, ManualClock, Registry, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

/// Waits for cancellation and reports that it saw it.
struct WaitsForCancel(tokio::sync::mpsc::UnboundedSender<String>);

#[async_trait::async_trait]
impl StepHandler for WaitsForCancel {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.cancellation.cancelled().await;
        let _ = self.0.send(step.step_name.clone());
        Err(StepError::retryable("cancelled"))
    }
}

#[tokio::test]
async fn cancelling_mid_run_reaches_running_handlers_and_stops_the_task() {
    on_each_database(|db| async move {
        let (tx, mut saw_cancel) = tokio::sync::mpsc::unbounded_channel();
        let registry = Arc::new(Registry::with_builtins());
        registry.register_step_handler("test::wait", Arc::new(WaitsForCancel(tx))).unwrap();
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template("name: long\nstep_templates:\n  - name: wait\n    handler_class: test::wait\n  - name: after\n    handler_class: tasker::noop\n    depends_on_step: wait\n");
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        wait_for(&mut events, |e| matches!(e, EngineEvent::StepStarted { .. })).await;
        engine.cancel_task(created.task_id).await.unwrap();
        assert_eq!(saw_cancel.recv().await.as_deref(), Some("wait"), "the handler saw its token");
        engine.wait_until_idle().await;
        let task = db.store.task(created.task_id).await.unwrap();
        assert_eq!(task.state, TaskState::Cancelled);
        let states: Vec<_> = db.store.steps(created.task_id).await.unwrap().into_iter().map(|s| s.state).collect();
        assert_eq!(states, [StepState::Cancelled, StepState::Cancelled]);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn manual_resolution_unblocks_dependants_and_retry_resets_exhausted_steps() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: stuck\nstep_templates:\n  - name: broken\n    handler_class: tasker::fail\n    default_retry_limit: 1\n    handler_config: { times: 1, permanent: true }\n  \
             - name: next\n    handler_class: tasker::echo\n    depends_on_step: broken\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&engine, &clock, created.task_id).await.state, TaskState::Error);
        let broken = created.steps[0].1;
        engine.resolve_step(broken, json!({"fixed_by": "ops"})).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let next = &db.store.steps(created.task_id).await.unwrap()[1];
        assert_eq!(next.results.as_ref().unwrap()["parents"]["broken"], json!({"fixed_by": "ops"}));

        // A second task fails the same way; retrying it gives the step a fresh attempt, which
        // tasker::fail (one planned failure per attempt budget) fails again permanently.
        let again = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&engine, &clock, again.task_id).await.state, TaskState::Error);
        engine.retry_task(again.task_id).await.unwrap();
        let task = drive(&engine, &clock, again.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        assert_eq!(db.store.steps(again.task_id).await.unwrap()[0].attempts, 1, "attempts restart from zero");
        let history: Vec<_> = db.store.task_transitions(again.task_id).await.unwrap().into_iter().map(|t| t.to_state).collect();
        assert_eq!(history, ["in_progress", "error", "pending", "in_progress", "error"]);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bypassed_steps_are_skipped_and_their_dependants_run() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: optional\nstep_templates:\n  - name: enrich\n    handler_class: tasker::fail\n    skippable: true\n    handler_config: { times: 99, permanent: true }\n  \
             - name: store\n    handler_class: tasker::noop\n    depends_on_step: enrich\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template).bypass_steps(["enrich"])).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        assert_eq!(step_log(&drain(&mut events)), ["started:store#1", "completed:store#1"]);
        let enrich = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!((enrich.state, enrich.attempts), (StepState::ResolvedManually, 0));
        engine.shutdown().await;
    })
    .await;
}
