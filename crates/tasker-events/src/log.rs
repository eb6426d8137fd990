//! Structured logs of events through `tracing` (target `tasker::events`): one record per event
//! with its name, category, `event_time` (the engine clock's), ids, template, attempt, state,
//! duration, error and correlation id.
//! With a JSON formatter (`tracing_subscriber::fmt().json()`, or `tasker --log-format json`)
//! each record is one JSON line.

use async_trait::async_trait;

use crate::bus::{Interest, Subscriber};
use crate::event::{Event, Payload};

/// Logs every event it is subscribed to; failures and exhausted retries at `WARN`, the rest at
/// `INFO`. Events relayed from other processes are not logged again (they log their own).
#[derive(Debug)]
pub struct LogSubscriber {
    interests: Vec<Interest>,
}

impl LogSubscriber {
    /// Logs every event.
    pub fn new() -> Self {
        Self {
            interests: vec![Interest::all()],
        }
    }

    /// Logs the events matching `interests`.
    pub fn with_interests(interests: Vec<Interest>) -> Self {
        Self { interests }
    }
}

impl Default for LogSubscriber {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! log_event {
    ($level:expr, $event:expr, $($field:tt)*) => {
        match $level {
            tracing::Level::WARN => tracing::warn!(target: "tasker::events", $($field)*),
            _ => tracing::info!(target: "tasker::events", $($field)*),
        }
    };
}

#[async_trait]
impl Subscriber for LogSubscriber {
    fn name(&self) -> &str {
        "tasker.log"
    }

    fn interests(&self) -> Vec<Interest> {
        self.interests.clone()
    }

    fn capacity(&self) -> usize {
        65_536
    }

    async fn handle(&self, event: &Event) {
        if event.relayed_from.is_some() {
            return;
        }
        let name = &*event.name;
        let category = event.category.as_str();
        let event_time = event
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        match &event.payload {
            Payload::Task(p) => {
                let level = if name == crate::names::task::FAILED {
                    tracing::Level::WARN
                } else {
                    tracing::Level::INFO
                };
                log_event!(
                    level,
                    event,
                    event = name,
                    category,
                    event_time,
                    task_id = %p.task_id,
                    namespace = &*p.labels.namespace,
                    task_name = &*p.labels.task_name,
                    version = &*p.labels.version,
                    correlation_id = &*p.labels.correlation_id,
                    state = p.state.as_str(),
                    duration_ms = p.duration_ms,
                    reason = p.reason.as_deref(),
                    "{name}"
                );
            }
            Payload::Step(p) => {
                let level = if p.error.is_some() {
                    tracing::Level::WARN
                } else {
                    tracing::Level::INFO
                };
                let error = p.error.as_ref().map(|e| e.message.as_str());
                let error_code = p.error.as_ref().and_then(|e| e.error_code.as_deref());
                log_event!(
                    level,
                    event,
                    event = name,
                    category,
                    event_time,
                    task_id = %p.task_id,
                    step_id = %p.step_id,
                    step = &*p.step_name,
                    attempt = p.attempt,
                    retry_limit = p.retry_limit,
                    namespace = &*p.labels.namespace,
                    task_name = &*p.labels.task_name,
                    version = &*p.labels.version,
                    correlation_id = &*p.labels.correlation_id,
                    state = p.state.as_str(),
                    duration_ms = p.duration_ms,
                    error,
                    error_code,
                    next_attempt_at = p.next_attempt_at.map(|t| t.to_rfc3339()),
                    "{name}"
                );
            }
            Payload::Workflow(p) => log_event!(
                tracing::Level::INFO,
                event,
                event = name,
                category,
                event_time,
                owner = &*p.owner,
                step_count = p.step_count,
                tasks = p.task_ids.len(),
                duration_ms = p.duration_ms,
                "{name}"
            ),
            Payload::Custom(p) => log_event!(
                tracing::Level::INFO,
                event,
                event = name,
                category,
                event_time,
                task_id = p.task_id.map(|t| t.to_string()),
                step = p.step_name.as_deref(),
                correlation_id = p.labels.as_ref().map(|l| &*l.correlation_id),
                data = %p.data,
                "{name}"
            ),
            Payload::Switch(p) => log_event!(
                tracing::Level::INFO,
                event,
                event = name,
                category,
                event_time,
                change_id = p.change_id,
                action = p.action.as_str(),
                target = p.target.as_str(),
                max_running = p.max_running,
                actor = p.actor.as_str(),
                reason = p.reason.as_str(),
                "{name}"
            ),
        }
    }
}
