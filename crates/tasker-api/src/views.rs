//! What the API sends and receives: its own types, documented in the OpenAPI document, built
//! from the store's records (which stay free of HTTP concerns).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_persistence::{StepRecord, TaskRecord, TransitionRecord};
use tasker_template::DependencyGraph;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::schemas;

/// A task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// The task's id.
    pub task_id: Uuid,
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// `pending`, `in_progress`, `complete`, `error`, `cancelled` or `resolved_manually`.
    #[schema(schema_with = schemas::task_state_field)]
    pub state: String,
    /// The task's input.
    pub context: Value,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Steps bypassed at creation.
    pub bypass_steps: Vec<String>,
    /// Who asked for the task.
    pub initiator: String,
    /// Which system asked.
    pub source_system: String,
    /// Why.
    pub reason: String,
    /// The correlation id every log line and event of the task carries.
    pub correlation_id: String,
    /// Steps in all.
    pub total_steps: u32,
    /// Steps done.
    pub done_steps: u32,
    /// Steps with no attempt left.
    pub blocked_steps: u32,
    /// Steps running, ready or waiting for a retry.
    pub active_steps: u32,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a final state.
    pub completed_at: Option<DateTime<Utc>>,
    /// Its steps (with `include=steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    /// Why each step is or is not ready, and the task's execution summary (with
    /// `include=analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Value>,
    /// The dependency graph (with `include=graph`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphView>,
}

impl From<TaskRecord> for TaskView {
    fn from(task: TaskRecord) -> Self {
        Self {
            task_id: task.task_id.as_uuid(),
            namespace: task.namespace,
            name: task.name,
            version: task.version,
            state: task.state.as_str().to_owned(),
            context: task.context,
            tags: task.tags,
            bypass_steps: task.bypass_steps,
            initiator: task.initiator,
            source_system: task.source_system,
            reason: task.reason,
            correlation_id: task.correlation_id,
            total_steps: task.total_steps,
            done_steps: task.done_steps,
            blocked_steps: task.blocked_steps,
            active_steps: task.active_steps,
            requested_at: task.requested_at,
            created_at: task.created_at,
            updated_at: task.updated_at,
            completed_at: task.completed_at,
            steps: None,
            analysis: None,
            graph: None,
        }
    }
}

/// A step of a task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// The step's id.
    pub step_id: Uuid,
    /// Its task.
    pub task_id: Uuid,
    /// Its name in the template.
    pub name: String,
    /// Its position in the template.
    pub position: u32,
    /// `pending`, `in_progress`, `complete`, `error`, `cancelled` or `resolved_manually`.
    #[schema(schema_with = schemas::step_state_field)]
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts allowed, the first included.
    pub retry_limit: u32,
    /// Whether a failure may be retried.
    pub retryable: bool,
    /// Whether the step may be bypassed.
    pub skippable: bool,
    /// Ids of the steps it depends on.
    pub parents: Vec<Uuid>,
    /// Ids of the steps that depend on it.
    pub children: Vec<Uuid>,
    /// The successful attempt's results (or those given when it was resolved by hand).
    pub results: Option<Value>,
    /// The last attempt's error: message, code, kind, retry-after.
    pub last_error: Option<Value>,
    /// The process holding its claim, while it runs.
    pub claim_owner: Option<String>,
    /// When that claim lapses.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the next attempt may start.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub processed_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Builds step views with their parents' and children's ids from the template's graph.
pub(crate) fn step_views(steps: Vec<StepRecord>, graph: Option<&DependencyGraph>) -> Vec<StepView> {
    let ids: HashMap<String, Uuid> = steps
        .iter()
        .map(|s| (s.name.clone(), s.step_id.as_uuid()))
        .collect();
    let lookup = |names: Vec<&str>| -> Vec<Uuid> {
        names.iter().filter_map(|n| ids.get(*n).copied()).collect()
    };
    steps
        .into_iter()
        .map(|step| {
            let (parents, children) = match graph {
                Some(graph) => (
                    lookup(graph.parents(&step.name)),
                    lookup(graph.children(&step.name)),
                ),
                None => (Vec::new(), Vec::new()),
            };
            StepView {
                step_id: step.step_id.as_uuid(),
                task_id: step.task_id.as_uuid(),
                name: step.name,
                position: step.position,
                state: step.state.as_str().to_owned(),
                attempts: step.attempts,
                retry_limit: step.retry_limit,
                retryable: step.retryable,
                skippable: step.skippable,
                parents,
                children,
                results: step.results,
                last_error: step.last_error,
                claim_owner: step.claim_owner,
                lease_expires_at: step.lease_expires_at,
                next_attempt_at: step.next_attempt_at,
                last_attempted_at: step.last_attempted_at,
                processed_at: step.processed_at,
                created_at: step.created_at,
                updated_at: step.updated_at,
            }
        })
        .collect()
}

