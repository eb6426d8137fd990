//! The event catalog: every name of the Rails engine's catalog and Tasker's own `runtime.*`
//! events, each with its category, payload kind, a one-line description, and what Tasker
//! publishes for it — or why it deliberately publishes nothing. Custom events registered at
//! run time are listed by the bus ([`crate::EventBus::custom_events`]).

use serde::{Deserialize, Serialize};

use crate::names::{observability, runtime, step, task, workflow};

/// The category of an event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// `task.*`: a task's lifecycle.
    Task,
    /// `step.*`: a step's lifecycle.
    Step,
    /// `workflow.*`: the coordinator's work.
    Workflow,
    /// `observability.*`: finer-grained facts for dashboards.
    Observability,
    /// `runtime.*`: operators' runtime controls (pauses, namespace limits).
    Runtime,
    /// `tasker.telemetry.*`: the Rails metrics-export subsystem.
    Telemetry,
    /// Names the Rails test suite registers.
    Test,
    /// Registry constants (handlers, plugins, subscribers) Rails logs instead of publishing.
    Registry,
    /// Declared by applications: in templates (`custom_events`) or in code.
    Custom,
}

impl Category {
    /// Every category, in catalog order.
    pub const ALL: [Category; 9] = [
        Category::Task,
        Category::Step,
        Category::Workflow,
        Category::Observability,
        Category::Runtime,
        Category::Telemetry,
        Category::Test,
        Category::Registry,
        Category::Custom,
    ];

    /// The category's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Task => "task",
            Category::Step => "step",
            Category::Workflow => "workflow",
            Category::Observability => "observability",
            Category::Runtime => "runtime",
            Category::Telemetry => "telemetry",
            Category::Test => "test",
            Category::Registry => "registry",
            Category::Custom => "custom",
        }
    }

    /// The category of `name`: its catalog entry's, else `Custom`.
    pub fn of(name: &str) -> Category {
        describe(name).map_or(Category::Custom, |spec| spec.category)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown event category `{s}` (known: {})", known.join(", "))
            })
    }
}

/// Which payload type an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PayloadKind {
    /// [`crate::TaskPayload`].
    Task,
    /// [`crate::StepPayload`].
    Step,
    /// [`crate::WorkflowPayload`].
    Workflow,
    /// [`crate::CustomPayload`].
    Custom,
    /// [`crate::SwitchPayload`].
    Switch,
    /// Never published, so no payload.
    None,
}

impl PayloadKind {
    /// The payload's fields, for `tasker events describe`.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            PayloadKind::Task => &[
                "task_id",
                "namespace",
                "task_name",
                "version",
                "correlation_id",
                "from_state",
                "state",
                "total_steps?",
                "duration_ms? (final states)",
                "reason?",
            ],
            PayloadKind::Step => &[
                "task_id",
                "step_id",
                "step_name",
                "namespace",
                "task_name",
                "version",
                "correlation_id",
                "attempt",
                "retry_limit",
                "from_state",
                "state",
                "duration_ms? (completed, failed)",
                "error? {kind, message, error_code, retry_after, context}",
                "next_attempt_at?",
                "reason?",
            ],
            PayloadKind::Workflow => &["owner", "step_count", "task_ids", "duration_ms?"],
            PayloadKind::Custom => &[
                "data",
                "task_id? step_id? step_name? (from a step handler)",
                "namespace? task_name? version? correlation_id?",
            ],
            PayloadKind::Switch => &[
                "change_id",
                "action (pause, resume, limit, unlimit)",
                "scope (namespace, template, template_version)",
                "target",
                "namespace",
                "name?",
                "version?",
                "max_running? (limit)",
                "actor",
                "reason",
            ],
            PayloadKind::None => &[],
        }
    }
}

/// What Tasker publishes for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "published", rename_all = "snake_case")]
pub enum Publication {
    /// Published exactly once per occurrence, at this moment.
    Yes {
        /// When.
        when: &'static str,
    },
    /// Deliberately never published.
    No {
        /// Why, and what to subscribe to instead.
        why: &'static str,
    },
}

/// One catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventSpec {
    /// The name.
    pub name: &'static str,
    /// Its category.
    pub category: Category,
    /// What it means.
    pub description: &'static str,
    /// Its payload type.
    pub payload: PayloadKind,
    /// Whether and when Tasker publishes it.
    pub publication: Publication,
}

