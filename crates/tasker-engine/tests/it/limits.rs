//! Size limits and unstorable values: refused at registration and creation (nothing stored),
//! and an outcome the database cannot store fails its own step, never its batch.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState, codes};
use tasker_engine::{Engine, EngineConfig, ManualClock, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

/// Returns what its `handler_config` asks for: `bytes` of text, a NUL character, or `ok`.
struct Produces;

#[async_trait::async_trait]
impl StepHandler for Produces {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        Ok(match step.config.get("produce").and_then(Value::as_str) {
            Some("big") => json!({"text": "x".repeat(2_000)}),
            Some("nul") => json!({"text": "a\u{0}b"}),
            _ => json!({"ok": step.step_name}),
        })
    }
}

fn limited() -> EngineConfig {
    EngineConfig {
        max_context_bytes: 100,
        max_result_bytes: 1_000,
        max_handler_config_bytes: 200,
        max_steps_per_template: 3,
        ..config()
    }
}

fn limited_engine(store: &tasker_persistence::Store, clock: &ManualClock) -> Engine {
    let registry = registry_with("test::produce", Arc::new(Produces));
    Engine::builder(store.clone())
        .config(limited())
        .clock(Arc::new(clock.clone()))
        .registry(registry)
        .random(|| 0.5)
        .build()
        .unwrap()
}

#[tokio::test]
async fn oversized_templates_configs_and_contexts_are_refused_naming_the_limit() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = limited_engine(&db.store, &clock);
        let steps: String = (0..4)
            .map(|i| format!("  - name: s{i}\n    handler_class: tasker::noop\n"))
            .collect();
        let err = engine
            .register_template(template(&format!("name: wide\nstep_templates:\n{steps}")), false)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template default/wide@0.1.0 has 4 steps, over the limit of 3 (engine.max_steps_per_template)"
        );
        let big = "y".repeat(300);
        let err = engine
            .register_template(
                template(&format!(
                    "name: heavy\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n    handler_config:\n      blob: {big}\n"
                )),
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "handler_config of step `a` of default/heavy@0.1.0 is 311 bytes, over the limit of 200 bytes (engine.max_handler_config_bytes)"
        );
        let mut nul = template("name: nul\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        nul.step_templates[0].handler_config = json!({"k": "a\u{0}"});
        let err = engine.register_template(nul, false).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "handler_config of step `a` of default/nul@0.1.0 holds a NUL character (\\u0000) at /k, which the database cannot store"
        );
        for name in ["wide", "heavy", "nul"] {
            assert!(db.store.find_template("default", name, None).await.is_err(), "{name} was stored");
        }
        let ok = template("name: ok\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        engine.register_template(ok.clone(), false).await.unwrap();
        let err = engine
            .create_task(request(&ok).context(json!({"blob": "z".repeat(100)})))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task context of default/ok@0.1.0 is 111 bytes, over the limit of 100 bytes (engine.max_context_bytes)"
        );
        let err = engine
            .create_task(request(&ok).context(json!({"name": "a\u{0}b"})))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task context of default/ok@0.1.0 holds a NUL character (\\u0000) at /name, which the database cannot store"
        );
        let health = db.store.health_counts(t0()).await.unwrap();
        assert!(health.tasks_by_state.is_empty(), "a refused task is not stored");
        engine.create_task(request(&ok).context(json!({"small": 1}))).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_unstorable_result_fails_its_own_step_and_not_the_batch() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = limited_engine(&db.store, &clock);
        let t = template(
            "name: mixed\nstep_templates:\n  \
             - name: good\n    handler_class: test::produce\n  \
             - name: nul\n    handler_class: test::produce\n    handler_config: { produce: nul }\n  \
             - name: big\n    handler_class: test::produce\n    handler_config: { produce: big }\n",
        );
        engine.register_template(t.clone(), false).await.unwrap();
        let created = engine.create_task(request(&t)).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        let steps = db.store.steps(created.task_id).await.unwrap();
        let by_name = |name: &str| steps.iter().find(|s| s.name == name).unwrap();
        assert_eq!(by_name("good").state, StepState::Complete);
        assert_eq!(by_name("good").results, Some(json!({"ok": "good"})));
        for (name, code) in [("nul", codes::UNSTORABLE_RESULT), ("big", codes::RESULT_TOO_LARGE)] {
            let step = by_name(name);
            assert_eq!(step.state, StepState::Error, "{name}");
            assert_eq!(step.attempts, 1, "{name}: a permanent error is not retried");
            assert_eq!(step.next_attempt_at, None, "{name}");
            let error: StepError = serde_json::from_value(step.last_error.clone().unwrap()).unwrap();
            assert!(error.is_permanent(), "{name}");
            assert_eq!(error.error_code.as_deref(), Some(code), "{name}");
            assert_eq!(step.results, None, "{name}: nothing of the results is stored");
        }
        engine.shutdown().await;
    })
    .await;
}
