//! The metrics subscriber (read back through an in-memory OpenTelemetry exporter) and the JSON
//! log subscriber (read back from a `tracing_subscriber` JSON writer).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskState};
use tasker_events::names::{observability, step, task};
use tasker_events::{
    EVENT_INSTRUMENTS, Event, EventBus, LogSubscriber, MetricsSubscriber, Payload, StepPayload,
    TaskLabels, TaskPayload,
};

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_790_000_000_000 + ms).unwrap()
}

fn labels() -> TaskLabels {
    TaskLabels {
        namespace: "shop".into(),
        task_name: "checkout".into(),
        version: "1.0.0".into(),
        correlation_id: "tsk-corr-9".into(),
    }
}

fn task_event(name: &'static str, id: TaskId, state: TaskState, duration_ms: Option<f64>) -> Event {
    Event::new(
        name,
        at(0),
        Payload::Task(TaskPayload {
            task_id: id,
            labels: labels(),
            from_state: None,
            state,
            total_steps: Some(1),
            duration_ms,
            reason: None,
        }),
    )
}

fn step_event(name: &'static str, id: TaskId, attempt: u32, error: Option<StepError>) -> Event {
    Event::new(
        name,
        at(10),
        Payload::Step(StepPayload {
            task_id: id,
            step_id: StepId::new(),
            step_name: "charge".into(),
            labels: labels(),
            attempt,
            retry_limit: 2,
            from_state: Some(StepState::InProgress),
            state: StepState::Error,
            duration_ms: (name != step::EXECUTION_REQUESTED).then_some(40.0),
            error,
            next_attempt_at: None,
            reason: None,
        }),
    )
}

/// Every exported instrument is in [`EVENT_INSTRUMENTS`] with the unit, description and
/// boundaries it was created with, and carries only the labels listed there. Returns how many
/// instruments were checked.
fn check_against_the_list(exporter: &InMemoryMetricExporter) -> usize {
    let mut checked = std::collections::BTreeSet::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let spec = EVENT_INSTRUMENTS
                    .iter()
                    .find(|spec| spec.name == metric.name())
                    .unwrap_or_else(|| panic!("{} is not in EVENT_INSTRUMENTS", metric.name()));
                assert_eq!(
                    metric.unit(),
                    spec.unit.otel().unwrap_or(""),
                    "{}",
                    spec.name
                );
                assert_eq!(metric.description(), spec.description, "{}", spec.name);
                let labels_ok = |keys: Vec<String>| {
                    for key in keys {
                        assert!(
                            spec.labels.contains(&key.as_str()),
                            "{} carries `{key}`, not in its labels {:?}",
                            spec.name,
                            spec.labels
                        );
                    }
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        assert_eq!(spec.kind.prometheus_type(), "counter", "{}", spec.name);
                        for p in sum.data_points() {
                            labels_ok(p.attributes().map(|kv| kv.key.to_string()).collect());
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        assert_eq!(spec.kind.prometheus_type(), "histogram", "{}", spec.name);
                        for p in h.data_points() {
                            labels_ok(p.attributes().map(|kv| kv.key.to_string()).collect());
                            assert_eq!(
                                p.bounds().collect::<Vec<_>>(),
                                spec.boundaries,
                                "{}",
                                spec.name
                            );
                        }
                    }
                    other => panic!("{}: unexpected data {other:?}", spec.name),
                }
                checked.insert(spec.name);
            }
        }
    }
    checked.len()
}

