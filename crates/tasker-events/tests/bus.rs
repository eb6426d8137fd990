//! The bus: routing, per-task order, isolation of slow and panicking subscribers, the
//! subscriber registry, custom events (published under the subscribed name, YAML declarations registered), metrics and logs.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskState};
use tasker_events::names::{step, task};
use tasker_events::{
    BusError, Category, CustomPayload, Event, EventBus, Interest, Payload, StepPayload, Subscriber,
    TaskLabels, TaskPayload,
};
use tokio::sync::Semaphore;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_790_000_000_000 + ms).unwrap()
}

fn labels() -> TaskLabels {
    TaskLabels {
        namespace: "shop".into(),
        task_name: "checkout".into(),
        version: "1.0.0".into(),
        correlation_id: "tsk-corr-1".into(),
    }
}

fn task_event(name: &'static str, task_id: TaskId, state: TaskState) -> Event {
    Event::new(
        name,
        at(0),
        Payload::Task(TaskPayload {
            task_id,
            labels: labels(),
            from_state: None,
            state,
            total_steps: Some(2),
            duration_ms: state.is_finished().then_some(1500.0),
            reason: None,
        }),
    )
}

fn step_event(name: &'static str, task_id: TaskId, step_name: &str, attempt: u32) -> Event {
    let failed = name == step::FAILED;
    Event::new(
        name,
        at(i64::from(attempt)),
        Payload::Step(StepPayload {
            task_id,
            step_id: StepId::new(),
            step_name: step_name.into(),
            labels: labels(),
            attempt,
            retry_limit: 3,
            from_state: Some(StepState::InProgress),
            state: if failed {
                StepState::Error
            } else {
                StepState::Complete
            },
            duration_ms: Some(250.0),
            error: failed.then(|| StepError::retryable("gateway down").with_code("GATEWAY")),
            next_attempt_at: None,
            reason: None,
        }),
    )
}

/// Records what it handles; optionally waits for a permit per event, or panics on some.
struct Recorder {
    name: String,
    interests: Vec<Interest>,
    capacity: usize,
    seen: Arc<Mutex<Vec<String>>>,
    gate: Option<Arc<Semaphore>>,
    panic_on: Option<&'static str>,
}

impl Recorder {
    fn new(name: &str, interests: Vec<Interest>) -> (Arc<Self>, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::new(Self {
            name: name.into(),
            interests,
            capacity: 1024,
            seen: seen.clone(),
            gate: None,
            panic_on: None,
        });
        (recorder, seen)
    }
}

#[async_trait]
impl Subscriber for Recorder {
    fn name(&self) -> &str {
        &self.name
    }
    fn interests(&self) -> Vec<Interest> {
        self.interests.clone()
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    async fn handle(&self, event: &Event) {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.panic_on.is_some_and(|name| name == event.name) {
            panic!("subscriber bug");
        }
        self.seen.lock().unwrap().push(event.summary());
    }
}

#[tokio::test]
async fn subscribers_get_what_they_asked_for_in_order() {
    let bus = EventBus::new();
    let (by_name, named) = Recorder::new("named", vec![Interest::name(task::COMPLETED)]);
    let (by_category, stepped) = Recorder::new("steps", vec![Interest::Category(Category::Step)]);
    let (by_pattern, failures) = Recorder::new("failures", vec![Interest::pattern("*.failed")]);
    let (everything, all) = Recorder::new("all", vec![Interest::all()]);
    for s in [by_name, by_category, by_pattern, everything] {
        bus.register(s).unwrap();
    }
    let one = TaskId::new();
    let two = TaskId::new();
    bus.publish(task_event(
        task::START_REQUESTED,
        one,
        TaskState::InProgress,
    ));
    for attempt in 1..=3 {
        bus.publish(step_event(step::FAILED, one, "charge", attempt));
        bus.publish(step_event(step::COMPLETED, two, "ship", attempt));
    }
    bus.publish(step_event(step::COMPLETED, one, "charge", 4));
    bus.publish(task_event(task::COMPLETED, one, TaskState::Complete));
    bus.publish(task_event(task::FAILED, two, TaskState::Error));
    bus.settled().await;

    assert_eq!(*named.lock().unwrap(), ["task.completed"]);
    assert_eq!(
        *failures.lock().unwrap(),
        [
            "step.failed charge#1",
            "step.failed charge#2",
            "step.failed charge#3",
            "task.failed"
        ]
    );
    assert_eq!(stepped.lock().unwrap().len(), 7);
    let all = all.lock().unwrap().clone();
    assert_eq!(all.len(), 10);
    // One task's events arrive in publication order.
    let charge: Vec<&String> = all.iter().filter(|e| e.contains("charge")).collect();
    assert_eq!(
        charge,
        [
            "step.failed charge#1",
            "step.failed charge#2",
            "step.failed charge#3",
            "step.completed charge#4"
        ]
    );
    let stats = bus.stats();
    assert_eq!(stats.published, 10);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.subscribers.len(), 4);
}

