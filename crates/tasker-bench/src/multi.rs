//! B8: B1's diamond tasks run by 1, 2 and 4 `tasker worker` processes (the release binary of
//! tasker-server, each a separate OS process) on a fresh PostgreSQL database per run. This
//! process is only the client: it creates the tasks through an engine whose coordinator never
//! starts, and polls the database until they are all complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tasker_domain::TaskState;

use crate::cost::{Cost, Per, child_cpu};
use crate::report::{Figure, Target};
use crate::workloads::{BenchDatabase, Db, Sizes, diamond, engine, request};

/// How many worker processes each run has.
pub(crate) const PROCESSES: [usize; 3] = [1, 2, 4];

/// The workers' settings: the engine's defaults, except that an idle worker looks for work
/// every 0.1 s (a worker is woken in-process by its own completions, but tasks another process
/// creates reach it only when it polls).
const WORKER_CONFIG: &str = "[engine]\npoll_interval = 0.1\n";

/// The longest a run may take before the bench gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    processes: usize,
    seconds: f64,
    steps_per_s: f64,
    /// The workers' CPU, statements and transactions per step.
    cost: Cost,
}

/// The `tasker` binary the bench runs as workers: `--tasker`, else next to this binary (or, for
/// the harness's own test in `target/<profile>/deps`, one folder up).
pub(crate) fn default_tasker() -> PathBuf {
    let Ok(exe) = std::env::current_exe() else {
        return PathBuf::from("tasker");
    };
    let dir = exe.parent().unwrap_or(Path::new("."));
    let beside = dir.join("tasker");
    if !beside.is_file()
        && dir.file_name().is_some_and(|name| name == "deps")
        && let Some(up) = dir.parent()
    {
        return up.join("tasker");
    }
    beside
}

/// B8: steps/s with 1, 2 and 4 worker processes, in `sizes.b8_rounds` rounds (each runs every
/// process count in turn); the figure is the median over the rounds of 2 processes over 1 in
/// the same round, and each count's figures are those of its median run (so the ratio of two
/// counts' reported rates, which may come from different rounds, need not be the figure).
pub(crate) async fn b8(sizes: &Sizes, tasker: &Path) -> Result<Figure> {
    if !tasker.is_file() {
        bail!(
            "B8 needs the tasker binary, and there is none at {} (`cargo xtask bench` builds it; \
             else run `cargo build --release -p tasker-server --bin tasker` and pass --tasker PATH)",
            tasker.display()
        );
    }
    let rounds = sizes.b8_rounds.max(1);
    let mut runs = Vec::with_capacity(rounds * PROCESSES.len());
    for round in 1..=rounds {
        for processes in PROCESSES {
            eprintln!(
                "bench: postgres B8 with {processes} worker process(es), round {round} of {rounds}"
            );
            runs.push(run(processes, sizes.b8_tasks, tasker).await?);
        }
    }
    let medians: Vec<Run> = PROCESSES
        .iter()
        .filter_map(|&n| median_run(&runs, n))
        .collect();
    let one_process = medians.iter().find(|r| r.processes == 1).map(|r| r.cost);
    let mut figure = Figure::new(
        "B8",
        Db::Postgres.name(),
        "steps_per_s_2_over_1_process",
        ratio_over_rounds(&runs, 2),
        "×",
    )
    .target(Target::AtLeast(0.9), "2 processes ≥ 0.9 × 1 process")
    .extra("ratio_4_over_1_process", ratio_over_rounds(&runs, 4))
    .extra("tasks", sizes.b8_tasks as f64)
    .extra("rounds", rounds as f64);
    figure.cost = one_process;
    for run in &medians {
        let [rate, seconds, cpu, statements, transactions] = names(run.processes);
        figure = figure
            .extra(rate, run.steps_per_s)
            .extra(seconds, run.seconds)
            .extra(cpu, run.cost.cpu_us)
            .extra(statements, run.cost.statements)
            .extra(transactions, run.cost.transactions);
    }
    Ok(figure)
}

