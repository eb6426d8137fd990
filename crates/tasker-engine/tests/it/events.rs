//! Event-sequence snapshots: the exact ordered events of one task for each kind of workflow,
//! on both databases, and custom events published by handlers: each occurrence published once, under exactly
//! the name subscribed to, with YAML declarations counting as registrations.
//!
//! Where steps run concurrently (the diamond) their relative order is not fixed, so that
//! snapshot shows the task's own events in order and each step's events in order, and the
//! test checks the dependency order between steps separately.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tasker_domain::{StepError, TaskState};
use tasker_engine::tasker_events::names::{step, task};
use tasker_engine::tasker_events::{Event, EventBus, Interest, Payload, Subscriber};
use tasker_engine::testing::task_sequence;
use tasker_engine::{Engine, EngineConfig, ManualClock, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

/// An engine on `bus`. Operator calls publish from the caller after their commit, so on a
/// running engine the coordinator may publish the claims they release first; the operator
/// sequences below therefore stop the engine that ran the task and make the call on a second,
/// not yet started engine sharing its bus, which fixes the order.
fn engine_on(
    db: &tasker_persistence::testing::TestDatabase,
    clock: &ManualClock,
    bus: &EventBus,
) -> Engine {
    Engine::builder(db.store.clone())
        .config(config())
        .clock(Arc::new(clock.clone()))
        .random(|| 0.5)
        .bus(bus.clone())
        .build()
        .unwrap()
}

fn sequence(events: &[Arc<Event>], task_id: tasker_domain::TaskId) -> String {
    task_sequence(events, task_id).join("\n")
}

/// Task events in order, then each step's events in order.
fn grouped(events: &[Arc<Event>], task_id: tasker_domain::TaskId) -> String {
    let mut task_events = Vec::new();
    let mut steps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.task_id() == Some(task_id)) {
        match event.step_name() {
            Some(step) => steps.entry(step.to_owned()).or_default().push(format!(
                "{}#{}",
                event.name,
                event.attempt().unwrap_or(0)
            )),
            None => task_events.push(event.name.to_string()),
        }
    }
    let mut out = vec![format!("task: {}", task_events.join(", "))];
    for (step, events) in steps {
        out.push(format!("{step}: {}", events.join(", ")));
    }
    out.join("\n")
}