/// A dependency graph.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Graph")]
pub struct GraphView {
    /// Step names in template order.
    pub nodes: Vec<String>,
    /// `[parent, child]` pairs.
    pub edges: Vec<[String; 2]>,
    /// The graph as a Mermaid flowchart.
    pub mermaid: String,
    /// The graph in Graphviz DOT.
    pub dot: String,
}

impl From<&DependencyGraph> for GraphView {
    fn from(graph: &DependencyGraph) -> Self {
        Self {
            nodes: graph.names().map(str::to_owned).collect(),
            edges: graph
                .edges()
                .into_iter()
                .map(|(a, b)| [a.to_owned(), b.to_owned()])
                .collect(),
            mermaid: graph.render(tasker_template::GraphFormat::Mermaid),
            dot: graph.render(tasker_template::GraphFormat::Dot),
        }
    }
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    /// The tasks.
    pub items: Vec<TaskView>,
    /// Tasks matching the filter in all.
    pub total: u64,
    /// Page size used.
    pub limit: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A task creation request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskBody {
    /// The template's namespace (`default` when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The template's name.
    pub name: String,
    /// An exact version; the highest registered semver version when absent.
    #[serde(default)]
    #[schema(value_type = Option<schemas::Semver>, inline)]
    pub version: Option<String>,
    /// The task's input, validated against the template's schema.
    #[serde(default)]
    pub context: Option<Value>,
    /// Who asks (defaults to the authenticated subject).
    #[serde(default)]
    pub initiator: Option<String>,
    /// Which system asks.
    #[serde(default)]
    pub source_system: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Skippable steps to bypass.
    #[serde(default)]
    pub bypass_steps: Vec<String>,
}

/// The headers of a task creation request (read from the request, not deserialized: this type
/// documents them).
#[derive(Debug, Clone, Default, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct CreateTaskHeaders {
    /// Makes the request idempotent: the same key for the same workflow answers with the first
    /// task (200) instead of creating another. 1 to 255 visible ASCII characters.
    #[param(rename = "Idempotency-Key", value_type = schemas::IdempotencyKeyText, inline, required = false)]
    idempotency_key: Option<String>,
    /// Stored on the task and echoed; generated when absent. 1 to 100 characters of
    /// `[A-Za-z0-9_-]`.
    #[param(rename = "X-Correlation-ID", value_type = schemas::CorrelationIdText, inline, required = false)]
    correlation_id: Option<String>,
}

/// Changes to a task's descriptive fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskBody {
    /// A new reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// New tags (replacing the old ones).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Why an operator acts; kept in the transition history with who acted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The operator's reason.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A manual resolution of a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveStepBody {
    /// The results the step's dependants will see.
    #[serde(default)]
    pub results: Option<Value>,
    /// The operator's reason.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Changes to a step.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStepBody {
    /// Attempts allowed, the first included (1 to 100); only while the step is pending.
    #[schema(value_type = i64, minimum = 1, maximum = 100)]
    #[serde(deserialize_with = "whole_number")]
    pub retry_limit: u32,
}

/// A whole number that JSON may also write as `3.0` (JSON Schema counts it as an integer).
fn whole_number<'de, D>(deserializer: D) -> Result<u32, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_u64() {
        return u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large")));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(f as u32),
        _ => Err(D::Error::custom(format!(
            "expected a whole number, got {number}"
        ))),
    }
}

