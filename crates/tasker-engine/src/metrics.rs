//! The coordinator's own instruments, through the OpenTelemetry metrics API (no SDK here: the
//! process that builds the engine attaches a reader, such as `tasker serve`'s Prometheus
//! exporter, to the meter provider it passes to [`crate::EngineBuilder::meter`]).
//! [`ENGINE_INSTRUMENTS`] lists them; each is created from its entry there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use tasker_events::{
    Appears, BATCH_BOUNDARIES, InstrumentKind, InstrumentSpec, InstrumentUnit, SECONDS_BOUNDARIES,
};
use tasker_persistence::Store;

/// An observable gauge of a count.
const fn gauge(
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    notes: &'static str,
) -> InstrumentSpec {
    InstrumentSpec {
        name,
        kind: InstrumentKind::ObservableGauge,
        unit: InstrumentUnit::Count(unit),
        labels: &[],
        description,
        notes,
        appears: Appears::AtStart,
        boundaries: &[],
    }
}

const STEPS_RUNNING: InstrumentSpec = gauge(
    "tasker.engine.steps.running",
    "attempts",
    "Step attempts running in this process",
    "",
);
const STEPS_HELD: InstrumentSpec = gauge(
    "tasker.engine.steps.held",
    "steps",
    "Claimed steps held back by the per-task concurrency limit",
    "The limit is `engine.max_concurrent_steps_per_task`.",
);
const OUTCOMES_UNRECORDED: InstrumentSpec = gauge(
    "tasker.engine.outcomes.unrecorded",
    "outcomes",
    "Finished attempts waiting to be recorded again after a failed commit",
    "They are kept in memory and recorded again with backoff.",
);
const CLAIM_STEPS: InstrumentSpec = InstrumentSpec {
    name: "tasker.engine.claim.steps",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Count("steps"),
    labels: &[],
    description: "Steps per claim that returned any",
    notes: "A claim of its own or the one in a group commit.",
    appears: Appears::OnFirst("attempt"),
    boundaries: BATCH_BOUNDARIES,
};
const CLAIM_DURATION: InstrumentSpec = InstrumentSpec {
    name: "tasker.engine.claim.duration",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Seconds,
    labels: &[],
    description: "Duration of a claim's own transaction",
    notes: "",
    appears: Appears::WithCoordinator,
    boundaries: SECONDS_BOUNDARIES,
};
const RECORD_DURATION: InstrumentSpec = InstrumentSpec {
    name: "tasker.engine.record.duration",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Seconds,
    labels: &[],
    description: "Duration of a group commit: outcomes recorded and the next claim",
    notes: "Children released and tasks finalized included.",
    appears: Appears::OnFirst("attempt"),
    boundaries: SECONDS_BOUNDARIES,
};
const LEASES_RENEWED: InstrumentSpec = InstrumentSpec {
    name: "tasker.engine.leases.renewed",
    kind: InstrumentKind::Counter,
    unit: InstrumentUnit::Count("leases"),
    labels: &[],
    description: "Leases of running attempts extended",
    notes: "By upkeep, every `engine.lease / 3`.",
    appears: Appears::OnFirst("renewal"),
    boundaries: &[],
};
const LEASES_RECLAIMED: InstrumentSpec = InstrumentSpec {
    name: "tasker.engine.leases.reclaimed",
    kind: InstrumentKind::Counter,
    unit: InstrumentUnit::Count("attempts"),
    labels: &[],
    description: "Expired attempts failed by this process's lease upkeep",
    notes: "Their lease expired (a crashed or stalled process); they run again.",
    appears: Appears::OnFirst("reclaim"),
    boundaries: &[],
};
const STEPS_READY: InstrumentSpec = gauge(
    "tasker.steps.ready",
    "steps",
    "Steps ready to claim now, in the whole database",
    "Read by `Engine::observe_backlog`, before each scrape; the same in every process.",
);
const STEPS_IN_BACKOFF: InstrumentSpec = gauge(
    "tasker.steps.in_backoff",
    "steps",
    "Steps waiting for their next attempt (retry backoff), in the whole database",
    "Their parents are done but their next attempt is later (backoff, `Retry-After`); the same in every process.",
);
const POOL_CONNECTIONS: InstrumentSpec = InstrumentSpec {
    name: "tasker.db.pool.connections",
    kind: InstrumentKind::ObservableGauge,
    unit: InstrumentUnit::Count("connections"),
    labels: &["state"],
    description: "Open database connections, in use or idle",
    notes: "`state` is `in_use` or `idle`.",
    appears: Appears::AtStart,
    boundaries: &[],
};
const POOL_ACQUIRE_WAIT: InstrumentSpec = InstrumentSpec {
    name: "tasker.db.pool.acquire_wait",
    kind: InstrumentKind::ObservableGauge,
    unit: InstrumentUnit::Seconds,
    labels: &[],
    description: "How long taking a pooled connection waited, measured when metrics are read",
    notes: "Once per scrape, one connection is taken and given back at once.",
    appears: Appears::AtStart,
    boundaries: &[],
};