#[tokio::test]
async fn linear_workflow_events_in_order() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: linear\nnamespace_name: shop\nversion: 1.2.0\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  \
             - name: b\n    handler_class: tasker::noop\n    depends_on_step: a\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&engine, &clock, created.task_id).await.state, TaskState::Complete);
        let events = events.drain();
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested a#1
            step.before_handle a#1
            step.completed a#1
            step.execution_requested b#1
            step.before_handle b#1
            step.completed b#1
            task.completed"#]]
        .assert_eq(&sequence(&events, created.task_id));
        // Payloads carry the template, ids, attempt, correlation id and durations.
        let completed = events.iter().find(|e| e.name == task::COMPLETED).unwrap();
        let Payload::Task(p) = &completed.payload else { panic!("task payload") };
        assert_eq!((&*p.labels.namespace, &*p.labels.task_name, &*p.labels.version), ("shop", "linear", "1.2.0"));
        assert_eq!(&*p.labels.correlation_id, created.correlation_id.as_str());
        assert_eq!((p.from_state, p.state), (Some(TaskState::InProgress), TaskState::Complete));
        assert!(p.duration_ms.is_some());
        let step_done = events.iter().find(|e| e.name == step::COMPLETED).unwrap();
        let Payload::Step(s) = &step_done.payload else { panic!("step payload") };
        assert_eq!((s.step_id, s.attempt, s.retry_limit), (created.steps[0].1, 1, 3));
        assert_eq!(s.duration_ms, Some(0.0), "the manual clock did not move during the attempt");
        // The coordinator's own events name no task.
        assert!(events.iter().any(|e| e.name == "workflow.viable_steps_discovered"));
        assert!(events.iter().any(|e| e.name == "workflow.steps_execution_completed"));
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn diamond_with_a_retry_events_in_order() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: diamond\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  \
             - name: b\n    handler_class: tasker::fail\n    depends_on_step: a\n    handler_config: { times: 1 }\n  \
             - name: c\n    handler_class: tasker::noop\n    depends_on_step: a\n  \
             - name: d\n    handler_class: tasker::noop\n    depends_on_steps: [b, c]\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&engine, &clock, created.task_id).await.state, TaskState::Complete);
        let events = events.drain();
        expect_test::expect![[r#"
            task: task.initialize_requested, task.start_requested, task.completed
            a: step.execution_requested#1, step.before_handle#1, step.completed#1
            b: step.execution_requested#1, step.before_handle#1, step.failed#1, observability.step.backoff#1, step.retry_requested#2, step.execution_requested#2, step.before_handle#2, step.completed#2
            c: step.execution_requested#1, step.before_handle#1, step.completed#1
            d: step.execution_requested#1, step.before_handle#1, step.completed#1"#]]
        .assert_eq(&grouped(&events, created.task_id));
        let lines = task_sequence(&events, created.task_id);
        let at = |line: &str| lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("{line} in {lines:#?}"));
        assert!(at("step.completed a#1") < at("step.execution_requested b#1"));
        assert!(at("step.completed a#1") < at("step.execution_requested c#1"));
        assert!(at("step.completed b#2") < at("step.execution_requested d#1"));
        assert!(at("step.completed c#1") < at("step.execution_requested d#1"));
        assert!(at("step.completed d#1") < at("task.completed"));
        assert_eq!(lines.first().map(String::as_str), Some("task.initialize_requested"));
        assert_eq!(lines.last().map(String::as_str), Some("task.completed"));
        let failed = events.iter().find(|e| e.name == step::FAILED).unwrap();
        let Payload::Step(p) = &failed.payload else { panic!("step payload") };
        assert_eq!(p.error.as_ref().and_then(|e| e.error_code.as_deref()), Some("PLANNED_FAILURE"));
        assert_eq!(p.next_attempt_at, Some(t0() + std::time::Duration::from_secs(1)), "backoff base 1 s");
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn permanent_failure_and_exhausted_retries_events_in_order() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let permanent = template(
            "name: permanent\nstep_templates:\n  - name: charge\n    handler_class: tasker::fail\n    handler_config: { times: 9, permanent: true }\n  \
             - name: ship\n    handler_class: tasker::noop\n    depends_on_step: charge\n",
        );
        let exhausted = template(
            "name: exhausted\nstep_templates:\n  - name: flaky\n    handler_class: tasker::fail\n    default_retry_limit: 2\n    handler_config: { times: 9 }\n",
        );
        engine.register_template(permanent.clone(), false).await.unwrap();
        engine.register_template(exhausted.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let first = engine.create_task(request(&permanent)).await.unwrap();
        assert_eq!(drive(&engine, &clock, first.task_id).await.state, TaskState::Error);
        let second = engine.create_task(request(&exhausted)).await.unwrap();
        assert_eq!(drive(&engine, &clock, second.task_id).await.state, TaskState::Error);
        let events = events.drain();
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested charge#1
            step.before_handle charge#1
            step.failed charge#1
            task.failed"#]]
        .assert_eq(&sequence(&events, first.task_id));
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested flaky#1
            step.before_handle flaky#1
            step.failed flaky#1
            observability.step.backoff flaky#1
            step.retry_requested flaky#2
            step.execution_requested flaky#2
            step.before_handle flaky#2
            step.failed flaky#2
            observability.step.max_retries_reached flaky#2
            task.failed"#]]
        .assert_eq(&sequence(&events, second.task_id));
        engine.shutdown().await;
    })
    .await;
}

/// Waits for cancellation.
struct WaitsForCancel;

