//! Leases that mean something: held-back claims are renewed with running ones, and an attempt
//! whose claim is gone or whose lease lapsed is cancelled here and never recorded.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, TaskState, codes};
use tasker_engine::tasker_events::names::step;
use tasker_engine::tasker_events::{Category, Interest};
use tasker_engine::{Engine, EngineConfig, ManualClock, StepContext, StepHandler};
use tasker_persistence::testing::{Backend, TestDatabase, on_each_database};
use tokio::sync::{Semaphore, mpsc};

use crate::support::*;

/// Reports each attempt's start; waits for a permit; reports a cancellation and gives up when
/// its token fires first. Attempts after the first finish at once.
struct Held {
    started: mpsc::UnboundedSender<u32>,
    cancelled: mpsc::UnboundedSender<u32>,
    permits: Semaphore,
}

#[async_trait::async_trait]
impl StepHandler for Held {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let _ = self.started.send(step.attempt);
        if step.attempt > 1 {
            return Ok(json!({"attempt": step.attempt}));
        }
        tokio::select! {
            permit = self.permits.acquire() => {
                permit.expect("the semaphore stays open").forget();
                Ok(json!({"attempt": step.attempt}))
            }
            () = step.cancellation.cancelled() => {
                let _ = self.cancelled.send(step.attempt);
                Err(StepError::retryable("cancelled"))
            }
        }
    }
}

struct Harness {
    engine: Engine,
    clock: ManualClock,
    handler: Arc<Held>,
    started: mpsc::UnboundedReceiver<u32>,
    cancelled: mpsc::UnboundedReceiver<u32>,
    template: tasker_template::TaskTemplate,
}

fn harness(db: &TestDatabase, steps: usize, config: EngineConfig) -> Harness {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (cancelled_tx, cancelled) = mpsc::unbounded_channel();
    let handler = Arc::new(Held {
        started: started_tx,
        cancelled: cancelled_tx,
        permits: Semaphore::new(0),
    });
    let registry = registry_with("test::held", handler.clone());
    let clock = ManualClock::new(t0());
    let engine = Engine::builder(db.store.clone())
        .config(config)
        .clock(Arc::new(clock.clone()))
        .registry(registry)
        .random(|| 0.5)
        .build()
        .unwrap();
    let mut yaml = String::from("name: leased\nstep_templates:\n");
    for i in 0..steps {
        yaml.push_str(&format!(
            "  - name: s{i}\n    handler_class: test::held\n    default_retry_limit: 3\n"
        ));
    }
    Harness {
        engine,
        clock,
        handler,
        started,
        cancelled,
        template: template(&yaml),
    }
}

