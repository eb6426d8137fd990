//! Pure domain types for Tasker, the workflow orchestration engine.
//!
//! What lives here: ids, task and step states, [`TaskRequest`], task templates (YAML or JSON)
//! and their validation, the dependency graph (cycles, levels, topological order, exports),
//! context validation against a template's JSON Schema, the backoff policy, step outcomes and
//! error kinds, identity hashing, and the names of lifecycle events.
//!
//! Who depends on it: every other Tasker crate. Applications use it to load and validate
//! templates without pulling in a database or a runtime.
//!
//! Architecture Invariant: no I/O, no async runtime, no clock reads in logic: functions that need
//! "now" or randomness take them as arguments. Depends on no other workspace crate.

pub mod backoff;
pub mod context;
pub mod event_names;
pub mod graph;
pub mod identity;
pub mod ids;
pub mod outcome;
pub mod request;
pub mod serde_secs;
pub mod state;
pub mod template;

pub use backoff::{BackoffPolicy, RetryAfterError, parse_retry_after};
pub use context::{ContextError, ContextSchema, ContextSchemaError};
pub use graph::{DependencyGraph, GraphFormat};
pub use identity::{DefaultIdentity, HashIdentity, IdentityStrategy};
pub use ids::{StepId, TaskId};
pub use outcome::{StepError, StepErrorKind};
pub use request::TaskRequest;
pub use state::{StateParseError, StepState, TaskState};
pub use template::{
    CustomEventDecl, StepTemplate, TaskTemplate, TemplateError, TemplateErrorKind, TemplateErrors,
};
