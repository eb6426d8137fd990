//! Bad input fails before anything is stored, naming the template, step, handler or path.

use serde_json::json;
use tasker_domain::TaskRequest;
use tasker_engine::{EngineError, ManualClock};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

#[tokio::test]
async fn unknown_templates_handlers_and_bad_contexts_store_nothing() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let err = engine.create_task(TaskRequest::new("ghost").namespace("nowhere")).await.unwrap_err();
        assert_eq!(err.to_string(), "no task template nowhere/ghost");
        let err = engine
            .register_template(template("name: typo\nstep_templates:\n  - name: a\n    handler_class: tasker::nop\n"), false)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "step `a` of default/typo@0.1.0: no step handler is registered as `tasker::nop`");
        let typed = template(
            "name: typed\nversion: 1.0.0\nschema:\n  type: object\n  required: [date_range]\n  properties:\n    date_range:\n      type: object\n      required: [start_date]\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n",
        );
        engine.register_template(typed.clone(), false).await.unwrap();
        let err = engine.create_task(request(&typed).context(json!({"date_range": {}}))).await.unwrap_err();
        match &err {
            EngineError::Store(tasker_persistence::StoreError::InvalidContext(errors)) => {
                assert_eq!(errors[0].path, "/date_range");
                assert!(errors[0].message.contains("start_date"), "{err}");
            }
            other => panic!("expected an invalid context, got {other:?}"),
        }
        let err = engine.create_task(request(&typed).version("2.0.0".parse().unwrap())).await.unwrap_err();
        assert_eq!(err.to_string(), "no task template default/typed@2.0.0");
        let health = db.store.health_counts(t0()).await.unwrap();
        assert!(health.tasks_by_state.is_empty() && health.steps_by_state.is_empty());
        let err = engine.register_template(typed, false).await.unwrap_err();
        assert!(matches!(err, EngineError::DuplicateTemplate(_)), "{err}");
    })
    .await;
}

#[tokio::test]
async fn hostile_timeouts_are_refused_at_registration_and_never_panic_a_claim() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let mut hostile = template("name: hostile\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        hostile.step_templates[0].timeout = Some(std::time::Duration::from_secs(10_000_000_000_000));
        let err = engine.register_template(hostile.clone(), false).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid task template:\n<template>: step `a`: timeout of 10000000000000 s in template default/hostile@0.1.0 exceeds the maximum step timeout of 86400 s (24 h)"
        );
        assert!(db.store.find_template("default", "hostile", None).await.is_err(), "a refused template is not stored");
        // Written to the catalogue by another tool that skipped validation: the coordinator that
        // claims the step caps the timeout instead of overflowing the deadline and panicking.
        let stored = db.store.register_template(&hostile, t0()).await.unwrap();
        let options = tasker_persistence::CreateTaskOptions {
            now: t0(),
            identity: &tasker_domain::DefaultIdentity,
            correlation_id: None,
            trace_parent: None,
        };
        let prepared = tasker_persistence::Store::prepare_task(&stored, &request(&hostile), &options).unwrap();
        let created = db.store.create_prepared(vec![prepared]).await.remove(0).unwrap();
        let task = tokio::time::timeout(std::time::Duration::from_secs(60), drive(&engine, &clock, created.task_id))
            .await
            .expect("the coordinator survives the claim");
        assert_eq!(task.state, tasker_domain::TaskState::Complete);
        engine.shutdown().await;
    })
    .await;
}
