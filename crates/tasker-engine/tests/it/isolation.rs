//! User code cannot take the coordinator down: task hooks that panic, hang or call back into the
//! engine, and a coordinator that panics (restarted by its supervisor).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tasker_domain::{StepError, TaskId, TaskRequest, TaskState};
use tasker_engine::tasker_events::names::task;
use tasker_engine::tasker_events::{Category, Interest};
use tasker_engine::{
    Clock, Engine, HOOK_TIMEOUT, ManualClock, Registry, StepContext, StepHandler, TaskHooks,
};
use tasker_persistence::testing::on_each_database;
use tokio::sync::Notify;

use crate::support::*;

/// What the hooks of the `hooked` template do at finalization.
enum Finale {
    Panic,
    Hang(Arc<Notify>),
    /// Cancels the task in the cell, through the engine in the other cell.
    CancelOther(Arc<OnceLock<Engine>>, Arc<OnceLock<TaskId>>),
}

struct Hooks(Finale);

#[async_trait::async_trait]
impl TaskHooks for Hooks {
    async fn establish_step_dependencies_and_defaults(
        &self,
        request: &mut TaskRequest,
    ) -> Result<(), StepError> {
        if request.context.get("explode") == Some(&json!(true)) {
            panic!("creation hook exploded");
        }
        Ok(())
    }

    async fn update_annotations(&self, _: TaskId, state: TaskState) -> Vec<(String, Value)> {
        match &self.0 {
            Finale::Panic => panic!("finalization hook exploded"),
            Finale::Hang(entered) => {
                entered.notify_one();
                std::future::pending().await
            }
            Finale::CancelOther(engine, other) => {
                let engine = engine.get().expect("the engine is set");
                let other = *other.get().expect("the other task is set");
                let cancelled = engine.cancel_task(other).await.map(|s| s.to_string());
                vec![(
                    "cancelled_other".into(),
                    json!({"by": state, "result": cancelled.ok()}),
                )]
            }
        }
    }
}

/// Never finishes: keeps its task in progress.
struct Forever;

#[async_trait::async_trait]
impl StepHandler for Forever {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.cancellation.cancelled().await;
        Err(StepError::retryable("cancelled"))
    }
}

fn engine_with_hooks(
    db_store: &tasker_persistence::Store,
    clock: &ManualClock,
    finale: Finale,
) -> (
    Engine,
    tasker_template::TaskTemplate,
    tasker_template::TaskTemplate,
) {
    let registry = Arc::new(Registry::with_builtins());
    registry.register_task_hooks("Hooks", Arc::new(Hooks(finale)));
    registry.replace_step_handler("Forever", Arc::new(Forever));
    let engine = engine_with(db_store, clock, registry);
    let hooked = template(
        "name: hooked\ntask_handler_class: Hooks\nstep_templates:\n  - name: a\n    handler_class: tasker::echo\n",
    );
    let plain =
        template("name: plain\nstep_templates:\n  - name: a\n    handler_class: tasker::echo\n");
    (engine, hooked, plain)
}

/// Waits for `task_id`'s final task event on `events`.
async fn final_event(events: &mut tasker_engine::tasker_events::EventStream, task_id: TaskId) {
    while let Some(event) = events.recv().await {
        if event.task_id() == Some(task_id)
            && matches!(
                &*event.name,
                task::COMPLETED | task::FAILED | task::CANCELLED
            )
        {
            return;
        }
    }
    panic!("the event stream ended before task {task_id} finished");
}

#[tokio::test]
async fn a_panicking_creation_hook_refuses_the_request_and_stores_nothing() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let (engine, hooked, _) = engine_with_hooks(&db.store, &clock, Finale::Panic);
        engine
            .register_template(hooked.clone(), false)
            .await
            .unwrap();
        let err = engine
            .create_task(request(&hooked).context(json!({"explode": true})))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "default/hooked@0.1.0: the task hooks refused the request: the \
             establish_step_dependencies_and_defaults hook panicked: creation hook exploded"
        );
        let stored = db
            .session()
            .await
            .count("SELECT COUNT(*) AS n FROM tasker_tasks")
            .await
            .unwrap();
        assert_eq!(stored, 0, "nothing stored");
    })
    .await;
}

