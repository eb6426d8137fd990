//! Tasker's database schema as sea-orm-migration migrations: the same tables and indexes on
//! SQLite and PostgreSQL (PostgreSQL checks fewer foreign keys: see
//! `m20261202_000001_drop_hot_foreign_keys`).
//!
//! Who depends on it: `tasker-persistence` (runs [`Migrator`] at startup or on demand) and
//! `xtask` (`cargo xtask migrate up|down|status|fresh|new`).
//!
//! Architecture Invariants: never imports entities; one file per migration, named
//! `mYYYYMMDD_HHMMSS_verb_noun.rs`; times are BIGINT microseconds since the Unix epoch on both
//! databases, so every time comparison is an integer comparison with identical semantics.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_core_tables;
mod m20261130_120000_create_api_keys;
mod m20261201_000001_task_trace_context;
mod m20261201_000002_runtime_switches;
mod m20261201_000003_create_revoked_tokens;
mod m20261201_000004_analytics_indexes;
mod m20261202_000001_drop_hot_foreign_keys;

/// Every migration, oldest first.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_core_tables::Migration),
            Box::new(m20261130_120000_create_api_keys::Migration),
            Box::new(m20261201_000001_task_trace_context::Migration),
            Box::new(m20261201_000002_runtime_switches::Migration),
            Box::new(m20261201_000003_create_revoked_tokens::Migration),
            Box::new(m20261201_000004_analytics_indexes::Migration),
            Box::new(m20261202_000001_drop_hot_foreign_keys::Migration),
            // `cargo xtask migrate new` adds migrations above this line.
        ]
    }
}
