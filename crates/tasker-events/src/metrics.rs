//! Metrics derived from events, through the OpenTelemetry metrics API (the one facade: a
//! Prometheus or OTLP reader is attached to the meter provider by whoever builds the server).
//!
//! | Event | Instrument |
//! |---|---|
//! | `task.initialize_requested` | counter `tasker.tasks.created` |
//! | `task.start_requested` | counter `tasker.tasks.started` |
//! | `task.completed` / `failed` / `cancelled` / `resolved_manually` | counter `tasker.tasks.<state>`, histogram `tasker.task.duration` (s, attribute `state`) |
//! | `task.retry_requested` | counter `tasker.tasks.retried` |
//! | `step.execution_requested` | counter `tasker.steps.started` |
//! | `step.completed` | counter `tasker.steps.completed`, histogram `tasker.step.duration` (s) |
//! | `step.failed` | counter `tasker.steps.failed` (attributes `error_kind`, `error_code`), histogram `tasker.step.duration` |
//! | `step.retry_requested` | counter `tasker.steps.retried` |
//! | `step.cancelled` | counter `tasker.steps.cancelled` |
//! | `observability.step.max_retries_reached` | counter `tasker.steps.exhausted` |
//! | `workflow.steps_execution_completed` | histogram `tasker.commit.steps` (outcomes per group commit) |
//! | custom events | counter `tasker.custom_events` (attribute `event`) |
//! | the bus's queue drops | observable counter `tasker.events.dropped` |
//!
//! Task and step instruments carry `namespace`, `task_name` and `version`; step instruments add
//! `step`.

use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableCounter};

use crate::bus::{EventBus, Interest, Subscriber};
use crate::catalog::Category;
use crate::event::{Event, Payload, TaskLabels};
use crate::names::{observability, step, task, workflow};

/// Histogram boundaries for durations in seconds, 1 ms to 1 h: the SDK's default boundaries
/// (0 to 10,000) suit milliseconds, not seconds. Every Tasker duration histogram uses them.
pub const SECONDS_BOUNDARIES: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
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
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(SECONDS_BOUNDARIES.to_vec())
                .build()
        };
        let observed = bus.clone();
        Self {
            tasks_created: counter("tasker.tasks.created", "Tasks created"),
            tasks_started: counter("tasker.tasks.started", "Tasks started"),
            tasks_completed: counter("tasker.tasks.completed", "Tasks completed"),
            tasks_failed: counter("tasker.tasks.failed", "Tasks ended in error"),
            tasks_cancelled: counter("tasker.tasks.cancelled", "Tasks cancelled"),
            tasks_resolved: counter("tasker.tasks.resolved_manually", "Tasks resolved by hand"),
            tasks_retried: counter("tasker.tasks.retried", "Tasks sent back to work"),
            task_duration: seconds("tasker.task.duration", "Task creation to final state"),
            steps_started: counter("tasker.steps.started", "Step attempts started"),
            steps_completed: counter("tasker.steps.completed", "Step attempts succeeded"),
            steps_failed: counter("tasker.steps.failed", "Step attempts failed"),
            steps_retried: counter("tasker.steps.retried", "Step retries started"),
            steps_cancelled: counter("tasker.steps.cancelled", "Steps cancelled"),
            steps_exhausted: counter("tasker.steps.exhausted", "Steps out of attempts"),
            step_duration: seconds("tasker.step.duration", "Step attempt duration"),
            commit_steps: meter
                .f64_histogram("tasker.commit.steps")
                .with_description("Attempt outcomes recorded per group commit")
                .with_boundaries(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
                .build(),
            custom_events: counter("tasker.custom_events", "Custom events published"),
            _dropped: meter
                .u64_observable_counter("tasker.events.dropped")
                .with_description("Events dropped because a subscriber's queue was full")
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
