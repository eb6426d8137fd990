//! Tasker's storage: sea-orm entities and the [`Store`] that creates tasks with their steps,
//! records transitions, answers readiness, claims steps under leases and records outcomes, on
//! SQLite and PostgreSQL behind one API.
//!
//! Who depends on it: `tasker-engine`, `tasker-api`, and applications that create tasks inside
//! their own transactions ([`Store::create_task_in`]).
//!
//! Architecture Invariants:
//! - The only crate (with `tasker-migrations`) that uses sea-orm; callers never branch on the
//!   backend, and both databases give the same answers.
//! - The current state is a column; every state change writes its history row in the same
//!   transaction, conditional on the expected from-state.
//! - Readiness is incremental: each step counts its unfinished parents and carries its next
//!   attempt time, so finding ready work is one index range scan whatever the DAG's size; each
//!   task counts its done, blocked and active steps, so finalization never scans a task.
//! - Times are microseconds since the Unix epoch (BIGINT) and "now" is always an argument.

pub mod entities;
mod error;
mod schema_drift;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod time;

pub use error::StoreError;
pub use schema_drift::schema_drift;
pub use store::{
    AnalyticsScope, ApiKeyRecord, Backlog, BlockingReason, Bottlenecks, ChangedStep, ClaimBatch,
    ClaimFilter, ClaimedStep, ConnectOptions, CreateTaskOptions, CreatedTask, DEFAULT_DATABASE_URL,
    ErrorHotSpot, ExecutionStatus, HealthCounts, HealthStatus, Listener, MAX_ANALYTICS_LIMIT,
    MAX_ANALYTICS_WINDOW, MAX_NOTIFY_PAYLOAD, NamespaceLimit, NewApiKey, Page, Performance,
    PoolStatus, PreparedTask, RecommendedAction, RecordReport, RecordedStep, RegisteredTemplate,
    RetriedStep, RevokedToken, RuntimeSwitch, SchemaStatus, StepFailure, StepInputs, StepOutcome,
    StepReadiness, StepRecord, StepTiming, Store, SwitchChange, SwitchKind, SwitchTarget,
    TaskExecutionContext, TaskFilter, TaskRecord, TemplatePerformance, TransitionRecord,
    redact_url,
};
pub use tasker_migrations::Migrator;
pub use time::{from_micros, to_micros};