/// One transition of a task or a step.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Transition")]
pub struct TransitionView {
    /// The step, for a step's transition; absent for the task's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<Uuid>,
    /// The step's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_name: Option<String>,
    /// The state before.
    pub from_state: Option<String>,
    /// The state after.
    pub to_state: String,
    /// Order within the task's or step's history.
    pub sort_key: i32,
    /// Who acted (`system` for the engine itself), when recorded.
    pub actor: Option<String>,
    /// Why: the engine's reason and the operator's note.
    pub metadata: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl TransitionView {
    pub(crate) fn of(record: TransitionRecord, step: Option<(Uuid, &str)>) -> Self {
        Self {
            step_id: step.map(|(id, _)| id),
            step_name: step.map(|(_, name)| name.to_owned()),
            from_state: record.from_state,
            to_state: record.to_state,
            sort_key: record.sort_key,
            actor: record
                .metadata
                .get("actor")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: record.metadata,
            created_at: record.created_at,
        }
    }
}

/// A task's history: its own transitions and its steps', in time order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The task.
    pub task_id: Uuid,
    /// Every transition.
    pub transitions: Vec<TransitionView>,
}

/// A registered template, in listings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "TemplateSummary")]
pub struct TemplateSummary {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: Option<String>,
    /// How many steps it has.
    pub steps: usize,
}

/// A registered template in full.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Template")]
pub struct TemplateView {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Every version registered under this namespace and name, ascending.
    pub versions: Vec<String>,
    /// The template as JSON (the YAML's fields).
    pub template: Value,
    /// Its dependency graph.
    pub graph: GraphView,
}

/// The result of validating a template without registering it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "TemplateValidation")]
pub struct ValidationView {
    /// Whether the template is valid.
    pub valid: bool,
    /// `namespace/name@version`, when the template parsed that far.
    pub full_name: Option<String>,
    /// Every problem with its line and column.
    pub errors: Vec<TemplateProblem>,
    /// Handler classes the template names that this server does not know.
    pub unknown_handlers: Vec<String>,
}

/// One problem in a template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "TemplateProblem")]
pub struct TemplateProblem {
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// The step it is about.
    pub step: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A namespace of handlers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "HandlerNamespace")]
pub struct HandlerNamespace {
    /// The namespace.
    pub namespace: String,
    /// Its workflows.
    pub handlers: Vec<HandlerView>,
}

/// A workflow (task handler) with its versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Handler")]
pub struct HandlerView {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its registered versions, ascending.
    pub versions: Vec<String>,
    /// Step handler classes its latest version uses.
    pub step_handlers: Vec<String>,
}

/// Health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each check with its result.
    pub checks: Vec<HealthCheck>,
}

/// One readiness check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "HealthCheck")]
pub struct HealthCheck {
    /// `database`, `schema`, `coordinator` or `cache`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// `/health/status`: the readiness checks, counts, pool and cache, and a verdict.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "HealthStatus")]
pub struct HealthStatusView {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// Why it is unhealthy: each failing check or crossed threshold; empty when healthy.
    pub reasons: Vec<String>,
    /// The readiness checks.
    pub checks: Vec<HealthCheck>,
    /// Tasks and steps by state, the backlog and retries; absent while the database is
    /// unreachable.
    pub counts: Option<StatusCounts>,
    /// Whether `counts` came from the cache (computed at most `cache.ttl` ago).
    pub cached: bool,
    /// The connection pool now.
    pub pool: Option<PoolView>,
    /// The cache and how it has answered.
    pub cache: CacheView,
    /// The thresholds the verdict applies.
    pub thresholds: ThresholdsView,
    /// When the checks ran.
    pub checked_at: DateTime<Utc>,
}

/// The counts of a status report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "StatusCounts")]
pub struct StatusCounts {
    /// Tasks by state name.
    pub tasks: std::collections::BTreeMap<String, u64>,
    /// Steps by state name.
    pub steps: std::collections::BTreeMap<String, u64>,
    /// The claimable frontier and the claims.
    pub backlog: BacklogView,
    /// Retry statistics.
    pub retries: RetryView,
    /// When they were counted.
    pub counted_at: DateTime<Utc>,
}

impl StatusCounts {
    pub(crate) fn new(
        health: tasker_persistence::HealthCounts,
        backlog: tasker_persistence::Backlog,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            tasks: health.tasks_by_state,
            steps: health.steps_by_state,
            backlog: BacklogView {
                ready: backlog.ready,
                waiting: backlog.waiting,
                claimed: health.claimed_steps,
                expired_claims: health.expired_claims,
            },
            retries: RetryView {
                retrying_steps: health.retrying_steps,
                exhausted_steps: health.exhausted_steps,
                retries: health.retries,
            },
            counted_at: at,
        }
    }
}

