//! The names of the events Tasker publishes, as constants by category, so subscribers match on
//! a constant rather than a string. Task and step names live in `tasker_domain::event_names`
//! (the state machine names them) and are re-exported here. Names of the Rails catalog that
//! Tasker never publishes are not constants (a subscription to one would fail at run time):
//! they are data in [`crate::catalog`], each with the reason.

pub use tasker_domain::event_names::{step, task};

/// Orchestration events: the coordinator's own work.
pub mod workflow {
    /// A claim found ready steps.
    pub const VIABLE_STEPS_DISCOVERED: &str = "workflow.viable_steps_discovered";
    /// Nothing is ready: the coordinator went idle.
    pub const NO_VIABLE_STEPS: &str = "workflow.no_viable_steps";
    /// A batch of attempts was recorded.
    pub const STEPS_EXECUTION_COMPLETED: &str = "workflow.steps_execution_completed";
}

/// Observability events.
pub mod observability {
    /// A failed step waits before its next attempt.
    pub const STEP_BACKOFF: &str = "observability.step.backoff";
    /// A step was skipped.
    pub const STEP_SKIP: &str = "observability.step.skip";
    /// A step used its last attempt.
    pub const STEP_MAX_RETRIES_REACHED: &str = "observability.step.max_retries_reached";
}

/// Operators' runtime controls.
pub mod runtime {
    /// A runtime switch was set or lifted (pause, resume, namespace limit).
    pub const SWITCH_CHANGED: &str = "runtime.switch_changed";
}