impl EventSpec {
    /// Whether Tasker publishes this event.
    pub fn is_published(&self) -> bool {
        matches!(self.publication, Publication::Yes { .. })
    }
}

const fn yes(
    name: &'static str,
    category: Category,
    payload: PayloadKind,
    description: &'static str,
    when: &'static str,
) -> EventSpec {
    EventSpec {
        name,
        category,
        description,
        payload,
        publication: Publication::Yes { when },
    }
}

const fn no(
    name: &'static str,
    category: Category,
    description: &'static str,
    why: &'static str,
) -> EventSpec {
    EventSpec {
        name,
        category,
        description,
        payload: PayloadKind::None,
        publication: Publication::No { why },
    }
}

const SAME_AS: &str = "the same occurrence as the task.*/step.* event of that name; Tasker \
                       publishes one event per occurrence: subscribe to that one";
const NO_QUEUE: &str = "Tasker has no job queue to re-enqueue into: claims with leases replace \
                        it, and an expired lease is published as step.failed (LEASE_EXPIRED)";
const RAILS_EXPORT: &str = "the Rails cache-synced export job has no counterpart: metrics are \
                            derived from events by MetricsSubscriber and read by exporters";
const RAILS_TEST: &str = "a fixture name of the Rails test suite; Tasker reserves the `test` \
                          namespace and publishes nothing under it";
const LOGGED: &str = "Rails declares it but only logs it; Tasker logs registry changes through \
                      `tracing` as well and does not publish them";
const NO_BEFORE: &str = "a notice before a change that may not commit would announce things \
                         that never happened; every committed transition is published after \
                         commit under its own name";

use Category as C;
use PayloadKind as P;

