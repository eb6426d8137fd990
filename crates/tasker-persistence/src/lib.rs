//! Tasker's storage: sea-orm entities and the store that creates tasks with their steps, records
//! transitions, answers readiness, claims steps under leases and records outcomes, on SQLite and
//! PostgreSQL behind one API.
//!
//! Who depends on it: `tasker-engine`, `tasker-api`, and applications that create tasks inside
//! their own transactions.
//!
//! Architecture Invariant: the only crate (with migrations) that uses sea-orm; the same answers
//! on both databases.
//!
//! Status: filled in by the persistence issue; this crate holds the layer's place.
