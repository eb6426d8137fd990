//! GraphQL's object, input and enum types. Tasks and steps resolve their relations through the
//! request's loaders; the rest reuse the REST views.

use std::sync::Arc;

use async_graphql::{Context, Enum, ErrorExtensions, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_domain::{StepState, TaskId, TaskState, TemplateId};
use tasker_events::{Event, Payload};
use tasker_persistence::{StepRecord, TaskRecord};
use uuid::Uuid;

use super::loaders::Loaders;
use crate::error::ApiError;
use crate::state::Shared;
use crate::views::{GraphView, TransitionView};

/// Turns the API's errors into GraphQL errors carrying the REST code, HTTP status and
/// details in `extensions`.
pub(crate) fn gql(err: ApiError) -> async_graphql::Error {
    let code = err.error_code();
    let status = err.status().as_u16();
    let details = async_graphql::Value::from_json(err.details().clone()).unwrap_or_default();
    async_graphql::Error::new(err.message().to_owned()).extend_with(move |_, e| {
        e.set("code", code.as_str());
        e.set("status", status);
        if let Some(classification) = super::gate::classification(code, status) {
            e.set("classification", classification);
        }
        if details != async_graphql::Value::Null {
            e.set("details", details.clone());
        }
    })
}

/// `?` for anything that becomes an [`ApiError`].
pub(crate) trait OrGql<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T, E: Into<ApiError>> OrGql<T> for Result<T, E> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| gql(e.into()))
    }
}

pub(crate) fn shared<'a>(ctx: &Context<'a>) -> &'a Arc<Shared> {
    ctx.data_unchecked::<Arc<Shared>>()
}

pub(crate) fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    ctx.data_unchecked::<Loaders>()
}

/// A task's state.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "TaskState")]
pub(crate) enum TaskStateValue {
    Pending,
    InProgress,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

impl From<TaskState> for TaskStateValue {
    fn from(state: TaskState) -> Self {
        match state.as_str() {
            "pending" => Self::Pending,
            "in_progress" => Self::InProgress,
            "complete" => Self::Complete,
            "error" => Self::Error,
            "cancelled" => Self::Cancelled,
            _ => Self::ResolvedManually,
        }
    }
}

impl TaskStateValue {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Complete => "complete",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::ResolvedManually => "resolved_manually",
        }
    }
}

