//! The Tasker orchestration engine: handler registry, step handler traits (including the
//! built-in HTTP API handler), and the coordinator that claims ready steps, runs them, records
//! outcomes and finalizes tasks.
//!
//! Who depends on it: `tasker-api`, `tasker-blog-examples`, `tasker-server`, and applications
//! that register their own step handlers.
//!
//! Architecture Invariant: depends on domain, state-machine, events and persistence only; never
//! branches on the database backend (persistence hides it); time comes from an injectable clock.
//!
//! Status: filled in by the engine issue; this crate holds the layer's place.
