//! What a workload costs besides time: CPU time (this process's, from `getrusage`, or a worker
//! process's, from `/proc/<pid>/stat`) and the SQL statements, driver calls and transactions the
//! store counts ([`Store::statements`], [`Store::calls`], [`Store::transactions`]), each divided
//! by the steps (or tasks) the timed part ran.

// Two libc calls that only read: getrusage into a zeroed struct this function owns, and sysconf.
#![allow(unsafe_code)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tasker_persistence::Store;

/// What the costs are divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Per {
    Step,
    Task,
}

/// Costs per step or per task of one timed part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cost {
    /// CPU time (user + system) in microseconds.
    pub cpu_us: f64,
    /// SQL statements (not counting `BEGIN`/`COMMIT`).
    pub statements: f64,
    /// Calls to the database driver that carried them (several statements to a call on
    /// SQLite); `None` where not counted (B8's workers report statements only).
    pub calls: Option<f64>,
    /// Transactions begun.
    pub transactions: f64,
    pub per: Per,
}

impl Cost {
    /// The JSON `extra` entries: `cpu_us_per_step`, `statements_per_step`, `calls_per_step`
    /// (where counted), `transactions_per_step` (or `_per_task`).
    pub(crate) fn extras(&self) -> Vec<(&'static str, f64)> {
        let names = match self.per {
            Per::Step => [
                "cpu_us_per_step",
                "statements_per_step",
                "calls_per_step",
                "transactions_per_step",
            ],
            Per::Task => [
                "cpu_us_per_task",
                "statements_per_task",
                "calls_per_task",
                "transactions_per_task",
            ],
        };
        [
            Some(self.cpu_us),
            Some(self.statements),
            self.calls,
            Some(self.transactions),
        ]
        .into_iter()
        .zip(names)
        .filter_map(|(value, name)| Some((name, value?)))
        .collect()
    }

    /// `cpu 212 µs, 9.60 stmt in 4.00 calls, 1.50 txn /step`, for the table.
    pub(crate) fn text(&self) -> String {
        let calls = self
            .calls
            .map(|calls| format!(" in {calls:.2} calls"))
            .unwrap_or_default();
        format!(
            "cpu {:.0} µs, {:.2} stmt{calls}, {:.2} txn /{}",
            self.cpu_us,
            self.statements,
            self.transactions,
            match self.per {
                Per::Step => "step",
                Per::Task => "task",
            }
        )
    }
}

/// This process's CPU time so far: user + system time of all its threads (`RUSAGE_SELF`).
pub(crate) fn process_cpu() -> Result<Duration> {
    // SAFETY: `usage` is a plain C struct, zeroed and owned here; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage is getrusage's documented contract.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        bail!("getrusage failed: {}", std::io::Error::last_os_error());
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(time(usage.ru_utime) + time(usage.ru_stime))
}

/// Another process's CPU time so far (user + system of all its threads), from
/// `/proc/<pid>/stat`, in clock ticks (usually 10 ms) converted to a duration.
pub(crate) fn child_cpu(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: fields start after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path}: no `)` after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks = |index: usize, name: &str| -> Result<u64> {
        fields
            .get(index)
            .with_context(|| format!("{path}: no {name} field"))?
            .parse::<u64>()
            .with_context(|| format!("{path}: {name} is not a number"))
    };
    let total = ticks(11, "utime")? + ticks(12, "stime")?;
    // SAFETY: sysconf reads a constant of the system; it takes and returns plain integers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|n| *n > 0)
        .context("sysconf(_SC_CLK_TCK) gave no clock tick rate")?;
    Ok(Duration::from_micros(total * 1_000_000 / per_second))
}

/// Readings at the start of a timed part.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meter {
    cpu: Duration,
    statements: u64,
    calls: u64,
    transactions: u64,
}

impl Meter {
    /// Reads this process's CPU time and `store`'s counters (shared by its clones, so they
    /// include what an engine on the store runs).
    pub(crate) fn start(store: &Store) -> Result<Self> {
        Ok(Self {
            cpu: process_cpu()?,
            statements: store.statements(),
            calls: store.calls(),
            transactions: store.transactions(),
        })
    }

    /// The costs since [`start`](Self::start), divided by `units`.
    pub(crate) fn per(&self, store: &Store, units: usize, per: Per) -> Result<Cost> {
        let cpu = process_cpu()?.saturating_sub(self.cpu);
        let units = units.max(1) as f64;
        Ok(Cost {
            cpu_us: cpu.as_secs_f64() * 1e6 / units,
            statements: store.statements().saturating_sub(self.statements) as f64 / units,
            calls: Some(store.calls().saturating_sub(self.calls) as f64 / units),
            transactions: store.transactions().saturating_sub(self.transactions) as f64 / units,
            per,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_only_grows_and_a_child_reads_like_this_process() {
        let before = process_cpu().unwrap();
        // Work the CPU until getrusage sees it move (no timing asserted, only monotonicity).
        let mut x = 0u64;
        while process_cpu().unwrap() == before {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        assert!(process_cpu().unwrap() > before, "{x}");
        // This process's own /proc entry parses; its ticks are bounded by getrusage's reading.
        let ticks = child_cpu(std::process::id()).unwrap();
        assert!(ticks <= process_cpu().unwrap() + Duration::from_millis(20));
        assert!(
            child_cpu(u32::MAX)
                .unwrap_err()
                .to_string()
                .contains("/proc/4294967295/stat")
        );
    }

    #[test]
    fn costs_are_named_per_step_or_per_task() {
        let cost = Cost {
            cpu_us: 212.4,
            statements: 9.6,
            calls: Some(4.0),
            transactions: 1.5,
            per: Per::Task,
        };
        assert_eq!(cost.extras()[0], ("cpu_us_per_task", 212.4));
        assert_eq!(cost.extras()[2], ("calls_per_task", 4.0));
        assert_eq!(
            cost.text(),
            "cpu 212 µs, 9.60 stmt in 4.00 calls, 1.50 txn /task"
        );
        // Where calls are not counted, neither the JSON nor the text names them.
        let uncounted = Cost {
            calls: None,
            per: Per::Step,
            ..cost
        };
        assert_eq!(uncounted.extras().len(), 3);
        assert_eq!(uncounted.extras()[2], ("transactions_per_step", 1.5));
        assert_eq!(uncounted.text(), "cpu 212 µs, 9.60 stmt, 1.50 txn /step");
    }
}
