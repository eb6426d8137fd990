//! The soak: real `tasker worker` processes on a PostgreSQL cluster of the soak's own, killed
//! with SIGKILL at random and the cluster restarted mid-run, while the soak submits work whose
//! steps call a ledger it runs. At the end it checks, from the database and the ledger, that no
//! work was lost, no attempt was recorded twice and no two calls of one step ran at once to the
//! end (docs/soak.md).
//!
//! Run by `cargo xtask soak`, which builds the `tasker` binary and this one in the debug profile
//! and passes `--tasker`. Exits non-zero on any violation.

mod checks;
mod cluster;
mod ledger;
mod workload;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};
use serde_json::json;
use tasker_domain::{DefaultIdentity, TaskRequest};
use tasker_persistence::{ConnectOptions, CreateTaskOptions, Store};

use checks::{Finding, Kind};
use cluster::Cluster;
use ledger::Ledger;

const DATABASE: &str = "tasker_soak";

#[derive(Debug, Parser)]
#[command(
    name = "soak",
    bin_name = "cargo xtask soak",
    about = "Kills Tasker workers and restarts PostgreSQL under load, then checks that no work was lost or run twice at once (docs/soak.md)"
)]
struct Cli {
    /// Worker processes kept running [default: 4; --quick: 2]
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds of load and kills [default: 600; --quick: 75]
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds between two kills; 0 kills nothing [default: 5]
    #[arg(long)]
    kill_every: Option<f64>,
    /// Restart the PostgreSQL cluster once, halfway through (always on with --quick)
    #[arg(long)]
    pg_restart: bool,
    /// With --pg-restart: keep PostgreSQL stopped this many seconds instead of restarting it at
    /// once (an outage longer than the 2 s lease)
    #[arg(long, default_value_t = 0.0)]
    pg_outage: f64,
    /// A short run for CI: 2 workers, 75 s, a kill every 5 s, one restart; under 3 minutes
    #[arg(long)]
    quick: bool,
    /// Rounds of tasks (one of each shape) submitted per second
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds the remaining work may take to finish once the kills stop
    #[arg(long, default_value_t = 120)]
    settle: u64,
    /// Seed of the random choice of which worker to kill (default: from the clock)
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write the figures as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `tasker` binary (default: next to this one)
    #[arg(long)]
    tasker: Option<PathBuf>,
}

/// What one run does, the command line resolved.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    workers: usize,
    duration: Duration,
    kill_every: Option<Duration>,
    pg_restart: bool,
    pg_outage: Duration,
    rate: f64,
    settle: Duration,
}

impl Plan {
    fn from_cli(cli: &Cli) -> Result<Self> {
        let (workers, duration) = if cli.quick { (2, 75) } else { (4, 600) };
        let workers = cli.workers.unwrap_or(workers);
        let duration = cli.duration.unwrap_or(duration);
        let kill_every = cli.kill_every.unwrap_or(5.0);
        if workers == 0 {
            bail!("--workers must be at least 1");
        }
        if duration == 0 {
            bail!("--duration must be at least 1 second");
        }
        if !kill_every.is_finite() || kill_every < 0.0 {
            bail!("--kill-every must be a number of seconds, 0 or more (got {kill_every})");
        }
        if !cli.pg_outage.is_finite() || !(0.0..=600.0).contains(&cli.pg_outage) {
            bail!(
                "--pg-outage must be 0 to 600 seconds (got {})",
                cli.pg_outage
            );
        }
        if !cli.rate.is_finite() || cli.rate <= 0.0 || cli.rate > 100.0 {
            bail!(
                "--rate must be more than 0 and at most 100 rounds a second (got {})",
                cli.rate
            );
        }
        Ok(Self {
            workers,
            duration: Duration::from_secs(duration),
            kill_every: (kill_every > 0.0).then(|| Duration::from_secs_f64(kill_every)),
            pg_restart: cli.pg_restart || cli.quick,
            pg_outage: Duration::from_secs_f64(cli.pg_outage),
            rate: cli.rate,
            settle: Duration::from_secs(cli.settle),
        })
    }