#[tokio::test]
async fn a_slow_subscriber_drops_its_own_events_and_slows_nobody() {
    let bus = EventBus::new();
    let gate = Arc::new(Semaphore::new(0));
    let slow_seen = Arc::new(Mutex::new(Vec::new()));
    bus.register(Arc::new(Recorder {
        name: "slow".into(),
        interests: vec![Interest::all()],
        capacity: 2,
        seen: slow_seen.clone(),
        gate: Some(gate.clone()),
        panic_on: None,
    }))
    .unwrap();
    let (fast, fast_seen) = Recorder::new("fast", vec![Interest::all()]);
    bus.register(fast).unwrap();
    let mut stream = bus.stream(vec![Interest::all()], 100);
    let id = TaskId::new();
    // Publishing returns at once although the slow subscriber handles nothing.
    for attempt in 1..=20 {
        bus.publish(step_event(step::COMPLETED, id, "s", attempt));
    }
    assert_eq!(stream.drain().len(), 20);
    gate.add_permits(20);
    bus.settled().await;
    assert_eq!(fast_seen.lock().unwrap().len(), 20);
    let slow = bus
        .stats()
        .subscribers
        .into_iter()
        .find(|s| s.name == "slow")
        .unwrap();
    // The worker may have taken the first event off the queue before blocking: 2 or 3 fit.
    assert!(slow.dropped == 18 || slow.dropped == 17, "{slow:?}");
    assert_eq!(slow.handled + slow.dropped, 20);
    assert_eq!(slow_seen.lock().unwrap().len() as u64, slow.handled);
    assert_eq!(bus.dropped(), slow.dropped);
    // What the slow one did get is in order.
    let got = slow_seen.lock().unwrap().clone();
    let mut sorted = got.clone();
    sorted.sort_by_key(|s| s.rsplit('#').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(got, sorted);
}

#[tokio::test]
async fn a_panicking_subscriber_is_counted_and_kept() {
    let bus = EventBus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    bus.register(Arc::new(Recorder {
        name: "buggy".into(),
        interests: vec![Interest::all()],
        capacity: 16,
        seen: seen.clone(),
        gate: None,
        panic_on: Some(step::FAILED),
    }))
    .unwrap();
    let (other, other_seen) = Recorder::new("other", vec![Interest::all()]);
    bus.register(other).unwrap();
    let id = TaskId::new();
    bus.publish(step_event(step::FAILED, id, "a", 1));
    bus.publish(step_event(step::COMPLETED, id, "a", 2));
    bus.settled().await;
    assert_eq!(*seen.lock().unwrap(), ["step.completed a#2"]);
    assert_eq!(other_seen.lock().unwrap().len(), 2);
    let buggy = bus
        .stats()
        .subscribers
        .into_iter()
        .find(|s| s.name == "buggy")
        .unwrap();
    assert_eq!((buggy.panicked, buggy.handled), (1, 2));
}

#[tokio::test]
async fn the_registry_registers_replaces_unregisters_and_checks_names() {
    let bus = EventBus::new();
    let (first, first_seen) = Recorder::new("audit", vec![Interest::name(task::FAILED)]);
    bus.register(first).unwrap();
    let (again, _) = Recorder::new("audit", vec![Interest::all()]);
    assert_eq!(
        bus.register(again.clone()).unwrap_err(),
        BusError::DuplicateSubscriber("audit".into())
    );
    bus.replace(again).unwrap();
    bus.publish(task_event(task::FAILED, TaskId::new(), TaskState::Error));
    bus.settled().await;
    assert!(
        first_seen.lock().unwrap().is_empty(),
        "the replaced one gets nothing new"
    );
    let stats = bus.unregister("audit").unwrap();
    assert_eq!((stats.delivered, stats.handled), (1, 1));
    assert_eq!(
        bus.unregister("audit").unwrap_err(),
        BusError::UnknownSubscriber("audit".into())
    );
    assert!(!bus.has_subscribers());

    let (typo, _) = Recorder::new("typo", vec![Interest::name("task.complete")]);
    let err = bus.register(typo).unwrap_err().to_string();
    assert!(err.contains("unknown event `task.complete`"), "{err}");
    assert!(err.contains("did you mean `task.completed`"), "{err}");
    let (never, _) = Recorder::new("never", vec![Interest::name("workflow.task_completed")]);
    let err = bus.register(never).unwrap_err().to_string();
    assert!(err.contains("never publishes"), "{err}");
    assert!(err.contains("one event per occurrence"), "{err}");
    assert!(
        !bus.has_subscribers(),
        "refused subscribers are not registered"
    );
}

#[tokio::test]
async fn custom_events_are_published_under_the_name_subscribed_to() {
    let bus = EventBus::new();
    let payload = || CustomPayload {
        task_id: None,
        step_id: None,
        step_name: None,
        labels: None,
        data: json!({"order": 7}),
    };
    // Not registered yet: neither subscribing nor publishing works.
    let (early, _) = Recorder::new("early", vec![Interest::name("orders.fulfilled")]);
    assert!(matches!(
        bus.register(early),
        Err(BusError::UnknownEvent { .. })
    ));
    let err = bus
        .publish_custom("orders.fulfilled", at(0), payload())
        .unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
    // Reserved and malformed names are refused at registration.
    let err = bus
        .register_custom("task.fulfilled", None, "code")
        .unwrap_err();
    assert!(
        err.to_string().contains("reserved namespace `task`"),
        "{err}"
    );
    assert!(bus.register_custom("fulfilled", None, "code").is_err());
    assert!(bus.publish_custom("step.hijack", at(0), payload()).is_err());
    // A catalog name outside the reserved namespaces is still not a custom event.
    assert_eq!(
        bus.register_custom("slow.event", None, "code").unwrap_err(),
        BusError::CatalogName("slow.event".into())
    );

    bus.register_custom(
        "orders.fulfilled",
        Some("An order shipped"),
        "shop/checkout@1.0.0",
    )
    .unwrap();
    bus.register_custom("orders.fulfilled", None, "code")
        .unwrap();
    let (orders, seen) = Recorder::new("orders", vec![Interest::name("orders.fulfilled")]);
    bus.register(orders).unwrap();
    let (customs, by_category) =
        Recorder::new("customs", vec![Interest::Category(Category::Custom)]);
    bus.register(customs).unwrap();
    bus.publish_custom("orders.fulfilled", at(0), payload())
        .unwrap();
    let err = bus
        .publish_custom("orders.fulfiled", at(0), payload())
        .unwrap_err();
    assert!(
        err.to_string().contains("did you mean `orders.fulfilled`"),
        "{err}"
    );
    bus.settled().await;
    assert_eq!(*seen.lock().unwrap(), ["orders.fulfilled"]);
    assert_eq!(*by_category.lock().unwrap(), ["orders.fulfilled"]);
    let specs = bus.custom_events();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].description.as_deref(), Some("An order shipped"));
    assert_eq!(specs[0].fired_by, ["shop/checkout@1.0.0", "code"]);
}

