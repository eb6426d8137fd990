//! The values the store takes and returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tasker_domain::{
    IdentityStrategy, StepError, StepId, StepState, TaskId, TaskState, TemplateId,
};
use tasker_template::TaskTemplate;

/// A template stored in the catalogue, with the ids task creation needs.
#[derive(Debug, Clone)]
pub struct RegisteredTemplate {
    /// The template's id in the catalogue (its named task row).
    pub named_task_id: TemplateId,
    /// The validated template.
    pub template: Arc<TaskTemplate>,
    /// Named step ids by step name.
    pub named_step_ids: HashMap<String, i64>,
}

/// Which steps a claim may take: all of them, or only those of tasks of the listed templates
/// (named task ids), for an engine that can run only some templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimFilter {
    /// `None`: any task; `Some(ids)`: only tasks of these named tasks (none when empty).
    pub named_task_ids: Option<Vec<TemplateId>>,
    /// Named tasks whose steps are not claimed at all (paused by a runtime switch).
    pub paused_named_task_ids: Vec<TemplateId>,
    /// Caps on the step attempts of a namespace running at once, across every process: a
    /// claim counts what runs in the database and takes no more than the room left.
    pub limits: Vec<NamespaceLimit>,
}

/// The claim a recording transaction makes after its outcomes
/// ([`crate::Store::record_outcomes_and_claim_with`]).
#[derive(Debug, Clone, Copy)]
pub struct FollowingClaim<'a> {
    /// The most steps to claim (0: none).
    pub limit: usize,
    /// The lease of each claim.
    pub lease: std::time::Duration,
    /// Which steps may be claimed.
    pub filter: &'a ClaimFilter,
    /// Claim only if the outcomes may have readied a step: a child released, a task sent back
    /// to work, a failure whose retry may already be due, or room freed in a namespace whose
    /// running steps are capped. For a caller that knows nothing else is ready: what the
    /// outcomes did not ready may be left unclaimed. A task's last outcome is then recorded
    /// without a claim, and without namespace limits or failures the claim takes the children
    /// the outcomes readied by their ids: on PostgreSQL a batch of successes that fits one
    /// statement is recorded and claimed by that statement alone, without `BEGIN` and `COMMIT`,
    /// and a claim of its own follows only for children it left ready (a failure of that claim
    /// leaves them ready and the outcomes recorded).
    pub only_if_readied: bool,
}

/// One namespace's cap on running step attempts, with the named tasks it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceLimit {
    /// The namespace.
    pub namespace: String,
    /// Most step attempts of its tasks in progress at once.
    pub max_running: u32,
    /// Its named tasks (templates, every version).
    pub named_task_ids: Vec<TemplateId>,
}

