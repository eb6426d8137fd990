//! The coordinator's own instruments, through the OpenTelemetry metrics API (no SDK here: the
//! process that builds the engine attaches a reader, such as `tasker serve`'s Prometheus
//! exporter, to the meter provider it passes to [`crate::EngineBuilder::meter`]).
//!
//! | Instrument | Kind | What |
//! |---|---|---|
//! | `tasker.engine.steps.running` | gauge | attempts running in this process |
//! | `tasker.engine.steps.held` | gauge | claimed steps held back by `max_concurrent_steps_per_task` |
//! | `tasker.engine.outcomes.unrecorded` | gauge | finished attempts waiting to be recorded again |
//! | `tasker.engine.claim.steps` | histogram | steps per claim that returned any |
//! | `tasker.engine.claim.duration` | histogram (s) | a claim's own transaction |
//! | `tasker.engine.record.duration` | histogram (s) | a group commit (outcomes and the next claim) |
//! | `tasker.engine.leases.renewed` | counter | leases of running attempts extended |
//! | `tasker.engine.leases.reclaimed` | counter | expired attempts failed by this process's upkeep |
//! | `tasker.steps.ready` | gauge | steps ready to claim, database-wide ([`crate::Engine::observe_backlog`]) |
//! | `tasker.steps.in_backoff` | gauge | steps waiting for their next attempt, database-wide |
//! | `tasker.db.pool.connections` | gauge (`state`: `in_use`, `idle`) | the store's connection pool |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use tasker_events::SECONDS_BOUNDARIES;
use tasker_persistence::Store;

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
        let gauge =
            |name: &'static str, description: &'static str, read: fn(&Gauges) -> Option<u64>| {
                let gauges = gauges.clone();
                meter
                    .u64_observable_gauge(name)
                    .with_description(description)
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
            meter
                .f64_observable_gauge("tasker.db.pool.acquire_wait")
                .with_unit("s")
                .with_description(
                    "How long taking a pooled connection waited, measured when metrics are read",
                )
                .with_callback(move |observer| {
                    if let Some(micros) = backlog(&gauges, &gauges.acquire_wait_micros) {
                        observer.observe(micros as f64 / 1e6, &[]);
                    }
                })
                .build()
        };
        let observed = vec![
            gauge(
                "tasker.engine.steps.running",
                "Step attempts running in this process",
                |g| Some(g.running.load(Ordering::Relaxed)),
            ),
            gauge(
                "tasker.engine.steps.held",
                "Claimed steps held back by the per-task concurrency limit",
                |g| Some(g.held.load(Ordering::Relaxed)),
            ),
            gauge(
                "tasker.engine.outcomes.unrecorded",
                "Finished attempts waiting to be recorded again after a failed commit",
                |g| Some(g.unrecorded.load(Ordering::Relaxed)),
            ),
            gauge(
                "tasker.steps.ready",
                "Steps ready to claim now, in the whole database",
                |g| backlog(g, &g.ready),
            ),
            gauge(
                "tasker.steps.in_backoff",
                "Steps waiting for their next attempt (retry backoff), in the whole database",
                |g| backlog(g, &g.in_backoff),
            ),
            meter
                .u64_observable_gauge("tasker.db.pool.connections")
                .with_description("Open database connections, in use or idle")
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
            claim_steps: meter
                .u64_histogram("tasker.engine.claim.steps")
                .with_description("Steps per claim that returned any")
                .with_boundaries(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
                .build(),
            claim_duration: meter
                .f64_histogram("tasker.engine.claim.duration")
                .with_unit("s")
                .with_description("Duration of a claim's own transaction")
                .with_boundaries(SECONDS_BOUNDARIES.to_vec())
                .build(),
            record_duration: meter
                .f64_histogram("tasker.engine.record.duration")
                .with_unit("s")
                .with_description(
                    "Duration of a group commit: outcomes recorded and the next claim",
                )
                .with_boundaries(SECONDS_BOUNDARIES.to_vec())
                .build(),
            leases_renewed: meter
                .u64_counter("tasker.engine.leases.renewed")
                .with_description("Leases of running attempts extended")
                .build(),
            leases_reclaimed: meter
                .u64_counter("tasker.engine.leases.reclaimed")
                .with_description("Expired attempts failed by this process's lease upkeep")
                .build(),
            _observed: observed,
            _acquire_wait: acquire_wait,
        }
    }
}
