//! The in-process bus: publishing never waits and never fails a workflow. Each subscriber has
//! its own bounded queue and its own worker task, so a slow subscriber only fills (and drops
//! from) its own queue and a panicking one is caught, counted and kept; events reach each
//! subscriber in publication order, so a task's events arrive in order.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::catalog::{self, Category};
use crate::event::{CustomPayload, Event, Payload};

/// The default queue length of a subscriber.
pub const DEFAULT_CAPACITY: usize = 4096;
/// The longest queue a subscriber or stream gets (larger requests are clamped).
pub const MAX_CAPACITY: usize = 1 << 20;

/// What a subscriber listens to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum Interest {
    /// One name, exactly as published.
    Name(String),
    /// Every event of a category.
    Category(Category),
    /// Names matching a pattern where `*` stands for any run of characters (`step.*`,
    /// `*.failed`, `*`).
    Pattern(String),
}

impl Interest {
    /// One name.
    pub fn name(name: impl Into<String>) -> Self {
        Interest::Name(name.into())
    }

    /// A `*` pattern.
    pub fn pattern(pattern: impl Into<String>) -> Self {
        Interest::Pattern(pattern.into())
    }

    /// Every event.
    pub fn all() -> Self {
        Interest::Pattern("*".into())
    }

    /// Whether an event of `name` in `category` is of interest.
    pub fn matches(&self, name: &str, category: Category) -> bool {
        match self {
            Interest::Name(wanted) => wanted == name,
            Interest::Category(wanted) => *wanted == category,
            Interest::Pattern(pattern) => glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Receives events. Implementations must be cheap to call concurrently with publishing; each
/// runs on its own worker, one event at a time.
#[async_trait]
pub trait Subscriber: Send + Sync + 'static {
    /// A unique name in the bus's registry.
    fn name(&self) -> &str;

    /// What it listens to.
    fn interests(&self) -> Vec<Interest>;

    /// Its queue length: when full, new events for it are dropped and counted.
    fn capacity(&self) -> usize {
        DEFAULT_CAPACITY
    }

    /// Handles one event. A panic is caught, counted and logged; the subscriber stays.
    async fn handle(&self, event: &Event);
}

/// Why the bus refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A subscriber of that name is registered already.
    #[error("a subscriber named `{0}` is registered already (use replace to swap it)")]
    DuplicateSubscriber(String),
    /// No subscriber of that name.
    #[error("no subscriber named `{0}`")]
    UnknownSubscriber(String),
    /// An interest names an event Tasker never publishes.
    #[error("subscriber `{subscriber}` listens to `{name}`, which Tasker never publishes: {why}")]
    NeverPublished {
        /// The subscriber.
        subscriber: String,
        /// The name.
        name: String,
        /// The catalog's reason.
        why: String,
    },
    /// An interest names neither a catalog event nor a registered custom event.
    #[error(
        "subscriber `{subscriber}` listens to unknown event `{name}`{}; register custom events \
         (in a template's custom_events or with register_custom) before subscribing",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownEvent {
        /// The subscriber.
        subscriber: String,
        /// The name.
        name: String,
        /// The closest known name.
        suggestion: Option<String>,
    },
    /// A custom event name breaks the naming rules.
    #[error(transparent)]
    InvalidCustomName(#[from] tasker_domain::event_names::CustomNameError),
    /// A custom event was published without being registered.
    #[error(
        "custom event `{name}` is not registered{}; declare it in the template's custom_events \
         or call register_custom",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnregisteredCustomEvent {
        /// The name.
        name: String,
        /// The closest registered name.
        suggestion: Option<String>,
    },
    /// A custom event may not reuse a catalog name.
    #[error("`{0}` is a catalog event name and cannot be registered as a custom event")]
    CatalogName(String),
    /// Another relay already forwards this bus's events.
    #[error("this bus is already relayed by `{0}`; one relay per bus")]
    AlreadyRelayed(String),
    /// The bus needs a tokio runtime to run subscriber workers.
    #[error("subscribers can only be registered inside a tokio runtime")]
    NoRuntime,
}

/// A registered custom event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomEventSpec {
    /// The name, published and subscribed to as written.
    pub name: String,
    /// What it means.
    pub description: Option<String>,
    /// Who declared it (`namespace/name@version`, `namespace/name@version step`, or code).
    pub fired_by: Vec<String>,
}

/// A subscriber's (or stream's) counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberStats {
    /// Its name.
    pub name: String,
    /// What it listens to.
    pub interests: Vec<Interest>,
    /// Events queued for it.
    pub delivered: u64,
    /// Events handled (workers) or received (streams).
    pub handled: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
    /// Handler calls that panicked.
    pub panicked: u64,
    /// Its queue length.
    pub capacity: usize,
}

