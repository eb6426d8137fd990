//! The names of the lifecycle events that state transitions emit (the Rails engine's lifecycle names).
//!
//! They live in the domain so that `tasker-state-machine` can name the event of each transition
//! and `tasker-events` can build its catalog on the same constants.

/// Task lifecycle events.
pub mod task {
    /// A task was created or sent back to pending.
    pub const INITIALIZE_REQUESTED: &str = "task.initialize_requested";
    /// A task started running.
    pub const START_REQUESTED: &str = "task.start_requested";
    /// Every step of a task is done.
    pub const COMPLETED: &str = "task.completed";
    /// A task ended in error.
    pub const FAILED: &str = "task.failed";
    /// A task in error was sent back to pending to run again.
    pub const RETRY_REQUESTED: &str = "task.retry_requested";
    /// A task was cancelled.
    pub const CANCELLED: &str = "task.cancelled";
    /// An operator resolved a task by hand.
    pub const RESOLVED_MANUALLY: &str = "task.resolved_manually";
}

/// Step lifecycle events.
pub mod step {
    /// A step was sent back to pending.
    pub const INITIALIZE_REQUESTED: &str = "step.initialize_requested";
    /// A step was claimed and is about to run.
    pub const EXECUTION_REQUESTED: &str = "step.execution_requested";
    /// A step finished successfully.
    pub const COMPLETED: &str = "step.completed";
    /// A step attempt failed.
    pub const FAILED: &str = "step.failed";
    /// A failed step was sent back to pending for another attempt.
    pub const RETRY_REQUESTED: &str = "step.retry_requested";
    /// A step was cancelled.
    pub const CANCELLED: &str = "step.cancelled";
    /// An operator resolved a step by hand.
    pub const RESOLVED_MANUALLY: &str = "step.resolved_manually";
    /// The step handler is about to be called for an attempt.
    pub const BEFORE_HANDLE: &str = "step.before_handle";
}

/// First segments a custom event may not use: they belong to Tasker's own events.
pub const RESERVED_PREFIXES: &[&str] = &[
    "task",
    "step",
    "workflow",
    "observability",
    "tasker",
    "test",
    "handler",
    "plugin",
    "subscriber",
    "registry",
    "custom",
    "runtime",
];

/// Why a custom event name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CustomNameError {
    /// Blank, or with blank segments.
    #[error("custom event name `{0}` has a blank segment; use `namespace.event`")]
    Blank(String),
    /// No namespace.
    #[error("custom event name `{0}` needs a namespace: `namespace.event`, e.g. `orders.{0}`")]
    NoNamespace(String),
    /// A character outside `[A-Za-z0-9_.-]`.
    #[error(
        "custom event name `{name}` contains `{character}`; use letters, digits, `_`, `-` and `.`"
    )]
    BadCharacter {
        /// The name.
        name: String,
        /// The first refused character.
        character: char,
    },
    /// A reserved first segment.
    #[error("custom event name `{name}` uses the reserved namespace `{prefix}` (reserved: {})", RESERVED_PREFIXES.join(", "))]
    Reserved {
        /// The name.
        name: String,
        /// The reserved segment.
        prefix: String,
    },
}

/// Checks a custom event name: `namespace.event[.more]`, letters, digits, `_`, `-` and `.`,
/// at most 128 characters, and a first segment that is not one of [`RESERVED_PREFIXES`]. The
/// name is published and subscribed to exactly as written (no implicit `custom.` prefix).
pub fn check_custom_name(name: &str) -> Result<(), CustomNameError> {
    if let Some(character) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(CustomNameError::BadCharacter {
            name: name.to_owned(),
            character,
        });
    }
    if name.len() > 128 || name.split('.').any(str::is_empty) {
        return Err(CustomNameError::Blank(name.to_owned()));
    }
    let Some((prefix, _)) = name.split_once('.') else {
        return Err(CustomNameError::NoNamespace(name.to_owned()));
    };
    if RESERVED_PREFIXES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(prefix))
    {
        return Err(CustomNameError::Reserved {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names_need_a_free_namespace() {
        assert_eq!(check_custom_name("orders.fulfilled"), Ok(()));
        assert_eq!(check_custom_name("data_pipeline.milestone-1.done"), Ok(()));
        assert!(matches!(
            check_custom_name("fulfilled"),
            Err(CustomNameError::NoNamespace(_))
        ));
        assert!(matches!(
            check_custom_name("orders..x"),
            Err(CustomNameError::Blank(_))
        ));
        assert!(matches!(
            check_custom_name(""),
            Err(CustomNameError::Blank(_))
        ));
        let reserved = check_custom_name("Task.completed_early").unwrap_err();
        assert!(reserved.to_string().contains("reserved namespace `Task`"));
        assert!(matches!(
            check_custom_name("runtime.switch_flipped"),
            Err(CustomNameError::Reserved { .. })
        ));
        assert!(matches!(
            check_custom_name("orders.ful filled"),
            Err(CustomNameError::BadCharacter { character: ' ', .. })
        ));
        assert!(check_custom_name(&format!("a.{}", "b".repeat(200))).is_err());
    }
}
