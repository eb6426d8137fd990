//! Pure domain types for Tasker, the workflow orchestration engine.
//!
//! What lives here: ids, task and step states, [`TaskRequest`], step errors and the codes
//! Tasker puts on them ([`codes`]), the backoff policy, identity hashing, and the names of the
//! lifecycle events that state transitions emit. Task templates live one layer up, in
//! `tasker-template`, so a crate that needs only ids, states and requests compiles no YAML
//! parser, JSON Schema or string-similarity code.
//!
//! Who depends on it: every other Tasker crate.
//!
//! API boundary: applications depend on this crate directly.
//!
//! Architecture Invariant: no I/O, no async runtime, no clock reads in logic: functions that need
//! "now" or randomness take them as arguments. Depends on no other workspace crate.

pub mod backoff;
pub mod codes;
pub mod config;
pub mod duration;
pub mod event_names;
pub mod identity;
pub mod ids;
pub mod outcome;
pub mod redact;
pub mod request;
pub mod serde_secs;
pub mod state;

pub use backoff::{BackoffPolicy, RetryAfterError, parse_retry_after};
pub use config::ConfigError;
pub use duration::{InvalidDuration, TimeoutValue};
pub use identity::{DefaultIdentity, HashIdentity, IdempotencyKey, IdentityStrategy};
pub use ids::{StepId, TaskId, TemplateId};
pub use outcome::{StepError, StepErrorKind};
pub use redact::{REDACTED, Redactor};
pub use request::{DEFAULT_NAMESPACE, TaskRequest};
pub use state::{StateParseError, StepState, TaskState};
