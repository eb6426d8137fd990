//! Tasker's storage: the [`Store`] that keeps the template catalogue, creates tasks with their
//! steps, records transitions, answers readiness, claims steps under leases and records
//! outcomes, on SQLite and PostgreSQL behind one API.
//!
//! Who depends on it: `tasker-engine`, `tasker-api`, and applications that create tasks inside
//! their own transactions ([`Store::begin`], [`Store::create_task_in`]).
//!
//! API boundary: everything public here is Tasker's own type. The database library underneath
//! (sea-orm, and sqlx below it) appears in no public signature, so applications never depend
//! on its version and the store may change it:
//! - the database is named by [`Backend`], not by a driver type;
//! - a caller's transaction is a [`Transaction`]: [`Store::create_task_in`] and
//!   [`Store::create_prepared_in`] write tasks in it, and [`Transaction::execute`] runs the
//!   application's own statements in it with [`SqlValue`] parameters. That escape hatch is
//!   one statement returning a row count, enough for an application's writes next to a task;
//!   its reads belong on its own connection. Handing out the underlying sea-orm transaction
//!   instead would tie every application to sea-orm's version, so it is not offered;
//! - a driver failure is a [`DatabaseError`] inside [`StoreError`]: opaque, with its message,
//!   its source chain and the classifications on `StoreError` ([`StoreError::is_transient`],
//!   [`StoreError::database_code`]);
//! - the sea-orm entities describing the tables are crate-private: they exist for
//!   [`schema_drift`], which checks them against freshly migrated databases.
//!
//! The `testing` feature adds the `testing` module: fresh SQLite and PostgreSQL databases for test
//! suites, raw SQL on them, and a statement counter.
//!
//! Architecture Invariants:
//! - The only crate (with `tasker-migrations`) that uses sea-orm; callers never branch on the
//!   backend, and both databases give the same answers.
//! - The current state is a column; every state change writes its history row in the same
//!   transaction, conditional on the expected from-state.
//! - Statements that move states by themselves take those states from changes declared next
//!   to them, and a test holds every declared change against `tasker_state_machine`'s tables,
//!   so the store's SQL and the state machine cannot disagree.
//! - Readiness is incremental: each step counts its unfinished parents and carries its next
//!   attempt time, so finding ready work is one index range scan whatever the DAG's size; each
//!   task counts its done, blocked and active steps, so finalization never scans a task.
//! - Times are microseconds since the Unix epoch (BIGINT) and "now" is always an argument,
//!   except for lease expiry, which by default runs on the database's clock ([`LeaseClock`]).

mod entities;
mod error;
mod schema_drift;
#[cfg(any(test, feature = "testing"))]
mod scratch_db;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod time;

pub use error::{DatabaseError, StoreError};
pub use schema_drift::schema_drift;
pub use store::{
    AnalyticsScope, ApiKeyRecord, Backend, Backlog, BlockingReason, Bottlenecks, ChangedStep,
    Claim, ClaimBatch, ClaimFilter, ClaimedStep, ConnectOptions, CreateTaskOptions, CreatedTask,
    DEFAULT_DATABASE_URL, ErrorHotSpot, ExecutionStatus, FollowingClaim, HealthCounts,
    HealthStatus, LeaseClock, Listener, MAX_ANALYTICS_LIMIT, MAX_ANALYTICS_WINDOW,
    MAX_NOTIFY_PAYLOAD, NamespaceLimit, NewApiKey, Page, Performance, PoolStatus, PreparedTask,
    RecommendedAction, RecordReport, RecordedStep, RegisteredTemplate, RetriedStep, RevokedToken,
    RuntimeSwitch, SchemaStatus, SqlValue, StepFailure, StepInputs, StepOutcome, StepReadiness,
    StepRecord, StepTiming, Store, SwitchChange, SwitchKind, SwitchTarget, TaskExecutionContext,
    TaskFilter, TaskRecord, TemplatePerformance, Transaction, TransitionRecord, redact_url,
};
pub use time::{from_micros, to_micros};
