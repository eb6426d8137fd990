//! Events and their typed payloads.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskState};

use crate::catalog::Category;

/// One published event: its name, when, and a payload of the kind the catalog names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The name, as published and subscribed to (`task.completed`, `orders.fulfilled`).
    pub name: Cow<'static, str>,
    /// The category the name belongs to.
    pub category: Category,
    /// When it happened (the engine's clock).
    pub timestamp: DateTime<Utc>,
    /// What happened.
    pub payload: Payload,
    /// The process that published it, when it came from another process through a relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relayed_from: Option<String>,
}

/// The payload of an event, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Payload {
    /// A task's lifecycle.
    Task(TaskPayload),
    /// A step's lifecycle.
    Step(StepPayload),
    /// The coordinator's own work (claims, group commits, idleness).
    Workflow(WorkflowPayload),
    /// An application's custom event.
    Custom(CustomPayload),
    /// A runtime switch changed.
    Switch(SwitchPayload),
}

/// Which template a task runs, and its correlation id: shared by every event of the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLabels {
    /// The template's namespace.
    pub namespace: Arc<str>,
    /// The template's name.
    pub task_name: Arc<str>,
    /// The template's version.
    pub version: Arc<str>,
    /// The task's correlation id (also on every log line of the task).
    pub correlation_id: Arc<str>,
}

/// Payload of `task.*` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPayload {
    /// The task.
    pub task_id: TaskId,
    /// Template and correlation id.
    #[serde(flatten)]
    pub labels: TaskLabels,
    /// The state before the transition (`None` at creation).
    pub from_state: Option<TaskState>,
    /// The state the task is in now.
    pub state: TaskState,
    /// Its number of steps, where known without a query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u32>,
    /// Creation to this event, in milliseconds, on final states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Why, for operator actions (`cancel_requested`, `retry_requested`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Payload of `step.*` and `observability.step.*` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPayload {
    /// The task.
    pub task_id: TaskId,
    /// The step.
    pub step_id: StepId,
    /// The step's name.
    pub step_name: Arc<str>,
    /// Template and correlation id.
    #[serde(flatten)]
    pub labels: TaskLabels,
    /// The attempt this event is about (1 for the first).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub retry_limit: u32,
    /// The state before the transition, where the event is a transition.
    pub from_state: Option<StepState>,
    /// The state the step is in now.
    pub state: StepState,
    /// The attempt's duration in milliseconds (claim to record), on `step.completed` and
    /// `step.failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// What went wrong, on failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// When the next attempt may start, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why, for operator actions and skips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Payload of `workflow.*` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowPayload {
    /// The engine instance (its claim owner id).
    pub owner: Arc<str>,
    /// Steps concerned (claimed, or recorded in one commit).
    pub step_count: usize,
    /// The tasks concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_ids: Vec<TaskId>,
    /// How long the database work took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

/// Payload of a custom event: what the publisher sent, plus where it came from when a step
/// handler published it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomPayload {
    /// The task, when published from a step handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// The step, when published from a step handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<StepId>,
    /// The step's name, when published from a step handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_name: Option<Arc<str>>,
    /// Template and correlation id, when published from a step handler.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub labels: Option<TaskLabels>,
    /// The publisher's data.
    pub data: Value,
}

/// What an operator did to a runtime switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SwitchAction {
    /// The target's ready steps are no longer claimed.
    Pause,
    /// A pause was lifted.
    Resume,
    /// The namespace's running step attempts were capped at `max_running`.
    Limit,
    /// A namespace's cap was lifted.
    Unlimit,
}

/// What a runtime switch applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SwitchScope {
    /// A whole namespace.
    Namespace,
    /// Every version of one template.
    Template,
    /// One version of one template.
    TemplateVersion,
}

/// Payload of `runtime.switch_changed`: one change of the audit log of runtime switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchPayload {
    /// The change's id in the audit log (`recent_changes` of `GET /v1/runtime/switches`).
    pub change_id: i64,
    /// What was done.
    pub action: SwitchAction,
    /// A namespace, a template or one version of it.
    pub scope: SwitchScope,
    /// `namespace`, `namespace/name` or `namespace/name@version`.
    pub target: String,
    /// The namespace.
    pub namespace: String,
    /// The template's name, unless the switch is for the whole namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The template's version, when the switch is for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The cap a `limit` set on the namespace's running step attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Who made the change (the API caller's subject).
    pub actor: String,
    /// Why.
    pub reason: String,
}

impl SwitchAction {
    /// `pause`, `resume`, `limit` or `unlimit`.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchAction::Pause => "pause",
            SwitchAction::Resume => "resume",
            SwitchAction::Limit => "limit",
            SwitchAction::Unlimit => "unlimit",
        }
    }
}

impl SwitchScope {
    /// The scope of a switch on `name` (`None`: the namespace) and `version`.
    pub fn of(name: Option<&str>, version: Option<&str>) -> Self {
        match (name, version) {
            (None, _) => SwitchScope::Namespace,
            (Some(_), None) => SwitchScope::Template,
            (Some(_), Some(_)) => SwitchScope::TemplateVersion,
        }
    }
}

impl Event {
    /// An event of a catalog name (category from the catalog) or a custom one.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        timestamp: DateTime<Utc>,
        payload: Payload,
    ) -> Self {
        let name = name.into();
        let category = Category::of(&name);
        Self {
            name,
            category,
            timestamp,
            payload,
            relayed_from: None,
        }
    }

    /// The task the event is about, if any: events of one task reach a subscriber in order.
    pub fn task_id(&self) -> Option<TaskId> {
        match &self.payload {
            Payload::Task(p) => Some(p.task_id),
            Payload::Step(p) => Some(p.task_id),
            Payload::Custom(p) => p.task_id,
            Payload::Workflow(_) | Payload::Switch(_) => None,
        }
    }

    /// The step the event is about, if any.
    pub fn step_id(&self) -> Option<StepId> {
        match &self.payload {
            Payload::Step(p) => Some(p.step_id),
            Payload::Custom(p) => p.step_id,
            _ => None,
        }
    }

    /// The step's name, if the event is about a step.
    pub fn step_name(&self) -> Option<&str> {
        match &self.payload {
            Payload::Step(p) => Some(&p.step_name),
            Payload::Custom(p) => p.step_name.as_deref(),
            _ => None,
        }
    }

    /// The attempt, if the event is about a step attempt.
    pub fn attempt(&self) -> Option<u32> {
        match &self.payload {
            Payload::Step(p) => Some(p.attempt),
            _ => None,
        }
    }

    /// The labels of the task the event is about, if any.
    pub fn labels(&self) -> Option<&TaskLabels> {
        match &self.payload {
            Payload::Task(p) => Some(&p.labels),
            Payload::Step(p) => Some(&p.labels),
            Payload::Custom(p) => p.labels.as_ref(),
            Payload::Workflow(_) | Payload::Switch(_) => None,
        }
    }

    /// The correlation id of the task the event is about, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.labels().map(|l| &*l.correlation_id)
    }

    /// `name`, `name step#attempt` for step events, or `name action target` for switch
    /// changes: the form the sequence snapshots use.
    pub fn summary(&self) -> String {
        match &self.payload {
            Payload::Step(p) => format!("{} {}#{}", self.name, p.step_name, p.attempt),
            Payload::Switch(p) => format!("{} {} {}", self.name, p.action.as_str(), p.target),
            Payload::Custom(p) => match &p.step_name {
                Some(step) => format!("{} {step}", self.name),
                None => self.name.to_string(),
            },
            _ => self.name.to_string(),
        }
    }
}
