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