#[tokio::test]
async fn claims_held_back_by_the_per_task_limit_are_renewed_and_never_reclaimed() {
    on_each_database(|db| async move {
        let config = EngineConfig {
            max_concurrent_steps_per_task: 1,
            ..config()
        };
        let mut h = harness(&db, 3, config);
        h.engine
            .register_template(h.template.clone(), false)
            .await
            .unwrap();
        let mut events = h
            .engine
            .events()
            .stream(vec![Interest::Category(Category::Step)], 256);
        let created = h.engine.create_task(request(&h.template)).await.unwrap();
        h.engine.start();
        assert_eq!(h.started.recv().await, Some(1));
        // One step runs, two are claimed and held back. A whole lease passes: the upkeep it
        // wakes renews all three claims before it looks for expired ones.
        h.clock.advance(Duration::from_secs(31));
        h.handler.permits.add_permits(3);
        let task = drive(&h.engine, &h.clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        for stored in db.store.steps(created.task_id).await.unwrap() {
            assert_eq!(stored.attempts, 1, "{} ran once", stored.name);
        }
        let failed: Vec<_> = events
            .drain()
            .into_iter()
            .filter(|e| e.name == step::FAILED)
            .collect();
        assert!(failed.is_empty(), "no attempt failed: {failed:?}");
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_attempt_whose_claim_was_taken_is_cancelled_and_not_recorded() {
    on_each_database(|db| async move {
        let mut h = harness(&db, 1, config());
        h.engine
            .register_template(h.template.clone(), false)
            .await
            .unwrap();
        let created = h.engine.create_task(request(&h.template)).await.unwrap();
        h.engine.start();
        assert_eq!(h.started.recv().await, Some(1));
        // Another process reclaims the claim (as if this one had stalled past its lease).
        let reclaimed = db
            .store
            .reclaim_expired(t0() + Duration::from_secs(31))
            .await
            .unwrap();
        assert_eq!(reclaimed.recorded.len(), 1);
        // The next upkeep finds the claim gone and cancels the attempt here.
        h.clock.advance(Duration::from_secs(10));
        assert_eq!(h.cancelled.recv().await, Some(1));
        let task = drive(&h.engine, &h.clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let stored = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(
            stored.attempts, 2,
            "the reclaimed attempt, then one that completed"
        );
        assert_eq!(stored.results, Some(json!({"attempt": 2})));
        h.engine.shutdown().await;
    })
    .await;
}

/// Refuses to extend leases while `outage` has a row (renewal fails; claims and outcomes work).
async fn refuse_renewals(db: &TestDatabase) {
    db.execute("CREATE TABLE outage (id INTEGER)").await;
    db.execute("INSERT INTO outage (id) VALUES (1)").await;
    let when = "OLD.state = 'in_progress' AND NEW.state = 'in_progress' \
                AND NEW.lease_expires_at > OLD.lease_expires_at AND EXISTS (SELECT 1 FROM outage)";
    match db.backend {
        Backend::Sqlite => {
            db.execute(&format!(
                "CREATE TRIGGER outage BEFORE UPDATE ON tasker_workflow_steps WHEN {when} \
                 BEGIN SELECT RAISE(ABORT, 'outage'); END"
            ))
            .await
        }
        Backend::Postgres => {
            db.execute(&format!(
                "CREATE FUNCTION outage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF {when} THEN RAISE EXCEPTION 'outage'; END IF; RETURN NEW; END $$"
            ))
            .await;
            db.execute(
                "CREATE TRIGGER outage BEFORE UPDATE ON tasker_workflow_steps \
                 FOR EACH ROW EXECUTE FUNCTION outage()",
            )
            .await
        }
    }
}

#[tokio::test]
async fn an_attempt_whose_lease_lapsed_while_renewal_failed_is_cancelled_and_not_recorded() {
    on_each_database(|db| async move {
        let mut h = harness(&db, 1, config());
        h.engine
            .register_template(h.template.clone(), false)
            .await
            .unwrap();
        let created = h.engine.create_task(request(&h.template)).await.unwrap();
        h.engine.start();
        assert_eq!(h.started.recv().await, Some(1));
        refuse_renewals(&db).await;
        // A whole lease without a renewal: the attempt is cancelled here, and the expired claim
        // is reclaimed as LEASE_EXPIRED (which uses the attempt), never recorded as its outcome.
        h.clock.advance(Duration::from_secs(31));
        assert_eq!(h.cancelled.recv().await, Some(1));
        db.execute("DELETE FROM outage").await;
        let task = drive(&h.engine, &h.clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let stored = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(stored.attempts, 2);
        assert_eq!(stored.results, Some(json!({"attempt": 2})));
        let history = db.store.step_transitions(stored.step_id).await.unwrap();
        let codes: Vec<_> = history
            .iter()
            .filter_map(|t| t.metadata.get("error_code").and_then(Value::as_str))
            .collect();
        assert_eq!(codes, [codes::LEASE_EXPIRED]);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_held_step_cancelled_with_its_task_never_starts() {
    on_each_database(|db| async move {
        let config = EngineConfig {
            max_concurrent_steps_per_task: 1,
            ..config()
        };
        let mut h = harness(&db, 2, config);
        h.engine
            .register_template(h.template.clone(), false)
            .await
            .unwrap();
        let created = h.engine.create_task(request(&h.template)).await.unwrap();
        h.engine.start();
        // One step runs, the other is claimed and held back by the per-task limit.
        assert_eq!(h.started.recv().await, Some(1));
        assert_eq!(
            h.engine.cancel_task(created.task_id).await.unwrap(),
            TaskState::Cancelled
        );
        assert_eq!(h.cancelled.recv().await, Some(1));
        // The running attempt gave its room back; the held step still does not start (if it
        // did, the permit lets it finish, so the check below fails rather than hangs).
        h.handler.permits.add_permits(1);
        h.engine.wait_until_idle().await;
        assert!(h.started.try_recv().is_err(), "the held step never started");
        for stored in db.store.steps(created.task_id).await.unwrap() {
            assert_eq!(
                stored.state,
                tasker_domain::StepState::Cancelled,
                "{}",
                stored.name
            );
        }
        h.engine.shutdown().await;
    })
    .await;
}

/// Ignores its cancellation: each attempt waits for a permit, reports that it finished, and
/// succeeds.
struct Stubborn {
    started: mpsc::UnboundedSender<u32>,
    finished: mpsc::UnboundedSender<u32>,
    permits: Semaphore,
}

#[async_trait::async_trait]
impl StepHandler for Stubborn {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let _ = self.started.send(step.attempt);
        self.permits.acquire().await.expect("open").forget();
        let _ = self.finished.send(step.attempt);
        Ok(json!({"attempt": step.attempt}))
    }
}

#[tokio::test]
async fn an_attempt_that_outlives_its_claim_never_stands_for_the_next_one() {
    on_each_database(|db| async move {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (finished_tx, mut finished) = mpsc::unbounded_channel();
        let handler = Arc::new(Stubborn {
            started: started_tx,
            finished: finished_tx,
            permits: Semaphore::new(0),
        });
        let registry = registry_with("test::stubborn", handler.clone());
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template(
            "name: stubborn\nstep_templates:\n  - name: s\n    handler_class: test::stubborn\n    default_retry_limit: 5\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        assert_eq!(started.recv().await, Some(1));
        // Attempt 1's claim is taken; the engine cancels it (ignored) and runs attempt 2.
        db.store.reclaim_expired(t0() + Duration::from_secs(31)).await.unwrap();
        clock.advance(Duration::from_secs(31));
        assert_eq!(started.recv().await, Some(2));
        // Attempt 1 ends at last; attempt 2 must still be known as running here, so the next
        // upkeep renews its lease instead of letting it expire.
        handler.permits.add_permits(1);
        assert_eq!(finished.recv().await, Some(1));
        clock.advance(Duration::from_secs(31));
        // Two permits: attempt 2's, and one for an attempt 3 that must not happen (if it did,
        // it would finish and the attempt count below would say so).
        handler.permits.add_permits(2);
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let stored = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(
            (stored.attempts, stored.results.clone()),
            (2, Some(json!({"attempt": 2})))
        );
        engine.shutdown().await;
    })
    .await;
}