/// The median over the rounds of `runs` (each [`PROCESSES`] long, in turn) of the steps/s with
/// `processes` over those with one process in the same round: a round's runs follow each
/// other, so the machine's drift over a bench affects both sides of each ratio alike.
fn ratio_over_rounds(runs: &[Run], processes: usize) -> f64 {
    median(
        runs.chunks(PROCESSES.len())
            .map(|round| rate_of(round, processes) / rate_of(round, 1))
            .collect(),
    )
}

/// The steps/s of the run with `processes` among `runs` (NaN if there is none).
fn rate_of(runs: &[Run], processes: usize) -> f64 {
    runs.iter()
        .find(|r| r.processes == processes)
        .map_or(f64::NAN, |r| r.steps_per_s)
}

/// The item of `items` with the median `key` (the upper one of an even count), if any.
fn median_by<T: Copy>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    items.get(items.len() / 2).copied()
}

/// The median of `values` (the upper one of an even count; NaN if there are none).
fn median(values: Vec<f64>) -> f64 {
    median_by(values, |v| *v).unwrap_or(f64::NAN)
}

/// Of the runs with `processes`, the one with the median steps/s (none if no run has it).
fn median_run(runs: &[Run], processes: usize) -> Option<Run> {
    let of = runs.iter().filter(|r| r.processes == processes).copied();
    median_by(of.collect(), |r| r.steps_per_s)
}

/// The `extra` names of one run's figures.
fn names(processes: usize) -> [&'static str; 5] {
    match processes {
        1 => [
            "steps_per_s_1_process",
            "seconds_1_process",
            "cpu_us_per_step_1_process",
            "statements_per_step_1_process",
            "transactions_per_step_1_process",
        ],
        2 => [
            "steps_per_s_2_processes",
            "seconds_2_processes",
            "cpu_us_per_step_2_processes",
            "statements_per_step_2_processes",
            "transactions_per_step_2_processes",
        ],
        _ => [
            "steps_per_s_4_processes",
            "seconds_4_processes",
            "cpu_us_per_step_4_processes",
            "statements_per_step_4_processes",
            "transactions_per_step_4_processes",
        ],
    }
}

/// One run on a database of its own, dropped afterwards whatever happened.
async fn run(processes: usize, tasks: usize, tasker: &Path) -> Result<Run> {
    let bench = BenchDatabase::open(Db::Postgres).await?;
    let outcome = run_on(&bench, processes, tasks, tasker).await;
    bench.close().await;
    outcome.with_context(|| format!("B8 with {processes} worker process(es)"))
}

async fn run_on(
    bench: &BenchDatabase,
    processes: usize,
    tasks: usize,
    tasker: &Path,
) -> Result<Run> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let config = dir.path().join("tasker.toml");
    std::fs::write(&config, WORKER_CONFIG).context("writing the workers' configuration")?;
    // The client: registers the template and creates the tasks; its coordinator never starts.
    let client = engine(&bench.store)?;
    let template = diamond();
    client.register_template(template.clone(), false).await?;
    let mut workers = Workers::default();
    for n in 1..=processes {
        workers.spawn(
            tasker,
            &config,
            &bench.url,
            &template.namespace_name,
            dir.path().join(format!("worker-{n}.log")),
        )?;
    }
    // Every worker has started its coordinator (and found nothing to do) before the clock runs.
    workers.wait_until_running(Duration::from_secs(60)).await?;
    let poller = Database::connect(bench.url.as_str())
        .await
        .context("connecting the poller")?;
    let outcome = timed(bench, &client, &template, tasks, &mut workers, &poller).await;
    poller.close().await.ok();
    let stopped = workers.stop().await;
    let (seconds, cpu) = outcome?;
    let (statements, transactions) = stopped?;
    let steps = tasks * 4;
    Ok(Run {
        processes,
        seconds,
        steps_per_s: steps as f64 / seconds,
        cost: Cost {
            cpu_us: cpu.as_secs_f64() * 1e6 / steps as f64,
            statements: statements as f64 / steps as f64,
            calls: None,
            transactions: transactions as f64 / steps as f64,
            per: Per::Step,
        },
    })
}

