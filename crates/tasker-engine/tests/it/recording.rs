//! A group commit that fails keeps its outcomes: the database is made to refuse writes with a
//! real trigger, never a mock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState, codes};
use tasker_engine::{ManualClock, StepContext, StepHandler};
use tasker_persistence::testing::{Backend, TestDatabase, on_each_database};

use crate::support::*;

/// Returns `{"poison": true}` when its `handler_config` says `poison`, else `{"ok": name}`;
/// counts its calls.
struct Poisoner(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl StepHandler for Poisoner {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(if step.config.get("poison").is_some() {
            json!({"poison": true})
        } else {
            json!({"ok": step.step_name})
        })
    }
}

/// A trigger that refuses to store results holding a `poison` key.
async fn refuse_poisoned_results(db: &TestDatabase) {
    match db.backend {
        Backend::Sqlite => {
            db.execute(
                "CREATE TRIGGER refuse_poison BEFORE UPDATE ON tasker_workflow_steps \
                 WHEN NEW.results IS NOT NULL AND json_extract(NEW.results, '$.poison') IS NOT NULL \
                 BEGIN SELECT RAISE(ABORT, 'poisoned results'); END",
            )
            .await
        }
        Backend::Postgres => {
            db.execute(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.results IS NOT NULL AND NEW.results ? 'poison' THEN RAISE EXCEPTION 'poisoned results'; END IF; \
                 RETURN NEW; END $$",
            )
            .await;
            db.execute(
                "CREATE TRIGGER refuse_poison BEFORE UPDATE ON tasker_workflow_steps \
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            )
            .await
        }
    }
}

/// A trigger that refuses every outcome (a running step moving to complete or error) while
/// `outage` has a row: on PostgreSQL as a serialization failure (SQLSTATE 40001, transient),
/// on SQLite as an abort.
async fn refuse_outcomes_during_outage(db: &TestDatabase) {
    db.execute("CREATE TABLE outage (id INTEGER)").await;
    db.execute("INSERT INTO outage (id) VALUES (1)").await;
    match db.backend {
        Backend::Sqlite => {
            db.execute(
                "CREATE TRIGGER outage BEFORE UPDATE ON tasker_workflow_steps \
                 WHEN OLD.state = 'in_progress' AND NEW.state IN ('complete', 'error') AND EXISTS (SELECT 1 FROM outage) \
                 BEGIN SELECT RAISE(ABORT, 'outage'); END",
            )
            .await
        }
        Backend::Postgres => {
            db.execute(
                "CREATE FUNCTION outage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF OLD.state = 'in_progress' AND NEW.state IN ('complete', 'error') AND EXISTS (SELECT 1 FROM outage) THEN \
                 RAISE EXCEPTION 'outage' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$",
            )
            .await;
            db.execute(
                "CREATE TRIGGER outage BEFORE UPDATE ON tasker_workflow_steps FOR EACH ROW EXECUTE FUNCTION outage()",
            )
            .await
        }
    }
}

#[tokio::test]
async fn a_refused_outcome_fails_alone_and_the_rest_of_its_batch_is_recorded() {
    on_each_database(|db| async move {
        refuse_poisoned_results(&db).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = registry_with("test::poisoner", Arc::new(Poisoner(calls.clone())));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let t = template(
            "name: poisoned\nstep_templates:\n  \
             - name: a\n    handler_class: test::poisoner\n  \
             - name: b\n    handler_class: test::poisoner\n  \
             - name: bad\n    handler_class: test::poisoner\n    handler_config: { poison: true }\n  \
             - name: c\n    handler_class: test::poisoner\n",
        );
        engine.register_template(t.clone(), false).await.unwrap();
        let created = engine.create_task(request(&t)).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        for step in db.store.steps(created.task_id).await.unwrap() {
            assert_eq!(step.attempts, 1, "{}: no attempt ran twice", step.name);
            if step.name == "bad" {
                assert_eq!(step.state, StepState::Error);
                assert_eq!(step.next_attempt_at, None);
                let error: StepError = serde_json::from_value(step.last_error.unwrap()).unwrap();
                assert!(error.is_permanent());
                assert_eq!(error.error_code.as_deref(), Some(codes::UNSTORABLE_RESULT));
                assert!(error.message.contains("poisoned results"), "{}", error.message);
            } else {
                assert_eq!(step.state, StepState::Complete, "{}", step.name);
                assert_eq!(step.results, Some(json!({"ok": step.name})));
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn outcomes_survive_a_failed_commit_and_are_recorded_when_the_database_recovers() {
    on_each_database(|db| async move {
        refuse_outcomes_during_outage(&db).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = registry_with("test::poisoner", Arc::new(Poisoner(calls.clone())));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let t = template(
            "name: outage\nstep_templates:\n  - name: a\n    handler_class: test::poisoner\n",
        );
        engine.register_template(t.clone(), false).await.unwrap();
        let mut unrecorded = engine.unrecorded_outcomes();
        let created = engine.create_task(request(&t)).await.unwrap();
        engine.start();
        unrecorded.wait_for(|count| *count == 1).await.unwrap();
        let step = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(
            step.state,
            StepState::InProgress,
            "nothing was recorded during the outage"
        );
        // Retried with backoff while the outage lasts; the outcome stays in memory.
        clock.advance(Duration::from_secs(1));
        unrecorded.changed().await.unwrap();
        assert_eq!(*unrecorded.borrow(), 1);
        db.execute("DELETE FROM outage").await;
        clock.advance(Duration::from_secs(1));
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let step = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!((step.state, step.attempts), (StepState::Complete, 1));
        assert_eq!(step.results, Some(json!({"ok": "a"})));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the handler ran once: its outcome was kept, not re-run"
        );
        assert_eq!(*unrecorded.borrow_and_update(), 0);
        engine.shutdown().await;
    })
    .await;
}
