//! One engine per test and database, with its own mock services and a ManualClock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tasker_blog_examples::{BlogServices, register, sample};
use tasker_domain::{BackoffPolicy, StepState, TaskId, TaskRequest};
use tasker_engine::{Engine, EngineConfig, EngineError, ManualClock};
use tasker_persistence::{StepRecord, Store, StoreError, TaskRecord};

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

/// Backoff 1 s, 2 s, 4 s, capped at 8 s (a handler's `retry_after` is capped there too).
pub(crate) fn config() -> EngineConfig {
    EngineConfig {
        backoff: BackoffPolicy {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(8),
            jitter: 0.0,
        },
        ..Default::default()
    }
}

pub(crate) struct Harness {
    pub engine: Engine,
    pub clock: ManualClock,
    pub services: BlogServices,
}

pub(crate) async fn harness(store: &Store) -> Harness {
    let clock = ManualClock::new(t0());
    let engine = Engine::builder(store.clone())
        .config(config())
        .clock(Arc::new(clock.clone()))
        .random(|| 0.5)
        .build()
        .unwrap();
    let services = BlogServices::new(Arc::new(clock.clone()));
    register(&engine, &services).await.unwrap();
    Harness {
        engine,
        clock,
        services,
    }
}

/// The shipped sample for `run_name`, at its version.
pub(crate) fn sample_request(run_name: &str) -> TaskRequest {
    sample(run_name).unwrap().request()
}

/// The sample request with `edit` applied to its context.
pub(crate) fn edited(run_name: &str, edit: impl FnOnce(&mut Value)) -> TaskRequest {
    let mut request = sample_request(run_name);
    edit(&mut request.context);
    request
}

/// A finished task and its steps.
pub(crate) struct Run {
    pub task: TaskRecord,
    pub steps: Vec<StepRecord>,
}

impl Run {
    pub(crate) fn step(&self, name: &str) -> &StepRecord {
        self.steps.iter().find(|s| s.name == name).unwrap()
    }

    pub(crate) fn results(&self, name: &str) -> &Value {
        self.step(name).results.as_ref().unwrap()
    }

    pub(crate) fn error_code(&self, name: &str) -> &str {
        self.step(name).last_error.as_ref().unwrap()["error_code"]
            .as_str()
            .unwrap()
    }

    /// `(name, state, attempts)` in template order.
    pub(crate) fn summary(&self) -> Vec<(&str, StepState, u32)> {
        self.steps
            .iter()
            .map(|s| (s.name.as_str(), s.state, s.attempts))
            .collect()
    }

    pub(crate) fn count(&self, state: StepState) -> usize {
        self.steps.iter().filter(|s| s.state == state).count()
    }
}

impl Harness {
    /// Creates the task (which must not be final at once: pending, or in progress when its
    /// creation claimed its first steps), runs it to a final state and loads its steps.
    pub(crate) async fn run(&self, request: TaskRequest) -> Run {
        let created = self.engine.create_task(request).await.unwrap();
        assert!(!created.state.is_finished(), "{:?}", created.state);
        self.finish(created.task_id).await
    }

    pub(crate) async fn finish(&self, task_id: TaskId) -> Run {
        let task = drive(&self.engine, &self.clock, task_id).await;
        let steps = self.engine.store().steps(task_id).await.unwrap();
        Run { task, steps }
    }

    /// The context errors a refused creation reports, as `(path, message)`.
    pub(crate) async fn refused(&self, request: TaskRequest) -> Vec<(String, String)> {
        match self.engine.create_task(request).await {
            Err(EngineError::Store(StoreError::InvalidContext(errors))) => {
                errors.into_iter().map(|e| (e.path, e.message)).collect()
            }
            other => panic!("expected an invalid context, got {other:?}"),
        }
    }
}

pub(crate) use tasker_engine::testing::{drain, drive, step_log};