/// Counters of the whole bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BusStats {
    /// Events published.
    pub published: u64,
    /// Events dropped, summed over subscribers (including removed ones).
    pub dropped: u64,
    /// Per subscriber and stream.
    pub subscribers: Vec<SubscriberStats>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    handled: AtomicU64,
    dropped: AtomicU64,
    panicked: AtomicU64,
}

struct Slot {
    name: String,
    /// A stream (pulled by its reader) rather than a subscriber with a worker.
    stream: bool,
    interests: Vec<Interest>,
    tx: mpsc::Sender<Arc<Event>>,
    counters: Arc<Counters>,
    capacity: usize,
    warned: AtomicBool,
}

impl Slot {
    fn wants(&self, name: &str, category: Category) -> bool {
        self.interests.iter().any(|i| i.matches(name, category))
    }

    fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            name: self.name.clone(),
            interests: self.interests.clone(),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            handled: self.counters.handled.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            panicked: self.counters.panicked.load(Ordering::Relaxed),
            capacity: self.capacity,
        }
    }
}

#[derive(Default)]
struct BusInner {
    slots: RwLock<Arc<Vec<Arc<Slot>>>>,
    custom: RwLock<BTreeMap<String, CustomEventSpec>>,
    published: AtomicU64,
    dropped: AtomicU64,
    streams: AtomicU64,
    settled: Notify,
    relay: std::sync::Mutex<Option<String>>,
    /// Blanks sensitive keys in payloads before any subscriber (log, stream, relay) sees them.
    redactor: RwLock<tasker_domain::Redactor>,
}

