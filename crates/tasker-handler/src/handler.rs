//! The step handler trait, what a handler receives, and task-level hooks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tasker_domain::{StepError, StepId, TaskId, TaskRequest};
use tasker_events::{BusError, CustomPayload, EventBus, TaskLabels};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};

/// Everything one attempt of a step gets.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The task.
    pub task_id: TaskId,
    /// The step.
    pub step_id: StepId,
    /// The step's name.
    pub step_name: String,
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub task_name: String,
    /// The template's version.
    pub version: semver::Version,
    /// The task's context (shared by all its steps).
    pub task_context: Arc<Value>,
    /// The step's `handler_config` from the template.
    pub config: Value,
    /// The step's stored inputs.
    pub inputs: Value,
    /// Results of the step's parents, by step name.
    pub parent_results: BTreeMap<String, Value>,
    /// This attempt's number, 1 for the first.
    pub attempt: u32,
    /// The most attempts the step gets.
    pub retry_limit: u32,
    /// Stable across the step's attempts: pass it to outside services to make retries safe.
    pub idempotency_key: String,
    /// The task's correlation id.
    pub correlation_id: String,
    /// Cancelled when the task or step is cancelled or the engine shuts down.
    pub cancellation: CancellationToken,
    /// Publishes custom events on the engine's bus, stamped with this step.
    pub events: StepEvents,
}

/// A step's handle on the engine's event bus: [`StepEvents::publish`] sends a registered
/// custom event (declared in a template's `custom_events` or registered in code) under exactly
/// the name given, with the task, step, template and correlation id attached.
#[derive(Clone)]
pub struct StepEvents {
    bus: EventBus,
    clock: Arc<dyn Clock>,
    task_id: TaskId,
    step_id: StepId,
    step_name: Arc<str>,
    labels: TaskLabels,
}

impl std::fmt::Debug for StepEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEvents")
            .field("step_id", &self.step_id)
            .finish_non_exhaustive()
    }
}

impl StepEvents {
    pub(crate) fn new(
        bus: EventBus,
        clock: Arc<dyn Clock>,
        task_id: TaskId,
        step_id: StepId,
        step_name: Arc<str>,
        labels: TaskLabels,
    ) -> Self {
        Self {
            bus,
            clock,
            task_id,
            step_id,
            step_name,
            labels,
        }
    }

    /// A handle on a bus of its own, for calling handlers outside an engine (unit tests).
    pub fn detached(task_id: TaskId, step_id: StepId, step_name: &str) -> Self {
        Self::new(
            EventBus::new(),
            Arc::new(SystemClock),
            task_id,
            step_id,
            step_name.into(),
            TaskLabels {
                namespace: "".into(),
                task_name: "".into(),
                version: "".into(),
                correlation_id: "".into(),
            },
        )
    }

    /// Publishes the custom event `name` with `data`. Fails, publishing nothing, when `name`
    /// is not a registered custom event.
    pub fn publish(&self, name: &str, data: Value) -> Result<(), BusError> {
        self.bus.publish_custom(
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
    }

    /// The bus (to subscribe from a handler's own tests, for example).
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }
}

/// Runs one step. Return results, or a [`StepError`]: retryable (optionally with
/// `retry_after`) or permanent. A panic counts as a retryable failed attempt.
#[async_trait::async_trait]
pub trait StepHandler: Send + Sync + 'static {
    /// Performs one attempt.
    async fn handle(&self, step: StepContext) -> Result<Value, StepError>;
}

/// Task-level hooks a template may attach through `task_handler_class`.
#[async_trait::async_trait]
pub trait TaskHooks: Send + Sync + 'static {
    /// Before creation: adjust the request (defaults, derived context). Errors refuse creation.
    async fn establish_step_dependencies_and_defaults(
        &self,
        request: &mut TaskRequest,
    ) -> Result<(), StepError> {
        let _ = request;
        Ok(())
    }

    /// At finalization: annotations to store on the task, as `(type, annotation)`.
    async fn update_annotations(
        &self,
        task_id: TaskId,
        final_state: tasker_domain::TaskState,
    ) -> Vec<(String, Value)> {
        let _ = (task_id, final_state);
        Vec::new()
    }
}