#[async_trait::async_trait]
impl StepHandler for WaitsForCancel {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.cancellation.cancelled().await;
        Err(StepError::retryable("cancelled"))
    }
}

#[tokio::test]
async fn cancel_events_in_order() {
    on_each_database(|db| async move {
        let registry = registry_with("test::wait", Arc::new(WaitsForCancel));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template(
            "name: long\nstep_templates:\n  - name: wait\n    handler_class: test::wait\n  \
             - name: after\n    handler_class: tasker::noop\n    depends_on_step: wait\n",
        );
        engine
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let mut progress = engine.subscribe();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        wait_for(&mut progress, |e| e.name == "step.before_handle").await;
        engine.cancel_task(created.task_id).await.unwrap();
        engine.wait_until_idle().await;
        let all = events.drain();
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested wait#1
            step.before_handle wait#1
            task.cancelled
            step.cancelled wait#1
            step.cancelled after#0"#]]
        .assert_eq(&sequence(&all, created.task_id));
        let step_cancelled = all.iter().find(|e| e.name == step::CANCELLED).unwrap();
        let Payload::Step(s) = &step_cancelled.payload else {
            panic!("step payload")
        };
        assert_eq!(s.from_state, Some(tasker_domain::StepState::InProgress));
        let cancelled = all.iter().find(|e| e.name == task::CANCELLED).unwrap();
        let Payload::Task(p) = &cancelled.payload else {
            panic!("task payload")
        };
        assert_eq!(
            (p.from_state, p.reason.as_deref()),
            (Some(TaskState::InProgress), Some("cancel_requested"))
        );
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn manual_resolution_events_in_order() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let bus = EventBus::new();
        let first = engine_on(&db, &clock, &bus);
        let template = template(
            "name: stuck\nstep_templates:\n  - name: broken\n    handler_class: tasker::fail\n    default_retry_limit: 1\n    handler_config: { times: 1, permanent: true }\n  \
             - name: next\n    handler_class: tasker::noop\n    depends_on_step: broken\n",
        );
        first.register_template(template.clone(), false).await.unwrap();
        let mut events = first.subscribe();
        let created = first.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&first, &clock, created.task_id).await.state, TaskState::Error);
        first.shutdown().await;
        let engine = engine_on(&db, &clock, &bus);
        engine.resolve_step(created.steps[0].1, json!({"fixed_by": "ops"})).await.unwrap();
        assert_eq!(drive(&engine, &clock, created.task_id).await.state, TaskState::Complete);
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested broken#1
            step.before_handle broken#1
            step.failed broken#1
            task.failed
            step.resolved_manually broken#1
            task.retry_requested
            task.start_requested
            step.execution_requested next#1
            step.before_handle next#1
            step.completed next#1
            task.completed"#]]
        .assert_eq(&sequence(&events.drain(), created.task_id));
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn skip_events_in_order() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: optional\nstep_templates:\n  - name: enrich\n    handler_class: tasker::fail\n    skippable: true\n  \
             - name: store\n    handler_class: tasker::noop\n    depends_on_step: enrich\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template).bypass_steps(["enrich"])).await.unwrap();
        assert_eq!(drive(&engine, &clock, created.task_id).await.state, TaskState::Complete);
        expect_test::expect![[r#"
            task.initialize_requested
            observability.step.skip enrich#0
            task.start_requested
            step.execution_requested store#1
            step.before_handle store#1
            step.completed store#1
            task.completed"#]]
        .assert_eq(&sequence(&events.drain(), created.task_id));
        engine.shutdown().await;
    })
    .await;
}

/// Publishes the template's custom event, then one nobody declared.
struct Fulfil;

#[async_trait::async_trait]
impl StepHandler for Fulfil {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.events
            .publish("orders.fulfilled", json!({"order": 7}))
            .map_err(|e| StepError::permanent(e.to_string(), "EVENT"))?;
        let undeclared = step.events.publish("orders.lost", json!({})).unwrap_err();
        Ok(json!({"undeclared": undeclared.to_string()}))
    }
}

