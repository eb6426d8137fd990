//! Retries, backoff, Retry-After, permanent errors, timeouts and panics.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState};
use tasker_engine::tasker_events::Payload;
use tasker_engine::tasker_events::names::step;
use tasker_engine::{ManualClock, StepContext, StepHandler};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

/// An outside service a step handler calls; mocked with mockall.
#[mockall::automock]
#[async_trait::async_trait]
pub(crate) trait PaymentGateway: Send + Sync {
    async fn charge(&self, idempotency_key: String, amount: u64) -> Result<String, String>;
}

struct ChargeHandler(Arc<dyn PaymentGateway>);

#[async_trait::async_trait]
impl StepHandler for ChargeHandler {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let amount = step.task_context["amount"].as_u64().unwrap_or(0);
        match self.0.charge(step.idempotency_key.clone(), amount).await {
            Ok(id) => Ok(json!({"payment_id": id})),
            Err(e) if e == "declined" => Err(StepError::permanent(e, "PAYMENT_DECLINED")),
            Err(e) => Err(StepError::retryable(e)),
        }
    }
}

const CHECKOUT: &str = "name: checkout\nstep_templates:\n  - name: charge\n    handler_class: test::charge\n    default_retry_limit: 3\n  - name: ship\n    handler_class: tasker::noop\n    depends_on_step: charge\n";

#[tokio::test]
async fn a_retryable_failure_backs_off_then_succeeds_with_the_same_idempotency_key() {
    on_each_database(|db| async move {
        let mut gateway = MockPaymentGateway::new();
        let mut seq = mockall::Sequence::new();
        let key = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let seen = key.clone();
        gateway
            .expect_charge()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |k, amount| {
                assert_eq!(amount, 12_476);
                *seen.lock().unwrap() = Some(k);
                Err("gateway timeout".into())
            });
        let seen = key.clone();
        gateway
            .expect_charge()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |k, _| {
                assert_eq!(
                    Some(k),
                    *seen.lock().unwrap(),
                    "retries reuse the idempotency key"
                );
                Ok("pay_1".into())
            });
        let registry = registry_with("test::charge", Arc::new(ChargeHandler(Arc::new(gateway))));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template(CHECKOUT);
        engine
            .register_template(template.clone(), false)
            .await
            .unwrap();
        let mut events = engine.subscribe();
        let created = engine
            .create_task(request(&template).context(json!({"amount": 12_476})))
            .await
            .unwrap();
        engine.start();
        engine.wait_until_idle().await;
        let failed = drain(&mut events)
            .into_iter()
            .find_map(|e| match &e.payload {
                Payload::Step(p) if e.name == step::FAILED => Some(p.next_attempt_at),
                _ => None,
            });
        assert_eq!(
            failed,
            Some(Some(t0() + Duration::from_secs(1))),
            "first retry after the base delay"
        );
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        let charge = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(
            (charge.attempts, charge.results.clone()),
            (2, Some(json!({"payment_id": "pay_1"})))
        );
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_permanent_error_stops_its_step_at_once_while_other_branches_finish() {
    on_each_database(|db| async move {
        let mut gateway = MockPaymentGateway::new();
        gateway.expect_charge().times(1).returning(|_, _| Err("declined".into()));
        let registry = registry_with("test::charge", Arc::new(ChargeHandler(Arc::new(gateway))));
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template(
            "name: split\nstep_templates:\n  - name: charge\n    handler_class: test::charge\n    default_retry_limit: 5\n  \
             - name: email\n    handler_class: tasker::noop\n  - name: archive\n    handler_class: tasker::noop\n    depends_on_step: email\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        let steps = db.store.steps(created.task_id).await.unwrap();
        let summary: Vec<_> = steps.iter().map(|s| (s.name.as_str(), s.state, s.attempts)).collect();
        assert_eq!(summary, [("charge", StepState::Error, 1), ("email", StepState::Complete, 1), ("archive", StepState::Complete, 1)]);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn exhausted_retries_end_the_task_in_error() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template("name: doomed\nstep_templates:\n  - name: flaky\n    handler_class: tasker::fail\n    default_retry_limit: 3\n    handler_config: { times: 10 }\n");
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        assert_eq!(step_log(&drain(&mut events)), ["started:flaky#1", "failed:flaky#1", "started:flaky#2", "failed:flaky#2", "started:flaky#3", "failed:flaky#3"]);
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn retry_after_from_a_handler_wins_over_the_computed_backoff() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let engine = engine(&db.store, &clock);
        let template = template("name: polite\nstep_templates:\n  - name: api\n    handler_class: tasker::fail\n    handler_config: { times: 1, retry_after_ms: 4500 }\n");
        engine.register_template(template.clone(), false).await.unwrap();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        engine.wait_until_idle().await;
        let step = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(step.next_attempt_at, Some(t0() + Duration::from_millis(4500)));
        clock.advance(Duration::from_millis(4499));
        engine.wait_until_idle().await;
        assert_eq!(db.store.steps(created.task_id).await.unwrap()[0].attempts, 1, "not before Retry-After");
        clock.advance(Duration::from_millis(1));
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Complete);
        engine.shutdown().await;
    })
    .await;
}

/// Never finishes on its own.
struct Hang;

#[async_trait::async_trait]
impl StepHandler for Hang {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        step.cancellation.cancelled().await;
        Err(StepError::retryable("cancelled"))
    }
}

struct Panics;

#[async_trait::async_trait]
impl StepHandler for Panics {
    async fn handle(&self, _: StepContext) -> Result<Value, StepError> {
        panic!("boom at attempt")
    }
}

#[tokio::test]
async fn timeouts_and_panics_are_failed_attempts() {
    on_each_database(|db| async move {
        let registry = registry_of([
            ("test::hang", Arc::new(Hang) as Arc<dyn StepHandler>),
            ("test::panic", Arc::new(Panics)),
        ]);
        let clock = ManualClock::new(t0());
        let engine = engine_with(&db.store, &clock, registry);
        let template = template(
            "name: unruly\nstep_templates:\n  - name: slow\n    handler_class: test::hang\n    timeout: 5s\n    default_retry_limit: 1\n  \
             - name: crashy\n    handler_class: test::panic\n    default_retry_limit: 1\n",
        );
        engine.register_template(template.clone(), false).await.unwrap();
        let mut events = engine.subscribe();
        let created = engine.create_task(request(&template)).await.unwrap();
        engine.start();
        wait_for(&mut events, |e| e.name == step::FAILED && e.step_name() == Some("crashy")).await;
        let steps = db.store.steps(created.task_id).await.unwrap();
        assert_eq!(steps[0].state, StepState::InProgress, "still running before its timeout");
        assert_eq!(steps[1].last_error.as_ref().unwrap()["error_code"], "HANDLER_PANIC");
        clock.advance(Duration::from_secs(5));
        let task = drive(&engine, &clock, created.task_id).await;
        assert_eq!(task.state, TaskState::Error);
        let slow = &db.store.steps(created.task_id).await.unwrap()[0];
        assert_eq!(slow.last_error.as_ref().unwrap()["error_code"], "TIMEOUT");
        engine.shutdown().await;
    })
    .await;
}