    /// How long the long step holds its call: past the kill interval, so kills land mid-call.
    fn long_ms(&self) -> u64 {
        let kill = self.kill_every.unwrap_or(Duration::from_secs(5));
        u64::try_from(kill.as_millis()).unwrap_or(u64::MAX / 2) + 1500
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(false)` when it found a violation.
fn run(cli: &Cli) -> Result<bool> {
    let plan = Plan::from_cli(cli)?;
    let tasker = match &cli.tasker {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating the soak binary")?
            .with_file_name("tasker"),
    };
    if !tasker.is_file() {
        bail!(
            "no tasker binary at {} (build it with `cargo build -p tasker-server`, or pass --tasker)",
            tasker.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // From here on Ctrl-C and SIGTERM end the run through the error path, so that the workers
    // are killed and the cluster dropped (their guards' Drop) rather than left behind.
    let interrupted = runtime.block_on(interruption())?;
    let cluster = Arc::new(Cluster::create()?);
    let dir = std::env::temp_dir().join(format!("tasker-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "soak: PostgreSQL cluster {} on port {}; logs in {}",
        cluster.label(),
        cluster.port,
        dir.display()
    );
    cluster.psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
    let url = cluster.url(DATABASE);
    let config = dir.join("tasker.toml");
    std::fs::write(
        &config,
        // A short lease, so a killed worker's attempts are taken over within seconds; quick
        // polling and retries, so the run settles soon after the kills stop.
        "[engine]\nlease = 2.0\npoll_interval = 0.1\nshutdown_grace = 1.0\n\n\
         [engine.backoff]\nbase = 0.2\nmultiplier = 1.5\nmax = 2.0\njitter = 0.1\n\n\
         [http_handler]\nallow_private_networks = true\n",
    )
    .context("writing the workers' configuration")?;
    let migrate = Command::new(&tasker)
        .arg("--config")
        .arg(&config)
        .args(["--database", &url, "migrate"])
        .env_remove("TASKER_DATABASE_URL")
        .output()
        .context("running tasker migrate")?;
    if !migrate.status.success() {
        bail!(
            "tasker migrate failed ({}): {}",
            migrate.status,
            String::from_utf8_lossy(&migrate.stderr).trim()
        );
    }
    let workers = Workers {
        tasker,
        config,
        url: url.clone(),
        dir: dir.clone(),
        running: Vec::new(),
        started: 0,
    };
    let outcome = runtime.block_on(soak(&plan, cli, &cluster, workers, &url, &interrupted));
    let ok = match &outcome {
        Ok(report) => {
            report.print();
            if let Some(path) = &cli.json {
                std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("soak: figures saved to {}", path.display());
            }
            report.passed()
        }
        Err(_) => false,
    };
    if ok {
        std::fs::remove_dir_all(&dir).ok();
    } else {
        eprintln!(
            "soak: the workers' logs and configuration are kept in {}",
            dir.display()
        );
    }
    outcome.map(|_| ok)
}

/// A flag raised at the first Ctrl-C or SIGTERM, listened for from now on.
async fn interruption() -> Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let flag = interrupted.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("soak: interrupted; cleaning up");
        flag.store(true, Ordering::Relaxed);
    });
    Ok(interrupted)
}

/// The worker processes; every one still running is killed when this is dropped.
struct Workers {
    tasker: PathBuf,
    config: PathBuf,
    url: String,
    dir: PathBuf,
    running: Vec<(usize, Child)>,
    started: usize,
}

impl Workers {
    fn spawn(&mut self) -> Result<()> {
        self.started += 1;
        let n = self.started;
        let log = File::create(self.dir.join(format!("worker-{n}.log")))
            .context("creating a worker's log")?;
        let child = Command::new(&self.tasker)
            .arg("--config")
            .arg(&self.config)
            .args(["worker", "--namespace", workload::NAMESPACE])
            .args(["--database", &self.url])
            .env_remove("TASKER_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tasker worker")?;
        self.running.push((n, child));
        Ok(())
    }

    /// SIGKILLs the worker at `index` of those running.
    fn kill(&mut self, index: usize) -> Result<usize> {
        let (n, mut child) = self.running.remove(index);
        child.kill().context("killing a worker")?;
        child.wait().ok();
        Ok(n)
    }

    /// Workers that exited by themselves since the last look, with their status.
    fn exited(&mut self) -> Vec<(usize, String)> {
        let mut gone = Vec::new();
        self.running
            .retain_mut(|(n, child)| match child.try_wait() {
                Ok(Some(status)) => {
                    gone.push((*n, status.to_string()));
                    false
                }
                _ => true,
            });
        gone
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("worker-{n}.log"))).unwrap_or_default()
    }

    fn log_tail(&self, n: usize) -> String {
        let text = self.log(n);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A small xorshift generator: which worker dies next, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

/// What a run saw and found.
struct Report {
    plan: Plan,
    seed: u64,
    tasks: usize,
    tasks_by_state: HashMap<String, usize>,
    steps_completed: usize,
    attempts: i64,
    lease_reclaims: usize,
    calls: usize,
    cut_calls: usize,
    kills: usize,
    restarts: usize,
    unplanned_exits: Vec<String>,
    start_failures: usize,
    create_errors: u64,
    settled: bool,
    elapsed: Duration,
    findings: Vec<Finding>,
    /// The transition history of the steps behind the first findings.
    evidence: Vec<String>,
    refused_requests: Vec<String>,
}

impl Report {
    fn count(&self, kind: Kind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }

    fn steps_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.steps_completed as f64 / secs
        } else {
            0.0
        }
    }

    fn passed(&self) -> bool {
        self.findings.is_empty()
            && self.settled
            && self.refused_requests.is_empty()
            && self.unplanned_exits.is_empty()
            && self.tasks > 0
    }

    fn print(&self) {
        for finding in &self.findings {
            println!("soak: VIOLATION ({:?}): {}", finding.kind, finding.detail);
        }
        for refused in &self.refused_requests {
            println!("soak: the ledger refused a request: {refused}");
        }
        for exit in &self.unplanned_exits {
            println!("soak: a worker exited by itself: {exit}");
        }
        let mut states: Vec<_> = self.tasks_by_state.iter().collect();
        states.sort();
        println!(
            "soak: {} workers, {:.0} s, kill every {}, seed {}",
            self.plan.workers,
            self.plan.duration.as_secs_f64(),
            self.plan
                .kill_every
                .map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            self.seed
        );
        println!(
            "soak: tasks {} ({}), steps completed {}, attempts {}, lease reclaims {}, ledger calls {} ({} cut off)",
            self.tasks,
            states
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.steps_completed,
            self.attempts,
            self.lease_reclaims,
            self.calls,
            self.cut_calls
        );
        println!(
            "soak: kills {}, restarts {}, lost {}, duplicates {}, overlaps {}, steps/s {:.1}, workers that could not start {}, creation errors {}{}",
            self.kills,
            self.restarts,
            self.count(Kind::Lost),
            self.count(Kind::Duplicate),
            self.count(Kind::Overlap),
            self.steps_per_second(),
            self.start_failures,
            self.create_errors,
            if self.settled { "" } else { ", NOT SETTLED" }
        );
        println!("soak: {}", if self.passed() { "ok" } else { "FAILED" });
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "workers": self.plan.workers,
            "duration_s": self.plan.duration.as_secs_f64(),
            "kill_every_s": self.plan.kill_every.map(|d| d.as_secs_f64()),
            "pg_restart": self.plan.pg_restart,
            "pg_outage_s": self.plan.pg_outage.as_secs_f64(),
            "seed": self.seed,
            "tasks": self.tasks,
            "tasks_by_state": self.tasks_by_state,
            "steps_completed": self.steps_completed,
            "attempts": self.attempts,
            "lease_reclaims": self.lease_reclaims,
            "ledger_calls": self.calls,
            "cut_calls": self.cut_calls,
            "kills": self.kills,
            "restarts": self.restarts,
            "lost": self.count(Kind::Lost),
            "duplicates": self.count(Kind::Duplicate),
            "overlaps": self.count(Kind::Overlap),
            "steps_per_s": self.steps_per_second(),
            "creation_errors": self.create_errors,
            "unplanned_worker_exits": self.unplanned_exits,
            "worker_start_failures": self.start_failures,
            "settled": self.settled,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "violations": self.findings.iter().map(|f| format!("{:?}: {}", f.kind, f.detail)).collect::<Vec<_>>(),
            "evidence": self.evidence,
            "passed": self.passed(),
        })
    }
}

async fn soak(
    plan: &Plan,
    cli: &Cli,
    cluster: &Arc<Cluster>,
    mut workers: Workers,
    url: &str,
    interrupted: &AtomicBool,
) -> Result<Report> {
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted before the workers started");
    }
    let origin = Instant::now();
    let ledger = Ledger::start(origin).await?;
    let store = Store::connect(
        url,
        &ConnectOptions {
            migrate: false,
            acquire_timeout: Duration::from_secs(5),
            ..ConnectOptions::default()
        },
    )
    .await
    .context("connecting to the soak database")?;
    let shapes = workload::shapes(&|q| ledger.url(q), plan.long_ms());
    let mut registered = Vec::new();
    for shape in &shapes {
        let template = workload::parse(shape)?;
        registered.push(
            store
                .register_template(&template, chrono::Utc::now())
                .await
                .with_context(|| format!("registering {}", shape.name))?,
        );
    }
    let expected: HashMap<&'static str, &'static str> =
        shapes.iter().map(|s| (s.name, s.expected)).collect();
    for _ in 0..plan.workers {
        workers.spawn()?;
    }

    // The client: a round of tasks, one of each shape, every 1/rate s until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let create_errors = Arc::new(AtomicU64::new(0));
    let submitter = {
        let (stop, errors, store) = (stop.clone(), create_errors.clone(), store.clone());
        let period = Duration::from_secs_f64(1.0 / plan.rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = chrono::Utc::now();
                let options = CreateTaskOptions {
                    now,
                    identity: &DefaultIdentity,
                    correlation_id: None,
                    trace_parent: None,
                };
                let mut prepared = Vec::new();
                for stored in &registered {
                    n += 1;
                    let request = TaskRequest::new(stored.template.name.clone())
                        .namespace(workload::NAMESPACE)
                        .context(json!({"n": n}));
                    match Store::prepare_task(stored, &request, &options) {
                        Ok(task) => prepared.push(task),
                        Err(error) => {
                            eprintln!("soak: preparing a task failed: {error}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // While PostgreSQL restarts, creation fails: counted, and the round is skipped.
                match tokio::time::timeout(Duration::from_secs(5), store.create_prepared(prepared))
                    .await
                {
                    Ok(results) => {
                        let failed = results.iter().filter(|r| r.is_err()).count();
                        errors.fetch_add(failed as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
            })
            | 1
    });
    let mut rng = Rng(seed);
    let mut kills = 0;
    let mut unplanned_exits = Vec::new();
    let mut start_failures = 0;
    let mut restart: Option<tokio::task::JoinHandle<Result<()>>> = None;
    let mut restarts = 0;
    let started = Instant::now();
    let mut next_kill = plan.kill_every.map(|every| started + every);
    let restart_at = plan.pg_restart.then(|| started + plan.duration / 2);
    let mut progress = started + Duration::from_secs(15);
    while started.elapsed() < plan.duration {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted: the workers are killed and the cluster dropped");
        }
        let now = Instant::now();
        replace_exited(&mut workers, &mut unplanned_exits, &mut start_failures)?;
        if let Some(at) = next_kill
            && now >= at
        {
            if !workers.running.is_empty() {
                let index = rng.below(workers.running.len());
                let n = workers.kill(index)?;
                kills += 1;
                workers.spawn()?;
                if kills % 10 == 1 {
                    println!(
                        "soak: {:>4.0} s: killed worker {n} (kill {kills})",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            next_kill = plan.kill_every.map(|every| at + every);
        }
        if restart_at.is_some_and(|at| now >= at) && restart.is_none() && restarts == 0 {
            println!(
                "soak: {:>4.0} s: restarting PostgreSQL",
                started.elapsed().as_secs_f64()
            );
            let cluster = cluster.clone();
            let down = plan.pg_outage;
            restart = Some(tokio::task::spawn_blocking(move || cluster.restart(down)));
        }
        if let Some(handle) = &restart
            && handle.is_finished()
        {
            restart.take().context("the restart")?.await??;
            restarts += 1;
            println!(
                "soak: {:>4.0} s: PostgreSQL is back",
                started.elapsed().as_secs_f64()
            );
        }
        if now >= progress {
            progress = now + Duration::from_secs(15);
            println!(
                "soak: {:>4.0} s: {} ledger calls, {kills} kills",
                started.elapsed().as_secs_f64(),
                ledger.snapshot().0.len()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(handle) = restart.take() {
        handle.await??;
        restarts += 1;
    }
    submitter.await.context("the submitting task")?;
    println!(
        "soak: {:>4.0} s: load and kills stopped; waiting up to {:?} for the remaining work",
        started.elapsed().as_secs_f64(),
        plan.settle
    );

    // Settle: every task finished, within a bound.
    let settle_deadline = Instant::now() + plan.settle;
    // The verdicts read the database through a connection of their own: the store keeps its
    // connection to itself.
    let connection = sea_orm::Database::connect(url)
        .await
        .context("connecting to read the verdicts")?;
    let db = &connection;
    let settled = loop {
        let open = scalar(
            db,
            "SELECT COUNT(*) AS n FROM tasker_tasks WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')",
        )
        .await
        .unwrap_or(i64::MAX);
        if open == 0 {
            break true;
        }
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted: the workers are killed and the cluster dropped");
        }
        if Instant::now() > settle_deadline {
            eprintln!(
                "soak: {open} tasks still unfinished after {:?}",
                plan.settle
            );
            break false;
        }
        replace_exited(&mut workers, &mut unplanned_exits, &mut start_failures)?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    if !settled {
        report_unfinished(db).await?;
    }

    // The verdicts.
    let tasks = read_tasks(db, &expected).await?;
    let steps = read_steps(db).await?;
    let transitions = read_transitions(db).await?;
    let (calls, refused_requests) = ledger.snapshot();
    let mut findings = checks::unexpected_tasks(&tasks);
    findings.extend(checks::lost_successes(&calls, &steps.0));
    findings.extend(checks::duplicate_attempts(&transitions.0));
    findings.extend(checks::overlaps(&calls));
    findings.sort();
    let evidence = evidence(db, &findings, origin).await?;
    for line in &evidence {
        println!("soak: evidence: {line}");
    }
    let mut tasks_by_state: HashMap<String, usize> = HashMap::new();
    for task in &tasks {
        *tasks_by_state.entry(task.state.clone()).or_default() += 1;
    }
    drop(workers);
    Ok(Report {
        plan: plan.clone(),
        seed,
        tasks: tasks.len(),
        tasks_by_state,
        steps_completed: steps.0.iter().filter(|s| s.state == "complete").count(),
        attempts: steps.1,
        lease_reclaims: transitions.1,
        calls: calls.len(),
        cut_calls: calls.iter().filter(|c| !c.delivered).count(),
        kills,
        restarts,
        unplanned_exits,
        start_failures,
        create_errors: create_errors.load(Ordering::Relaxed),
        settled,
        elapsed,
        findings,
        evidence,
        refused_requests,
    })
}

/// Starts a replacement for every worker that exited by itself. One that could not reach the
/// database when it started (PostgreSQL was restarting) is counted, as a supervisor would restart
/// it; any other exit (a panic, a crash mid-run) is a failure of the run.
fn replace_exited(
    workers: &mut Workers,
    unplanned_exits: &mut Vec<String>,
    start_failures: &mut usize,
) -> Result<()> {
    for (n, status) in workers.exited() {
        let tail = workers.log_tail(n);
        if is_start_failure(&workers.log(n)) {
            *start_failures += 1;
        } else {
            let line = format!("worker {n} ({status}): {tail}");
            eprintln!("soak: {line}");
            unplanned_exits.push(line);
        }
        workers.spawn()?;
    }
    Ok(())
}

/// Whether a worker's log says it stopped with an error before it was running (it prints
/// `worker <owner> running (…)` once started): it could not reach the database at start-up.
fn is_start_failure(log: &str) -> bool {
    !log.lines()
        .any(|l| l.starts_with("worker ") && l.contains(" running ("))
        && log
            .lines()
            .last()
            .is_some_and(|l| l.to_ascii_lowercase().starts_with("error: "))
}

async fn query(db: &impl ConnectionTrait, sql: &str) -> Result<Vec<QueryResult>> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .with_context(|| format!("querying `{sql}`"))
}

async fn scalar(db: &impl ConnectionTrait, sql: &str) -> Result<i64> {
    let rows = query(db, sql).await?;
    let row = rows.first().context("no row")?;
    Ok(row.try_get::<i64>("", "n")?)
}

fn text(row: &QueryResult, column: &str) -> Result<String> {
    row.try_get::<String>("", column)
        .with_context(|| format!("reading column {column}"))
}

async fn read_tasks(
    db: &impl ConnectionTrait,
    expected: &HashMap<&'static str, &'static str>,
) -> Result<Vec<checks::Task>> {
    let rows = query(
        db,
        "SELECT t.task_id::text AS task_id, t.state, nt.name FROM tasker_tasks t \
         JOIN tasker_named_tasks nt ON nt.named_task_id = t.named_task_id",
    )
    .await?;
    rows.iter()
        .map(|row| {
            let template = text(row, "name")?;
            Ok(checks::Task {
                task: text(row, "task_id")?,
                expected: expected
                    .get(template.as_str())
                    .copied()
                    .unwrap_or("unknown"),
                template,
                state: text(row, "state")?,
            })
        })
        .collect()
}

/// The steps, and the attempts they spent in all.
async fn read_steps(db: &impl ConnectionTrait) -> Result<(Vec<checks::Step>, i64)> {
    let rows = query(
        db,
        "SELECT workflow_step_id::text AS step_id, task_id::text AS task_id, name, state, attempts \
         FROM tasker_workflow_steps",
    )
    .await?;
    let mut attempts = 0;
    let mut steps = Vec::with_capacity(rows.len());
    for row in &rows {
        let name = text(row, "name")?;
        attempts += i64::from(row.try_get::<i32>("", "attempts")?);
        steps.push(checks::Step {
            step: text(row, "step_id")?,
            task: text(row, "task_id")?,
            calls_ledger: name.starts_with("call_"),
            name,
            state: text(row, "state")?,
        });
    }
    Ok((steps, attempts))
}

/// The step transitions, and how many of them are lease reclaims.
async fn read_transitions(db: &impl ConnectionTrait) -> Result<(Vec<checks::Transition>, usize)> {
    let rows = query(
        db,
        "SELECT workflow_step_id::text AS step_id, from_state, to_state, sort_key, metadata::text AS metadata \
         FROM tasker_workflow_step_transitions",
    )
    .await?;
    let mut reclaims = 0;
    let mut transitions = Vec::with_capacity(rows.len());
    for row in &rows {
        let metadata: serde_json::Value = row
            .try_get::<Option<String>>("", "metadata")?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default();
        if metadata
            .get("error_code")
            .and_then(serde_json::Value::as_str)
            == Some("LEASE_EXPIRED")
        {
            reclaims += 1;
        }
        transitions.push(checks::Transition {
            step: text(row, "step_id")?,
            sort_key: i64::from(row.try_get::<i32>("", "sort_key")?),
            from_state: row.try_get::<Option<String>>("", "from_state")?,
            to_state: text(row, "to_state")?,
            attempt: metadata
                .get("attempt_number")
                .and_then(serde_json::Value::as_i64),
            reason: metadata
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok((transitions, reclaims))
}

/// The transition history (time on the ledger's clock, attempt, owner, error) of the steps the
/// first ten findings are about, read before the cluster is dropped.
async fn evidence(
    db: &impl ConnectionTrait,
    findings: &[Finding],
    origin: Instant,
) -> Result<Vec<String>> {
    // The ledger's clock started at `origin`; the database's is wall time.
    let origin_micros = chrono::Utc::now().timestamp_micros()
        - i64::try_from(origin.elapsed().as_micros()).unwrap_or(0);
    let mut subjects: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
    subjects.dedup();
    let mut lines = Vec::new();
    for subject in subjects.into_iter().take(10) {
        // Ids come from the database; anything else is not put into SQL.
        if !subject.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            continue;
        }
        let rows = query(
            db,
            &format!(
                "SELECT s.workflow_step_id::text AS step_id, s.name, x.sort_key,                  COALESCE(x.from_state, '') AS from_state, x.to_state, x.created_at, x.metadata::text AS metadata                  FROM tasker_workflow_step_transitions x                  JOIN tasker_workflow_steps s ON s.workflow_step_id = x.workflow_step_id                  WHERE s.workflow_step_id::text = '{subject}' OR s.task_id::text = '{subject}'                  ORDER BY s.workflow_step_id, x.sort_key"
            ),
        )
        .await?;
        for row in &rows {
            let at = row.try_get::<i64>("", "created_at")? - origin_micros;
            lines.push(format!(
                "step {} ({}) #{} at {} ms: {} -> {} {}",
                text(row, "step_id")?,
                text(row, "name")?,
                row.try_get::<i32>("", "sort_key")?,
                at / 1000,
                text(row, "from_state")?,
                text(row, "to_state")?,
                text(row, "metadata")?
            ));
        }
    }
    Ok(lines)
}

/// Prints the tasks that did not finish and their unfinished steps (at most 20 tasks).
async fn report_unfinished(db: &impl ConnectionTrait) -> Result<()> {
    let rows = query(
        db,
        "SELECT t.task_id::text AS task_id, nt.name AS template, t.state AS task_state, s.name AS step, \
         s.workflow_step_id::text AS step_id, s.state AS step_state, s.attempts, \
         COALESCE(s.claim_owner, '') AS owner \
         FROM tasker_tasks t JOIN tasker_named_tasks nt ON nt.named_task_id = t.named_task_id \
         JOIN tasker_workflow_steps s ON s.task_id = t.task_id \
         WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually') \
         AND s.state NOT IN ('complete', 'resolved_manually') \
         ORDER BY t.task_id LIMIT 60",
    )
    .await?;
    for row in &rows {
        eprintln!(
            "soak: unfinished: task {} ({}, {}) step {} {} {} after {} attempts{}",
            text(row, "task_id")?,
            text(row, "template")?,
            text(row, "task_state")?,
            text(row, "step")?,
            text(row, "step_id")?,
            text(row, "step_state")?,
            row.try_get::<i32>("", "attempts")?,
            match text(row, "owner")?.as_str() {
                "" => String::new(),
                owner => format!(", claimed by {owner}"),
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
