//! Tasker's event catalog, in-process event bus, subscribers and custom events.
//!
//! - [`catalog`]: every name of the Rails catalog with its category, payload kind, description,
//!   and what Tasker publishes for it (or why it deliberately publishes nothing); [`names`] has
//!   the names as constants.
//! - [`Event`] and its typed payloads ([`TaskPayload`], [`StepPayload`], [`WorkflowPayload`],
//!   [`CustomPayload`], [`SwitchPayload`]).
//! - [`EventBus`]: publish without waiting; [`Subscriber`]s by name, category or `*` pattern,
//!   each with its own bounded queue and worker (a slow or panicking subscriber harms only
//!   itself; drops are counted); [`EventStream`]s for readers that pull; custom events
//!   registered by templates or code and published under exactly the name subscribed to.
//! - [`MetricsSubscriber`] (OpenTelemetry metrics API) and [`LogSubscriber`] (`tracing`);
//!   [`InstrumentSpec`], an instrument as data, from which every Tasker instrument is created.
//!
//! Who depends on it: the engine publishes through it, the API streams it, the blog examples
//! subscribe to it. Applications subscribe to lifecycle events here.
//!
//! Architecture Invariant: depends only on `tasker-domain`; publishing never blocks or fails a
//! workflow. Lifecycle event names live in `tasker_domain::event_names` so the state machine can
//! name them without depending on this crate.

pub mod bus;
pub mod catalog;
pub mod event;
pub mod instrument;
pub mod log;
pub mod metrics;
pub mod names;

pub use bus::{
    BusError, BusStats, CustomEventSpec, DEFAULT_CAPACITY, EventBus, EventStream, Interest,
    Subscriber, SubscriberStats,
};
pub use catalog::{Category, EventSpec, PayloadKind, Publication};
pub use event::{
    CustomPayload, Event, Payload, StepPayload, SwitchAction, SwitchPayload, SwitchScope,
    TaskLabels, TaskPayload, WorkflowPayload,
};
pub use instrument::{
    Appears, BATCH_BOUNDARIES, InstrumentKind, InstrumentSpec, InstrumentUnit, SECONDS_BOUNDARIES,
};
pub use log::LogSubscriber;
pub use metrics::{EVENT_INSTRUMENTS, MetricsSubscriber};
pub use tasker_domain::event_names;