/// The coordinator's instruments (and the store's pool and backlog, which it reads), each
/// created from its entry here.
pub const ENGINE_INSTRUMENTS: &[InstrumentSpec] = &[
    STEPS_RUNNING,
    STEPS_HELD,
    OUTCOMES_UNRECORDED,
    CLAIM_STEPS,
    CLAIM_DURATION,
    RECORD_DURATION,
    LEASES_RENEWED,
    LEASES_RECLAIMED,
    STEPS_READY,
    STEPS_IN_BACKOFF,
    POOL_CONNECTIONS,
    POOL_ACQUIRE_WAIT,
];

/// Numbers the coordinator and [`crate::Engine::observe_backlog`] keep for the observable
/// gauges, which read them when the meter provider is collected.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) running: AtomicU64,
    pub(crate) held: AtomicU64,
    pub(crate) unrecorded: AtomicU64,
    pub(crate) ready: AtomicU64,
    pub(crate) in_backoff: AtomicU64,
    /// How long the last observation waited for a pooled connection, in microseconds.
    pub(crate) acquire_wait_micros: AtomicU64,
    /// Whether the backlog was ever observed (until then its gauges report nothing).
    pub(crate) backlog_observed: AtomicBool,
}

/// A backlog number, once the backlog has been observed.
fn backlog(gauges: &Gauges, value: &AtomicU64) -> Option<u64> {
    gauges
        .backlog_observed
        .load(Ordering::Relaxed)
        .then(|| value.load(Ordering::Relaxed))
}

/// The coordinator's instruments.
pub(crate) struct EngineMetrics {
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) claim_steps: Histogram<u64>,
    pub(crate) claim_duration: Histogram<f64>,
    pub(crate) record_duration: Histogram<f64>,
    pub(crate) leases_renewed: Counter<u64>,
    pub(crate) leases_reclaimed: Counter<u64>,
    _observed: Vec<ObservableGauge<u64>>,
    _acquire_wait: ObservableGauge<f64>,
}

impl EngineMetrics {
    /// Instruments on `meter`; the pool gauges read `store`'s pool when collected.
    pub(crate) fn new(meter: &Meter, store: &Store) -> Self {
        let gauges = Arc::new(Gauges::default());
        let gauge = |spec: &InstrumentSpec, read: fn(&Gauges) -> Option<u64>| {
            let gauges = gauges.clone();
            spec.u64_observable_gauge(meter)
                .with_callback(move |observer| {
                    if let Some(value) = read(&gauges) {
                        observer.observe(value, &[]);
                    }
                })
                .build()
        };
        let pool_store = store.clone();
        let acquire_wait = {
            let gauges = gauges.clone();
            POOL_ACQUIRE_WAIT
                .f64_observable_gauge(meter)
                .with_callback(move |observer| {
                    if let Some(micros) = backlog(&gauges, &gauges.acquire_wait_micros) {
                        observer.observe(micros as f64 / 1e6, &[]);
                    }
                })
                .build()
        };
        let observed = vec![
            gauge(&STEPS_RUNNING, |g| Some(g.running.load(Ordering::Relaxed))),
            gauge(&STEPS_HELD, |g| Some(g.held.load(Ordering::Relaxed))),
            gauge(&OUTCOMES_UNRECORDED, |g| {
                Some(g.unrecorded.load(Ordering::Relaxed))
            }),
            gauge(&STEPS_READY, |g| backlog(g, &g.ready)),
            gauge(&STEPS_IN_BACKOFF, |g| backlog(g, &g.in_backoff)),
            POOL_CONNECTIONS
                .u64_observable_gauge(meter)
                .with_callback(move |observer| {
                    if let Some(pool) = pool_store.pool_status() {
                        observer.observe(
                            u64::from(pool.in_use()),
                            &[KeyValue::new("state", "in_use")],
                        );
                        observer.observe(u64::from(pool.idle), &[KeyValue::new("state", "idle")]);
                    }
                })
                .build(),
        ];
        Self {
            gauges,
            claim_steps: CLAIM_STEPS.u64_histogram(meter),
            claim_duration: CLAIM_DURATION.f64_histogram(meter),
            record_duration: RECORD_DURATION.f64_histogram(meter),
            leases_renewed: LEASES_RENEWED.u64_counter(meter),
            leases_reclaimed: LEASES_RECLAIMED.u64_counter(meter),
            _observed: observed,
            _acquire_wait: acquire_wait,
        }
    }
}
