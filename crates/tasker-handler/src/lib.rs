//! The step handler contract of Tasker: what a crate that implements step handlers or task hooks
//! needs, and nothing more.
//!
//! [`StepHandler`] runs one attempt of a step and gets a [`StepContext`] (the task's context,
//! the step's config and inputs, its parents' results, the attempt number, a cancellation token
//! and [`StepEvents`] for custom events); it answers with results or a [`StepError`], retryable
//! or permanent. [`TaskHooks`] adjust a request before creation and annotate a finished task.
//! [`Clock`] is the time source the engine and handlers share, so tests drive time with a
//! [`ManualClock`] instead of sleeping. [`codes`] lists the error codes Tasker itself sets.
//!
//! Who depends on it: crates that implement handlers (they need nothing else from Tasker), the
//! engine that calls them, and `tasker-http`.
//!
//! API boundary: handler authors depend on this crate directly.
//!
//! Architecture Invariants:
//! - Depends only on `tasker-domain` among Tasker's crates, and its dependency closure holds no
//!   database driver, ORM, HTTP client or JSON Schema compiler (`cargo xtask lint-layers`
//!   checks the closure).
//! - The engine is behind traits here: custom events go to a [`CustomEventSink`], so a handler can
//!   be unit-tested with [`StepEvents::recording`] and no engine at all.

mod clock;
mod events;
mod handler;

pub use clock::{Clock, ManualClock, SystemClock};
pub use events::{CustomEventSink, PublishError, RecordedEvents, StepEvents};
pub use handler::{StepContext, StepHandler, TaskHooks};
pub use tasker_domain::codes;
pub use tasker_domain::{StepError, StepErrorKind};
