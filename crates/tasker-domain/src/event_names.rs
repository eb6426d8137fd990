//! The names of the lifecycle events that state transitions emit (inventory §2.5).
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
    /// Published before every task transition.
    pub const BEFORE_TRANSITION: &str = "task.before_transition";
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
    /// An operator resolved a step by hand (or it was skipped).
    pub const RESOLVED_MANUALLY: &str = "step.resolved_manually";
    /// Published before every step transition.
    pub const BEFORE_TRANSITION: &str = "step.before_transition";
}
