//! The values both machines answer with: a transition, an idempotent no-op, or a refusal.

use std::fmt;

use serde::Serialize;
use tasker_domain::{StepState, TaskState};

/// Which state machine a transition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Machine {
    /// The task machine (the Rails engine's task machine).
    Task,
    /// The workflow step machine (the Rails engine's step machine).
    Step,
}

impl Machine {
    /// `task` or `step`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Machine::Task => "task",
            Machine::Step => "step",
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An allowed change of state: what to persist (`from_state`, `to_state`) and what to publish
/// (`event`, one of the `tasker_domain::event_names` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Transition<S> {
    /// The state before the transition.
    pub from_state: S,
    /// The state after the transition.
    pub to_state: S,
    /// The lifecycle event this transition emits.
    pub event: &'static str,
}

/// The answer to an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome<S> {
    /// The object is already in the requested state: nothing to record, no event.
    AlreadyInState(S),
    /// The state changes; record it and publish its event.
    Transitioned(Transition<S>),
}

impl<S: Copy> TransitionOutcome<S> {
    /// The state the object is in once the request is applied.
    pub fn state(self) -> S {
        match self {
            TransitionOutcome::AlreadyInState(state) => state,
            TransitionOutcome::Transitioned(transition) => transition.to_state,
        }
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The transition table has no such pair.
    #[error("not allowed")]
    NotAllowed,
    /// Task → complete needs every step done (complete or resolved manually).
    #[error("{done_steps} of {total_steps} steps done")]
    StepsNotDone {
        /// Steps that are complete or resolved manually.
        done_steps: usize,
        /// Steps of the task.
        total_steps: usize,
    },
    /// Step → in_progress needs every parent step done (complete or resolved manually).
    #[error("{done_parents} of {total_parents} parent steps done")]
    ParentsNotDone {
        /// Parent steps that are complete or resolved manually.
        done_parents: usize,
        /// Parent steps of the step.
        total_parents: usize,
    },
    /// The transition has a guard and the caller passed no facts to check it with.
    #[error("guard facts not given")]
    GuardFactsMissing,
}

/// A refused transition: which machine, between which states, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "machine", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransitionError {
    /// A task transition was refused.
    #[error("task cannot move from {from_state} to {to_state}: {reason}")]
    Task {
        /// The task's current state.
        from_state: TaskState,
        /// The requested state.
        to_state: TaskState,
        /// Why it was refused.
        #[serde(flatten)]
        reason: Refusal,
    },
    /// A step transition was refused.
    #[error("step cannot move from {from_state} to {to_state}: {reason}")]
    Step {
        /// The step's current state.
        from_state: StepState,
        /// The requested state.
        to_state: StepState,
        /// Why it was refused.
        #[serde(flatten)]
        reason: Refusal,
    },
}

impl TransitionError {
    /// The machine that refused.
    pub const fn machine(&self) -> Machine {
        match self {
            TransitionError::Task { .. } => Machine::Task,
            TransitionError::Step { .. } => Machine::Step,
        }
    }

    /// Why the transition was refused.
    pub const fn reason(&self) -> Refusal {
        match self {
            TransitionError::Task { reason, .. } | TransitionError::Step { reason, .. } => *reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_messages_name_machine_states_and_reason() {
        let cases = [
            (
                TransitionError::Step {
                    from_state: StepState::Complete,
                    to_state: StepState::Pending,
                    reason: Refusal::NotAllowed,
                },
                "step cannot move from complete to pending: not allowed",
            ),
            (
                TransitionError::Task {
                    from_state: TaskState::InProgress,
                    to_state: TaskState::Complete,
                    reason: Refusal::StepsNotDone {
                        done_steps: 3,
                        total_steps: 5,
                    },
                },
                "task cannot move from in_progress to complete: 3 of 5 steps done",
            ),
            (
                TransitionError::Step {
                    from_state: StepState::Pending,
                    to_state: StepState::InProgress,
                    reason: Refusal::ParentsNotDone {
                        done_parents: 0,
                        total_parents: 1,
                    },
                },
                "step cannot move from pending to in_progress: 0 of 1 parent steps done",
            ),
            (
                TransitionError::Task {
                    from_state: TaskState::InProgress,
                    to_state: TaskState::Complete,
                    reason: Refusal::GuardFactsMissing,
                },
                "task cannot move from in_progress to complete: guard facts not given",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn error_reports_its_machine_and_reason() {
        let task = TransitionError::Task {
            from_state: TaskState::Cancelled,
            to_state: TaskState::Pending,
            reason: Refusal::NotAllowed,
        };
        assert_eq!(
            (task.machine(), task.reason()),
            (Machine::Task, Refusal::NotAllowed)
        );
        let step = TransitionError::Step {
            from_state: StepState::Pending,
            to_state: StepState::InProgress,
            reason: Refusal::GuardFactsMissing,
        };
        assert_eq!(
            (step.machine(), step.reason()),
            (Machine::Step, Refusal::GuardFactsMissing)
        );
    }

    #[test]
    fn error_serializes_flat_for_api_details() {
        let err = TransitionError::Task {
            from_state: TaskState::InProgress,
            to_state: TaskState::Complete,
            reason: Refusal::StepsNotDone {
                done_steps: 4,
                total_steps: 5,
            },
        };
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({
                "machine": "task",
                "from_state": "in_progress",
                "to_state": "complete",
                "reason": "steps_not_done",
                "done_steps": 4,
                "total_steps": 5,
            })
        );
        let err = TransitionError::Step {
            from_state: StepState::Cancelled,
            to_state: StepState::Pending,
            reason: Refusal::NotAllowed,
        };
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({
                "machine": "step",
                "from_state": "cancelled",
                "to_state": "pending",
                "reason": "not_allowed",
            })
        );
    }

    #[test]
    fn transition_serializes_with_payload_field_names() {
        let transition = Transition {
            from_state: StepState::Error,
            to_state: StepState::Pending,
            event: "step.retry_requested",
        };
        assert_eq!(
            serde_json::to_value(transition).unwrap(),
            json!({
                "from_state": "error",
                "to_state": "pending",
                "event": "step.retry_requested",
            })
        );
    }

    #[test]
    fn outcome_state_is_the_state_after_the_request() {
        let same = TransitionOutcome::AlreadyInState(TaskState::Error);
        assert_eq!(same.state(), TaskState::Error);
        let moved = TransitionOutcome::Transitioned(Transition {
            from_state: TaskState::Error,
            to_state: TaskState::Pending,
            event: "task.retry_requested",
        });
        assert_eq!(moved.state(), TaskState::Pending);
    }

    #[test]
    fn machine_names() {
        assert_eq!(
            [Machine::Task.as_str(), Machine::Step.as_str()],
            ["task", "step"]
        );
        assert_eq!(Machine::Step.to_string(), "step");
        assert_eq!(serde_json::to_value(Machine::Task).unwrap(), json!("task"));
    }
}
