//! Cancel, manual resolution, skip and task retry.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState};
use tasker_engine::tasker_events::names::step;
use tasker_engine::{ManualClock, Registry, StepContext, StepHandler};
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
        let registry = registry_with("test::wait", Arc::new(WaitsForCancel(tx)));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template("name: long\nstep_templates:\n  - name: wait\n    handler_class: test::wait\n  - name: after\n    handler_class: tasker::noop\n    depends_on_step: wait\n");
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        wait_for(&mut events, |e| e.name == step::EXECUTION_REQUESTED).await;
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

struct Hooks;

#[async_trait::async_trait]
impl tasker_engine::TaskHooks for Hooks {
    async fn establish_step_dependencies_and_defaults(
        &self,
        request: &mut tasker_domain::TaskRequest,
    ) -> Result<(), StepError> {
        if request.context.get("tier") == Some(&json!("premium")) {
            request.context["premium_processing"] = json!({"priority": "high"});
        }
        if request.context.get("tier") == Some(&json!("banned")) {
            return Err(StepError::permanent(
                "this customer tier may not check out",
                "TIER_BANNED",
            ));
        }
        Ok(())
    }

    async fn update_annotations(
        &self,
        task_id: tasker_domain::TaskId,
        final_state: TaskState,
    ) -> Vec<(String, Value)> {
        vec![(
            "audit".into(),
            json!({"task": task_id.to_string(), "final": final_state}),
        )]
    }
}

#[tokio::test]
async fn task_hooks_shape_the_request_and_annotate_at_finalization() {
    on_each_database(|db| async move {
        let registry = Arc::new(Registry::with_builtins());
        registry.register_task_hooks("CheckoutHooks", Arc::new(Hooks));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template("name: hooked\ntask_handler_class: CheckoutHooks\nstep_templates:\n  - name: a\n    handler_class: tasker::echo\n");
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template).context(json!({"tier": "premium"}))).await.unwrap();
        assert_eq!(created.context["premium_processing"]["priority"], "high");
        let err = engine.create_task(request(&template).context(json!({"tier": "banned"}))).await.unwrap_err();
        assert_eq!(err.to_string(), "default/hooked@0.1.0: the task hooks refused the request: this customer tier may not check out");
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let annotations = db.store.annotations(created.task_id).await.unwrap();
        assert_eq!(annotations, [("audit".to_owned(), json!({"task": created.task_id.to_string(), "final": "complete"}))]);
        engine.shutdown().await;
    })
    .await;
}