/// `name{attr=value,...}` → value (counters) or count/sum (histograms).
fn collect(exporter: &InMemoryMetricExporter) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let key = |attrs: Vec<String>| format!("{}{{{}}}", metric.name(), attrs.join(","));
                let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    let mut a: Vec<String> =
                        it.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
                    a.sort();
                    a
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            out.insert(key(attrs(&mut p.attributes())), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            let k = key(attrs(&mut p.attributes()));
                            out.insert(format!("{k}.count"), p.count() as f64);
                            out.insert(format!("{k}.sum"), p.sum());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn metrics_are_derived_from_events() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let bus = EventBus::new();
    bus.register(Arc::new(MetricsSubscriber::new(
        &provider.meter("tasker"),
        &bus,
    )))
    .unwrap();
    // A slow stream that drops, to see the drop counter.
    let _lagging = bus.stream(vec![tasker_events::Interest::all()], 1);
    let id = TaskId::new();
    let error = StepError::retryable("gateway down").with_code("GATEWAY");
    bus.publish(task_event(
        task::INITIALIZE_REQUESTED,
        id,
        TaskState::Pending,
        None,
    ));
    bus.publish(task_event(
        task::START_REQUESTED,
        id,
        TaskState::InProgress,
        None,
    ));
    bus.publish(step_event(step::EXECUTION_REQUESTED, id, 1, None));
    bus.publish(step_event(step::FAILED, id, 1, Some(error.clone())));
    bus.publish(step_event(step::RETRY_REQUESTED, id, 2, None));
    bus.publish(step_event(step::EXECUTION_REQUESTED, id, 2, None));
    bus.publish(step_event(step::FAILED, id, 2, Some(error)));
    bus.publish(step_event(
        observability::STEP_MAX_RETRIES_REACHED,
        id,
        2,
        None,
    ));
    bus.publish(task_event(task::FAILED, id, TaskState::Error, Some(2500.0)));
    bus.settled().await;
    provider.force_flush().unwrap();
    let metrics = collect(&exporter);
    let base = "namespace=shop,task_name=checkout,version=1.0.0";
    let step_base = "namespace=shop,step=charge,task_name=checkout,version=1.0.0";
    let get = |k: &str| {
        metrics
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {metrics:#?}"))
    };
    assert_eq!(get(&format!("tasker.tasks.created{{{base}}}")), 1.0);
    assert_eq!(get(&format!("tasker.tasks.started{{{base}}}")), 1.0);
    assert_eq!(get(&format!("tasker.tasks.failed{{{base}}}")), 1.0);
    assert_eq!(
        get(
            "tasker.task.duration{namespace=shop,state=error,task_name=checkout,version=1.0.0}.sum"
        ),
        2.5
    );
    assert_eq!(get(&format!("tasker.steps.started{{{step_base}}}")), 2.0);
    assert_eq!(get(&format!("tasker.steps.retried{{{step_base}}}")), 1.0);
    assert_eq!(get(&format!("tasker.steps.exhausted{{{step_base}}}")), 1.0);
    assert_eq!(
        get(&format!(
            "tasker.steps.failed{{error_code=GATEWAY,error_kind=retryable,{step_base}}}"
        )),
        2.0
    );
    assert_eq!(
        get(&format!(
            "tasker.step.duration{{error_code=GATEWAY,error_kind=retryable,{step_base}}}.count"
        )),
        2.0
    );
    assert!(!metrics.contains_key(&format!("tasker.tasks.completed{{{base}}}")));
    assert!(
        !metrics.contains_key(&format!("tasker.step.duration{{{step_base}}}.count")),
        "only completed and failed attempts have a duration"
    );
    assert_eq!(get("tasker.events.dropped{}"), 8.0);
    assert_eq!(
        check_against_the_list(&exporter),
        10,
        "created, started, failed, task and step duration, steps started, failed, retried and exhausted, dropped"
    );
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_log_subscriber_writes_one_json_line_per_event_with_its_correlation_id() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Callsite interest is cached process-wide: a callsite another test
    // thread registered while this subscriber was being set may be cached
    // as unwanted. Recompute it.
    tracing::callsite::rebuild_interest_cache();
    // One thread: the subscriber's worker logs under the default set above.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = EventBus::new();
        bus.register(Arc::new(LogSubscriber::new())).unwrap();
        let id = TaskId::new();
        bus.publish(step_event(
            step::FAILED,
            id,
            1,
            Some(StepError::permanent("card declined", "DECLINED")),
        ));
        bus.publish(task_event(
            task::COMPLETED,
            id,
            TaskState::Complete,
            Some(12.5),
        ));
        bus.settled().await;
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("tasker::events"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let failed = &lines[0];
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["fields"]["event"], "step.failed");
    assert_eq!(failed["fields"]["step"], "charge");
    assert_eq!(failed["fields"]["error"], "card declined");
    assert_eq!(failed["fields"]["error_code"], "DECLINED");
    assert_eq!(failed["fields"]["correlation_id"], "tsk-corr-9");
    let completed = &lines[1];
    assert_eq!(completed["level"], "INFO");
    assert_eq!(completed["fields"]["event"], "task.completed");
    assert_eq!(completed["fields"]["duration_ms"], 12.5);
    assert_eq!(completed["fields"]["correlation_id"], "tsk-corr-9");
}