/// From the first task submitted to all complete: the seconds, and the CPU time the workers
/// spent meanwhile.
async fn timed(
    bench: &BenchDatabase,
    client: &tasker_engine::Engine,
    template: &tasker_template::TaskTemplate,
    tasks: usize,
    workers: &mut Workers,
    poller: &DatabaseConnection,
) -> Result<(f64, Duration)> {
    let cpu_before = workers.cpu()?;
    let requests: Vec<_> = (0..tasks).map(|_| request(template)).collect();
    let started = Instant::now();
    for created in client.create_tasks(requests).await {
        created.context("creating a B8 task")?;
    }
    loop {
        let states = task_states(poller).await?;
        let complete = count(&states, TaskState::Complete);
        if complete >= tasks {
            break;
        }
        for state in [
            TaskState::Error,
            TaskState::Cancelled,
            TaskState::ResolvedManually,
        ] {
            ensure!(
                count(&states, state) == 0,
                "a B8 task ended {state}: {states:?}"
            );
        }
        workers.check_running()?;
        if started.elapsed() > RUN_LIMIT {
            bail!(
                "B8 tasks still unfinished after {RUN_LIMIT:?} on {}: {states:?}",
                bench.url
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = workers.cpu()?.saturating_sub(cpu_before);
    Ok((seconds, cpu))
}

fn count(states: &[(String, usize)], state: TaskState) -> usize {
    states
        .iter()
        .filter(|(s, _)| s == state.as_str())
        .map(|(_, n)| n)
        .sum()
}

/// How many tasks are in each state.
async fn task_states(poller: &DatabaseConnection) -> Result<Vec<(String, usize)>> {
    let rows = poller
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT state, COUNT(*) AS n FROM tasker_tasks GROUP BY state",
        ))
        .await
        .context("counting tasks by state")?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("", "state")?;
            let n: i64 = row.try_get("", "n")?;
            Ok((state, usize::try_from(n)?))
        })
        .collect()
}

/// The worker processes of one run; any still running when this is dropped are killed.
#[derive(Default)]
struct Workers {
    running: Vec<(Child, PathBuf)>,
}

