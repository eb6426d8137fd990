//! Building the engine's events: one place that knows which payload each lifecycle event
//! carries. The coordinator and the operator calls publish through these.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskState};
use tasker_events::names::runtime;
use tasker_events::{
    CustomPayload, Event, EventBus, Payload, StepPayload, SwitchAction, SwitchPayload, SwitchScope,
    TaskLabels, TaskPayload,
};
use tasker_handler::{Clock, CustomEventSink, PublishError};
use tasker_persistence::{SwitchChange, TaskRecord};
use tasker_template::TaskTemplate;

/// A template's names, shared by every event of its tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct TemplateNames {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub version: Arc<str>,
}

impl TemplateNames {
    pub(crate) fn of(template: &TaskTemplate) -> Self {
        Self {
            namespace: template.namespace_name.as_str().into(),
            name: template.name.as_str().into(),
            version: template.version.to_string().into(),
        }
    }

    pub(crate) fn labels(&self, correlation_id: &str) -> TaskLabels {
        TaskLabels {
            namespace: self.namespace.clone(),
            task_name: self.name.clone(),
            version: self.version.clone(),
            correlation_id: correlation_id.into(),
        }
    }
}

/// Labels of a stored task.
pub(crate) fn labels_of(task: &TaskRecord) -> TaskLabels {
    TaskLabels {
        namespace: task.namespace.as_str().into(),
        task_name: task.name.as_str().into(),
        version: task.version.as_str().into(),
        correlation_id: task.correlation_id.as_str().into(),
    }
}

/// The event a task publishes on reaching `state`.
pub(crate) fn task_event_name(from: Option<TaskState>, state: TaskState) -> &'static str {
    from.and_then(|from| tasker_state_machine::task::event(from, state))
        .unwrap_or_else(|| tasker_state_machine::task::event_reaching(state))
}

/// The event a step publishes on reaching `state`.
pub(crate) fn step_event_name(from: StepState, state: StepState) -> &'static str {
    tasker_state_machine::step::event(from, state)
        .unwrap_or_else(|| tasker_state_machine::step::event_reaching(state))
}

/// The distinct tasks of `ids`, in first-seen order.
pub(crate) fn distinct_tasks(ids: impl IntoIterator<Item = TaskId>) -> Vec<TaskId> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

/// Publishes `runtime.switch_changed` for a change the store logged (and committed).
pub(crate) fn publish_switch_change(bus: &EventBus, action: SwitchAction, change: &SwitchChange) {
    let target = &change.target;
    let payload = SwitchPayload {
        change_id: change.change_id,
        action,
        scope: SwitchScope::of(target.name.as_deref(), target.version.as_deref()),
        target: target.key(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        version: target.version.clone(),
        max_running: change.max_running,
        actor: change.changed_by.clone(),
        reason: change.reason.clone(),
    };
    bus.publish(Event::new(
        runtime::SWITCH_CHANGED,
        change.changed_at,
        Payload::Switch(payload),
    ));
}

/// A task event under construction.
pub(crate) struct TaskEvent {
    pub name: &'static str,
    pub payload: TaskPayload,
}

impl TaskEvent {
    pub(crate) fn new(
        task_id: TaskId,
        labels: &TaskLabels,
        from: Option<TaskState>,
        state: TaskState,
    ) -> Self {
        Self {
            name: task_event_name(from, state),
            payload: TaskPayload {
                task_id,
                labels: labels.clone(),
                from_state: from,
                state,
                total_steps: None,
                duration_ms: None,
                reason: None,
            },
        }
    }

    pub(crate) fn total_steps(mut self, total: usize) -> Self {
        self.payload.total_steps = u32::try_from(total).ok();
        self
    }

    pub(crate) fn duration_since(mut self, created_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        self.payload.duration_ms = Some(millis(now - created_at));
        self
    }

    pub(crate) fn reason(mut self, reason: &str) -> Self {
        self.payload.reason = Some(reason.to_owned());
        self
    }

    pub(crate) fn publish(self, bus: &EventBus, now: DateTime<Utc>) {
        bus.publish(Event::new(self.name, now, Payload::Task(self.payload)));
    }
}

/// A step event under construction.
pub(crate) struct StepEvent {
    pub name: &'static str,
    pub payload: StepPayload,
}

/// Who a step is, for its events.
#[derive(Clone)]
pub(crate) struct StepIdentity {
    pub task_id: TaskId,
    pub step_id: StepId,
    pub step_name: Arc<str>,
    pub labels: TaskLabels,
    pub retry_limit: u32,
}

impl StepEvent {
    pub(crate) fn new(
        name: &'static str,
        who: &StepIdentity,
        attempt: u32,
        from: Option<StepState>,
        state: StepState,
    ) -> Self {
        Self {
            name,
            payload: StepPayload {
                task_id: who.task_id,
                step_id: who.step_id,
                step_name: who.step_name.clone(),
                labels: who.labels.clone(),
                attempt,
                retry_limit: who.retry_limit,
                from_state: from,
                state,
                duration_ms: None,
                error: None,
                next_attempt_at: None,
                reason: None,
            },
        }
    }

    pub(crate) fn transition(
        who: &StepIdentity,
        attempt: u32,
        from: StepState,
        state: StepState,
    ) -> Self {
        Self::new(
            step_event_name(from, state),
            who,
            attempt,
            Some(from),
            state,
        )
    }

    pub(crate) fn duration(mut self, started: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        self.payload.duration_ms = Some(millis(now - started));
        self
    }

    pub(crate) fn error(mut self, error: Option<StepError>) -> Self {
        self.payload.error = error;
        self
    }

    pub(crate) fn next_attempt_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.payload.next_attempt_at = at;
        self
    }

    pub(crate) fn reason(mut self, reason: &str) -> Self {
        self.payload.reason = Some(reason.to_owned());
        self
    }

    pub(crate) fn publish(self, bus: &EventBus, now: DateTime<Utc>) {
        bus.publish(Event::new(self.name, now, Payload::Step(self.payload)));
    }
}

fn millis(duration: chrono::TimeDelta) -> f64 {
    duration.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3
}

/// The engine's [`CustomEventSink`]: a step's custom events go onto the bus, stamped with the
/// task, step, template and correlation id.
pub(crate) struct BusSink {
    pub(crate) bus: EventBus,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) task_id: TaskId,
    pub(crate) step_id: StepId,
    pub(crate) step_name: Arc<str>,
    pub(crate) labels: TaskLabels,
}

impl CustomEventSink for BusSink {
    fn publish(&self, name: &str, data: Value) -> Result<(), PublishError> {
        self.bus
            .publish_custom(
                name,
                self.clock.now(),
                CustomPayload {
                    task_id: Some(self.task_id),
                    step_id: Some(self.step_id),
                    step_name: Some(self.step_name.clone()),
                    labels: Some(self.labels.clone()),
                    data,
                },
            )
            .map_err(|err| PublishError::Refused(Box::new(err)))
    }
}
