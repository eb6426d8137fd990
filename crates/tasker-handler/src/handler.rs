//! The step handler trait, what a handler receives, and task-level hooks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tasker_domain::{StepError, StepId, TaskId, TaskRequest, TaskState};
use tokio_util::sync::CancellationToken;

use crate::events::{RecordedEvents, StepEvents};

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

impl StepContext {
    /// A context for calling a handler outside an engine, as a handler's unit tests do: fresh
    /// ids, template `default/standalone@1.0.0`, an empty task context and no parents, attempt 1
    /// of 3, and a [`StepEvents::recording`] handle whose events the returned [`RecordedEvents`]
    /// reads. The fields are public: set what the test needs.
    pub fn standalone(config: Value) -> (Self, RecordedEvents) {
        let (events, recorded) = StepEvents::recording();
        let step_id = StepId::new();
        let context = Self {
            task_id: TaskId::new(),
            step_id,
            step_name: "standalone".into(),
            namespace: tasker_domain::DEFAULT_NAMESPACE.into(),
            task_name: "standalone".into(),
            version: semver::Version::new(1, 0, 0),
            task_context: Arc::new(Value::Object(serde_json::Map::new())),
            config,
            inputs: Value::Object(serde_json::Map::new()),
            parent_results: BTreeMap::new(),
            attempt: 1,
            retry_limit: 3,
            idempotency_key: step_id.to_string(),
            correlation_id: "standalone".into(),
            cancellation: CancellationToken::new(),
            events,
        };
        (context, recorded)
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
        final_state: TaskState,
    ) -> Vec<(String, Value)> {
        let _ = (task_id, final_state);
        Vec::new()
    }
}