/// Every catalog name, in the Rails engine's order; Tasker's own `runtime.*` after the
/// observability names.
pub static CATALOG: &[EventSpec] = &[
    yes(
        task::INITIALIZE_REQUESTED,
        C::Task,
        P::Task,
        "A task was created (state pending).",
        "after the creating transaction commits (also for tasks finished at creation)",
    ),
    yes(
        task::START_REQUESTED,
        C::Task,
        P::Task,
        "A task started running: pending -> in_progress.",
        "when the claim of its first ready step commits (again after a retry or reopen)",
    ),
    yes(
        task::COMPLETED,
        C::Task,
        P::Task,
        "Every step of the task is done: in_progress -> complete.",
        "when the transaction that finalizes the task commits",
    ),
    yes(
        task::FAILED,
        C::Task,
        P::Task,
        "The task ended in error: a step failed for good and nothing else can run.",
        "when the transaction that finalizes the task commits",
    ),
    yes(
        task::RETRY_REQUESTED,
        C::Task,
        P::Task,
        "A task in error was sent back to pending (task retry, or reopened by a manual step \
         resolution).",
        "when the operator's transition commits",
    ),
    yes(
        task::CANCELLED,
        C::Task,
        P::Task,
        "The task was cancelled with its unfinished steps.",
        "when the cancelling transaction commits",
    ),
    yes(
        task::RESOLVED_MANUALLY,
        C::Task,
        P::Task,
        "An operator resolved a task in error by hand (Engine::resolve_task).",
        "when the operator's transition commits",
    ),
    no(
        "task.before_transition",
        C::Task,
        "Rails: before every task transition.",
        NO_BEFORE,
    ),
    no(
        "step.initialize_requested",
        C::Step,
        "Rails: a step was created or reset to pending.",
        "steps are created with their task in one transaction; task.initialize_requested \
         carries total_steps, and a reset for another attempt is step.retry_requested",
    ),
    yes(
        step::EXECUTION_REQUESTED,
        C::Step,
        P::Step,
        "A step attempt was claimed: pending -> in_progress.",
        "when the claim commits, once per attempt",
    ),
    yes(
        step::BEFORE_HANDLE,
        C::Step,
        P::Step,
        "The step handler is about to be called for this attempt.",
        "just before the handler runs (not for attempts that fail before it, e.g. \
         HANDLER_NOT_FOUND)",
    ),
    no(
        "step.handle",
        C::Step,
        "Rails: around the handler call.",
        "step.completed and step.failed carry the handler's outcome and duration",
    ),
    yes(
        step::COMPLETED,
        C::Step,
        P::Step,
        "A step attempt succeeded: in_progress -> complete.",
        "when the group commit holding its outcome commits",
    ),
    yes(
        step::FAILED,
        C::Step,
        P::Step,
        "A step attempt failed (handler error, panic, timeout, missing handler, expired lease); \
         next_attempt_at says whether it runs again.",
        "when the group commit holding its outcome commits",
    ),
    yes(
        step::RETRY_REQUESTED,
        C::Step,
        P::Step,
        "A failed step is being tried again: error -> pending (attempt is the new attempt).",
        "when the claim of the retry commits, just before its step.execution_requested",
    ),
    yes(
        step::CANCELLED,
        C::Step,
        P::Step,
        "A step was cancelled, alone or with its task.",
        "when the cancelling transaction commits, once per cancelled step",
    ),
    yes(
        step::RESOLVED_MANUALLY,
        C::Step,
        P::Step,
        "An operator resolved the step by hand; it counts as done for its dependants.",
        "when the operator's transition commits",
    ),
    no(
        "step.before_transition",
        C::Step,
        "Rails: before every step transition.",
        NO_BEFORE,
    ),
    no(
        "workflow.task_started",
        C::Workflow,
        "Rails: the orchestrator started a task.",
        SAME_AS,
    ),
    no(
        "workflow.task_completed",
        C::Workflow,
        "Rails: the orchestrator saw a task complete.",
        SAME_AS,
    ),
    no(
        "workflow.task_failed",
        C::Workflow,
        "Rails: the orchestrator saw a task fail.",
        SAME_AS,
    ),
    no(
        "workflow.step_completed",
        C::Workflow,
        "Rails: the orchestrator saw a step complete.",
        SAME_AS,
    ),
    no(
        "workflow.step_failed",
        C::Workflow,
        "Rails: the orchestrator saw a step fail.",
        SAME_AS,
    ),
    yes(
        workflow::VIABLE_STEPS_DISCOVERED,
        C::Workflow,
        P::Workflow,
        "A claim found ready steps (step_count, task_ids).",
        "once per non-empty claim batch",
    ),
    yes(
        workflow::NO_VIABLE_STEPS,
        C::Workflow,
        P::Workflow,
        "The coordinator went idle: nothing running here, nothing claimable now.",
        "once each time the coordinator goes from busy to idle (not on every empty poll)",
    ),
    no(
        "workflow.orchestration_requested",
        C::Workflow,
        "Rails: a task was handed to the orchestrator.",
        "a new task wakes the coordinator in-process; task.initialize_requested marks it",
    ),
    no(
        "workflow.task_finalization_started",
        C::Workflow,
        "Rails: finalization began.",
        "finalization happens inside the transaction that records a task's last outcome; \
         task.completed / task.failed are published when it commits",
    ),
    no(
        "workflow.task_finalization_completed",
        C::Workflow,
        "Rails: finalization ended.",
        "finalization happens inside the transaction that records a task's last outcome; \
         task.completed / task.failed are published when it commits",
    ),
    no(
        "workflow.task_reenqueue_started",
        C::Workflow,
        "Rails: re-enqueueing began.",
        NO_QUEUE,
    ),
    no(
        "workflow.task_reenqueue_requested",
        C::Workflow,
        "Rails: a task was re-enqueued.",
        NO_QUEUE,
    ),
    no(
        "workflow.task_reenqueue_failed",
        C::Workflow,
        "Rails: re-enqueueing failed.",
        NO_QUEUE,
    ),
    no(
        "workflow.task_reenqueue_delayed",
        C::Workflow,
        "Rails: a task was re-enqueued with a delay.",
        "backoff is a per-step next_attempt_at: see observability.step.backoff",
    ),
    no(
        "workflow.task_state_unclear",
        C::Workflow,
        "Rails: the orchestrator could not tell a task's state.",
        "state is a column changed atomically with its history; it is never unclear",
    ),
    no(
        "workflow.step_execution_failed",
        C::Workflow,
        "Rails: the executor failed around a step.",
        "every failure around a handler (panic, timeout, missing handler) is a step.failed \
         with its error code",
    ),
    no(
        "workflow.viable_steps_batch_ready",
        C::Workflow,
        "Rails: a batch of ready steps is ready to run.",
        "one claim is one batch: workflow.viable_steps_discovered",
    ),
    no(
        "workflow.steps_execution_started",
        C::Workflow,
        "Rails: a batch of steps started executing.",
        "one claim is one batch: workflow.viable_steps_discovered, then one \
         step.execution_requested per attempt",
    ),
    yes(
        workflow::STEPS_EXECUTION_COMPLETED,
        C::Workflow,
        P::Workflow,
        "A group commit recorded a batch of attempt outcomes (step_count, task_ids, \
         duration_ms of the commit).",
        "once per group commit",
    ),
    no(
        "observability.task.handle",
        C::Observability,
        "Rails: a task was handled.",
        "the `task` tracing span covers a task's handling; task.start_requested marks it",
    ),
    no(
        "observability.task.enqueue",
        C::Observability,
        "Rails: a task was enqueued to the job system.",
        "no job queue: a created task is claimable at once (task.initialize_requested)",
    ),
    no(
        "observability.task.finalize",
        C::Observability,
        "Rails: a task was finalized.",
        SAME_AS,
    ),
    no(
        "observability.step.handle",
        C::Observability,
        "Rails: a step was handled.",
        "the same occurrence as step.before_handle",
    ),
    no(
        "observability.step.find_viable",
        C::Observability,
        "Rails: ready steps were looked for.",
        "the same occurrence as workflow.viable_steps_discovered",
    ),
    yes(
        observability::STEP_BACKOFF,
        C::Observability,
        P::Step,
        "A failed step waits before its next attempt (next_attempt_at; a Retry-After is \
         honoured).",
        "with the step.failed of an attempt that will run again",
    ),
    yes(
        observability::STEP_SKIP,
        C::Observability,
        P::Step,
        "A step was skipped (bypassed at creation); it counts as done.",
        "after the creating transaction commits, once per skipped step",
    ),
    yes(
        observability::STEP_MAX_RETRIES_REACHED,
        C::Observability,
        P::Step,
        "A retryable failure used the step's last attempt; the step stays in error.",
        "with the step.failed of the last allowed attempt",
    ),
    yes(
        runtime::SWITCH_CHANGED,
        C::Runtime,
        P::Switch,
        "An operator paused or resumed a namespace or template, or set or lifted a \
         namespace's limit on running step attempts (a Tasker event; Rails has none).",
        "when the change and its audit record commit, through the engine or the API (a \
         resume or unlimit that finds nothing to lift changes nothing and publishes nothing)",
    ),
    no(
        "tasker.telemetry.cache_synced",
        C::Telemetry,
        "Rails: metrics synced to the shared cache.",
        RAILS_EXPORT,
    ),
    no(
        "tasker.telemetry.export_requested",
        C::Telemetry,
        "Rails: a metrics export was requested.",
        RAILS_EXPORT,
    ),
    no(
        "tasker.telemetry.export_completed",
        C::Telemetry,
        "Rails: a metrics export finished.",
        RAILS_EXPORT,
    ),
    no(
        "tasker.telemetry.export_failed",
        C::Telemetry,
        "Rails: a metrics export failed.",
        RAILS_EXPORT,
    ),
    no(
        "tasker.telemetry.plugin_registered",
        C::Telemetry,
        "Rails: an exporter plugin was registered.",
        RAILS_EXPORT,
    ),
    no(
        "tasker.telemetry.plugin_unregistered",
        C::Telemetry,
        "Rails: an exporter plugin was unregistered.",
        RAILS_EXPORT,
    ),
    no("test.event", C::Test, "Rails test fixture.", RAILS_TEST),
    no("slow.event", C::Test, "Rails test fixture.", RAILS_TEST),
    no("custom.event", C::Test, "Rails test fixture.", RAILS_TEST),
    no("Test.Event", C::Test, "Rails test fixture.", RAILS_TEST),
    no(
        "handler.registered",
        C::Registry,
        "A handler was registered.",
        LOGGED,
    ),
    no(
        "handler.unregistered",
        C::Registry,
        "A handler was unregistered.",
        LOGGED,
    ),
    no(
        "handler.validation_failed",
        C::Registry,
        "A handler failed validation.",
        "registration returns the error to the caller",
    ),
    no(
        "plugin.registered",
        C::Registry,
        "A plugin was registered.",
        LOGGED,
    ),
    no(
        "plugin.unregistered",
        C::Registry,
        "A plugin was unregistered.",
        LOGGED,
    ),
    no(
        "plugin.validation_failed",
        C::Registry,
        "A plugin failed validation.",
        "registration returns the error to the caller",
    ),
    no(
        "subscriber.registered",
        C::Registry,
        "A subscriber was registered.",
        "EventBus::stats lists subscribers; registration is logged",
    ),
    no(
        "subscriber.unregistered",
        C::Registry,
        "A subscriber was unregistered.",
        "EventBus::stats lists subscribers; removal is logged",
    ),
    no(
        "subscriber.validation_failed",
        C::Registry,
        "A subscriber failed validation.",
        "registration returns the error to the caller",
    ),
    no(
        "registry.sync_requested",
        C::Registry,
        "Registries were asked to sync.",
        "registries are in-process maps with nothing to sync",
    ),
    no(
        "registry.health_check",
        C::Registry,
        "A registry health check ran.",
        "health is served by the health endpoints (API issue)",
    ),
    no(
        "registry.stats_collected",
        C::Registry,
        "Registry statistics were collected.",
        LOGGED,
    ),
    no(
        "registry.cross_discovery",
        C::Registry,
        "Registries discovered each other.",
        "registries are in-process maps with nothing to discover",
    ),
    no(
        "registry.coordination_complete",
        C::Registry,
        "Registry coordination finished.",
        "registries are in-process maps with nothing to coordinate",
    ),
];

