//! Task and step states. Both machines share the six Rails states; the allowed transitions
//! between them live in `tasker-state-machine`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A state name that is not one of the six states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown {kind} state `{value}` (expected one of pending, in_progress, complete, error, cancelled, resolved_manually)"
)]
pub struct StateParseError {
    /// `task` or `step`.
    pub kind: &'static str,
    /// The text that did not parse.
    pub value: String,
}

macro_rules! state_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            /// Created, not yet started (or waiting to run again).
            Pending,
            /// Being worked on.
            InProgress,
            /// Finished successfully.
            Complete,
            /// Failed; may be retried.
            Error,
            /// Stopped by a user; terminal.
            Cancelled,
            /// Marked done by an operator; counts as complete.
            ResolvedManually,
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: [$name; 6] = [
                $name::Pending,
                $name::InProgress,
                $name::Complete,
                $name::Error,
                $name::Cancelled,
                $name::ResolvedManually,
            ];

            /// The stored, snake_case name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $name::Pending => "pending",
                    $name::InProgress => "in_progress",
                    $name::Complete => "complete",
                    $name::Error => "error",
                    $name::Cancelled => "cancelled",
                    $name::ResolvedManually => "resolved_manually",
                }
            }

            /// `complete` or `resolved_manually`: counts as done for dependants and completion.
            pub const fn is_done(self) -> bool {
                matches!(self, $name::Complete | $name::ResolvedManually)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StateParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .into_iter()
                    .find(|state| state.as_str() == s)
                    .ok_or_else(|| StateParseError { kind: $kind, value: s.to_owned() })
            }
        }
    };
}

state_enum!(
    /// The state of a task.
    TaskState,
    "task"
);
state_enum!(
    /// The state of a workflow step.
    StepState,
    "step"
);

impl StepState {
    /// Terminal for steps: no transition leaves these states.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Complete | StepState::Cancelled | StepState::ResolvedManually
        )
    }
}

impl TaskState {
    /// Terminal: no transition leaves a finished task (one in error may still be retried or
    /// resolved by hand).
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Complete | TaskState::Cancelled | TaskState::ResolvedManually
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>().unwrap(), state);
        }
    }

    #[test]
    fn unknown_state_names_the_value() {
        let err = "finished".parse::<StepState>().unwrap_err();
        assert_eq!(err.value, "finished");
        assert!(err.to_string().starts_with("unknown step state `finished`"));
    }

    #[test]
    fn done_means_complete_or_resolved() {
        let done: Vec<_> = StepState::ALL.into_iter().filter(|s| s.is_done()).collect();
        assert_eq!(done, [StepState::Complete, StepState::ResolvedManually]);
    }
}
