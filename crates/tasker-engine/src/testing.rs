//! Helpers for tests of workflows: drive an engine on a [`ManualClock`] until a task is final,
//! and read its events. Used by this workspace's suites and useful in applications' own tests.

use std::time::Duration;

use tasker_domain::{TaskId, TaskState};
use tasker_persistence::TaskRecord;
use tokio::sync::broadcast;

use crate::{Engine, EngineEvent, ManualClock};

/// Starts the engine and runs it until `task` is final: whenever the engine is idle (nothing
/// running, nothing due), the clock jumps 10 s, past any backoff. Panics after 200 jumps.
pub async fn drive(engine: &Engine, clock: &ManualClock, task: TaskId) -> TaskRecord {
    engine.start();
    for _ in 0..200 {
        engine.wait_until_idle().await;
        let record = engine.store().task(task).await.expect("the task exists");
        if !matches!(record.state, TaskState::Pending | TaskState::InProgress) {
            return record;
        }
        clock.advance(Duration::from_secs(10));
    }
    panic!("task {task} did not finish");
}

/// Every event received so far.
pub fn drain(events: &mut broadcast::Receiver<EngineEvent>) -> Vec<EngineEvent> {
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(event);
    }
    all
}

/// Step events as `started:name#attempt`, `completed:name#attempt`, `failed:name#attempt`.
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

/// Waits for the first event matching `wanted`. Panics if the engine goes away.
pub async fn wait_for(
    events: &mut broadcast::Receiver<EngineEvent>,
    wanted: impl Fn(&EngineEvent) -> bool,
) -> EngineEvent {
    loop {
        match events.recv().await {
            Ok(event) if wanted(&event) => return event,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(err) => panic!("event stream ended: {err}"),
        }
    }
}