/// Steps by where they are in the claim cycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Backlog")]
pub struct BacklogView {
    /// Ready to claim now.
    pub ready: u64,
    /// Waiting for their next attempt (a retry in backoff, or a `retry_after`).
    pub waiting: u64,
    /// Under a live claim.
    pub claimed: u64,
    /// Claimed, but past their lease: their process stopped renewing.
    pub expired_claims: u64,
}

/// Retry statistics.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "RetryStats")]
pub struct RetryView {
    /// Steps in `error` that will be attempted again.
    pub retrying_steps: u64,
    /// Steps in `error` with no attempt left.
    pub exhausted_steps: u64,
    /// Attempts beyond each step's first, summed over every step.
    pub retries: u64,
}

/// The database connection pool.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Pool")]
pub struct PoolView {
    /// Open connections.
    pub size: u32,
    /// Open connections no one holds.
    pub idle: u32,
    /// Connections in use.
    pub in_use: u32,
    /// The most the pool opens.
    pub max: u32,
    /// `in_use / max`, from 0 to 1.
    pub utilisation: f64,
}

impl From<tasker_persistence::PoolStatus> for PoolView {
    fn from(pool: tasker_persistence::PoolStatus) -> Self {
        Self {
            size: pool.size,
            idle: pool.idle,
            in_use: pool.in_use(),
            max: pool.max,
            utilisation: pool.utilisation(),
        }
    }
}

/// The cache.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "CacheInfo")]
pub struct CacheView {
    /// `memory` or `redis`.
    pub kind: String,
    /// Whether replicas share it.
    pub shared: bool,
    /// Values found since this process started.
    pub hits: u64,
    /// Values missing or expired.
    pub misses: u64,
    /// Backend failures, each answered as a miss.
    pub errors: u64,
}

/// The thresholds of the verdict (the `[health]` settings).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "Thresholds")]
pub struct ThresholdsView {
    /// Unhealthy at or above this pool utilisation.
    pub max_pool_utilisation: f64,
    /// Unhealthy above this many expired claims.
    pub max_expired_claims: u64,
}

impl From<&crate::state::HealthSettings> for ThresholdsView {
    fn from(settings: &crate::state::HealthSettings) -> Self {
        Self {
            max_pool_utilisation: settings.max_pool_utilisation,
            max_expired_claims: settings.max_expired_claims,
        }
    }
}

/// Task listing parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListTasksQuery {
    /// Template namespace.
    pub namespace: Option<String>,
    /// Template name.
    pub name: Option<String>,
    /// Template version.
    pub version: Option<String>,
    /// Current state.
    #[param(value_type = Option<schemas::TaskStateName>, inline)]
    pub state: Option<String>,
    /// Only tasks carrying this correlation id.
    #[param(value_type = Option<schemas::CorrelationIdText>, inline)]
    pub correlation_id: Option<String>,
    /// Annotation filter `type:key=value` (the value is JSON, or a string when it is not).
    #[param(value_type = Option<schemas::Annotation>, inline)]
    pub annotation: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// Finished at or after (RFC 3339).
    pub completed_after: Option<DateTime<Utc>>,
    /// Finished before (RFC 3339).
    pub completed_before: Option<DateTime<Utc>>,
    /// `-created_at` (newest first, the default) or `created_at`.
    #[param(value_type = Option<schemas::TaskSort>, inline)]
    pub sort: Option<String>,
    /// Page size (default 25); larger sizes are cut to the server's `api.max_page_size`.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4_294_967_295_i64)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<schemas::Cursor>, inline)]
    pub cursor: Option<String>,
}

/// Task show parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShowTaskQuery {
    /// Comma-separated extras: `steps`, `analysis`, `graph`.
    #[param(value_type = Option<schemas::Include>, inline)]
    pub include: Option<String>,
}

/// Template show parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShowTemplateQuery {
    /// An exact version; the highest when absent.
    #[param(value_type = Option<schemas::Semver>, inline)]
    pub version: Option<String>,
}

/// Event stream filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Only events of tasks of this template namespace, and runtime switch changes of it.
    pub namespace: Option<String>,
    /// Only events of tasks of this template name, and runtime switch changes of it or of
    /// its whole namespace.
    pub name: Option<String>,
    /// Only this category (`task`, `step`, `workflow`, `runtime`, `custom`, ...).
    #[param(value_type = Option<schemas::EventCategory>, inline)]
    pub category: Option<String>,
    /// Comma-separated event names or patterns (`task.*`).
    pub events: Option<String>,
}
