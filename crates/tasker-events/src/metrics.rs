//! Metrics derived from events, through the OpenTelemetry metrics API (the one facade: a
//! Prometheus or OTLP reader is attached to the meter provider by whoever builds the server).
//! [`EVENT_INSTRUMENTS`] lists them, with the events that record each; every instrument is
//! created from its entry there (docs/reference/metrics.md is generated from it).
//!
//! Task and step instruments carry `namespace`, `task_name` and `version`; step instruments add
//! `step`.

use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableCounter};

use crate::bus::{EventBus, Interest, Subscriber};
use crate::catalog::Category;
use crate::event::{Event, Payload, TaskLabels};
use crate::instrument::{
    Appears, BATCH_BOUNDARIES, InstrumentKind, InstrumentSpec, InstrumentUnit, SECONDS_BOUNDARIES,
};
use crate::names::{observability, step, task, workflow};

const TASK: &[&str] = &["namespace", "task_name", "version"];
const STEP: &[&str] = &["namespace", "task_name", "version", "step"];

/// A counter of tasks or steps.
const fn counter(
    name: &'static str,
    unit: &'static str,
    labels: &'static [&'static str],
    description: &'static str,
    notes: &'static str,
    first: &'static str,
) -> InstrumentSpec {
    InstrumentSpec {
        name,
        kind: InstrumentKind::Counter,
        unit: InstrumentUnit::Count(unit),
        labels,
        description,
        notes,
        appears: Appears::OnFirst(first),
        boundaries: &[],
    }
}

const TASKS_CREATED: InstrumentSpec = counter(
    "tasker.tasks.created",
    "tasks",
    TASK,
    "Tasks created",
    "Recorded on `task.initialize_requested`.",
    "task",
);
const TASKS_STARTED: InstrumentSpec = counter(
    "tasker.tasks.started",
    "tasks",
    TASK,
    "Tasks started",
    "A task starts when its first step is claimed (`task.start_requested`).",
    "task",
);
const TASKS_COMPLETED: InstrumentSpec = counter(
    "tasker.tasks.completed",
    "tasks",
    TASK,
    "Tasks completed",
    "",
    "completion",
);
const TASKS_FAILED: InstrumentSpec = counter(
    "tasker.tasks.failed",
    "tasks",
    TASK,
    "Tasks ended in error",
    "",
    "task error",
);
const TASKS_CANCELLED: InstrumentSpec = counter(
    "tasker.tasks.cancelled",
    "tasks",
    TASK,
    "Tasks cancelled",
    "",
    "cancellation",
);
const TASKS_RESOLVED: InstrumentSpec = counter(
    "tasker.tasks.resolved_manually",
    "tasks",
    TASK,
    "Tasks resolved by hand",
    "An operator resolved the task.",
    "manual resolution",
);
const TASKS_RETRIED: InstrumentSpec = counter(
    "tasker.tasks.retried",
    "tasks",
    TASK,
    "Tasks sent back to work",
    "An operator retried a task in error.",
    "task retry",
);
const TASK_DURATION: InstrumentSpec = InstrumentSpec {
    name: "tasker.task.duration",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Seconds,
    labels: &["namespace", "task_name", "version", "state"],
    description: "Task creation to final state",
    notes: "`state` is the final state: `complete`, `error`, `cancelled` or `resolved_manually`.",
    appears: Appears::OnFirst("finished task"),
    boundaries: SECONDS_BOUNDARIES,
};
const STEPS_STARTED: InstrumentSpec = counter(
    "tasker.steps.started",
    "attempts",
    STEP,
    "Step attempts started",
    "",
    "attempt",
);
const STEPS_COMPLETED: InstrumentSpec = counter(
    "tasker.steps.completed",
    "attempts",
    STEP,
    "Step attempts succeeded",
    "",
    "attempt",
);
const STEPS_FAILED: InstrumentSpec = counter(
    "tasker.steps.failed",
    "attempts",
    &[
        "namespace",
        "task_name",
        "version",
        "step",
        "error_kind",
        "error_code",
    ],
    "Step attempts failed",
    "`error_kind` is `retryable` or `permanent`, `error_code` the code from docs/errors.md (empty when none).",
    "failed attempt",
);
const STEPS_RETRIED: InstrumentSpec = counter(
    "tasker.steps.retried",
    "attempts",
    STEP,
    "Step retries started",
    "A failed step claimed again.",
    "retry",
);
const STEPS_CANCELLED: InstrumentSpec = counter(
    "tasker.steps.cancelled",
    "steps",
    STEP,
    "Steps cancelled",
    "",
    "step cancellation",
);
const STEPS_EXHAUSTED: InstrumentSpec = counter(
    "tasker.steps.exhausted",
    "steps",
    STEP,
    "Steps out of attempts",
    "The step failed its last allowed attempt (`observability.step.max_retries_reached`).",
    "exhausted step",
);
const STEP_DURATION: InstrumentSpec = InstrumentSpec {
    name: "tasker.step.duration",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Seconds,
    labels: STEPS_FAILED.labels,
    description: "Step attempt duration",
    notes: "One attempt, from its start to its outcome; failed attempts add `error_kind` and `error_code`.",
    appears: Appears::OnFirst("attempt"),
    boundaries: SECONDS_BOUNDARIES,
};
const COMMIT_STEPS: InstrumentSpec = InstrumentSpec {
    name: "tasker.commit.steps",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Count("outcomes"),
    labels: &[],
    description: "Attempt outcomes recorded per group commit",
    notes: "Recorded on `workflow.steps_execution_completed`.",
    appears: Appears::OnFirst("attempt"),
    boundaries: BATCH_BOUNDARIES,
};
const CUSTOM_EVENTS: InstrumentSpec = counter(
    "tasker.custom_events",
    "events",
    &["event"],
    "Custom events published",
    "Published by step handlers; `event` is the event's name.",
    "custom event",
);
const EVENTS_DROPPED: InstrumentSpec = InstrumentSpec {
    name: "tasker.events.dropped",
    kind: InstrumentKind::ObservableCounter,
    unit: InstrumentUnit::Count("events"),
    labels: &[],
    description: "Events dropped because a subscriber's queue was full",
    notes: "",
    appears: Appears::AtStart,
    boundaries: &[],
};

