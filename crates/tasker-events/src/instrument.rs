//! What an OpenTelemetry instrument is, as data: [`InstrumentSpec`]. Each crate that records
//! metrics lists its instruments in one static list and creates every instrument from its spec
//! (name, kind, unit, description, bucket boundaries), so the list is what the code records.
//! docs/reference/metrics.md is generated from the lists: this crate's
//! [`EVENT_INSTRUMENTS`](crate::EVENT_INSTRUMENTS), the engine's and the HTTP API's.

use std::borrow::Cow;
use std::fmt;

use opentelemetry::metrics::{
    AsyncInstrumentBuilder, Counter, Histogram, HistogramBuilder, Meter, ObservableCounter,
    ObservableGauge,
};

/// Histogram boundaries for durations in seconds, 1 ms to 1 h: the SDK's default boundaries
/// (0 to 10,000) suit milliseconds, not seconds. Every Tasker duration histogram uses them.
pub const SECONDS_BOUNDARIES: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// Histogram boundaries for counts per batch (steps per claim, outcomes per commit): powers of
/// two up to 256, the largest default batch.
pub const BATCH_BOUNDARIES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How an instrument records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstrumentKind {
    /// Added to where something happens.
    Counter,
    /// A running total read by a callback when metrics are collected.
    ObservableCounter,
    /// A distribution of recorded values.
    Histogram,
    /// A current value read by a callback when metrics are collected.
    ObservableGauge,
}

impl InstrumentKind {
    /// The type Prometheus exports it as: `counter`, `histogram` or `gauge`.
    pub const fn prometheus_type(self) -> &'static str {
        match self {
            InstrumentKind::Counter | InstrumentKind::ObservableCounter => "counter",
            InstrumentKind::Histogram => "histogram",
            InstrumentKind::ObservableGauge => "gauge",
        }
    }
}

/// What one unit of an instrument's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrumentUnit {
    /// Seconds: the instrument's unit is `s`, and Prometheus adds `_seconds` to its name.
    Seconds,
    /// A count of things (`tasks`, `attempts`): the instrument has no unit.
    Count(&'static str),
}

impl InstrumentUnit {
    /// The unit given to OpenTelemetry, if any.
    pub const fn otel(self) -> Option<&'static str> {
        match self {
            InstrumentUnit::Seconds => Some("s"),
            InstrumentUnit::Count(_) => None,
        }
    }

    /// The unit in words: `seconds`, `tasks`.
    pub const fn words(self) -> &'static str {
        match self {
            InstrumentUnit::Seconds => "seconds",
            InstrumentUnit::Count(things) => things,
        }
    }
}

/// When an instrument is first exported. OpenTelemetry exports a counter or histogram only once
/// something was recorded, and an observable instrument from the first collection on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appears {
    /// From the first scrape.
    AtStart,
    /// From the first scrape of a process that runs the coordinator.
    WithCoordinator,
    /// Once this first happens (`task`, `failed attempt`).
    OnFirst(&'static str),
}

impl fmt::Display for Appears {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Appears::AtStart => f.write_str("at start"),
            Appears::WithCoordinator => f.write_str("with the coordinator"),
            Appears::OnFirst(what) => write!(f, "on first {what}"),
        }
    }
}

/// One instrument: everything about it that the code and its reference page share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstrumentSpec {
    /// The dotted OpenTelemetry name, `tasker.tasks.created`.
    pub name: &'static str,
    /// How it records.
    pub kind: InstrumentKind,
    /// What its value counts or measures.
    pub unit: InstrumentUnit,
    /// The attribute (label) names it may carry.
    pub labels: &'static [&'static str],
    /// The instrument's description (Prometheus's `# HELP`), one short sentence.
    pub description: &'static str,
    /// More for the reference page: label values, which event records it. Empty when none.
    pub notes: &'static str,
    /// When it is first exported.
    pub appears: Appears,
    /// A histogram's bucket boundaries; empty for the other kinds.
    pub boundaries: &'static [f64],
}

impl InstrumentSpec {
    /// The family name the Prometheus exporter gives it: dots become underscores, a unit of
    /// seconds adds `_seconds` and a counter `_total`.
    pub fn prometheus_name(&self) -> String {
        let mut name = self.name.replace('.', "_");
        if self.unit == InstrumentUnit::Seconds {
            name.push_str("_seconds");
        }
        if self.kind.prometheus_type() == "counter" {
            name.push_str("_total");
        }
        name
    }