/// A step's state.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "StepState")]
pub(crate) enum StepStateValue {
    Pending,
    InProgress,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

impl From<StepState> for StepStateValue {
    fn from(state: StepState) -> Self {
        match state.as_str() {
            "pending" => Self::Pending,
            "in_progress" => Self::InProgress,
            "complete" => Self::Complete,
            "error" => Self::Error,
            "cancelled" => Self::Cancelled,
            _ => Self::ResolvedManually,
        }
    }
}

/// The order of a task listing.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TaskOrder {
    /// Newest first.
    #[default]
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// Which tasks a listing returns; the same filters as `GET /tasks`.
#[derive(InputObject, Debug, Clone, Default)]
pub(crate) struct TaskFilterInput {
    /// Template namespace.
    pub(crate) namespace: Option<String>,
    /// Template name.
    pub(crate) name: Option<String>,
    /// Template version.
    pub(crate) version: Option<String>,
    /// Current state.
    pub(crate) state: Option<TaskStateValue>,
    /// Annotation filter `type:key=value` (the value is JSON, or a string when it is not).
    pub(crate) annotation: Option<String>,
    /// Created at or after.
    pub(crate) created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub(crate) created_before: Option<DateTime<Utc>>,
    /// Finished at or after.
    pub(crate) completed_after: Option<DateTime<Utc>>,
    /// Finished before.
    pub(crate) completed_before: Option<DateTime<Utc>>,
    /// The order (newest first when absent).
    pub(crate) order: Option<TaskOrder>,
}

/// A task to create; the same fields as `POST /tasks`.
#[derive(InputObject, Debug, Clone)]
pub(crate) struct CreateTaskInput {
    /// The template's namespace (`default` when absent).
    pub(crate) namespace: Option<String>,
    /// The template's name.
    pub(crate) name: String,
    /// An exact version; the highest registered when absent.
    pub(crate) version: Option<String>,
    /// The task's input, validated against the template's schema.
    pub(crate) context: Option<Value>,
    /// Who asks (defaults to the authenticated subject).
    pub(crate) initiator: Option<String>,
    /// Which system asks.
    pub(crate) source_system: Option<String>,
    /// Why.
    pub(crate) reason: Option<String>,
    /// Free-form labels.
    #[graphql(default)]
    pub(crate) tags: Vec<String>,
    /// Skippable steps to bypass.
    #[graphql(default)]
    pub(crate) bypass_steps: Vec<String>,
    /// Makes creation idempotent, like the `Idempotency-Key` header: the same key for the same
    /// workflow returns the first task.
    pub(crate) idempotency_key: Option<String>,
}

/// Changes to a task's descriptive fields.
#[derive(InputObject, Debug, Clone)]
pub(crate) struct UpdateTaskInput {
    /// A new reason.
    pub(crate) reason: Option<String>,
    /// New tags (replacing the old ones).
    pub(crate) tags: Option<Vec<String>>,
}

/// Which events a subscription delivers; the filters combine.
#[derive(InputObject, Debug, Clone, Default)]
pub(crate) struct EventFilterInput {
    /// Only events of tasks of this template namespace.
    pub(crate) namespace: Option<String>,
    /// Only events of tasks of this template name.
    pub(crate) name: Option<String>,
    /// Only this category (`task`, `step`, `workflow`, `custom`, ...).
    pub(crate) category: Option<String>,
    /// Only these event names or patterns (`task.*`).
    pub(crate) events: Option<Vec<String>>,
}

/// A task: one run of a workflow.
pub(crate) struct Task(pub(crate) TaskRecord);

#[Object]
impl Task {
    /// The task's id.
    async fn id(&self) -> Uuid {
        self.0.task_id.as_uuid()
    }
    /// The template's namespace.
    async fn namespace(&self) -> &str {
        &self.0.namespace
    }
    /// The template's name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The template's version.
    async fn version(&self) -> &str {
        &self.0.version
    }
    /// Its state.
    async fn state(&self) -> TaskStateValue {
        self.0.state.into()
    }
    /// Its input.
    async fn context(&self) -> &Value {
        &self.0.context
    }
    /// The correlation id its logs and events carry.
    async fn correlation_id(&self) -> &str {
        &self.0.correlation_id
    }
    /// Free-form labels.
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    /// Steps bypassed at creation.
    async fn bypass_steps(&self) -> &[String] {
        &self.0.bypass_steps
    }
    /// Who asked.
    async fn initiator(&self) -> &str {
        &self.0.initiator
    }
    /// Which system asked.
    async fn source_system(&self) -> &str {
        &self.0.source_system
    }
    /// Why.
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    /// Steps in all.
    async fn total_steps(&self) -> u32 {
        self.0.total_steps
    }
    /// Steps done.
    async fn done_steps(&self) -> u32 {
        self.0.done_steps
    }
    /// Steps with no attempt left.
    async fn blocked_steps(&self) -> u32 {
        self.0.blocked_steps
    }
    /// Steps running, ready or waiting for a retry.
    async fn active_steps(&self) -> u32 {
        self.0.active_steps
    }
    /// When it was requested.
    async fn requested_at(&self) -> DateTime<Utc> {
        self.0.requested_at
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it reached a final state.
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.0.completed_at
    }
    /// Its steps, in template order.
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Step>> {
        let steps = steps_of(ctx, self.0.task_id).await?;
        Ok(steps
            .iter()
            .map(|s| Step::new(s.clone(), self.0.named_task_id))
            .collect())
    }
    /// Its history: its own transitions and its steps', in time order.
    async fn transitions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TransitionView>> {
        Ok(crate::routes::tasks::history(shared(ctx), self.0.task_id)
            .await
            .gql()?
            .transitions)
    }
    /// Its annotations, oldest first.
    async fn annotations(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Annotation>> {
        Ok(shared(ctx)
            .engine
            .store()
            .annotations(self.0.task_id)
            .await
            .gql()?
            .into_iter()
            .map(|(kind, annotation)| Annotation { kind, annotation })
            .collect())
    }
    /// Its dependency graph.
    async fn graph(&self, ctx: &Context<'_>) -> async_graphql::Result<GraphView> {
        Ok(GraphView::from(
            graph_of(ctx, self.0.named_task_id).await?.as_ref(),
        ))
    }
}

async fn steps_of(ctx: &Context<'_>, task: TaskId) -> async_graphql::Result<Arc<Vec<StepRecord>>> {
    Ok(loaders(ctx)
        .steps
        .load_one(task)
        .await
        .gql()?
        .unwrap_or_default())
}

async fn graph_of(
    ctx: &Context<'_>,
    template: TemplateId,
) -> async_graphql::Result<Arc<tasker_template::DependencyGraph>> {
    loaders(ctx)
        .graphs
        .load_one(template)
        .await
        .gql()?
        .ok_or_else(|| {
            gql(ApiError::not_found(format!(
                "no template with id {template}"
            )))
        })
}

/// An annotation of a task.
#[derive(SimpleObject, Debug, Clone)]
pub(crate) struct Annotation {
    /// Its annotation type.
    pub(crate) kind: String,
    /// Its value.
    pub(crate) annotation: Value,
}

/// A step of a task.
pub(crate) struct Step {
    record: StepRecord,
    template: TemplateId,
}

impl Step {
    pub(crate) fn new(record: StepRecord, template: TemplateId) -> Self {
        Self { record, template }
    }