/// The instruments [`MetricsSubscriber`] records, each created from its entry here.
pub const EVENT_INSTRUMENTS: &[InstrumentSpec] = &[
    TASKS_CREATED,
    TASKS_STARTED,
    TASKS_COMPLETED,
    TASKS_FAILED,
    TASKS_CANCELLED,
    TASKS_RESOLVED,
    TASKS_RETRIED,
    TASK_DURATION,
    STEPS_STARTED,
    STEPS_COMPLETED,
    STEPS_FAILED,
    STEPS_RETRIED,
    STEPS_CANCELLED,
    STEPS_EXHAUSTED,
    STEP_DURATION,
    COMMIT_STEPS,
    CUSTOM_EVENTS,
    EVENTS_DROPPED,
];

/// Derives metrics from events. Register it on the bus whose events it should count; events
/// relayed from other processes are not counted (each process counts its own).
pub struct MetricsSubscriber {
    tasks_created: Counter<u64>,
    tasks_started: Counter<u64>,
    tasks_completed: Counter<u64>,
    tasks_failed: Counter<u64>,
    tasks_cancelled: Counter<u64>,
    tasks_resolved: Counter<u64>,
    tasks_retried: Counter<u64>,
    task_duration: Histogram<f64>,
    steps_started: Counter<u64>,
    steps_completed: Counter<u64>,
    steps_failed: Counter<u64>,
    steps_retried: Counter<u64>,
    steps_cancelled: Counter<u64>,
    steps_exhausted: Counter<u64>,
    step_duration: Histogram<f64>,
    commit_steps: Histogram<f64>,
    custom_events: Counter<u64>,
    _dropped: ObservableCounter<u64>,
}

impl std::fmt::Debug for MetricsSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSubscriber").finish_non_exhaustive()
    }
}

