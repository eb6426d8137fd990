//! The Tasker orchestration engine: the handler registry, the built-in handlers (`tasker::noop`,
//! `echo`, `sleep`, `fail`, and `tasker::http` behind the default `http` feature), and the coordinator that claims ready steps, runs them
//! concurrently, records outcomes in batches and lets the store finalize tasks.
//!
//! Who depends on it: `tasker-api`, `tasker-blog-examples`, `tasker-server`, and applications
//! that register their own step handlers.
//!
//! Architecture Invariants:
//! - Depends on domain, state-machine, events and persistence only; never branches on the
//!   database backend.
//! - The database is the source of truth: in-process state is a cache and a wake-up signal, so a
//!   crash loses nothing; another engine reclaims the work when the lease expires.
//! - Time comes from an injectable [`Clock`]: backoff, timeouts, leases and the idle timer all
//!   read it, so tests never sleep.
//! - A handler can neither block nor crash the coordinator: each attempt runs in its own task,
//!   panics are caught and recorded as failed attempts.

mod builtin;
mod config;
mod coordinator;
mod creator;
mod emit;
mod engine;
mod error;
mod hooks;
mod limits;
mod metrics;
mod operator;
mod registry;
mod relay;
pub mod testing;
pub mod trace_context;

pub use builtin::{EchoHandler, FailHandler, NoopHandler, SleepHandler};
pub use config::{
    DEFAULT_STEP_TIMEOUT, EngineConfig, MAX_LEASE, MAX_POLL_INTERVAL, MAX_SHUTDOWN_GRACE,
};
pub use engine::{BULK_BATCH, Engine, EngineBuilder};
pub use error::{ActionRefusal, EngineError};
pub use hooks::HOOK_TIMEOUT;
pub use metrics::ENGINE_INSTRUMENTS;
pub use operator::{CreateOptions, Operator};
pub use registry::{RegisteredTask, Registry};
pub use relay::{CHANNEL as RELAY_CHANNEL, Relay, RelayStats};
pub use tasker_events;
pub use tasker_handler::{
    Clock, CustomEventSink, ManualClock, PublishError, RecordedEvents, StepContext, StepEvents,
    StepHandler, SystemClock, TaskHooks,
};
#[cfg(feature = "http")]
pub use tasker_http::{HttpHandler, HttpPolicy, HttpResponse, ResponseClassifier};
