//! Tasker's event catalog, in-process event bus, subscribers and custom events.
//!
//! Who depends on it: the engine publishes through it, the API streams it, the blog examples
//! subscribe to it. Applications subscribe to lifecycle events here.
//!
//! Architecture Invariant: depends only on `tasker-domain`; publishing never blocks or fails a
//! workflow. Lifecycle event names live in `tasker_domain::event_names` so the state machine can
//! name them without depending on this crate.
//!
//! Status: the bus and catalog arrive with the event-bus issue; this crate holds the layer's place.

pub use tasker_domain::event_names;