    fn unit(&self) -> Option<Cow<'static, str>> {
        self.unit.otel().map(Cow::Borrowed)
    }

    fn expect(&self, kind: InstrumentKind) {
        debug_assert_eq!(self.kind, kind, "{} is declared {:?}", self.name, self.kind);
    }

    /// A `u64` counter on `meter`.
    pub fn u64_counter(&self, meter: &Meter) -> Counter<u64> {
        self.expect(InstrumentKind::Counter);
        let mut builder = meter
            .u64_counter(self.name)
            .with_description(self.description);
        builder.unit = self.unit();
        builder.build()
    }

    /// An observable `u64` counter on `meter`: add its callback, then build it.
    pub fn u64_observable_counter<'a>(
        &self,
        meter: &'a Meter,
    ) -> AsyncInstrumentBuilder<'a, ObservableCounter<u64>, u64> {
        self.expect(InstrumentKind::ObservableCounter);
        let mut builder = meter
            .u64_observable_counter(self.name)
            .with_description(self.description);
        builder.unit = self.unit();
        builder
    }

    /// An `f64` histogram on `meter`, with the spec's boundaries.
    pub fn f64_histogram(&self, meter: &Meter) -> Histogram<f64> {
        self.histogram(meter.f64_histogram(self.name)).build()
    }

    /// A `u64` histogram on `meter`, with the spec's boundaries.
    pub fn u64_histogram(&self, meter: &Meter) -> Histogram<u64> {
        self.histogram(meter.u64_histogram(self.name)).build()
    }

    fn histogram<'a, T>(&self, builder: HistogramBuilder<'a, T>) -> HistogramBuilder<'a, T> {
        self.expect(InstrumentKind::Histogram);
        let mut builder = builder.with_description(self.description);
        builder.unit = self.unit();
        if !self.boundaries.is_empty() {
            builder = builder.with_boundaries(self.boundaries.to_vec());
        }
        builder
    }

    /// An observable `u64` gauge on `meter`: add its callback, then build it.
    pub fn u64_observable_gauge<'a>(
        &self,
        meter: &'a Meter,
    ) -> AsyncInstrumentBuilder<'a, ObservableGauge<u64>, u64> {
        self.expect(InstrumentKind::ObservableGauge);
        let mut builder = meter
            .u64_observable_gauge(self.name)
            .with_description(self.description);
        builder.unit = self.unit();
        builder
    }

    /// An observable `f64` gauge on `meter`: add its callback, then build it.
    pub fn f64_observable_gauge<'a>(
        &self,
        meter: &'a Meter,
    ) -> AsyncInstrumentBuilder<'a, ObservableGauge<f64>, f64> {
        self.expect(InstrumentKind::ObservableGauge);
        let mut builder = meter
            .f64_observable_gauge(self.name)
            .with_description(self.description);
        builder.unit = self.unit();
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: InstrumentSpec = InstrumentSpec {
        name: "tasker.demo.duration",
        kind: InstrumentKind::Histogram,
        unit: InstrumentUnit::Seconds,
        labels: &[],
        description: "A demo",
        notes: "",
        appears: Appears::OnFirst("demo"),
        boundaries: SECONDS_BOUNDARIES,
    };

    #[test]
    fn prometheus_names_follow_the_exporter() {
        assert_eq!(SPEC.prometheus_name(), "tasker_demo_duration_seconds");
        let counter = InstrumentSpec {
            name: "tasker.tasks.created",
            kind: InstrumentKind::Counter,
            unit: InstrumentUnit::Count("tasks"),
            ..SPEC
        };
        assert_eq!(counter.prometheus_name(), "tasker_tasks_created_total");
        let gauge = InstrumentSpec {
            name: "tasker.steps.ready",
            kind: InstrumentKind::ObservableGauge,
            unit: InstrumentUnit::Count("steps"),
            ..SPEC
        };
        assert_eq!(gauge.prometheus_name(), "tasker_steps_ready");
        assert_eq!(Appears::OnFirst("task").to_string(), "on first task");
        assert_eq!(Appears::WithCoordinator.to_string(), "with the coordinator");
    }
}