impl Workers {
    fn spawn(
        &mut self,
        tasker: &Path,
        config: &Path,
        url: &str,
        namespace: &str,
        log: PathBuf,
    ) -> Result<()> {
        let stderr = File::create(&log)
            .with_context(|| format!("creating the worker log {}", log.display()))?;
        let child = Command::new(tasker)
            .arg("--config")
            .arg(config)
            .args(["worker", "--namespace", namespace, "--database", url])
            .env_remove("TASKER_DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} worker", tasker.display()))?;
        self.running.push((child, log));
        Ok(())
    }

    /// Fails, with the end of its log, when a worker has exited.
    fn check_running(&mut self) -> Result<()> {
        for (child, log) in &mut self.running {
            if let Some(status) = child.try_wait().context("checking a worker")? {
                bail!("a worker exited ({status}): {}", tail(log));
            }
        }
        Ok(())
    }

    /// Waits until every worker's log says it is running.
    async fn wait_until_running(&mut self, within: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            let ready = self.running.iter().all(|(_, log)| {
                std::fs::read_to_string(log).is_ok_and(|text| {
                    text.lines()
                        .any(|l| l.starts_with("worker ") && l.contains(" running ("))
                })
            });
            if ready {
                return Ok(());
            }
            if started.elapsed() > within {
                let logs: Vec<String> = self.running.iter().map(|(_, log)| tail(log)).collect();
                bail!(
                    "the workers were not all running within {within:?}: {}",
                    logs.join(" | ")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The workers' CPU time so far, summed.
    fn cpu(&self) -> Result<Duration> {
        self.running
            .iter()
            .map(|(child, _)| child_cpu(child.id()))
            .sum()
    }

    /// SIGTERM to every worker (they drain and exit 0), SIGKILL to any still running after
    /// 15 s; then the statements and transactions their logs say they sent, summed.
    async fn stop(&mut self) -> Result<(u64, u64)> {
        for (child, _) in &self.running {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if !sent.is_ok_and(|s| s.success()) {
                eprintln!("bench: could not send SIGTERM to worker {}", child.id());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut statuses = Vec::new();
        for (child, log) in &mut self.running {
            let status = loop {
                if let Some(status) = child.try_wait().context("waiting for a worker")? {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    child.kill().ok();
                    child.wait().ok();
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            statuses.push((status, log.clone()));
        }
        self.running.clear();
        let (mut statements, mut transactions) = (0, 0);
        for (status, log) in statuses {
            match status {
                Some(status) if status.success() => {}
                Some(status) => bail!("a worker exited {status} on SIGTERM: {}", tail(&log)),
                None => bail!(
                    "a worker did not stop within 15 s of SIGTERM and was killed: {}",
                    tail(&log)
                ),
            }
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            let (s, t) = sent(&text)
                .with_context(|| format!("no `sent … SQL statements` line in {}", log.display()))?;
            statements += s;
            transactions += t;
        }
        Ok((statements, transactions))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _) in &mut self.running {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// `sent N SQL statements in M transactions while running`, the line `tasker worker` writes
/// when it stops: its store's counts from when its coordinator started.
fn sent(log: &str) -> Option<(u64, u64)> {
    log.lines().find_map(|line| {
        let rest = line.strip_prefix("sent ")?;
        let (statements, rest) = rest.split_once(" SQL statements in ")?;
        let transactions = rest.strip_suffix(" transactions while running")?;
        Some((statements.parse().ok()?, transactions.parse().ok()?))
    })
}

/// The last lines of a worker's log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "{}: {}",
        log.display(),
        lines[lines.len().saturating_sub(5)..].join(" / ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(processes: usize, steps_per_s: f64) -> Run {
        Run {
            processes,
            seconds: 1.0,
            steps_per_s,
            cost: Cost {
                cpu_us: steps_per_s / 100.0,
                statements: 1.0,
                calls: None,
                transactions: 1.0,
                per: Per::Step,
            },
        }
    }

    #[test]
    fn each_ratio_is_taken_within_a_round_and_each_counts_median_run_reported() {
        // Three rounds of 1, 2 and 4 processes; the machine slows down over the second.
        let runs = [
            run(1, 1000.0),
            run(2, 900.0),
            run(4, 800.0),
            run(1, 500.0),
            run(2, 550.0),
            run(4, 500.0),
            run(1, 1000.0),
            run(2, 950.0),
            run(4, 1100.0),
        ];
        // 2 over 1 per round: 0.9, 1.1, 0.95; 4 over 1: 0.8, 1.0, 1.1. The medians of the
        // rates would give 900 / 1000 and 800 / 1000 instead.
        assert!((ratio_over_rounds(&runs, 2) - 0.95).abs() < 1e-9);
        assert!((ratio_over_rounds(&runs, 4) - 1.0).abs() < 1e-9);
        let middle = median_run(&runs, 4).unwrap();
        assert_eq!(middle.steps_per_s, 800.0);
        assert_eq!(middle.cost.cpu_us, 8.0);
        assert!(median_run(&runs, 3).is_none());
    }

    #[test]
    fn the_median_of_an_even_count_is_the_upper_one_and_of_none_nan() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn a_workers_counts_are_read_from_its_last_words() {
        let log = "worker w1 running (namespaces default); SIGTERM or Ctrl-C drains and stops\n\
                   draining: running attempts may finish for up to 30s\n\
                   sent 1234 SQL statements in 56 transactions while running\n\
                   drained; stopped\n";
        assert_eq!(sent(log), Some((1234, 56)));
        assert_eq!(
            sent("sent many SQL statements in 5 transactions while running\n"),
            None
        );
        assert_eq!(sent("drained; stopped\n"), None);
    }

    #[test]
    fn every_process_count_has_its_own_names() {
        let all: Vec<&str> = PROCESSES.iter().flat_map(|n| names(*n)).collect();
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
    }
}
