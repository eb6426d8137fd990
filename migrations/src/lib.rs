//! Tasker's database schema as sea-orm-migration migrations, the same schema on SQLite and
//! PostgreSQL.
//!
//! Who depends on it: `tasker-persistence` (runs them at startup or on demand) and `xtask`
//! (`cargo xtask migrate`).
//!
//! Architecture Invariant: never imports entities; one file per migration, named
//! `mYYYYMMDD_HHMMSS_verb_noun.rs`.
//!
//! Status: filled in by the persistence issue; this crate holds the layer's place.