    async fn related(
        &self,
        ctx: &Context<'_>,
        names: impl Fn(&tasker_template::DependencyGraph, &str) -> Vec<String>,
    ) -> async_graphql::Result<Vec<Step>> {
        let graph = graph_of(ctx, self.template).await?;
        let wanted = names(&graph, &self.record.name);
        let steps = steps_of(ctx, self.record.task_id).await?;
        Ok(steps
            .iter()
            .filter(|s| wanted.contains(&s.name))
            .map(|s| Step::new(s.clone(), self.template))
            .collect())
    }
}

/// The last failure of a step.
#[derive(SimpleObject, Debug, Clone)]
pub(crate) struct StepFailure {
    /// `retryable` or `permanent`.
    kind: Option<String>,
    /// What went wrong.
    message: Option<String>,
    /// The machine-readable code, when the handler or Tasker set one.
    code: Option<String>,
    /// The wait the handler asked for before the next attempt, in seconds.
    retry_after_seconds: Option<f64>,
    /// Structured context.
    context: Value,
}

impl StepFailure {
    fn of(value: &Value) -> Self {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Self {
            kind: text("kind"),
            message: text("message"),
            code: text("error_code"),
            retry_after_seconds: value
                .get("retry_after")
                .and_then(Value::as_f64)
                .map(|ms| ms / 1000.0),
            context: value.get("context").cloned().unwrap_or(Value::Null),
        }
    }
}

#[Object]
impl Step {
    /// The step's id.
    async fn id(&self) -> Uuid {
        self.record.step_id.as_uuid()
    }
    /// Its task.
    async fn task_id(&self) -> Uuid {
        self.record.task_id.as_uuid()
    }
    /// Its name in the template.
    async fn name(&self) -> &str {
        &self.record.name
    }
    /// Its position in the template.
    async fn position(&self) -> u32 {
        self.record.position
    }
    /// Its state.
    async fn state(&self) -> StepStateValue {
        self.record.state.into()
    }
    /// Attempts so far.
    async fn attempts(&self) -> u32 {
        self.record.attempts
    }
    /// Attempts allowed, the first included.
    async fn retry_limit(&self) -> u32 {
        self.record.retry_limit
    }
    /// Whether a failure may be retried.
    async fn retryable(&self) -> bool {
        self.record.retryable
    }
    /// Whether the step may be bypassed.
    async fn skippable(&self) -> bool {
        self.record.skippable
    }
    /// The steps it depends on.
    async fn parents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Step>> {
        self.related(ctx, |graph, name| {
            graph.parents(name).into_iter().map(str::to_owned).collect()
        })
        .await
    }
    /// The steps that depend on it.
    async fn children(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Step>> {
        self.related(ctx, |graph, name| {
            graph
                .children(name)
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .await
    }
    /// The successful attempt's results (or those given when it was resolved by hand).
    async fn results(&self) -> Option<&Value> {
        self.record.results.as_ref()
    }
    /// The last attempt's error.
    async fn last_error(&self) -> Option<StepFailure> {
        self.record.last_error.as_ref().map(StepFailure::of)
    }
    /// The process holding its claim, while it runs.
    async fn claim_owner(&self) -> Option<&str> {
        self.record.claim_owner.as_deref()
    }
    /// When that claim lapses.
    async fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.record.lease_expires_at
    }
    /// When the next attempt may start.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.record.next_attempt_at
    }
    /// When the last attempt started.
    async fn last_attempted_at(&self) -> Option<DateTime<Utc>> {
        self.record.last_attempted_at
    }
    /// When it finished.
    async fn processed_at(&self) -> Option<DateTime<Utc>> {
        self.record.processed_at
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.record.updated_at
    }
    /// Its transitions, oldest first.
    async fn transitions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TransitionView>> {
        let id = self.record.step_id.as_uuid();
        Ok(shared(ctx)
            .engine
            .store()
            .step_transitions(self.record.step_id)
            .await
            .gql()?
            .into_iter()
            .map(|t| TransitionView::of(t, Some((id, &self.record.name))))
            .collect())
    }
}

/// An event, as the event bus published it (or relayed it from another process).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "Event")]
pub(crate) struct EventView {
    /// Its name, e.g. `step.completed`.
    name: String,
    /// Its category.
    category: String,
    /// When it happened.
    timestamp: DateTime<Utc>,
    /// The task, for task, step and task-scoped custom events.
    task_id: Option<Uuid>,
    /// The step, for step events.
    step_id: Option<Uuid>,
    /// The step's name.
    step_name: Option<String>,
    /// The template namespace of the task, or of the runtime switch that changed.
    namespace: Option<String>,
    /// The template name of the task, or of the runtime switch that changed (none for a
    /// namespace-wide switch).
    task_name: Option<String>,
    /// The task's or step's state after the event.
    state: Option<String>,
    /// The process that published it, when it came from another one.
    relayed_from: Option<String>,
    /// The whole event as JSON, as the REST event stream sends it.
    payload: Value,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        let (task_id, step_id, step_name, state) = match &event.payload {
            Payload::Task(p) => (
                Some(p.task_id),
                None,
                None,
                Some(p.state.as_str().to_owned()),
            ),
            Payload::Step(p) => (
                Some(p.task_id),
                Some(p.step_id),
                Some(p.step_name.to_string()),
                Some(p.state.as_str().to_owned()),
            ),
            Payload::Custom(p) => (
                p.task_id,
                p.step_id,
                p.step_name.as_ref().map(ToString::to_string),
                None,
            ),
            _ => (None, None, None, None),
        };
        let template = crate::routes::events::template_of(event);
        Self {
            name: event.name.to_string(),
            category: event.category.as_str().to_owned(),
            timestamp: event.timestamp,
            task_id: task_id.map(|id| id.as_uuid()),
            step_id: step_id.map(|id| id.as_uuid()),
            step_name,
            namespace: template.map(|(namespace, _)| namespace.to_owned()),
            task_name: template.and_then(|(_, name)| name.map(str::to_owned)),
            state,
            relayed_from: event.relayed_from.clone(),
            payload: serde_json::to_value(event).unwrap_or(Value::Null),
        }
    }
}
