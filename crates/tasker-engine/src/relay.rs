//! Relays task, step, custom and runtime switch events between processes through PostgreSQL
//! `LISTEN`/`NOTIFY` (channel [`CHANNEL`]): this engine's events go out in batches, and other
//! engines' events are published on this engine's bus with `relayed_from` set to their owner
//! id. Relayed events are never relayed again, and an engine ignores its own. Notifications are
//! hints, not a log: those sent while a listener reconnects are lost, and the database stays
//! the source of truth.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tasker_events::{Category, Event, Interest, Payload};
use tasker_persistence::MAX_NOTIFY_PAYLOAD;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError};

/// The notification channel.
pub const CHANNEL: &str = "tasker_events";

/// Counters of a relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    sent: AtomicU64,
    received: AtomicU64,
    failed: AtomicU64,
}

impl RelayStats {
    /// Events sent to other processes.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Events received from other processes and published here.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Events that could not be sent or read (database errors, unreadable payloads).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// A running relay. Listening stops when the engine shuts down; sending goes on, so the events
/// of a drain still reach other processes, until [`Relay::stop`] (which sends what is queued
/// first) or until the handle is dropped (which sends nothing more).
#[must_use = "the relay stops when this handle is dropped"]
#[derive(Debug)]
pub struct Relay {
    sender: Option<JoinHandle<()>>,
    receiver: JoinHandle<()>,
    stop: CancellationToken,
    stats: Arc<RelayStats>,
    bus: tasker_events::EventBus,
    owner: String,
}

impl Relay {
    /// Its counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Sends the events published so far, then stops. Call it after the engine drained and
    /// its subscribers settled, so the last outcomes of the drain reach other processes.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(sender) = self.sender.take()
            && let Err(err) = sender.await
            && err.is_panic()
        {
            tracing::warn!(error = %err, "the event relay's sender failed");
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(sender) = &self.sender {
            sender.abort();
        }
        self.receiver.abort();
        self.bus.release_relay(&self.owner);
    }
}

impl Engine {
    /// Starts relaying this engine's task, step, custom and `runtime.*` events to other
    /// processes on the same PostgreSQL database, and publishing theirs on this engine's bus.
    /// `Ok(None)` on SQLite, which serves one process. Events published after this returns are
    /// relayed.
    pub async fn relay_events(&self) -> Result<Option<Relay>, EngineError> {
        if !self.store().supports_notify() {
            return Ok(None);
        }
        // One relay per bus: engines sharing a bus would otherwise forward its events twice.
        self.events().claim_relay(self.owner())?;
        let mut listener = match self.store().listen(CHANNEL).await {
            Ok(Some(listener)) => listener,
            Ok(None) => {
                self.events().release_relay(self.owner());
                return Ok(None);
            }
            Err(err) => {
                self.events().release_relay(self.owner());
                return Err(err.into());
            }
        };
        let stats = Arc::new(RelayStats::default());
        let mut outgoing = self.events().stream(
            vec![
                Interest::Category(Category::Task),
                Interest::Category(Category::Step),
                Interest::Category(Category::Custom),
                // A switch applies to every process on the database: each one's subscribers
                // hear of it, wherever it was set.
                Interest::Category(Category::Runtime),
            ],
            65_536,
        );
        let stop = CancellationToken::new();
        let sender = {
            let engine = self.clone();
            let stats = stats.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let owner = engine.owner().to_owned();
                let mut stopping = false;
                loop {
                    let mut batch = Vec::new();
                    if !stopping {
                        tokio::select! {
                            first = outgoing.recv() => match first {
                                Some(first) => batch.push(first),
                                None => return,
                            },
                            // Told to stop: what is queued goes out, then the sender ends.
                            () = stop.cancelled() => stopping = true,
                        }
                    }
                    while batch.len() < 512
                        && let Some(next) = outgoing.try_recv()
                    {
                        batch.push(next);
                    }
                    if batch.is_empty() {
                        // Only after a stop: otherwise the first event is in the batch.
                        return;
                    }
                    let events: Vec<Event> = batch
                        .iter()
                        .filter(|e| e.relayed_from.is_none())
                        .map(|e| {
                            let mut event = Event::clone(e);
                            event.relayed_from = Some(owner.clone());
                            event
                        })
                        .collect();
                    let (payloads, unsendable) = pack(&events);
                    stats.failed.fetch_add(unsendable, Ordering::Relaxed);
                    let count = events.len() as u64 - unsendable;
                    match engine.store().notify(CHANNEL, &payloads).await {
                        Ok(()) => stats.sent.fetch_add(count, Ordering::Relaxed),
                        Err(err) => {
                            tracing::warn!(error = %err, events = count, "relaying events failed");
                            stats.failed.fetch_add(count, Ordering::Relaxed)
                        }
                    };
                }
            })
        };
        let receiver = {
            let engine = self.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                let owner = engine.owner().to_owned();
                let shutdown = engine.shutdown_token().clone();
                loop {
                    let received = tokio::select! {
                        received = listener.recv() => received,
                        () = shutdown.cancelled() => return,
                    };
                    let payload = match received {
                        Ok(payload) => payload,
                        Err(err) => {
                            // A network wait, so wall-clock time (not the engine's clock).
                            tracing::warn!(error = %err, "event relay listener failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    let events: Vec<Event> = match serde_json::from_str(&payload) {
                        Ok(events) => events,
                        Err(err) => {
                            tracing::warn!(error = %err, "unreadable relayed events");
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    for event in events {
                        if event.relayed_from.as_deref() == Some(owner.as_str()) {
                            continue;
                        }
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        engine.events().publish(event);
                    }
                }
            })
        };
        Ok(Some(Relay {
            sender: Some(sender),
            receiver,
            stop,
            stats,
            bus: self.events().clone(),
            owner: self.owner().to_owned(),
        }))
    }
}

/// Packs events into JSON arrays of at most [`MAX_NOTIFY_PAYLOAD`] bytes, in order. An event too
/// large on its own is sent without its error context and custom data; if still too large it is
/// counted as unsendable.
fn pack(events: &[Event]) -> (Vec<String>, u64) {
    let mut payloads = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 2;
    let mut unsendable = 0;
    for event in events {
        let Some(json) = encode(event) else {
            unsendable += 1;
            continue;
        };
        if !current.is_empty() && size + json.len() + 1 > MAX_NOTIFY_PAYLOAD {
            payloads.push(format!("[{}]", current.join(",")));
            current.clear();
            size = 2;
        }
        size += json.len() + 1;
        current.push(json);
    }
    if !current.is_empty() {
        payloads.push(format!("[{}]", current.join(",")));
    }
    (payloads, unsendable)
}

fn encode(event: &Event) -> Option<String> {
    let json = serde_json::to_string(event).ok()?;
    if json.len() + 2 <= MAX_NOTIFY_PAYLOAD {
        return Some(json);
    }
    let mut slim = event.clone();
    match &mut slim.payload {
        Payload::Step(p) => {
            if let Some(error) = &mut p.error {
                error.context = serde_json::Value::Null;
                let mut end = error.message.len().min(1_000);
                while !error.message.is_char_boundary(end) {
                    end -= 1;
                }
                error.message.truncate(end);
            }
        }
        Payload::Custom(p) => p.data = serde_json::json!({"truncated": true}),
        _ => {}
    }
    let json = serde_json::to_string(&slim).ok()?;
    (json.len() + 2 <= MAX_NOTIFY_PAYLOAD).then_some(json)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tasker_domain::TaskId;
    use tasker_events::CustomPayload;

    use super::*;

    fn custom(bytes: usize) -> Event {
        Event::new(
            "orders.big",
            Utc::now(),
            Payload::Custom(CustomPayload {
                task_id: Some(TaskId::new()),
                step_id: None,
                step_name: None,
                labels: None,
                data: serde_json::json!("x".repeat(bytes)),
            }),
        )
    }

    #[test]
    fn packing_keeps_order_and_the_size_limit() {
        let events: Vec<Event> = (0..40).map(|_| custom(500)).collect();
        let (payloads, unsendable) = pack(&events);
        assert_eq!(unsendable, 0);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_NOTIFY_PAYLOAD));
        let back: Vec<Event> = payloads
            .iter()
            .flat_map(|p| serde_json::from_str::<Vec<Event>>(p).unwrap())
            .collect();
        assert_eq!(back, events);
        // Too large alone: sent slimmed.
        let (payloads, unsendable) = pack(&[custom(20_000)]);
        assert_eq!(unsendable, 0);
        let back: Vec<Event> = serde_json::from_str(&payloads[0]).unwrap();
        let Payload::Custom(p) = &back[0].payload else {
            panic!()
        };
        assert_eq!(p.data, serde_json::json!({"truncated": true}));
        // A long non-ASCII error is cut at a character boundary, not mid-character.
        let mut failed = custom(0);
        failed.payload = Payload::Step(tasker_events::StepPayload {
            task_id: TaskId::new(),
            step_id: tasker_domain::StepId::new(),
            step_name: "s".into(),
            labels: tasker_events::TaskLabels {
                namespace: "n".into(),
                task_name: "t".into(),
                version: "1.0.0".into(),
                correlation_id: "c".into(),
            },
            attempt: 1,
            retry_limit: 3,
            from_state: None,
            state: tasker_domain::StepState::Error,
            duration_ms: None,
            error: Some(tasker_domain::StepError::retryable("é".repeat(9_000))),
            next_attempt_at: None,
            reason: None,
        });
        let (payloads, unsendable) = pack(&[failed]);
        assert_eq!(unsendable, 0);
        let back: Vec<Event> = serde_json::from_str(&payloads[0]).unwrap();
        let Payload::Step(p) = &back[0].payload else {
            panic!()
        };
        assert_eq!(p.error.as_ref().unwrap().message.chars().count(), 500);
    }
}
