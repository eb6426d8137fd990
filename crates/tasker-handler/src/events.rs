//! Custom events from inside a handler: [`StepEvents`] is the handle a step gets, and
//! [`CustomEventSink`] is where its events go (the engine's event bus, or a recorder in tests).

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Where a step's custom events go. The engine's sink stamps each event with the task, step,
/// template and correlation id, and refuses names nobody registered.
pub trait CustomEventSink: Send + Sync + 'static {
    /// Publishes the custom event `name` with `data`, or says why not.
    fn publish(&self, name: &str, data: Value) -> Result<(), PublishError>;
}

/// A custom event that was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The sink refused it (an unregistered name, or one that breaks the naming rules); the
    /// sink's own error says which.
    #[error(transparent)]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}

/// A step's handle for publishing custom events: those a template declares in `custom_events`,
/// or that were registered in code, under exactly the name given.
#[derive(Clone)]
pub struct StepEvents {
    sink: Arc<dyn CustomEventSink>,
}

impl std::fmt::Debug for StepEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEvents").finish_non_exhaustive()
    }
}

impl StepEvents {
    /// A handle publishing into `sink`.
    pub fn new(sink: Arc<dyn CustomEventSink>) -> Self {
        Self { sink }
    }

    /// A handle that accepts every event and keeps it, for calling a handler outside an engine
    /// (unit tests): the returned [`RecordedEvents`] reads what was published.
    pub fn recording() -> (Self, RecordedEvents) {
        let recorded = RecordedEvents::default();
        (Self::new(Arc::new(recorded.clone())), recorded)
    }

    /// Publishes the custom event `name` with `data`. Fails, publishing nothing, when the sink
    /// refuses the name.
    pub fn publish(&self, name: &str, data: Value) -> Result<(), PublishError> {
        self.sink.publish(name, data)
    }
}

/// The events a [`StepEvents::recording`] handle accepted, in publication order.
#[derive(Debug, Clone, Default)]
pub struct RecordedEvents {
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl RecordedEvents {
    /// Every `(name, data)` published so far.
    pub fn all(&self) -> Vec<(String, Value)> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl CustomEventSink for RecordedEvents {
    fn publish(&self, name: &str, data: Value) -> Result<(), PublishError> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name.to_owned(), data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Refuse;

    impl CustomEventSink for Refuse {
        fn publish(&self, name: &str, _: Value) -> Result<(), PublishError> {
            Err(PublishError::Refused(
                format!("`{name}` is not registered").into(),
            ))
        }
    }

    #[test]
    fn recording_keeps_events_in_order() {
        let (events, recorded) = StepEvents::recording();
        events.publish("orders.placed", json!({"id": 1})).unwrap();
        events.publish("orders.shipped", json!({"id": 1})).unwrap();
        assert_eq!(
            recorded.all(),
            vec![
                ("orders.placed".to_owned(), json!({"id": 1})),
                ("orders.shipped".to_owned(), json!({"id": 1})),
            ]
        );
    }

    #[test]
    fn a_refusal_shows_the_sinks_reason_once() {
        let events = StepEvents::new(Arc::new(Refuse));
        let err = events.publish("orders.lost", json!({})).unwrap_err();
        assert_eq!(err.to_string(), "`orders.lost` is not registered");
    }
}
