//! Engine errors: each names the template, step, handler or id at fault.

use tasker_domain::{StepId, TaskId};
use tasker_persistence::StoreError;
use tasker_template::TemplateErrors;

/// Why an engine operation failed. Nothing was stored when one is returned from creation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The template is invalid.
    #[error("invalid task template:\n{0}")]
    InvalidTemplate(#[from] TemplateErrors),
    /// A step names a handler class nobody registered.
    #[error("step `{step}` of {template}: no step handler is registered as `{handler_class}`")]
    UnknownHandler {
        /// `namespace/name@version`.
        template: String,
        /// The step.
        step: String,
        /// The handler class it names.
        handler_class: String,
    },
    /// The same namespace/name/version is already registered.
    #[error("task template {0} is already registered (register with replace to override)")]
    DuplicateTemplate(String),
    /// No registered template matches.
    #[error("no task template {namespace}/{name}{}", .version.as_ref().map(|v| format!("@{v}")).unwrap_or_default())]
    UnknownTemplate {
        /// The namespace asked for.
        namespace: String,
        /// The name asked for.
        name: String,
        /// The version asked for, if any.
        version: Option<semver::Version>,
    },
    /// The template's task hooks refused the request before anything was stored.
    #[error("{template}: the task hooks refused the request: {}", .error.message)]
    RefusedByHooks {
        /// `namespace/name@version`.
        template: String,
        /// What the hooks reported.
        error: Box<tasker_domain::StepError>,
    },
    /// A template declares a custom event the bus refuses.
    #[error("{template}: {message}")]
    InvalidCustomEvent {
        /// `namespace/name@version`.
        template: String,
        /// Why.
        message: String,
    },
    /// A step handler class is registered twice.
    #[error("a step handler is already registered as `{0}`")]
    DuplicateHandler(String),
    /// No such task.
    #[error("task {0} not found")]
    TaskNotFound(TaskId),
    /// No such step.
    #[error("step {0} not found")]
    StepNotFound(StepId),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event relay could not start.
    #[error("event relay: {0}")]
    Relay(#[from] tasker_events::BusError),
    /// A template has more steps than `engine.max_steps_per_template`; nothing was stored.
    #[error(
        "template {template} has {steps} steps, over the limit of {limit} (engine.max_steps_per_template)"
    )]
    TooManySteps {
        /// `namespace/name@version`.
        template: String,
        /// How many steps it has.
        steps: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A JSON value is larger than its configured limit; nothing was stored.
    #[error("{what} of {owner} is {size} bytes, over the limit of {limit} bytes (engine.{key})")]
    TooLarge {
        /// What was too large (`task context`, ``handler_config of step `a` ``).
        what: String,
        /// Whose it is (`namespace/name@version`).
        owner: String,
        /// Its size as compact JSON.
        size: usize,
        /// The configured limit.
        limit: usize,
        /// The configuration key of the limit.
        key: &'static str,
    },
    /// A JSON value holds a NUL character, which PostgreSQL cannot store; nothing was stored.
    #[error(
        "{what} of {owner} holds a NUL character (\\u0000) at {path}, which the database cannot store"
    )]
    Unstorable {
        /// What holds it.
        what: String,
        /// Whose it is (`namespace/name@version`).
        owner: String,
        /// The JSON Pointer of the string or key holding it.
        path: String,
    },
    /// The engine configuration is unusable; the error names the setting.
    #[error("invalid engine configuration")]
    InvalidConfig(#[source] tasker_domain::ConfigError),
    /// The engine has shut down.
    #[error("the engine has shut down")]
    ShutDown,
    /// An operator action (cancel, retry, resolve) the task's or step's current state does not
    /// allow, such as retrying a cancelled task; nothing changed. (A state changed by another
    /// writer between reading and writing is a [`StoreError::Conflict`] instead.)
    #[error("{0}")]
    ActionRefused(Box<ActionRefusal>),
}

/// What [`EngineError::ActionRefused`] refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{entity} {id}{} is {}: {rule}",
    .name.as_ref().map(|n| format!(" (`{n}`)")).unwrap_or_default(),
    described(.state)
)]
pub struct ActionRefusal {
    /// `task` or `step`.
    pub entity: &'static str,
    /// The task or step id.
    pub id: String,
    /// The step's name; `None` for a task.
    pub name: Option<String>,
    /// Its current state.
    pub state: &'static str,
    /// What was asked: `cancel`, `retry`, `resolve` (or `update`, a step's attempt limit).
    pub action: &'static str,
    /// The states the action needs.
    pub allowed: Vec<&'static str>,
    /// The rule, for people: `only a task that is in error can be retried`.
    pub rule: String,
}

/// A state as an adjective: `in error` reads better than `is error`.
pub(crate) fn described(state: &str) -> &str {
    match state {
        "error" => "in error",
        other => other,
    }
}
