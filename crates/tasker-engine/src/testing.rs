//! Helpers for tests of workflows: drive an engine on a [`ManualClock`] until a task is final,
//! and read its events. Used by this workspace's suites and useful in applications' own tests.

use std::time::Duration;

use std::sync::Arc;
use tasker_domain::{TaskId, TaskState};

use tasker_events::names::step;
use tasker_events::{Event, EventStream};
use tasker_persistence::TaskRecord;

use crate::{Engine, ManualClock};

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
pub fn drain(events: &mut EventStream) -> Vec<Arc<Event>> {
    events.drain()
}

/// Step attempts as `started:name#attempt`, `completed:name#attempt`, `failed:name#attempt`.
pub fn step_log(events: &[Arc<Event>]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let verb = match &*e.name {
                step::EXECUTION_REQUESTED => "started",
                step::COMPLETED => "completed",
                step::FAILED => "failed",
                _ => return None,
            };
            Some(format!("{verb}:{}#{}", e.step_name()?, e.attempt()?))
        })
        .collect()
}

/// The events of one task, in order, as [`Event::summary`] lines (`task.start_requested`,
/// `step.failed charge#1`, ...): the form the event-sequence snapshots compare.
pub fn task_sequence(events: &[Arc<Event>], task: TaskId) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.task_id() == Some(task))
        .map(|e| e.summary())
        .collect()
}

/// Waits for the first event matching `wanted`. Panics if the bus goes away.
pub async fn wait_for(events: &mut EventStream, wanted: impl Fn(&Event) -> bool) -> Arc<Event> {
    loop {
        match events.recv().await {
            Some(event) if wanted(&event) => return event,
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
}