/// Every catalog entry.
pub fn all() -> &'static [EventSpec] {
    CATALOG
}

/// The entry named `name` (exact, case-sensitive: names are published as written).
pub fn describe(name: &str) -> Option<&'static EventSpec> {
    CATALOG.iter().find(|spec| spec.name == name)
}

/// The entries of one category.
pub fn by_category(category: Category) -> impl Iterator<Item = &'static EventSpec> {
    CATALOG.iter().filter(move |spec| spec.category == category)
}

/// The entries whose name or description contains `query` (case-insensitive).
pub fn search(query: &str) -> Vec<&'static EventSpec> {
    CATALOG
        .iter()
        .filter(|spec| text_matches(query, spec.name, Some(spec.description)))
        .collect()
}

/// Whether `name` or `description` contains `query`, ignoring case: the rule of [`search`],
/// for listings that mix catalog and custom events.
pub fn text_matches(query: &str, name: &str, description: Option<&str>) -> bool {
    let query = query.to_lowercase();
    name.to_lowercase().contains(&query)
        || description.is_some_and(|d| d.to_lowercase().contains(&query))
}

/// The names Tasker publishes.
pub fn published() -> impl Iterator<Item = &'static EventSpec> {
    CATALOG.iter().filter(|spec| spec.is_published())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_catalog_holds_every_rails_name_once() {
        // The Rails catalog's 55 distinct names plus `step.before_handle`/`step.handle`, which it
        // counts among the ten step names, and the 14 registry constants; `runtime.*` is
        // Tasker's own.
        let names: HashSet<&str> = CATALOG.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), CATALOG.len(), "a name is listed twice");
        assert_eq!(by_category(Category::Task).count(), 8);
        assert_eq!(by_category(Category::Step).count(), 10);
        assert_eq!(by_category(Category::Workflow).count(), 19);
        assert_eq!(by_category(Category::Observability).count(), 8);
        assert_eq!(by_category(Category::Runtime).count(), 1);
        assert_eq!(by_category(Category::Telemetry).count(), 6);
        assert_eq!(by_category(Category::Test).count(), 4);
        assert_eq!(by_category(Category::Registry).count(), 14);
        for spec in CATALOG {
            assert_eq!(
                spec.is_published(),
                spec.payload != PayloadKind::None,
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn introspection_finds_names_by_category_search_and_name() {
        assert_eq!(Category::of("step.completed"), Category::Step);
        assert_eq!(Category::of("orders.fulfilled"), Category::Custom);
        assert_eq!(
            describe(task::COMPLETED).map(|s| s.payload),
            Some(PayloadKind::Task)
        );
        assert!(describe("task.started").is_none(), "a Rails doc-only name");
        let found: Vec<&str> = search("BACKOFF").iter().map(|s| s.name).collect();
        assert!(found.contains(&observability::STEP_BACKOFF), "{found:?}");
        assert_eq!("Step".parse::<Category>(), Ok(Category::Step));
        assert!("nope".parse::<Category>().unwrap_err().contains("known:"));
        assert!(published().all(|s| s.category != Category::Telemetry));
    }
}