#[tokio::test]
async fn a_panicking_finalization_hook_stores_nothing_and_the_engine_goes_on() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let (engine, hooked, plain) = engine_with_hooks(&db.store, &clock, Finale::Panic);
        engine
            .register_template(hooked.clone(), false)
            .await
            .unwrap();
        engine
            .register_template(plain.clone(), false)
            .await
            .unwrap();
        let first = engine.create_task(request(&hooked)).await.unwrap();
        assert_eq!(
            drive(&engine, &clock, first.task_id).await.state,
            TaskState::Complete
        );
        assert!(
            db.store
                .annotations(first.task_id)
                .await
                .unwrap()
                .is_empty()
        );
        let second = engine.create_task(request(&plain)).await.unwrap();
        assert_eq!(
            drive(&engine, &clock, second.task_id).await.state,
            TaskState::Complete
        );
        assert_eq!(engine.coordinator_restarts(), 0);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hanging_finalization_hook_stalls_nothing_and_times_out() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let entered = Arc::new(Notify::new());
        let (engine, hooked, plain) =
            engine_with_hooks(&db.store, &clock, Finale::Hang(entered.clone()));
        engine
            .register_template(hooked.clone(), false)
            .await
            .unwrap();
        engine
            .register_template(plain.clone(), false)
            .await
            .unwrap();
        let mut events = engine
            .events()
            .stream(vec![Interest::Category(Category::Task)], 64);
        engine.start();
        let stuck = engine.create_task(request(&hooked)).await.unwrap();
        final_event(&mut events, stuck.task_id).await;
        entered.notified().await;
        // The hook hangs; the coordinator still runs another task to the end.
        let other = engine.create_task(request(&plain)).await.unwrap();
        final_event(&mut events, other.task_id).await;
        assert_eq!(
            db.store.task(other.task_id).await.unwrap().state,
            TaskState::Complete
        );
        // Once the hook's time is up, waiting for its task returns, with no annotation.
        clock.advance(HOOK_TIMEOUT);
        let finished = engine.wait_for_task(stuck.task_id).await.unwrap();
        assert_eq!(finished.state, TaskState::Complete);
        assert!(
            db.store
                .annotations(stuck.task_id)
                .await
                .unwrap()
                .is_empty()
        );
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_finalization_hook_may_call_the_engine_without_deadlocking() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let cell = Arc::new(OnceLock::new());
        let other = Arc::new(OnceLock::new());
        let (engine, hooked, _) = engine_with_hooks(
            &db.store,
            &clock,
            Finale::CancelOther(cell.clone(), other.clone()),
        );
        cell.set(engine.clone()).ok();
        let forever =
            template("name: forever\nstep_templates:\n  - name: a\n    handler_class: Forever\n");
        engine
            .register_template(hooked.clone(), false)
            .await
            .unwrap();
        engine
            .register_template(forever.clone(), false)
            .await
            .unwrap();
        let blocked = engine.create_task(request(&forever)).await.unwrap();
        other.set(blocked.task_id).ok();
        let first = engine.create_task(request(&hooked)).await.unwrap();
        engine.start();
        // The hook runs after the coordinator's commit and cancels the other task through an
        // operator call, which takes the event-order gate the coordinator holds while it records.
        let done = engine.wait_for_task(first.task_id).await.unwrap();
        assert_eq!(done.state, TaskState::Complete);
        assert_eq!(
            db.store.annotations(first.task_id).await.unwrap(),
            [(
                "cancelled_other".to_owned(),
                json!({"by": "complete", "result": "cancelled"})
            )]
        );
        assert_eq!(
            engine.wait_for_task(blocked.task_id).await.unwrap().state,
            TaskState::Cancelled
        );
        engine.shutdown().await;
    })
    .await;
}

/// A manual clock that panics once, on the first `now()` after it is armed.
struct PanickingClock {
    clock: ManualClock,
    armed: std::sync::atomic::AtomicBool,
    fired: Notify,
}

#[async_trait::async_trait]
impl Clock for PanickingClock {
    fn now(&self) -> DateTime<Utc> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.fired.notify_one();
            panic!("the clock broke");
        }
        self.clock.now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        self.clock.sleep_until(at).await;
    }
}

#[tokio::test]
async fn a_coordinator_that_panics_is_restarted() {
    on_each_database(|db| async move {
        let manual = ManualClock::new(t0());
        let clock = Arc::new(PanickingClock {
            clock: manual.clone(),
            armed: false.into(),
            fired: Notify::new(),
        });
        let engine = Engine::builder(db.store.clone())
            .config(config())
            .clock(clock.clone())
            .random(|| 0.5)
            .build()
            .unwrap();
        let plain = template(
            "name: plain\nstep_templates:\n  - name: a\n    handler_class: tasker::echo\n",
        );
        engine
            .register_template(plain.clone(), false)
            .await
            .unwrap();
        engine.start();
        engine.wait_until_idle().await;
        // The idle coordinator is the only caller of the clock: waking it makes it panic.
        clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        manual.advance(Duration::from_secs(1));
        clock.fired.notified().await;
        let task = engine.create_task(request(&plain)).await.unwrap();
        assert_eq!(
            drive(&engine, &manual, task.task_id).await.state,
            TaskState::Complete
        );
        assert_eq!(engine.coordinator_restarts(), 1);
        assert!(engine.is_coordinating());
        engine.shutdown().await;
    })
    .await;
}