/// Blocks until released, tracking how many run at once.
struct Gate {
    running: std::sync::Mutex<usize>,
    peak: std::sync::Mutex<usize>,
    release: tokio::sync::Semaphore,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl StepHandler for Gate {
    async fn handle(&self, _: StepContext) -> Result<Value, StepError> {
        {
            let mut running = self.running.lock().unwrap();
            *running += 1;
            let mut peak = self.peak.lock().unwrap();
            *peak = (*peak).max(*running);
        }
        let _ = self.entered.send(());
        self.release.acquire().await.unwrap().forget();
        *self.running.lock().unwrap() -= 1;
        Ok(json!({}))
    }
}

#[tokio::test]
async fn the_per_task_limit_caps_concurrent_attempts_of_one_task() {
    on_each_database(|db| async move {
        let (entered, mut entries) = tokio::sync::mpsc::unbounded_channel();
        let gate = Arc::new(Gate {
            running: Default::default(),
            peak: Default::default(),
            release: tokio::sync::Semaphore::new(0),
            entered,
        });
        let registry = registry_with("test::gate", gate.clone());
        let clock = ManualClock::new(t0());
        let config = tasker_engine::EngineConfig {
            max_concurrent_steps_per_task: 2,
            ..config()
        };
        let engine = tasker_engine::Engine::builder(db.store.clone())
            .config(config)
            .clock(Arc::new(clock.clone()))
            .registry(registry)
            .build()
            .unwrap();
        let mut yaml = String::from("name: wide\nstep_templates:\n");
        for i in 0..5 {
            yaml.push_str(&format!("  - name: s{i}\n    handler_class: test::gate\n"));
        }
        let template = template(&yaml);
        engine
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        // Nothing finishes until released, so the first two to enter are the only two running.
        entries.recv().await.unwrap();
        entries.recv().await.unwrap();
        assert_eq!(*gate.running.lock().unwrap(), 2);
        for released in 1..=3 {
            gate.release.add_permits(1);
            entries.recv().await.unwrap();
            assert!(
                *gate.running.lock().unwrap() <= 2,
                "after {released} released"
            );
        }
        gate.release.add_permits(2);
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        assert_eq!(*gate.peak.lock().unwrap(), 2, "two at a time, never more");
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_step_stops_its_dependants_and_the_task_ends_in_error() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: partial\nstep_templates:\n  - name: wait\n    handler_class: tasker::fail\n    handler_config: { times: 1 }\n  \
             - name: after\n    handler_class: tasker::noop\n    depends_on_step: wait\n  - name: other\n    handler_class: tasker::noop\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        engine.wait_until_idle().await; // `wait` failed once and waits for its backoff
        let wait = created.steps[0].1;
        let err = engine.cancel_step(wait).await.unwrap_err();
        assert!(
            matches!(&err, tasker_engine::EngineError::ActionRefused(r) if r.action == "cancel"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("step {wait} (`wait`) is in error: only a step that is pending or in_progress can be cancelled")
        );
        let after = created.steps[1].1;
        engine.cancel_step(after).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error, "a cancelled step can never complete");
        let states: Vec<_> = db.store.steps(created.task_id).await.unwrap().into_iter().map(|s| s.state).collect();
        assert_eq!(states, [StepState::Complete, StepState::Cancelled, StepState::Complete]);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn retrying_a_task_in_error_only_because_of_a_cancelled_step_is_refused() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: cut\nstep_templates:\n  - name: first\n    handler_class: tasker::noop\n  \
             - name: second\n    handler_class: tasker::noop\n    depends_on_step: first\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.cancel_step(created.steps[1].1).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        let err = engine.retry_task(created.task_id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "task {} has no failed step to retry: it is in error because step `second` was cancelled, and a cancelled step is final; resolve the task by hand (resolve_task) instead",
                created.task_id
            )
        );
        let after = db.store.task(created.task_id).await.unwrap();
        assert_eq!(after.state, TaskState::Error, "a refused retry changes nothing");
        assert_eq!(after.updated_at, task.updated_at);
        assert_eq!(after.active_steps, 0);
        // The way out the error names.
        engine.resolve_task(created.task_id).await.unwrap();
        assert_eq!(db.store.task(created.task_id).await.unwrap().state, TaskState::ResolvedManually);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn operator_step_calls_lock_the_task_row_before_the_step_row() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: locks\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  \
             - name: b\n    handler_class: tasker::noop\n  - name: c\n    handler_class: tasker::noop\n    depends_on_step: a\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        let (a, b) = (created.steps[0].1, created.steps[1].1);
        if db.backend == tasker_persistence::testing::Backend::Postgres {
            // Another transaction holds the task row.
            let session = db.session().await;
            session.execute("BEGIN").await.unwrap();
            session
                .execute(&format!("SELECT task_id FROM tasker_tasks WHERE task_id = '{}' FOR UPDATE", created.task_id))
                .await
                .unwrap();
            let cancel = tokio::spawn({
                let engine = engine.clone();
                async move { engine.cancel_step(a).await }
            });
            assert_eq!(db.lock_waiters().await, 1, "the cancel waits for the task row");
            // While it waits it holds no step row: the task row comes first.
            session
                .execute(&format!("SELECT workflow_step_id FROM tasker_workflow_steps WHERE workflow_step_id = '{a}' FOR UPDATE NOWAIT"))
                .await
                .expect("the step row is free while the cancel waits for its task");
            session.execute("ROLLBACK").await.unwrap();
            cancel.await.unwrap().unwrap();
        } else {
            engine.cancel_step(a).await.unwrap();
        }
        engine.resolve_step(b, serde_json::json!({"by": "hand"})).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error, "a cancelled step can never complete");
        assert_eq!((task.done_steps, task.active_steps, task.blocked_steps), (1, 0, 0), "counters from locked rows");
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_transaction_rolled_back_by_a_deadlock_is_run_again() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template("name: dl\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        if db.backend == tasker_persistence::testing::Backend::Postgres {
            // The first task transition written after this fails as a deadlock victim would
            // (SQLSTATE 40P01); a sequence is not rolled back, so only the first one does.
            db.execute("CREATE SEQUENCE victims").await;
            db.execute(
                "CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF nextval('victims') = 1 THEN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END IF; \
                 RETURN NEW; END $$",
            )
            .await;
            db.execute(
                "CREATE TRIGGER deadlock_once BEFORE INSERT ON tasker_task_transitions \
                 FOR EACH ROW EXECUTE FUNCTION deadlock_once()",
            )
            .await;
        }
        assert_eq!(engine.cancel_task(created.task_id).await.unwrap(), TaskState::Cancelled);
        let task = db.store.task(created.task_id).await.unwrap();
        assert_eq!(task.state, TaskState::Cancelled);
        let steps = db.store.steps(created.task_id).await.unwrap();
        assert_eq!(steps[0].state, StepState::Cancelled);
        let history = db.store.task_transitions(created.task_id).await.unwrap();
        assert_eq!(history.iter().filter(|t| t.to_state == "cancelled").count(), 1, "written once");
    })
    .await;
}