/// The event bus. Cheap to clone; clones share subscribers and custom events.
#[derive(Clone, Default)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.slots().len())
            .finish()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn slots(&self) -> Arc<Vec<Arc<Slot>>> {
        self.inner.slots.read().expect("bus lock").clone()
    }

    /// Whether anyone listens to `name`: publishers may skip building payloads nobody reads.
    pub fn is_listened(&self, name: &str) -> bool {
        let slots = self.slots();
        if slots.is_empty() {
            return false;
        }
        let category = Category::of(name);
        slots.iter().any(|slot| slot.wants(name, category))
    }

    /// Whether anyone listens at all.
    pub fn has_subscribers(&self) -> bool {
        !self.slots().is_empty()
    }

    /// Which keys of a payload's free-form JSON (a custom event's `data`, a step error's
    /// `context`) are blanked before subscribers see it; the default list unless set.
    pub fn set_redactor(&self, redactor: tasker_domain::Redactor) {
        *self.inner.redactor.write().expect("bus lock") = redactor;
    }

    /// The redactor publishing applies.
    pub fn redactor(&self) -> tasker_domain::Redactor {
        self.inner.redactor.read().expect("bus lock").clone()
    }

    fn redact(&self, payload: &mut Payload) {
        let value = match payload {
            Payload::Custom(custom) => &mut custom.data,
            Payload::Step(step) => match &mut step.error {
                Some(error) => &mut error.context,
                None => return,
            },
            _ => return,
        };
        if matches!(
            value,
            serde_json::Value::Object(_) | serde_json::Value::Array(_)
        ) {
            self.inner.redactor.read().expect("bus lock").redact(value);
        }
    }

    /// Publishes `event` to every interested subscriber without waiting: a full queue drops
    /// the event for that subscriber and counts it. Sensitive keys in its free-form JSON are
    /// redacted first (see [`set_redactor`](Self::set_redactor)).
    pub fn publish(&self, mut event: Event) {
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        let slots = self.slots();
        if slots.is_empty() {
            return;
        }
        self.redact(&mut event.payload);
        let event = Arc::new(event);
        let mut closed = false;
        for slot in slots.iter() {
            if !slot.wants(&event.name, event.category) {
                continue;
            }
            // Counted before the send so `settled` never sees a handled event undelivered.
            slot.counters.delivered.fetch_add(1, Ordering::AcqRel);
            match slot.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.counters.delivered.fetch_sub(1, Ordering::AcqRel);
                    slot.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    if !slot.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            subscriber = %slot.name,
                            capacity = slot.capacity,
                            event = %event.name,
                            "subscriber queue full: events for it are dropped and counted"
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    slot.counters.delivered.fetch_sub(1, Ordering::AcqRel);
                    closed = true;
                }
            }
        }
        if closed {
            self.edit(|slots| slots.retain(|slot| !slot.tx.is_closed()));
        }
    }

    /// Publishes a registered custom event.
    pub fn publish_custom(
        &self,
        name: &str,
        timestamp: chrono::DateTime<chrono::Utc>,
        payload: CustomPayload,
    ) -> Result<(), BusError> {
        tasker_domain::event_names::check_custom_name(name)?;
        let known = self.inner.custom.read().expect("custom lock");
        if !known.contains_key(name) {
            let suggestion = closest(name, known.keys().map(String::as_str));
            return Err(BusError::UnregisteredCustomEvent {
                name: name.to_owned(),
                suggestion,
            });
        }
        drop(known);
        self.publish(Event::new(
            name.to_owned(),
            timestamp,
            Payload::Custom(payload),
        ));
        Ok(())
    }

    /// Registers a custom event, or adds `fired_by` to an existing one (several templates may
    /// declare the same event). The name must pass
    /// [`tasker_domain::event_names::check_custom_name`].
    pub fn register_custom(
        &self,
        name: &str,
        description: Option<&str>,
        fired_by: &str,
    ) -> Result<(), BusError> {
        tasker_domain::event_names::check_custom_name(name)?;
        if catalog::describe(name).is_some() {
            return Err(BusError::CatalogName(name.to_owned()));
        }
        let mut custom = self.inner.custom.write().expect("custom lock");
        let spec = custom
            .entry(name.to_owned())
            .or_insert_with(|| CustomEventSpec {
                name: name.to_owned(),
                description: None,
                fired_by: Vec::new(),
            });
        if spec.description.is_none() {
            spec.description = description.map(str::to_owned);
        }
        if !spec.fired_by.iter().any(|f| f == fired_by) {
            spec.fired_by.push(fired_by.to_owned());
        }
        Ok(())
    }

    /// The registered custom events, by name.
    pub fn custom_events(&self) -> Vec<CustomEventSpec> {
        self.inner
            .custom
            .read()
            .expect("custom lock")
            .values()
            .cloned()
            .collect()
    }

    fn check_interests(&self, subscriber: &str, interests: &[Interest]) -> Result<(), BusError> {
        for interest in interests {
            let Interest::Name(name) = interest else {
                continue;
            };
            match catalog::describe(name) {
                Some(spec) => {
                    if let catalog::Publication::No { why } = spec.publication {
                        return Err(BusError::NeverPublished {
                            subscriber: subscriber.to_owned(),
                            name: name.clone(),
                            why: why.to_owned(),
                        });
                    }
                }
                None => {
                    let custom = self.inner.custom.read().expect("custom lock");
                    if !custom.contains_key(name) {
                        let candidates = catalog::published()
                            .map(|s| s.name)
                            .chain(custom.keys().map(String::as_str));
                        return Err(BusError::UnknownEvent {
                            subscriber: subscriber.to_owned(),
                            name: name.clone(),
                            suggestion: closest(name, candidates),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn edit(&self, change: impl FnOnce(&mut Vec<Arc<Slot>>)) {
        let mut guard = self.inner.slots.write().expect("bus lock");
        let mut slots: Vec<Arc<Slot>> = guard.as_ref().clone();
        change(&mut slots);
        *guard = Arc::new(slots);
    }

    fn slot(
        &self,
        name: String,
        stream: bool,
        interests: Vec<Interest>,
        capacity: usize,
    ) -> (Arc<Slot>, mpsc::Receiver<Arc<Event>>) {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let (tx, rx) = mpsc::channel(capacity);
        let slot = Arc::new(Slot {
            name,
            stream,
            interests,
            tx,
            counters: Arc::new(Counters::default()),
            capacity,
            warned: AtomicBool::new(false),
        });
        (slot, rx)
    }

    /// Registers `subscriber` under its name and starts its worker. Interests naming an event
    /// are checked: it must be one Tasker publishes or a registered custom event.
    pub fn register(&self, subscriber: Arc<dyn Subscriber>) -> Result<(), BusError> {
        self.attach(subscriber, false)
    }

    /// Registers `subscriber`, replacing one of the same name (whose queued events are still
    /// handled by the old worker).
    pub fn replace(&self, subscriber: Arc<dyn Subscriber>) -> Result<(), BusError> {
        self.attach(subscriber, true)
    }

    fn attach(&self, subscriber: Arc<dyn Subscriber>, replace: bool) -> Result<(), BusError> {
        let name = subscriber.name().to_owned();
        let interests = subscriber.interests();
        self.check_interests(&name, &interests)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let (slot, rx) = self.slot(name.clone(), false, interests, subscriber.capacity());
        let mut refused = false;
        self.edit(|slots| {
            let existing = slots.iter().position(|s| s.name == name);
            match (existing, replace) {
                (Some(_), false) => refused = true,
                (Some(at), true) => slots[at] = slot.clone(),
                (None, _) => slots.push(slot.clone()),
            }
        });
        if refused {
            return Err(BusError::DuplicateSubscriber(name));
        }
        runtime.spawn(run_worker(
            subscriber,
            rx,
            slot.counters.clone(),
            self.inner.clone(),
        ));
        tracing::debug!(subscriber = %name, "subscriber registered");
        Ok(())
    }

    /// Removes a subscriber; its worker handles what is queued and stops. Returns its final
    /// counters.
    pub fn unregister(&self, name: &str) -> Result<SubscriberStats, BusError> {
        let mut removed = None;
        self.edit(|slots| {
            if let Some(at) = slots.iter().position(|s| s.name == name) {
                removed = Some(slots.remove(at));
            }
        });
        let slot = removed.ok_or_else(|| BusError::UnknownSubscriber(name.to_owned()))?;
        tracing::debug!(subscriber = %name, "subscriber unregistered");
        Ok(slot.stats())
    }

    /// A stream of the events matching `interests`, held in a queue of `capacity` (events are
    /// dropped and counted when the reader falls behind). It ends its subscription when
    /// dropped. Interests are not checked against the catalog.
    pub fn stream(&self, interests: Vec<Interest>, capacity: usize) -> EventStream {
        let n = self.inner.streams.fetch_add(1, Ordering::Relaxed);
        let (slot, rx) = self.slot(format!("stream-{n}"), true, interests, capacity);
        let counters = slot.counters.clone();
        let registered = slot.clone();
        self.edit(|slots| slots.push(slot));
        EventStream {
            rx,
            counters,
            bus: Arc::downgrade(&self.inner),
            slot: Arc::downgrade(&registered),
        }
    }

    /// Counters of the bus and each subscriber.
    pub fn stats(&self) -> BusStats {
        BusStats {
            published: self.inner.published.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            subscribers: self.slots().iter().map(|s| s.stats()).collect(),
        }
    }

    /// Marks the bus as relayed to other processes by `owner` (one relay per bus, so events
    /// are not forwarded twice). Fails naming the current relay.
    pub fn claim_relay(&self, owner: &str) -> Result<(), BusError> {
        let mut relay = self.inner.relay.lock().expect("relay lock");
        match &*relay {
            Some(current) => Err(BusError::AlreadyRelayed(current.clone())),
            None => {
                *relay = Some(owner.to_owned());
                Ok(())
            }
        }
    }

    /// Ends a relay claimed with [`EventBus::claim_relay`].
    pub fn release_relay(&self, owner: &str) {
        let mut relay = self.inner.relay.lock().expect("relay lock");
        if relay.as_deref() == Some(owner) {
            *relay = None;
        }
    }

    /// Events dropped so far, over all subscribers.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every registered subscriber has handled everything delivered to it (tests
    /// and orderly shutdown). Streams are not waited for, nor are the workers of replaced or
    /// unregistered subscribers (they finish their queues on their own; a stuck one would
    /// otherwise hold this forever).
    pub async fn settled(&self) {
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = self.slots().iter().any(|slot| {
                !slot.stream
                    && slot.counters.handled.load(Ordering::Acquire)
                        < slot.counters.delivered.load(Ordering::Acquire)
            });
            if !busy {
                return;
            }
            notified.await;
        }
    }
}

async fn run_worker(
    subscriber: Arc<dyn Subscriber>,
    mut rx: mpsc::Receiver<Arc<Event>>,
    counters: Arc<Counters>,
    bus: Arc<BusInner>,
) {
    while let Some(event) = rx.recv().await {
        if AssertUnwindSafe(subscriber.handle(&event))
            .catch_unwind()
            .await
            .is_err()
        {
            counters.panicked.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                subscriber = %subscriber.name(),
                event = %event.name,
                "subscriber panicked; it stays registered"
            );
        }
        counters.handled.fetch_add(1, Ordering::Release);
        bus.settled.notify_waiters();
    }
}

/// Events matching a stream's interests, in publication order.
pub struct EventStream {
    rx: mpsc::Receiver<Arc<Event>>,
    counters: Arc<Counters>,
    bus: std::sync::Weak<BusInner>,
    slot: std::sync::Weak<Slot>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("queued", &self.rx.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Drop for EventStream {
    /// Ends the subscription at once, so nothing is built or queued for it any more.
    fn drop(&mut self) {
        if let (Some(inner), Some(slot)) = (self.bus.upgrade(), self.slot.upgrade()) {
            EventBus { inner }.edit(|slots| slots.retain(|s| !Arc::ptr_eq(s, &slot)));
        }
    }
}

impl EventStream {
    /// The next event; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        let event = self.rx.recv().await;
        if event.is_some() {
            self.counters.handled.fetch_add(1, Ordering::Relaxed);
        }
        event
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        let event = self.rx.try_recv().ok();
        if event.is_some() {
            self.counters.handled.fetch_add(1, Ordering::Relaxed);
        }
        event
    }

    /// Every queued event.
    pub fn drain(&mut self) -> Vec<Arc<Event>> {
        std::iter::from_fn(|| self.try_recv()).collect()
    }

    /// Events dropped because this stream fell behind.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob(b"*", b"task.completed"));
        assert!(glob(b"step.*", b"step.failed"));
        assert!(!glob(b"step.*", b"task.failed"));
        assert!(glob(b"*.failed", b"task.failed"));
        assert!(glob(
            b"observability.*.backoff",
            b"observability.step.backoff"
        ));
        assert!(!glob(b"task.completed", b"task.completed2"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a*b*c", b"aXbYbZ"));
    }
}