impl MetricsSubscriber {
    /// Instruments on `meter`; `bus` is observed for its drop count.
    pub fn new(meter: &Meter, bus: &EventBus) -> Self {
        let observed = bus.clone();
        Self {
            tasks_created: TASKS_CREATED.u64_counter(meter),
            tasks_started: TASKS_STARTED.u64_counter(meter),
            tasks_completed: TASKS_COMPLETED.u64_counter(meter),
            tasks_failed: TASKS_FAILED.u64_counter(meter),
            tasks_cancelled: TASKS_CANCELLED.u64_counter(meter),
            tasks_resolved: TASKS_RESOLVED.u64_counter(meter),
            tasks_retried: TASKS_RETRIED.u64_counter(meter),
            task_duration: TASK_DURATION.f64_histogram(meter),
            steps_started: STEPS_STARTED.u64_counter(meter),
            steps_completed: STEPS_COMPLETED.u64_counter(meter),
            steps_failed: STEPS_FAILED.u64_counter(meter),
            steps_retried: STEPS_RETRIED.u64_counter(meter),
            steps_cancelled: STEPS_CANCELLED.u64_counter(meter),
            steps_exhausted: STEPS_EXHAUSTED.u64_counter(meter),
            step_duration: STEP_DURATION.f64_histogram(meter),
            commit_steps: COMMIT_STEPS.f64_histogram(meter),
            custom_events: CUSTOM_EVENTS.u64_counter(meter),
            _dropped: EVENTS_DROPPED
                .u64_observable_counter(meter)
                .with_callback(move |observer| observer.observe(observed.dropped(), &[]))
                .build(),
        }
    }
}

fn labels(labels: &TaskLabels) -> Vec<KeyValue> {
    vec![
        KeyValue::new("namespace", labels.namespace.to_string()),
        KeyValue::new("task_name", labels.task_name.to_string()),
        KeyValue::new("version", labels.version.to_string()),
    ]
}

#[async_trait]
impl Subscriber for MetricsSubscriber {
    fn name(&self) -> &str {
        "tasker.metrics"
    }

    fn interests(&self) -> Vec<Interest> {
        vec![
            Interest::Category(Category::Task),
            Interest::Category(Category::Step),
            Interest::name(observability::STEP_MAX_RETRIES_REACHED),
            Interest::name(workflow::STEPS_EXECUTION_COMPLETED),
            Interest::Category(Category::Custom),
        ]
    }

    fn capacity(&self) -> usize {
        65_536
    }

    async fn handle(&self, event: &Event) {
        // Another process's events are counted by that process.
        if event.relayed_from.is_some() {
            return;
        }
        match &event.payload {
            Payload::Task(p) => {
                let attributes = labels(&p.labels);
                let counter = match &*event.name {
                    task::INITIALIZE_REQUESTED => &self.tasks_created,
                    task::START_REQUESTED => &self.tasks_started,
                    task::COMPLETED => &self.tasks_completed,
                    task::FAILED => &self.tasks_failed,
                    task::CANCELLED => &self.tasks_cancelled,
                    task::RESOLVED_MANUALLY => &self.tasks_resolved,
                    task::RETRY_REQUESTED => &self.tasks_retried,
                    _ => return,
                };
                counter.add(1, &attributes);
                if let Some(ms) = p.duration_ms {
                    let mut attributes = attributes;
                    attributes.push(KeyValue::new("state", p.state.as_str()));
                    self.task_duration.record(ms / 1e3, &attributes);
                }
            }
            Payload::Step(p) => {
                let mut attributes = labels(&p.labels);
                attributes.push(KeyValue::new("step", p.step_name.to_string()));
                match &*event.name {
                    step::EXECUTION_REQUESTED => self.steps_started.add(1, &attributes),
                    step::COMPLETED => {
                        self.steps_completed.add(1, &attributes);
                        if let Some(ms) = p.duration_ms {
                            self.step_duration.record(ms / 1e3, &attributes);
                        }
                    }
                    step::FAILED => {
                        if let Some(error) = &p.error {
                            attributes.push(KeyValue::new(
                                "error_kind",
                                format!("{:?}", error.kind).to_lowercase(),
                            ));
                            attributes.push(KeyValue::new(
                                "error_code",
                                error.error_code.clone().unwrap_or_default(),
                            ));
                        }
                        self.steps_failed.add(1, &attributes);
                        if let Some(ms) = p.duration_ms {
                            self.step_duration.record(ms / 1e3, &attributes);
                        }
                    }
                    step::RETRY_REQUESTED => self.steps_retried.add(1, &attributes),
                    step::CANCELLED => self.steps_cancelled.add(1, &attributes),
                    observability::STEP_MAX_RETRIES_REACHED => {
                        self.steps_exhausted.add(1, &attributes);
                    }
                    _ => {}
                }
            }
            Payload::Workflow(p) if event.name == workflow::STEPS_EXECUTION_COMPLETED => {
                self.commit_steps.record(p.step_count as f64, &[]);
            }
            Payload::Custom(_) => self
                .custom_events
                .add(1, &[KeyValue::new("event", event.name.to_string())]),
            Payload::Workflow(_) | Payload::Switch(_) => {}
        }
    }
}
