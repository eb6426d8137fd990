//! What callers say about the calls they make: who performs an operator action and why (kept
//! in the transition history), and how a task is created (its correlation id and idempotency
//! key).

use serde_json::{Value, json};
use tasker_domain::{StepId, StepState, TaskId, TaskState};

use crate::error::{ActionRefusal, EngineError, described};

/// Who performs an operator action (cancel, retry, resolve) and why. The transition that
/// records the action carries both in its metadata, beside the engine's own reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The authenticated subject, or `system` for calls made from code.
    pub actor: String,
    /// The operator's own words, if any.
    pub note: Option<String>,
}

impl Operator {
    /// An action taken by code, not by a person.
    pub fn system() -> Self {
        Self {
            actor: "system".into(),
            note: None,
        }
    }

    /// An action by `actor`, with an optional note.
    pub fn new(actor: impl Into<String>, note: Option<String>) -> Self {
        Self {
            actor: actor.into(),
            note,
        }
    }

    /// The transition metadata for an action whose engine reason is `reason`.
    pub(crate) fn metadata(&self, reason: &str) -> Value {
        let mut metadata = json!({"reason": reason, "actor": self.actor});
        if let Some(note) = &self.note {
            metadata["note"] = note.as_str().into();
        }
        metadata
    }
}

/// An operator action the state machine refuses for a task's current state: `allowed` are the
/// states the action needs.
pub(crate) fn refuse_task(
    task_id: TaskId,
    state: TaskState,
    action: &'static str,
    allowed: &[TaskState],
) -> EngineError {
    let allowed: Vec<&'static str> = allowed.iter().map(|s| s.as_str()).collect();
    EngineError::ActionRefused(Box::new(ActionRefusal {
        entity: "task",
        id: task_id.to_string(),
        name: None,
        state: state.as_str(),
        action,
        rule: rule("task", action, &allowed),
        allowed,
    }))
}

/// [`refuse_task`] for a step's action: the step's own state does not allow it.
pub(crate) fn refuse_step(
    step_id: StepId,
    name: &str,
    state: StepState,
    action: &'static str,
    allowed: &[StepState],
) -> EngineError {
    let allowed: Vec<&'static str> = allowed.iter().map(|s| s.as_str()).collect();
    EngineError::ActionRefused(Box::new(ActionRefusal {
        entity: "step",
        id: step_id.to_string(),
        name: Some(name.to_owned()),
        state: state.as_str(),
        action,
        rule: rule("step", action, &allowed),
        allowed,
    }))
}

/// A step's action refused because its task is finished, whatever the step's state.
pub(crate) fn refuse_step_of_finished_task(
    task_id: TaskId,
    state: TaskState,
    action: &'static str,
) -> EngineError {
    EngineError::ActionRefused(Box::new(ActionRefusal {
        entity: "task",
        id: task_id.to_string(),
        name: None,
        state: state.as_str(),
        action,
        allowed: [TaskState::Pending, TaskState::InProgress, TaskState::Error]
            .iter()
            .map(|s| s.as_str())
            .collect(),
        rule: format!(
            "the steps of a finished task cannot be {}",
            participle(action)
        ),
    }))
}

fn participle(action: &str) -> &str {
    match action {
        "cancel" => "cancelled",
        "retry" => "retried",
        "resolve" => "resolved",
        other => other,
    }
}

/// `only a task that is in error can be retried`.
fn rule(entity: &str, action: &str, allowed: &[&str]) -> String {
    let states: Vec<&str> = allowed.iter().map(|s| described(s)).collect();
    let states = match states.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "in no state".to_owned(),
    };
    format!(
        "only a {entity} that is {states} can be {}",
        participle(action)
    )
}

/// How to create a task beyond what its request says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// The correlation id to store (a new one is generated when absent).
    pub correlation_id: Option<String>,
    /// A caller's idempotency key: the same key for the same workflow is the same task.
    pub idempotency_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_state_and_the_states_the_action_needs() {
        let task = TaskId::new();
        assert_eq!(
            refuse_task(task, TaskState::Cancelled, "retry", &[TaskState::Error]).to_string(),
            format!("task {task} is cancelled: only a task that is in error can be retried")
        );
        let step = StepId::new();
        assert_eq!(
            refuse_step(
                step,
                "charge",
                StepState::Complete,
                "resolve",
                &[StepState::Pending, StepState::Error]
            )
            .to_string(),
            format!(
                "step {step} (`charge`) is complete: only a step that is pending or in error can be resolved"
            )
        );
        assert_eq!(
            refuse_step_of_finished_task(task, TaskState::ResolvedManually, "cancel").to_string(),
            format!(
                "task {task} is resolved_manually: the steps of a finished task cannot be cancelled"
            )
        );
        assert_eq!(
            rule("task", "cancel", &["pending", "in_progress", "error"]),
            "only a task that is pending, in_progress or in error can be cancelled"
        );
    }

    #[test]
    fn metadata_names_the_actor_and_keeps_the_engine_reason() {
        assert_eq!(
            Operator::system().metadata("cancel_requested"),
            json!({"reason": "cancel_requested", "actor": "system"})
        );
        assert_eq!(
            Operator::new("alice", Some("customer asked".into())).metadata("retry_requested"),
            json!({"reason": "retry_requested", "actor": "alice", "note": "customer asked"})
        );
    }
}
