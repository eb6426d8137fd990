//! Figures: what one workload measured on one database, its target, the table and the JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::cost::Cost;

/// How a figure is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// Reported for comparison only (B0).
    None,
    /// `value >= bound`.
    AtLeast(f64),
    /// `value <= bound`.
    AtMost(f64),
    /// `ratio >= bound`, where the ratio is to a B0 figure.
    RatioAtLeast(f64),
    /// `ratio <= bound`.
    RatioAtMost(f64),
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`; `None` when there are none.
    pub(crate) fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            millis(sorted[index.clamp(1, sorted.len()) - 1])
        };
        Some(Self {
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
        })
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One workload on one database.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub id: &'static str,
    pub db: &'static str,
    pub metric: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub target: Target,
    /// How the target reads in the table, e.g. `≥ 1.25 × B0 (1 client)`.
    pub target_text: String,
    /// `value` over the B0 figure named in `target_text`, where the target is a ratio.
    pub ratio_to_b0: Option<f64>,
    pub latency: Option<Percentiles>,
    /// Secondary figures (JSON `extra`), e.g. B0's rates or B7's baseline.
    pub extra: Vec<(&'static str, f64)>,
    /// A further condition that must hold for the target to be met (B2: p99 ≤ 3 × p50).
    pub also_required: Option<bool>,
    /// CPU time, statements and transactions per step (or task) of the timed part; in JSON
    /// under `extra`, in the table as its own column.
    pub cost: Option<Cost>,
}

impl Figure {
    pub(crate) fn new(
        id: &'static str,
        db: &'static str,
        metric: &'static str,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            id,
            db,
            metric,
            value,
            unit,
            target: Target::None,
            target_text: "-".into(),
            ratio_to_b0: None,
            latency: None,
            extra: Vec::new(),
            also_required: None,
            cost: None,
        }
    }

    pub(crate) fn cost(mut self, cost: Cost) -> Self {
        self.cost = Some(cost);
        self
    }

    pub(crate) fn target(mut self, target: Target, text: impl Into<String>) -> Self {
        self.target = target;
        self.target_text = text.into();
        self
    }

    pub(crate) fn ratio(mut self, ratio: f64) -> Self {
        self.ratio_to_b0 = Some(ratio);
        self
    }

    pub(crate) fn latency(mut self, latency: Option<Percentiles>) -> Self {
        self.latency = latency;
        self
    }

    pub(crate) fn extra(mut self, name: &'static str, value: f64) -> Self {
        self.extra.push((name, value));
        self
    }

    /// Whether the target is met; `None` when there is none.
    pub(crate) fn meets_target(&self) -> Option<bool> {
        let met = match self.target {
            Target::None => return None,
            Target::AtLeast(bound) => self.value >= bound,
            Target::AtMost(bound) => self.value <= bound,
            Target::RatioAtLeast(bound) => self.ratio_to_b0.is_some_and(|r| r >= bound),
            Target::RatioAtMost(bound) => self.ratio_to_b0.is_some_and(|r| r <= bound),
        };
        Some(met && self.also_required.unwrap_or(true))
    }

    pub(crate) fn to_json(&self, cores: usize) -> Value {
        let mut object = Map::new();
        object.insert("id".into(), json!(self.id));
        object.insert("db".into(), json!(self.db));
        object.insert("metric".into(), json!(self.metric));
        object.insert("value".into(), json!(self.value));
        object.insert("unit".into(), json!(self.unit));
        object.insert("target".into(), json!(self.target_text));
        object.insert("meets_target".into(), json!(self.meets_target()));
        object.insert("ratio_to_b0".into(), json!(self.ratio_to_b0));
        if let Some(p) = self.latency {
            object.insert("p50_ms".into(), json!(p.p50));
            object.insert("p95_ms".into(), json!(p.p95));
            object.insert("p99_ms".into(), json!(p.p99));
        }
        let extra: Map<String, Value> = self
            .extra
            .iter()
            .copied()
            .chain(self.cost.iter().flat_map(Cost::extras))
            .map(|(name, value)| (name.to_owned(), json!(value)))
            .collect();
        object.insert("extra".into(), Value::Object(extra));
        object.insert("cores".into(), json!(cores));
        Value::Object(object)
    }
}

/// The whole run as JSON; `skipped` says which workloads did not run on which database, and why.
pub(crate) fn to_json(
    figures: &[Figure],
    cores: usize,
    quick: bool,
    pending: &[&str],
    skipped: &[Skipped],
) -> Value {
    json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "cores": cores,
        "quick": quick,
        "pending": pending,
        "skipped": skipped.iter().map(|s| json!({"id": s.id, "db": s.db, "reason": s.reason})).collect::<Vec<_>>(),
        "results": figures.iter().map(|f| f.to_json(cores)).collect::<Vec<_>>(),
    })
}

/// A workload that does not run on a database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Skipped {
    pub id: &'static str,
    pub db: &'static str,
    pub reason: &'static str,
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        let whole = value.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The table printed at the end of a run.
pub(crate) fn table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 9]> = figures
        .iter()
        .map(|f| {
            let latency = f.latency.map_or(String::new(), |p| {
                format!(
                    "p50 {} p95 {} p99 {}",
                    number(p.p50),
                    number(p.p95),
                    number(p.p99)
                )
            });
            [
                f.id.to_owned(),
                f.db.to_owned(),
                f.metric.to_owned(),
                number(f.value),
                f.unit.to_owned(),
                f.target_text.clone(),
                f.ratio_to_b0.map_or("-".into(), |r| format!("{r:.2}×")),
                match f.meets_target() {
                    None => latency,
                    Some(true) if latency.is_empty() => "met".into(),
                    Some(false) if latency.is_empty() => "MISSED".into(),
                    Some(true) => format!("met; {latency}"),
                    Some(false) => format!("MISSED; {latency}"),
                },
                f.cost.map_or(String::new(), |c| c.text()),
            ]
        })
        .collect();
    let header = [
        "id", "db", "metric", "figure", "unit", "target", "ratio", "verdict", "cost",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width - cell.chars().count();
            // Figures and ratios right-aligned, the rest left-aligned.
            if i == 3 || i == 6 {
                let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for f in figures.iter().filter(|f| !f.extra.is_empty()) {
        let extras: Vec<String> = f
            .extra
            .iter()
            .map(|(name, value)| format!("{name} {}", number(*value)))
            .collect();
        let _ = writeln!(out, "  {} {}: {}", f.id, f.db, extras.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(
            Percentiles::of(&samples),
            Some(Percentiles {
                p50: 50.0,
                p95: 95.0,
                p99: 99.0
            })
        );
        assert_eq!(
            Percentiles::of(&[Duration::from_millis(7)]).map(|p| p.p99),
            Some(7.0)
        );
        assert_eq!(Percentiles::of(&[]), None);
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(
            [1234567.8, 123.4, 12.34, 1.2345].map(number),
            ["1,234,568", "123", "12.3", "1.234"]
        );
    }

    #[test]
    fn a_cost_is_a_column_of_the_table_and_extras_in_json() {
        let cost = Cost {
            cpu_us: 80.0,
            statements: 2.5,
            calls: Some(2.5),
            transactions: 0.5,
            per: crate::cost::Per::Step,
        };
        let figure = Figure::new("B1", "sqlite", "steps_per_s", 900.0, "steps/s")
            .extra("seconds", 1.0)
            .cost(cost);
        let table = table(std::slice::from_ref(&figure));
        assert!(table.lines().next().unwrap().ends_with("cost"), "{table}");
        assert!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("cpu 80 µs, 2.50 stmt in 2.50 calls, 0.50 txn /step"),
            "{table}"
        );
        let json = figure.to_json(2);
        assert_eq!(
            json["extra"],
            json!({"seconds": 1.0, "cpu_us_per_step": 80.0, "statements_per_step": 2.5, "calls_per_step": 2.5, "transactions_per_step": 0.5})
        );
    }

    #[test]
    fn a_ratio_target_needs_a_ratio() {
        let figure = Figure::new("B1", "sqlite", "steps_per_s", 9.0, "steps/s")
            .target(Target::RatioAtLeast(1.25), "≥ 1.25 × B0");
        assert_eq!(figure.meets_target(), Some(false));
        assert_eq!(figure.clone().ratio(1.3).meets_target(), Some(true));
    }
}