struct Collect(Arc<Mutex<Vec<Event>>>);

#[async_trait::async_trait]
impl Subscriber for Collect {
    fn name(&self) -> &str {
        "orders"
    }
    fn interests(&self) -> Vec<Interest> {
        vec![Interest::name("orders.fulfilled")]
    }
    async fn handle(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn handlers_publish_template_declared_custom_events_under_their_own_name() {
    on_each_database(|db| async move {
        let registry = registry_with("test::fulfil", Arc::new(Fulfil));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Before the template is registered, the name is unknown (YAML declarations count as registrations).
        assert!(engine.events().register(Arc::new(Collect(seen.clone()))).is_err());
        let template = template(
            "name: fulfilment\nnamespace_name: shop\ncustom_events: [{ name: orders.fulfilled, description: An order shipped }]\n\
             step_templates:\n  - name: fulfil\n    handler_class: test::fulfil\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        engine.events().register(Arc::new(Collect(seen.clone()))).unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&engine, &clock, created.task_id).await.state, TaskState::Complete);
        engine.events().settled().await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let Payload::Custom(p) = &seen[0].payload else { panic!("custom payload") };
        assert_eq!(seen[0].name, "orders.fulfilled", "the name subscribed to is the name published");
        assert_eq!(p.data, json!({"order": 7}));
        assert_eq!(p.task_id, Some(created.task_id));
        assert_eq!(p.step_name.as_deref(), Some("fulfil"));
        assert_eq!(p.labels.as_ref().map(|l| &*l.correlation_id), Some(created.correlation_id.as_str()));
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested fulfil#1
            step.before_handle fulfil#1
            orders.fulfilled fulfil
            step.completed fulfil#1
            task.completed"#]]
        .assert_eq(&sequence(&events.drain(), created.task_id));
        let step = &db.store.steps(created.task_id).await.unwrap()[0];
        let refusal = step.results.as_ref().unwrap()["undeclared"].as_str().unwrap().to_owned();
        assert!(refusal.contains("`orders.lost` is not registered"), "{refusal}");
        let spec = &engine.events().custom_events()[0];
        assert_eq!(spec.fired_by, ["shop/fulfilment@0.1.0"]);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_engine_publishes_on_the_bus_it_was_given() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let bus = tasker_engine::tasker_events::EventBus::new();
        let mut tasks_only = bus.stream(
            vec![Interest::Category(
                tasker_engine::tasker_events::Category::Task,
            )],
            64,
        );
        let engine = Engine::builder(db.store.clone())
            .config(EngineConfig { ..config() })
            .clock(Arc::new(clock.clone()))
            .bus(bus.clone())
            .build()
            .unwrap();
        let template =
            template("name: one\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        engine
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(
            drive(&engine, &clock, created.task_id).await.state,
            TaskState::Complete
        );
        let names: Vec<String> = tasks_only
            .drain()
            .iter()
            .map(|e| e.name.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "task.initialize_requested",
                "task.start_requested",
                "task.completed"
            ]
        );
        assert_eq!(tasks_only.dropped(), 0);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn operators_cancel_steps_retry_and_resolve_tasks_with_their_events() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let bus = EventBus::new();
        let first = engine_on(&db, &clock, &bus);
        let template = template(
            "name: ops\nstep_templates:\n  - name: broken\n    handler_class: tasker::fail\n    default_retry_limit: 1\n    handler_config: { times: 9, permanent: true }\n  \
             - name: next\n    handler_class: tasker::noop\n    depends_on_step: broken\n",
        );
        first.register_template(template.clone(), false).await.unwrap();
        let mut events = first.subscribe();
        // Retry: the exhausted step is reset and fails again; then the operator resolves the task.
        let retried = first.create_task(request(&template)).await.unwrap();
        assert_eq!(drive(&first, &clock, retried.task_id).await.state, TaskState::Error);
        first.shutdown().await;
        let engine = engine_on(&db, &clock, &bus);
        engine.retry_task(retried.task_id).await.unwrap();
        assert_eq!(drive(&engine, &clock, retried.task_id).await.state, TaskState::Error);
        engine.resolve_task(retried.task_id).await.unwrap();
        assert_eq!(db.store.task(retried.task_id).await.unwrap().state, TaskState::ResolvedManually);
        expect_test::expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested broken#1
            step.before_handle broken#1
            step.failed broken#1
            task.failed
            task.retry_requested
            step.retry_requested broken#1
            task.start_requested
            step.execution_requested broken#1
            step.before_handle broken#1
            step.failed broken#1
            task.failed
            task.resolved_manually"#]]
        .assert_eq(&sequence(&events.drain(), retried.task_id));
        engine.shutdown().await;
        // Cancelling a pending step (on an engine not started, so nothing claims it first): its
        // dependant can never run, so the task ends in error at once.
        let idle = tasker_engine::Engine::builder(db.store.clone())
            .config(config())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        idle.register_template(template.clone(), true).await.unwrap();
        let mut events = idle.subscribe();
        let cancelled = idle.create_task(request(&template)).await.unwrap();
        idle.cancel_step(cancelled.steps[0].1).await.unwrap();
        assert_eq!(db.store.task(cancelled.task_id).await.unwrap().state, TaskState::Error);
        expect_test::expect![[r#"
            task.initialize_requested
            step.cancelled broken#0
            task.failed"#]]
        .assert_eq(&sequence(&events.drain(), cancelled.task_id));
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn every_event_the_catalog_says_is_published_is_published() {
    on_each_database(|db| async move {
        let registry = registry_with("test::wait", Arc::new(WaitsForCancel));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let mut events = engine.subscribe();
        let flaky = template(
            "name: flaky\nstep_templates:\n  - name: a\n    handler_class: tasker::fail\n    default_retry_limit: 2\n    handler_config: { times: 9 }\n  \
             - name: skipped\n    handler_class: tasker::noop\n    skippable: true\n",
        );
        let fine = template("name: fine\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        let long = template("name: long\nstep_templates:\n  - name: wait\n    handler_class: test::wait\n");
        for t in [&flaky, &fine, &long] {
            engine.register_template(t.clone(), false).await.unwrap();
        }
        let failing = engine.create_task(request(&flaky).bypass_steps(["skipped"])).await.unwrap();
        assert_eq!(drive(&engine, &clock, failing.task_id).await.state, TaskState::Error);
        engine.resolve_step(failing.steps[0].1, json!({})).await.unwrap();
        let second = engine.create_task(request(&flaky)).await.unwrap();
        assert_eq!(drive(&engine, &clock, second.task_id).await.state, TaskState::Error);
        engine.retry_task(second.task_id).await.unwrap();
        assert_eq!(drive(&engine, &clock, second.task_id).await.state, TaskState::Error);
        engine.resolve_task(second.task_id).await.unwrap();
        let ok = engine.create_task(request(&fine)).await.unwrap();
        assert_eq!(drive(&engine, &clock, ok.task_id).await.state, TaskState::Complete);
        let elsewhere = tasker_persistence::SwitchTarget::namespace("elsewhere");
        let on_call = tasker_engine::Operator::new("on-call", Some("drill".into()));
        engine.pause(&elsewhere, &on_call).await.unwrap();
        engine.resume(&elsewhere, &on_call).await.unwrap();
        // Subscribed first: the running engine may start the step before creation returns.
        let mut handled = engine.subscribe();
        let waiting = engine.create_task(request(&long)).await.unwrap();
        engine.start();
        wait_for(&mut handled, |e| e.name == "step.before_handle").await;
        engine.cancel_task(waiting.task_id).await.unwrap();
        engine.wait_until_idle().await;
        let seen: std::collections::BTreeSet<String> =
            events.drain().iter().map(|e| e.name.to_string()).collect();
        let missing: Vec<&str> = tasker_engine::tasker_events::catalog::published()
            .map(|spec| spec.name)
            .filter(|name| !seen.contains(*name))
            .collect();
        assert!(missing.is_empty(), "published per the catalog but never seen: {missing:?}");
        let unlisted: Vec<&String> = seen
            .iter()
            .filter(|name| {
                !tasker_engine::tasker_events::catalog::describe(name).is_some_and(|s| s.is_published())
            })
            .collect();
        assert!(unlisted.is_empty(), "seen but not listed as published: {unlisted:?}");
        engine.shutdown().await;
    })
    .await;
}

/// Never returns: a subscriber stuck on its first event.
struct Stuck;

#[async_trait::async_trait]
impl Subscriber for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn interests(&self) -> Vec<Interest> {
        vec![Interest::all()]
    }
    fn capacity(&self) -> usize {
        2
    }
    async fn handle(&self, _event: &Event) {
        std::future::pending::<()>().await;
    }
}

/// Panics on every event.
struct Broken;

#[async_trait::async_trait]
impl Subscriber for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn interests(&self) -> Vec<Interest> {
        vec![Interest::Category(
            tasker_engine::tasker_events::Category::Step,
        )]
    }
    async fn handle(&self, _event: &Event) {
        panic!("subscriber bug");
    }
}

#[tokio::test]
async fn stuck_and_panicking_subscribers_neither_slow_nor_break_a_workflow() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        engine.events().register(Arc::new(Stuck)).unwrap();
        engine.events().register(Arc::new(Broken)).unwrap();
        let template = template(
            "name: chain\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  \
             - name: b\n    handler_class: tasker::noop\n    depends_on_step: a\n",
        );
        engine
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        assert_eq!(
            drive(&engine, &clock, created.task_id).await.state,
            TaskState::Complete
        );
        assert_eq!(
            task_sequence(&events.drain(), created.task_id).len(),
            9,
            "the stream got everything"
        );
        let stuck = engine.events().unregister("stuck").unwrap();
        assert_eq!(stuck.handled, 0);
        assert!(stuck.dropped > 0, "{stuck:?}");
        assert_eq!(engine.events().dropped(), stuck.dropped);
        engine.events().settled().await;
        let stats = engine.events().stats();
        let broken = stats
            .subscribers
            .iter()
            .find(|s| s.name == "broken")
            .unwrap();
        assert_eq!(broken.panicked, broken.delivered);
        assert_eq!(
            broken.delivered, 6,
            "three step events per step: {broken:?}"
        );
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn operator_events_keep_commit_order_on_a_running_engine() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template(
            "name: again\nstep_templates:\n  - name: broken\n    handler_class: tasker::fail\n    default_retry_limit: 1\n    handler_config: { times: 9, permanent: true }\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        // The coordinator runs throughout: each retry releases a step it claims at once, and the
        // claim's events must still follow the retry's.
        for _ in 0..5 {
            let task = engine.create_task(request(&template)).await.unwrap();
            assert_eq!(drive(&engine, &clock, task.task_id).await.state, TaskState::Error);
            engine.retry_task(task.task_id).await.unwrap();
            assert_eq!(drive(&engine, &clock, task.task_id).await.state, TaskState::Error);
            let lines = task_sequence(&events.drain(), task.task_id);
            let at = |line: &str| lines.iter().rposition(|l| l == line).unwrap();
            assert!(at("task.retry_requested") < at("task.start_requested"), "{lines:#?}");
            assert!(at("step.retry_requested broken#1") < at("step.execution_requested broken#1"), "{lines:#?}");
            assert_eq!(lines.last().map(String::as_str), Some("task.failed"));
        }
        engine.shutdown().await;
    })
    .await;
}