/// How to create a task.
pub struct CreateTaskOptions<'a> {
    /// Creation time.
    pub now: DateTime<Utc>,
    /// Identity strategy (de-duplication).
    pub identity: &'a dyn IdentityStrategy,
    /// Correlation id to store; a new one is generated when absent.
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` of the span creating the task, stored so that every attempt of
    /// its steps (in any process) joins the same trace; `None` when tracing is off.
    pub trace_parent: Option<String>,
}

/// What task creation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreatedTask {
    /// The new task.
    pub task_id: TaskId,
    /// Its state (`pending`; `in_progress` when creation claimed its root steps; `complete`
    /// when every step was bypassed).
    pub state: TaskState,
    /// Step ids in template order.
    pub steps: Vec<(String, StepId)>,
    /// The stored context, schema defaults applied.
    pub context: Value,
    /// Bypassed (skipped) steps.
    pub skipped: Vec<String>,
    /// The identity hash stored.
    pub identity_hash: String,
    /// The correlation id stored.
    pub correlation_id: String,
    /// The root steps claimed as the task was written ([`crate::Store::claim_at_creation`]);
    /// empty when creation claimed nothing. (An engine runs the claims it made itself: the
    /// tasks its `create_task` returns have none here.)
    #[serde(skip_serializing_if = "ClaimBatch::is_empty")]
    pub claimed: ClaimBatch,
}

/// One step claimed for execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimedStep {
    /// The step.
    pub step_id: StepId,
    /// Its task.
    pub task_id: TaskId,
    /// The task's template.
    pub named_task_id: TemplateId,
    /// The step's name.
    pub name: String,
    /// This attempt's number (1 for the first); outcomes must quote it.
    pub attempt: u32,
    /// The step's attempt limit.
    pub retry_limit: u32,
    /// Whether the step came back from `error` (a retry).
    pub retried: bool,
    /// When the claim lapses unless extended.
    pub lease_expires_at: DateTime<Utc>,
}

/// A batch of claimed steps.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ClaimBatch {
    /// The claims, grouped by task in template order.
    pub claims: Vec<Claim>,
    /// Tasks that moved `pending → in_progress` with this claim.
    pub started_tasks: Vec<TaskId>,
}

impl ClaimBatch {
    /// Adds the claims and started tasks of `more` (a later claim of the same transaction or
    /// hand-off, or claims made elsewhere, such as at creation).
    pub fn absorb(&mut self, more: ClaimBatch) {
        self.claims.extend(more.claims);
        self.started_tasks.extend(more.started_tasks);
    }

    /// Whether nothing was claimed.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// How many steps were claimed.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// The claimed steps, in the batch's order.
    pub fn steps(&self) -> impl ExactSizeIterator<Item = &ClaimedStep> {
        self.claims.iter().map(|claim| &claim.step)
    }

    /// The claimed steps without their inputs, for a caller that reads those elsewhere.
    pub fn into_steps(self) -> Vec<ClaimedStep> {
        self.claims.into_iter().map(|claim| claim.step).collect()
    }
}

/// One claimed step with what its handler needs, both from the claim's own statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    /// The step and its attempt.
    pub step: ClaimedStep,
    /// Its handler's inputs (`inputs.step_id == step.step_id`).
    pub inputs: StepInputs,
}

/// What a step handler needs to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepInputs {
    /// The step.
    pub step_id: StepId,
    /// The task's context.
    pub task_context: Value,
    /// The task's correlation id.
    pub correlation_id: String,
    /// The W3C `traceparent` the task was created under, if any.
    pub trace_parent: Option<String>,
    /// When the task was created.
    pub task_created_at: DateTime<Utc>,
    /// The step's own inputs.
    pub inputs: Value,
    /// Results of the step's parents, by step name.
    pub parent_results: BTreeMap<String, Value>,
}

/// A failed attempt to record.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    /// The step.
    pub step_id: StepId,
    /// The attempt that failed (from [`ClaimedStep::attempt`]).
    pub attempt: u32,
    /// What the handler reported.
    pub error: StepError,
    /// The backoff before the next attempt, if one is allowed.
    pub retry_delay: Duration,
}

/// The end of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// The handler succeeded.
    Success {
        /// The step.
        step_id: StepId,
        /// The attempt that succeeded.
        attempt: u32,
        /// Its results.
        results: Value,
    },
    /// The handler failed.
    Failure(StepFailure),
}

impl StepOutcome {
    /// The step this outcome is for.
    pub fn step_id(&self) -> StepId {
        match self {
            StepOutcome::Success { step_id, .. } => *step_id,
            StepOutcome::Failure(failure) => failure.step_id,
        }
    }
}

/// One recorded outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedStep {
    /// The step.
    pub step_id: StepId,
    /// Its task.
    pub task_id: TaskId,
    /// Its new state (`complete` or `error`).
    pub state: StepState,
    /// Attempts so far.
    pub attempts: u32,
    /// When it may run again; `None` after success or when no attempt is left.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A step an operator's task transition moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedStep {
    /// The step.
    pub step_id: StepId,
    /// Its name.
    pub name: String,
    /// The state it was in.
    pub from_state: StepState,
    /// The state it is in now.
    pub to_state: StepState,
    /// Its attempts so far (after the change).
    pub attempts: u32,
    /// Attempts allowed in all.
    pub retry_limit: u32,
    /// Its position in the template.
    pub position: u32,
}

/// What recording a batch of outcomes did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RecordReport {
    /// Outcomes stored.
    pub recorded: Vec<RecordedStep>,
    /// Outcomes refused because the claim no longer holds (stale worker).
    pub rejected: Vec<StepId>,
    /// Steps that became ready because their last parent finished.
    pub newly_ready: Vec<StepId>,
    /// Tasks that reached a final state, with it.
    pub finalized: Vec<(TaskId, TaskState)>,
    /// Tasks in error sent back to `pending` (a step of theirs was resolved by hand); a task
    /// here may also be in `finalized` when nothing was left to run.
    pub reopened: Vec<TaskId>,
}

/// Why a step is not ready; shown to operators verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockingReason {
    /// A parent is not done.
    DependenciesNotSatisfied,
    /// Failed; the next attempt is scheduled later.
    WaitingForBackoff,
    /// No attempts left, or a permanent error.
    RetriesExhausted,
    /// Another worker holds a live claim.
    ClaimedElsewhere,
    /// Finished, cancelled, or its task is not running.
    InvalidState,
}

/// The Rails readiness report of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReadiness {
    /// The step.
    pub workflow_step_id: StepId,
    /// Its task.
    pub task_id: TaskId,
    /// Its named step.
    pub named_step_id: i64,
    /// Its name.
    pub name: String,
    /// Its state.
    pub current_state: StepState,
    /// Every parent is done.
    pub dependencies_satisfied: bool,
    /// Attempts remain and a retry is allowed.
    pub retry_eligible: bool,
    /// Claimable now.
    pub ready_for_execution: bool,
    /// When the last failure happened.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When a failed step may run again.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Parent count.
    pub total_parents: u32,
    /// Parents done.
    pub completed_parents: u32,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempt limit.
    pub retry_limit: u32,
    /// The last backoff requested, in seconds.
    pub backoff_request_seconds: Option<f64>,
    /// When the last attempt started.
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// Why it is not ready, when it is not.
    pub blocking_reason: Option<BlockingReason>,
}

/// The task execution context's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Some step can run now.
    HasReadySteps,
    /// Steps are running.
    Processing,
    /// A failed step can never run again and nothing else can proceed.
    BlockedByFailures,
    /// Every step is done.
    AllComplete,
    /// Waiting for parents or backoff.
    WaitingForDependencies,
}

/// What the engine should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendedAction {
    /// Run the ready steps.
    ExecuteReadySteps,
    /// Wait for running steps.
    WaitForCompletion,
    /// Resolve or retry failed steps.
    HandleFailures,
    /// Mark the task finished.
    FinalizeTask,
    /// Wait.
    WaitForDependencies,
}

/// The task's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No failed steps.
    Healthy,
    /// Failed steps that will be retried.
    Recovering,
    /// Failed steps that cannot proceed.
    Blocked,
    /// None of the above.
    Unknown,
}

/// The aggregated state of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskExecutionContext {
    /// The task.
    pub task_id: TaskId,
    /// Its template.
    pub named_task_id: TemplateId,
    /// Its state.
    pub status: TaskState,
    /// Steps in all.
    pub total_steps: u32,
    /// Steps pending.
    pub pending_steps: u32,
    /// Steps in progress.
    pub in_progress_steps: u32,
    /// Steps complete or resolved manually.
    pub completed_steps: u32,
    /// Steps in error.
    pub failed_steps: u32,
    /// Steps ready now.
    pub ready_steps: u32,
    /// Steps in error with no attempt left.
    pub permanently_blocked_steps: u32,
    /// The status.
    pub execution_status: ExecutionStatus,
    /// The next action.
    pub recommended_action: RecommendedAction,
    /// Done steps as a percentage, two decimals.
    pub completion_percentage: f64,
    /// The health.
    pub health_status: HealthStatus,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    /// The task.
    pub task_id: TaskId,
    /// Its template.
    pub named_task_id: TemplateId,
    /// Template namespace.
    pub namespace: String,
    /// Template name.
    pub name: String,
    /// Template version.
    pub version: String,
    /// Current state.
    pub state: TaskState,
    /// The context.
    pub context: Value,
    /// Tags.
    pub tags: Vec<String>,
    /// Bypassed steps.
    pub bypass_steps: Vec<String>,
    /// Who asked.
    pub initiator: String,
    /// Which system asked.
    pub source_system: String,
    /// Why.
    pub reason: String,
    /// Identity hash.
    pub identity_hash: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Steps in all.
    pub total_steps: u32,
    /// Steps done.
    pub done_steps: u32,
    /// Steps with no attempt left.
    pub blocked_steps: u32,
    /// Steps running, ready or waiting for backoff.
    pub active_steps: u32,
    /// When requested.
    pub requested_at: DateTime<Utc>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a final state.
    pub completed_at: Option<DateTime<Utc>>,
}

impl TaskRecord {
    /// Where this task sits in a listing: the keyset cursor that continues after it.
    pub fn cursor(&self) -> (DateTime<Utc>, TaskId) {
        (self.created_at, self.task_id)
    }
}

/// A stored step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The step.
    pub step_id: StepId,
    /// Its task.
    pub task_id: TaskId,
    /// Its name.
    pub name: String,
    /// Template order.
    pub position: u32,
    /// Current state.
    pub state: StepState,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempt limit.
    pub retry_limit: u32,
    /// Retry allowed after a failure.
    pub retryable: bool,
    /// Skippable by request.
    pub skippable: bool,
    /// Results of the successful attempt (or of manual resolution).
    pub results: Option<Value>,
    /// The last error.
    pub last_error: Option<Value>,
    /// Claim owner.
    pub claim_owner: Option<String>,
    /// Lease expiry.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Next attempt time.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Parents not yet done.
    pub unfinished_parents: u32,
    /// Parent count.
    pub total_parents: u32,
    /// When the last attempt started.
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub processed_at: Option<DateTime<Utc>>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

/// One row of a transition history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRecord {
    /// The state before (none for a task's or step's first recorded state).
    pub from_state: Option<String>,
    /// The state after.
    pub to_state: String,
    /// Order within the entity's history (10, 20, ...).
    pub sort_key: i32,
    /// Whether this is the current state.
    pub most_recent: bool,
    /// Caller metadata.
    pub metadata: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Which tasks to list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskFilter {
    /// Template namespace.
    pub namespace: Option<String>,
    /// Template name.
    pub name: Option<String>,
    /// Template version.
    pub version: Option<String>,
    /// Current state.
    pub state: Option<TaskState>,
    /// The correlation id the task carries (exactly).
    pub correlation_id: Option<String>,
    /// Annotation `(type name, key, value)`: tasks with an annotation of that type whose JSON
    /// has `key` equal to `value`.
    pub annotation: Option<(String, String, Value)>,
    /// Created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Reached a final state at or after this time.
    pub completed_after: Option<DateTime<Utc>>,
    /// Reached a final state before this time.
    pub completed_before: Option<DateTime<Utc>>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// Keyset cursor: only tasks after this one in the listing order (its creation time and
    /// id, as in [`TaskRecord::cursor`]). Rows created meanwhile never shift a page.
    pub after: Option<(DateTime<Utc>, TaskId)>,
    /// Page size (default 25, at most 1,000).
    pub limit: Option<u64>,
    /// Rows to skip (ignored when `after` is set).
    pub offset: Option<u64>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Rows matching in all.
    pub total: u64,
    /// Page size used.
    pub limit: u64,
    /// Rows skipped.
    pub offset: u64,
}

/// System-wide counts for health endpoints.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HealthCounts {
    /// Tasks by state name.
    pub tasks_by_state: BTreeMap<String, u64>,
    /// Steps by state name.
    pub steps_by_state: BTreeMap<String, u64>,
    /// Steps ready to claim now.
    pub ready_steps: u64,
    /// Steps under a live claim.
    pub claimed_steps: u64,
    /// Claims past their lease.
    pub expired_claims: u64,
    /// Steps in `error` that will be attempted again (a retry in backoff).
    pub retrying_steps: u64,
    /// Steps in `error` with no attempt left (retries exhausted, or not retryable).
    pub exhausted_steps: u64,
    /// Attempts beyond each step's first, summed over every step: the retries ever made.
    pub retries: u64,
}

/// The claimable frontier at one instant, for metrics: steps whose parents are all done and
/// that may be attempted again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Steps ready to claim now.
    pub ready: u64,
    /// Steps waiting for their next attempt (a retry in backoff, or a `retry_after`).
    pub waiting: u64,
}

/// The connection pool at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Open connections, idle or in use.
    pub size: u32,
    /// Open connections no one holds.
    pub idle: u32,
    /// The most connections the pool will open.
    pub max: u32,
}

impl PoolStatus {
    /// Connections held by someone (a query, a transaction, a `LISTEN`).
    pub fn in_use(&self) -> u32 {
        self.size.saturating_sub(self.idle)
    }

    /// Connections in use as a share of the most the pool will open, from 0 to 1.
    pub fn utilisation(&self) -> f64 {
        if self.max == 0 {
            return 0.0;
        }
        f64::from(self.in_use()) / f64::from(self.max)
    }
}
