use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tasker_domain::{BackoffPolicy, TaskId, TaskRequest, TaskState, TaskTemplate};
use tasker_engine::{Engine, EngineConfig, EngineEvent, ManualClock, Registry};
use tasker_persistence::{Store, TaskRecord};
use tokio::sync::broadcast;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub fn config() -> EngineConfig {
    EngineConfig {
        backoff: BackoffPolicy {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(8),
            jitter: 0.0,
        },
        lease: Duration::from_secs(30),
        ..Default::default()
    }
}

pub fn engine_with(store: &Store, clock: &ManualClock, registry: Arc<Registry>) -> Engine {
    Engine::builder(store.clone())
        .config(config())
        .clock(Arc::new(clock.clone()))
        .registry(registry)
        .random(|| 0.5)
        .build()
        .unwrap()
}

pub fn engine(store: &Store, clock: &ManualClock) -> Engine {
    engine_with(store, clock, Arc::new(Registry::with_builtins()))
}

pub fn template(yaml: &str) -> TaskTemplate {
    TaskTemplate::from_yaml_str(yaml, Some("test.yaml")).unwrap()
}

pub fn request(template: &TaskTemplate) -> TaskRequest {
    TaskRequest::new(template.name.clone()).namespace(template.namespace_name.clone())
}

/// Runs the engine until `task` is final, advancing the clock past backoffs when idle.
pub async fn drive(engine: &Engine, clock: &ManualClock, task: TaskId) -> TaskRecord {
    engine.start();
    for _ in 0..100 {
        engine.wait_until_idle().await;
        let record = engine.store().task(task).await.unwrap();
        if !matches!(record.state, TaskState::Pending | TaskState::InProgress) {
            return record;
        }
        clock.advance(Duration::from_secs(10));
    }
    panic!("task {task} did not finish");
}

/// Everything received so far.
pub fn drain(events: &mut broadcast::Receiver<EngineEvent>) -> Vec<EngineEvent> {
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(event);
    }
    all
}

/// `started:name#attempt`, `completed:name#attempt`, `failed:name#attempt` in order.
pub fn step_log(events: &[EngineEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::StepStarted { name, attempt, .. } => {
                Some(format!("started:{name}#{attempt}"))
            }
            EngineEvent::StepCompleted { name, attempt, .. } => {
                Some(format!("completed:{name}#{attempt}"))
            }
            EngineEvent::StepFailed { name, attempt, .. } => {
                Some(format!("failed:{name}#{attempt}"))
            }
            _ => None,
        })
        .collect()
}

/// Waits for the first event matching `wanted`.
pub async fn wait_for(
    events: &mut broadcast::Receiver<EngineEvent>,
    wanted: impl Fn(&EngineEvent) -> bool,
) -> EngineEvent {
    loop {
        match events.recv().await {
            Ok(event) if wanted(&event) => return event,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(err) => panic!("event stream ended: {err}"),
        }
    }
}
