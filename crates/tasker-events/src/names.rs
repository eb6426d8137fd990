//! Every event name of the Rails catalog (inventory §6.2) as a constant, by category. Task and
//! step names live in `tasker_domain::event_names` (the state machine names them) and are
//! re-exported here; [`crate::catalog`] says for each name what Tasker publishes.

pub use tasker_domain::event_names::{step, task};

/// Orchestration events: the coordinator's own work.
pub mod workflow {
    /// A task's first step was claimed.
    pub const TASK_STARTED: &str = "workflow.task_started";
    /// A task completed.
    pub const TASK_COMPLETED: &str = "workflow.task_completed";
    /// A task failed.
    pub const TASK_FAILED: &str = "workflow.task_failed";
    /// A step completed.
    pub const STEP_COMPLETED: &str = "workflow.step_completed";
    /// A step failed.
    pub const STEP_FAILED: &str = "workflow.step_failed";
    /// A claim found ready steps.
    pub const VIABLE_STEPS_DISCOVERED: &str = "workflow.viable_steps_discovered";
    /// Nothing is ready: the coordinator went idle.
    pub const NO_VIABLE_STEPS: &str = "workflow.no_viable_steps";
    /// Orchestration of a task was requested.
    pub const ORCHESTRATION_REQUESTED: &str = "workflow.orchestration_requested";
    /// Finalization of a task began.
    pub const TASK_FINALIZATION_STARTED: &str = "workflow.task_finalization_started";
    /// Finalization of a task ended.
    pub const TASK_FINALIZATION_COMPLETED: &str = "workflow.task_finalization_completed";
    /// Re-enqueueing a task began.
    pub const TASK_REENQUEUE_STARTED: &str = "workflow.task_reenqueue_started";
    /// A task was re-enqueued.
    pub const TASK_REENQUEUE_REQUESTED: &str = "workflow.task_reenqueue_requested";
    /// Re-enqueueing a task failed.
    pub const TASK_REENQUEUE_FAILED: &str = "workflow.task_reenqueue_failed";
    /// A task was re-enqueued with a delay.
    pub const TASK_REENQUEUE_DELAYED: &str = "workflow.task_reenqueue_delayed";
    /// A task's state could not be determined.
    pub const TASK_STATE_UNCLEAR: &str = "workflow.task_state_unclear";
    /// The executor failed around a step.
    pub const STEP_EXECUTION_FAILED: &str = "workflow.step_execution_failed";
    /// A batch of ready steps is ready to run.
    pub const VIABLE_STEPS_BATCH_READY: &str = "workflow.viable_steps_batch_ready";
    /// A batch of attempts started.
    pub const STEPS_EXECUTION_STARTED: &str = "workflow.steps_execution_started";
    /// A batch of attempts was recorded.
    pub const STEPS_EXECUTION_COMPLETED: &str = "workflow.steps_execution_completed";
}

/// Observability events.
pub mod observability {
    /// A task was handled.
    pub const TASK_HANDLE: &str = "observability.task.handle";
    /// A task was enqueued.
    pub const TASK_ENQUEUE: &str = "observability.task.enqueue";
    /// A task was finalized.
    pub const TASK_FINALIZE: &str = "observability.task.finalize";
    /// A step was handled.
    pub const STEP_HANDLE: &str = "observability.step.handle";
    /// Ready steps were looked for.
    pub const STEP_FIND_VIABLE: &str = "observability.step.find_viable";
    /// A failed step waits before its next attempt.
    pub const STEP_BACKOFF: &str = "observability.step.backoff";
    /// A step was skipped.
    pub const STEP_SKIP: &str = "observability.step.skip";
    /// A step used its last attempt.
    pub const STEP_MAX_RETRIES_REACHED: &str = "observability.step.max_retries_reached";
}

/// Metrics export events of the Rails telemetry subsystem.
pub mod telemetry {
    /// Metrics were synced to the shared cache.
    pub const CACHE_SYNCED: &str = "tasker.telemetry.cache_synced";
    /// An export was requested.
    pub const EXPORT_REQUESTED: &str = "tasker.telemetry.export_requested";
    /// An export finished.
    pub const EXPORT_COMPLETED: &str = "tasker.telemetry.export_completed";
    /// An export failed.
    pub const EXPORT_FAILED: &str = "tasker.telemetry.export_failed";
    /// An exporter plugin was registered.
    pub const PLUGIN_REGISTERED: &str = "tasker.telemetry.plugin_registered";
    /// An exporter plugin was unregistered.
    pub const PLUGIN_UNREGISTERED: &str = "tasker.telemetry.plugin_unregistered";
}

/// Names the Rails test suite registers.
pub mod test {
    /// A test event.
    pub const EVENT: &str = "test.event";
    /// A deliberately slow test event.
    pub const SLOW_EVENT: &str = "slow.event";
    /// A custom test event.
    pub const CUSTOM_EVENT: &str = "custom.event";
    /// A capitalised test event.
    pub const CAPITALISED_EVENT: &str = "Test.Event";
}

/// Registry constants Rails declares but logs instead of publishing.
pub mod registry {
    /// A handler was registered.
    pub const HANDLER_REGISTERED: &str = "handler.registered";
    /// A handler was unregistered.
    pub const HANDLER_UNREGISTERED: &str = "handler.unregistered";
    /// A handler failed validation.
    pub const HANDLER_VALIDATION_FAILED: &str = "handler.validation_failed";
    /// A plugin was registered.
    pub const PLUGIN_REGISTERED: &str = "plugin.registered";
    /// A plugin was unregistered.
    pub const PLUGIN_UNREGISTERED: &str = "plugin.unregistered";
    /// A plugin failed validation.
    pub const PLUGIN_VALIDATION_FAILED: &str = "plugin.validation_failed";
    /// A subscriber was registered.
    pub const SUBSCRIBER_REGISTERED: &str = "subscriber.registered";
    /// A subscriber was unregistered.
    pub const SUBSCRIBER_UNREGISTERED: &str = "subscriber.unregistered";
    /// A subscriber failed validation.
    pub const SUBSCRIBER_VALIDATION_FAILED: &str = "subscriber.validation_failed";
    /// Registries were asked to sync.
    pub const SYNC_REQUESTED: &str = "registry.sync_requested";
    /// A registry health check ran.
    pub const HEALTH_CHECK: &str = "registry.health_check";
    /// Registry statistics were collected.
    pub const STATS_COLLECTED: &str = "registry.stats_collected";
    /// Registries discovered each other.
    pub const CROSS_DISCOVERY: &str = "registry.cross_discovery";
    /// Registry coordination finished.
    pub const COORDINATION_COMPLETE: &str = "registry.coordination_complete";
}