#[tokio::test]
async fn streams_end_their_subscription_when_dropped_and_count_drops() {
    let bus = EventBus::new();
    let mut stream = bus.stream(vec![Interest::name(task::COMPLETED)], 2);
    let id = TaskId::new();
    for _ in 0..5 {
        bus.publish(task_event(task::COMPLETED, id, TaskState::Complete));
    }
    bus.publish(task_event(task::FAILED, id, TaskState::Error));
    assert_eq!(stream.drain().len(), 2);
    assert_eq!(stream.dropped(), 3);
    assert!(bus.is_listened(task::COMPLETED));
    assert!(!bus.is_listened(task::FAILED));
    drop(stream);
    bus.publish(task_event(task::COMPLETED, id, TaskState::Complete));
    assert!(!bus.has_subscribers());
}

#[test]
fn events_round_trip_through_json() {
    let event = step_event(step::FAILED, TaskId::new(), "charge", 2);
    let text = serde_json::to_string(&event).unwrap();
    assert!(text.contains(r#""kind":"step""#), "{text}");
    assert!(text.contains(r#""correlation_id":"tsk-corr-1""#), "{text}");
    let back: Event = serde_json::from_str(&text).unwrap();
    assert_eq!(back, event);
    assert_eq!(back.category, Category::Step);
}

#[tokio::test]
async fn one_relay_per_bus_and_streams_leave_when_dropped() {
    let bus = EventBus::new();
    bus.claim_relay("engine-a").unwrap();
    assert_eq!(
        bus.claim_relay("engine-b").unwrap_err(),
        BusError::AlreadyRelayed("engine-a".into())
    );
    bus.release_relay("engine-b");
    assert!(
        bus.claim_relay("engine-b").is_err(),
        "only the holder releases"
    );
    bus.release_relay("engine-a");
    bus.claim_relay("engine-b").unwrap();

    // A narrow stream leaves the registry when dropped, without waiting for a matching event.
    let stream = bus.stream(vec![Interest::name(task::CANCELLED)], usize::MAX);
    assert!(bus.has_subscribers());
    assert_eq!(
        bus.stats().subscribers[0].capacity,
        tasker_events::bus::MAX_CAPACITY
    );
    drop(stream);
    assert!(!bus.has_subscribers());
}

#[tokio::test]
async fn sensitive_keys_in_custom_data_and_error_contexts_are_redacted_before_delivery() {
    let bus = EventBus::new();
    bus.register_custom("orders.charged", None, "code").unwrap();
    let mut stream = bus.stream(vec![Interest::all()], 10);
    let task_id = TaskId::new();
    bus.publish_custom(
        "orders.charged",
        at(1),
        CustomPayload {
            task_id: Some(task_id),
            step_id: None,
            step_name: None,
            labels: None,
            data: json!({"amount": 5, "card": {"Api_Key": "k-1", "last4": "4242"}}),
        },
    )
    .unwrap();
    let mut failed = step_event(step::FAILED, task_id, "charge", 1);
    if let Payload::Step(payload) = &mut failed.payload {
        let error = payload.error.take().unwrap();
        payload.error = Some(StepError {
            context: json!({"headers": {"Authorization": "Bearer s3cr3t", "accept": "json"}}),
            ..error
        });
    }
    bus.publish(failed);
    let custom = stream.recv().await.unwrap();
    let Payload::Custom(custom) = &custom.payload else {
        panic!("{custom:?}")
    };
    assert_eq!(
        custom.data,
        json!({"amount": 5, "card": {"Api_Key": "[REDACTED]", "last4": "4242"}})
    );
    let step = stream.recv().await.unwrap();
    let Payload::Step(step) = &step.payload else {
        panic!("{step:?}")
    };
    assert_eq!(
        step.error.as_ref().unwrap().context,
        json!({"headers": {"Authorization": "[REDACTED]", "accept": "json"}})
    );

    // A configured list replaces the default one; an empty list turns redaction off.
    bus.set_redactor(tasker_domain::Redactor::new(["last4"]));
    bus.publish_custom(
        "orders.charged",
        at(2),
        CustomPayload {
            task_id: Some(task_id),
            step_id: None,
            step_name: None,
            labels: None,
            data: json!({"api_key": "k-2", "last4": "4242"}),
        },
    )
    .unwrap();
    let custom = stream.recv().await.unwrap();
    let Payload::Custom(custom) = &custom.payload else {
        panic!("{custom:?}")
    };
    assert_eq!(
        custom.data,
        json!({"api_key": "k-2", "last4": "[REDACTED]"})
    );
}
