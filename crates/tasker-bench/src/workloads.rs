//! The workloads B0–B6, B6H (task creation over HTTP) and B7 (resident memory) that
//! docs/performance.md defines, each on a fresh database (B8, several worker processes, is in
//! `multi.rs`). Each reports the CPU time, statements and transactions of its timed part per
//! step (or task) beside its figure (`cost.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sea_orm::{ConnectionTrait, Database};
use tasker_domain::{TaskId, TaskRequest, TaskState};
use tasker_engine::{Engine, EngineConfig, SystemClock};
use tasker_persistence::{ConnectOptions, Store};
use tasker_template::{StepTemplate, TaskTemplate};

use crate::cost::{Meter, Per};
use crate::report::{Figure, Percentiles, Target, millis};

/// How big each workload is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sizes {
    /// B0: single-client transactions.
    pub b0_single: usize,
    /// B0: transactions per client, 8 clients.
    pub b0_per_client: usize,
    /// B1: diamond tasks.
    pub b1_tasks: usize,
    /// B2: sequential linear 4-step runs.
    pub b2_runs: usize,
    /// B3: parallel steps between the root and the join.
    pub b3_width: usize,
    /// B4: chain length.
    pub b4_chain: usize,
    /// B5: the small DAG's steps, how often it runs, and the large DAG's steps.
    pub b5_small: usize,
    pub b5_small_runs: usize,
    pub b5_large: usize,
    /// B6: tasks created.
    pub b6_tasks: usize,
    /// B7: tasks in flight.
    pub b7_tasks: usize,
    /// B8: diamond tasks run by each number of worker processes.
    pub b8_tasks: usize,
    /// B8: how many times each number of processes runs them (the figures are medians).
    pub b8_rounds: usize,
}

impl Sizes {
    /// The full sizes docs/performance.md names.
    pub(crate) fn full() -> Self {
        Self {
            b0_single: 1000,
            b0_per_client: 250,
            b1_tasks: 2000,
            b2_runs: 200,
            b3_width: 5000,
            b4_chain: 1000,
            b5_small: 100,
            b5_small_runs: 20,
            b5_large: 10_000,
            b6_tasks: 2000,
            b7_tasks: 10_000,
            b8_tasks: 2000,
            b8_rounds: 3,
        }
    }

    /// Small enough that both databases together finish in well under two minutes.
    pub(crate) fn quick() -> Self {
        Self {
            b0_single: 200,
            b0_per_client: 50,
            b1_tasks: 300,
            b2_runs: 50,
            b3_width: 1000,
            b4_chain: 200,
            b5_small: 100,
            b5_small_runs: 5,
            b5_large: 2000,
            b6_tasks: 300,
            b7_tasks: 2000,
            b8_tasks: 300,
            b8_rounds: 1,
        }
    }

    /// For the harness's own test: every code path, no meaningful timing.
    #[cfg(test)]
    pub(crate) fn tiny() -> Self {
        Self {
            b0_single: 10,
            b0_per_client: 3,
            b1_tasks: 5,
            b2_runs: 3,
            b3_width: 10,
            b4_chain: 5,
            b5_small: 5,
            b5_small_runs: 2,
            b5_large: 20,
            b6_tasks: 5,
            b7_tasks: 10,
            b8_tasks: 5,
            b8_rounds: 2,
        }
    }
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL server the bench creates its databases on.
pub(crate) fn postgres_admin_url() -> String {
    std::env::var("TASKER_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TASKER_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/tasker_test".into())
}

/// A fresh, migrated database for one workload; deleted or dropped by [`close`](Self::close).
pub(crate) struct BenchDatabase {
    pub store: Store,
    /// The database's URL, for other connections and processes.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    admin: Option<(String, String)>,
}

impl BenchDatabase {
    pub(crate) async fn open(db: Db) -> Result<Self> {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().context("temporary directory")?;
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                );
                // Store::connect sets WAL and synchronous=NORMAL.
                let store = Store::connect(&url, &ConnectOptions::default()).await?;
                Ok(Self {
                    store,
                    url,
                    _dir: Some(dir),
                    admin: None,
                })
            }
            Db::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("tasker_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(admin_url.as_str())
                    .await
                    .with_context(|| format!("connecting to {admin_url}"))?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .context("creating the bench database")?;
                admin.close().await.ok();
                // The same server and options (`?sslmode=...`), another database.
                let (path, query) = admin_url
                    .split_once('?')
                    .map_or((admin_url.as_str(), None), |(p, q)| (p, Some(q)));
                let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
                let url = match query {
                    Some(query) => format!("{base}/{name}?{query}"),
                    None => format!("{base}/{name}"),
                };
                let store = Store::connect(&url, &ConnectOptions::default()).await?;
                Ok(Self {
                    store,
                    url,
                    _dir: None,
                    admin: Some((admin_url, name)),
                })
            }
        }
    }

    pub(crate) async fn close(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = &self.admin
            && let Ok(admin) = Database::connect(admin_url.as_str()).await
        {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .ok();
            admin.close().await.ok();
        }
    }
}

/// The engine as the bench runs it: defaults, the system clock, and a poll interval that is only
/// a fallback (the engine wakes itself in-process when work is created or an attempt ends).
pub(crate) fn engine(store: &Store) -> Result<Engine> {
    let config = EngineConfig {
        poll_interval: Duration::from_secs(1),
        ..Default::default()
    };
    Ok(Engine::builder(store.clone())
        .config(config)
        .clock(Arc::new(SystemClock))
        .build()?)
}

fn template(name: &str, steps: Vec<StepTemplate>) -> TaskTemplate {
    let mut template = TaskTemplate::new(name);
    template.step_templates = steps;
    template
}

/// A → B, C → D.
pub(crate) fn diamond() -> TaskTemplate {
    let noop = "tasker::noop";
    template(
        "bench_diamond",
        vec![
            StepTemplate::new("a", noop),
            StepTemplate::new("b", noop).depends_on(["a"]),
            StepTemplate::new("c", noop).depends_on(["a"]),
            StepTemplate::new("d", noop).depends_on(["b", "c"]),
        ],
    )
}

/// s0 → s1 → … → s(n-1).
pub(crate) fn chain(n: usize) -> TaskTemplate {
    let steps = (0..n)
        .map(|i| {
            let step = StepTemplate::new(format!("s{i}"), "tasker::noop");
            if i == 0 {
                step
            } else {
                step.depends_on([format!("s{}", i - 1)])
            }
        })
        .collect();
    template(&format!("bench_chain_{n}"), steps)
}

/// root → `width` parallel steps → join.
pub(crate) fn wide(width: usize) -> TaskTemplate {
    let middle: Vec<String> = (0..width).map(|i| format!("m{i}")).collect();
    let mut steps = vec![StepTemplate::new("root", "tasker::noop")];
    steps.extend(
        middle
            .iter()
            .map(|name| StepTemplate::new(name.clone(), "tasker::noop").depends_on(["root"])),
    );
    steps.push(StepTemplate::new("join", "tasker::noop").depends_on(middle));
    template(&format!("bench_wide_{width}"), steps)
}

pub(crate) fn request(template: &TaskTemplate) -> TaskRequest {
    TaskRequest::new(template.name.clone()).namespace(template.namespace_name.clone())
}

/// Starts the engine and waits until it is idle: nothing is left to run.
async fn run_until_idle(engine: &Engine) {
    engine.start();
    engine.wait_until_idle().await;
}

/// Checks that every one of `tasks` completed; after the clock and the meter stop, as it is
/// the bench's reading, not the engine's work.
async fn check_complete(engine: &Engine, tasks: &[TaskId]) -> Result<()> {
    for &task_id in tasks {
        let task = engine.store().task(task_id).await?;
        if task.state != TaskState::Complete {
            bail!("task {task_id} ended {} instead of complete", task.state);
        }
    }
    Ok(())
}

/// B0's figures, which the other targets are ratios to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ceiling {
    /// One client: commit latency.
    pub latency: Percentiles,
    /// One client: transactions/s.
    pub rate_1: f64,
    /// Eight clients: transactions/s.
    pub rate_8: f64,
}

async fn b0_transaction(
    store: &Store,
    client: i64,
    next_id: &AtomicI64,
    at: i64,
) -> Result<Duration> {
    let started = Instant::now();
    // The store's own transaction: `BEGIN IMMEDIATE` on SQLite, as every store write.
    let txn = store.begin().await?;
    txn.execute(
        "UPDATE bench_b0_counter SET hits = hits + 1, updated_at = $1 WHERE id = $2",
        [at.into(), client.into()],
    )
    .await?;
    txn.execute(
        "INSERT INTO bench_b0_log (id, counter_id, at) VALUES ($1, $2, $3)",
        [
            next_id.fetch_add(1, Ordering::Relaxed).into(),
            client.into(),
            at.into(),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(started.elapsed())
}

/// B0: the database's own ceiling, on the same pool and settings the store uses.
pub(crate) async fn b0(db: Db, sizes: &Sizes) -> Result<(Ceiling, Figure)> {
    const CLIENTS: i64 = 8;
    let bench = BenchDatabase::open(db).await?;
    let store = bench.store.clone();
    let setup = store.begin().await?;
    for sql in [
        "CREATE TABLE bench_b0_counter (id BIGINT PRIMARY KEY, hits BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
        "CREATE TABLE bench_b0_log (id BIGINT PRIMARY KEY, counter_id BIGINT NOT NULL, at BIGINT NOT NULL)",
        "INSERT INTO bench_b0_counter (id, hits, updated_at) VALUES (0,0,0),(1,0,0),(2,0,0),(3,0,0),(4,0,0),(5,0,0),(6,0,0),(7,0,0)",
    ] {
        setup.execute(sql, []).await?;
    }
    setup.commit().await?;
    let next_id = Arc::new(AtomicI64::new(1));
    let now = || chrono::Utc::now().timestamp_micros();

    let mut samples = Vec::with_capacity(sizes.b0_single);
    let started = Instant::now();
    for _ in 0..sizes.b0_single {
        samples.push(b0_transaction(&store, 0, &next_id, now()).await?);
    }
    let rate_1 = sizes.b0_single as f64 / started.elapsed().as_secs_f64();
    let latency = Percentiles::of(&samples).context("no B0 samples")?;

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let store = store.clone();
            let next_id = next_id.clone();
            let per_client = sizes.b0_per_client;
            tokio::spawn(async move {
                for _ in 0..per_client {
                    b0_transaction(&store, client, &next_id, now()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    let rate_8 = (sizes.b0_per_client as f64 * CLIENTS as f64) / started.elapsed().as_secs_f64();
    bench.close().await;
    let ceiling = Ceiling {
        latency,
        rate_1,
        rate_8,
    };
    let figure = Figure::new(
        "B0",
        db.name(),
        "commit_latency_1_client",
        latency.p50,
        "ms",
    )
    .latency(Some(latency))
    .extra("txn_per_s_1_client", rate_1)
    .extra("txn_per_s_8_clients", rate_8);
    Ok((ceiling, figure))
}

/// B1: many diamond tasks submitted at once, run by one engine: steps/s.
pub(crate) async fn b1(db: Db, sizes: &Sizes, ceiling: &Ceiling) -> Result<Figure> {
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = diamond();
    engine.register_template(template.clone(), false).await?;
    let mut tasks = Vec::with_capacity(sizes.b1_tasks);
    for _ in 0..sizes.b1_tasks {
        tasks.push(engine.create_task(request(&template)).await?.task_id);
    }
    let meter = Meter::start(&bench.store)?;
    let started = Instant::now();
    run_until_idle(&engine).await;
    let elapsed = started.elapsed();
    let steps = sizes.b1_tasks * 4;
    let cost = meter.per(&bench.store, steps, Per::Step)?;
    check_complete(&engine, &tasks).await?;
    engine.shutdown().await;
    bench.close().await;
    let rate = steps as f64 / elapsed.as_secs_f64();
    let figure = Figure::new("B1", db.name(), "steps_per_s", rate, "steps/s")
        .cost(cost)
        .extra("seconds", elapsed.as_secs_f64())
        .extra("steps", steps as f64);
    Ok(match db {
        Db::Postgres => figure
            .target(Target::RatioAtLeast(2.5), "≥ 2.5 × B0 8-client rate")
            .ratio(rate / ceiling.rate_8),
        Db::Sqlite => figure
            .target(Target::RatioAtLeast(3.0), "≥ 3 × B0 1-client rate")
            .ratio(rate / ceiling.rate_1),
    })
}

/// B2: a linear 4-step task, one at a time: create → final state observed.
/// Untimed B2 runs before the timed ones: the pool opens its connections and the database
/// prepares its statements on first use, start-up cost rather than the steady-state latency
/// B2 measures. PostgreSQL plans a prepared statement afresh at each of its first five
/// executions on a connection before it keeps a generic plan (a recording statement's plan
/// took 1.4–3 ms), and the pool spreads B2's statements over its connections (four in a
/// traced run): five warm-up tasks left the first dozen timed ones paying for that planning.
/// On SQLite the longer warm-up moves the store's checkpoint of its 1,024th write transaction
/// from just after the timed tasks to among them: steady-state cost, which B2 then includes.
pub(crate) const B2_WARM_UP: usize = 25;

pub(crate) async fn b2(db: Db, sizes: &Sizes, ceiling: &Ceiling) -> Result<Figure> {
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = chain(4);
    engine.register_template(template.clone(), false).await?;
    engine.start();
    for _ in 0..B2_WARM_UP {
        let created = engine.create_task(request(&template)).await?;
        engine.wait_for_task(created.task_id).await?;
    }
    let mut samples = Vec::with_capacity(sizes.b2_runs);
    let meter = Meter::start(&bench.store)?;
    for _ in 0..sizes.b2_runs {
        let started = Instant::now();
        let created = engine.create_task(request(&template)).await?;
        let task = engine.wait_for_task(created.task_id).await?;
        samples.push(started.elapsed());
        ensure!(
            task.state == TaskState::Complete,
            "B2 task ended {}",
            task.state
        );
    }
    let cost = meter.per(&bench.store, sizes.b2_runs * 4, Per::Step)?;
    engine.shutdown().await;
    bench.close().await;
    let latency = Percentiles::of(&samples).context("no B2 samples")?;
    let mut figure = Figure::new("B2", db.name(), "end_to_end_p50", latency.p50, "ms")
        .latency(Some(latency))
        .cost(cost)
        .extra("p99_over_p50", latency.p99 / latency.p50);
    figure.also_required = Some(latency.p99 <= 2.0 * latency.p50);
    Ok(match db {
        Db::Postgres => figure
            .target(
                Target::RatioAtMost(10.0),
                "p50 ≤ 10 × B0 1-client p50; p99 ≤ 2 × p50",
            )
            .ratio(latency.p50 / ceiling.latency.p50),
        Db::Sqlite => figure
            .target(
                Target::RatioAtMost(8.0),
                "p50 ≤ 8 × B0 1-client p50; p99 ≤ 2 × p50",
            )
            .ratio(latency.p50 / ceiling.latency.p50),
    })
}

/// B3: one task, 1 root → N parallel steps → 1 join: total time.
pub(crate) async fn b3(db: Db, sizes: &Sizes) -> Result<Figure> {
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = wide(sizes.b3_width);
    engine.register_template(template.clone(), false).await?;
    engine.start();
    let meter = Meter::start(&bench.store)?;
    let started = Instant::now();
    let created = engine.create_task(request(&template)).await?;
    let created_in = started.elapsed();
    let task = engine.wait_for_task(created.task_id).await?;
    let elapsed = started.elapsed();
    let cost = meter.per(&bench.store, sizes.b3_width + 2, Per::Step)?;
    ensure!(
        task.state == TaskState::Complete,
        "B3 task ended {}",
        task.state
    );
    engine.shutdown().await;
    bench.close().await;
    let (bound, text) = match db {
        Db::Sqlite => (1.0, "≤ 1 s"),
        Db::Postgres => (2.0, "≤ 2 s"),
    };
    Ok(
        Figure::new("B3", db.name(), "total_time", elapsed.as_secs_f64(), "s")
            .target(Target::AtMost(bound), text)
            .cost(cost)
            .extra("steps", (sizes.b3_width + 2) as f64)
            .extra("creation_s", created_in.as_secs_f64()),
    )
}

/// B4: one long chain: per-hand-off latency, from the steps' completion timestamps.
pub(crate) async fn b4(db: Db, sizes: &Sizes) -> Result<Figure> {
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = chain(sizes.b4_chain);
    engine.register_template(template.clone(), false).await?;
    engine.start();
    let created = engine.create_task(request(&template)).await?;
    let meter = Meter::start(&bench.store)?;
    let started = Instant::now();
    let task = engine.wait_for_task(created.task_id).await?;
    let elapsed = started.elapsed();
    let cost = meter.per(&bench.store, sizes.b4_chain, Per::Step)?;
    ensure!(
        task.state == TaskState::Complete,
        "B4 task ended {}",
        task.state
    );
    engine.shutdown().await;
    let mut finished: Vec<_> = bench
        .store
        .steps(created.task_id)
        .await?
        .into_iter()
        .map(|s| (s.position, s.processed_at))
        .collect();
    bench.close().await;
    finished.sort_by_key(|(position, _)| *position);
    let times = finished
        .into_iter()
        .map(|(_, at)| at.context("a completed step without processed_at"))
        .collect::<Result<Vec<_>>>()?;
    let hand_offs: Vec<Duration> = times
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).to_std().unwrap_or_default())
        .collect();
    let latency = Percentiles::of(&hand_offs).context("no B4 hand-offs")?;
    let per_hand_off = elapsed / u32::try_from(sizes.b4_chain - 1)?;
    let (bound, text) = match db {
        Db::Sqlite => (1.0, "p50 ≤ 1 ms"),
        Db::Postgres => (3.0, "p50 ≤ 3 ms"),
    };
    Ok(
        Figure::new("B4", db.name(), "hand_off_p50", latency.p50, "ms")
            .latency(Some(latency))
            .target(Target::AtMost(bound), text)
            .cost(cost)
            .extra("total_over_hand_offs_ms", millis(per_hand_off))
            .extra("total_s", elapsed.as_secs_f64()),
    )
}

async fn per_step_cost(engine: &Engine, template: &TaskTemplate) -> Result<Duration> {
    let started = Instant::now();
    let created = engine.create_task(request(template)).await?;
    let task = engine.wait_for_task(created.task_id).await?;
    ensure!(
        task.state == TaskState::Complete,
        "B5 task ended {}",
        task.state
    );
    Ok(started.elapsed() / u32::try_from(template.step_templates.len())?)
}

/// B5: per-step cost (create → complete ÷ steps) on a large wide DAG over a small one.
pub(crate) async fn b5(db: Db, sizes: &Sizes) -> Result<Figure> {
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let small = wide(sizes.b5_small - 2);
    let large = wide(sizes.b5_large - 2);
    engine.register_template(small.clone(), false).await?;
    engine.register_template(large.clone(), false).await?;
    engine.start();
    let mut small_costs = Vec::with_capacity(sizes.b5_small_runs);
    for _ in 0..sizes.b5_small_runs {
        small_costs.push(per_step_cost(&engine, &small).await?);
    }
    let meter = Meter::start(&bench.store)?;
    let large_cost = per_step_cost(&engine, &large).await?;
    let cost = meter.per(&bench.store, sizes.b5_large, Per::Step)?;
    engine.shutdown().await;
    bench.close().await;
    let small_cost =
        Duration::from_secs_f64(Percentiles::of(&small_costs).context("no B5 samples")?.p50 / 1e3);
    let ratio = large_cost.as_secs_f64() / small_cost.as_secs_f64();
    Ok(
        Figure::new("B5", db.name(), "per_step_cost_ratio", ratio, "×")
            .target(Target::AtMost(1.5), "≤ 1.5")
            .cost(cost)
            .extra("small_us_per_step", small_cost.as_secs_f64() * 1e6)
            .extra("large_us_per_step", large_cost.as_secs_f64() * 1e6)
            .extra("small_steps", sizes.b5_small as f64)
            .extra("large_steps", sizes.b5_large as f64),
    )
}

/// B6: task creation (4 steps) in process, the coordinator stopped: one caller, eight, and one
/// bulk submission (`Engine::create_tasks`).
pub(crate) async fn b6(db: Db, sizes: &Sizes) -> Result<Figure> {
    const CALLERS: usize = 8;
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = chain(4);
    engine.register_template(template.clone(), false).await?;
    let started = Instant::now();
    for _ in 0..sizes.b6_tasks {
        engine.create_task(request(&template)).await?;
    }
    let one_caller = sizes.b6_tasks as f64 / started.elapsed().as_secs_f64();
    let per_caller = sizes.b6_tasks.div_ceil(CALLERS);
    let meter = Meter::start(&bench.store)?;
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let engine = engine.clone();
            let request = request(&template);
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    engine.create_task(request.clone()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for caller in callers {
        caller.await??;
    }
    let eight_callers = (per_caller * CALLERS) as f64 / started.elapsed().as_secs_f64();
    let cost = meter.per(&bench.store, per_caller * CALLERS, Per::Task)?;
    // Bulk submission: one caller hands over all its requests at once.
    let requests: Vec<_> = (0..sizes.b6_tasks).map(|_| request(&template)).collect();
    let started = Instant::now();
    for result in engine.create_tasks(requests).await {
        result?;
    }
    let bulk = sizes.b6_tasks as f64 / started.elapsed().as_secs_f64();
    bench.close().await;
    Ok(Figure::new(
        "B6",
        db.name(),
        "tasks_per_s_8_callers",
        eight_callers,
        "tasks/s",
    )
    .target(Target::AtLeast(5000.0), "≥ 5,000/s")
    .cost(cost)
    .extra("tasks_per_s_1_caller", one_caller)
    .extra("tasks_per_s_bulk", bulk))
}

/// VmRSS of this process in MB.
pub(crate) fn resident_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmRSS in /proc/self/status")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// B7: resident memory with N linear 4-step tasks created and in flight: first all pending
/// (created, coordinator stopped), then the peak while one engine runs them all.
pub(crate) async fn b7(db: Db, sizes: &Sizes) -> Result<Figure> {
    let baseline = resident_mb()?;
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = chain(4);
    engine.register_template(template.clone(), false).await?;
    let mut tasks = Vec::with_capacity(sizes.b7_tasks);
    for _ in 0..sizes.b7_tasks {
        tasks.push(engine.create_task(request(&template)).await?.task_id);
    }
    let created = resident_mb()?;
    let sampling = Arc::new(std::sync::Mutex::new(created));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let sampling = sampling.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(mb) = resident_mb() {
                    let mut peak = sampling.lock().expect("peak lock");
                    *peak = peak.max(mb);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let meter = Meter::start(&bench.store)?;
    run_until_idle(&engine).await;
    let cost = meter.per(&bench.store, sizes.b7_tasks * 4, Per::Step);
    done.store(true, Ordering::Relaxed);
    sampler.await.ok();
    let cost = cost?;
    check_complete(&engine, &tasks).await?;
    engine.shutdown().await;
    bench.close().await;
    let peak = *sampling.lock().expect("peak lock");
    Ok(Figure::new("B7", db.name(), "resident_peak", peak, "MB")
        .target(Target::AtMost(200.0), "< 200 MB")
        .cost(cost)
        .extra("tasks", sizes.b7_tasks as f64)
        .extra("rss_before_mb", baseline)
        .extra("rss_all_created_mb", created))
}

/// B6H: task creation over HTTP: `POST /v1/tasks` against the REST API served on a loopback
/// port in this process, with JWT (HS256) authentication as a production server has it and the
/// coordinator stopped. One client's latency (p50, p99), then the throughput of eight clients.
pub(crate) async fn b6_http(db: Db, sizes: &Sizes) -> Result<Figure> {
    const CLIENTS: usize = 8;
    let bench = BenchDatabase::open(db).await?;
    let engine = engine(&bench.store)?;
    let template = chain(4);
    engine.register_template(template.clone(), false).await?;
    let auth = tasker_auth::AuthConfig {
        authenticators: vec![tasker_auth::AuthenticatorKind::Jwt],
        jwt: tasker_auth::JwtConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(tasker_auth::Secret::new(
                "bench-secret-bench-secret-bench-secret",
            )),
            ..Default::default()
        },
        ..Default::default()
    };
    let built = auth.build(tasker_auth::Profile::Development, None)?;
    let mut token = tasker_auth::jwt::TokenRequest::new("bench", Duration::from_secs(3600));
    token.permissions = vec!["tasker.task:create".parse()?];
    let token = auth
        .secret_signing_key(None)?
        .mint(&token, chrono::Utc::now())?;
    let api = tasker_api::Api::new(engine.clone(), built.access);
    let app = axum::Router::new().nest("/v1", api.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/tasks", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let body = serde_json::json!({
        "namespace": template.namespace_name,
        "name": template.name,
        "version": template.version,
        "context": {},
    });
    // Warm the connection and the template cache.
    post_task(&client, &url, &token, &body).await?;
    let mut samples = Vec::with_capacity(sizes.b6_tasks);
    let meter = Meter::start(&bench.store)?;
    for _ in 0..sizes.b6_tasks {
        let started = Instant::now();
        post_task(&client, &url, &token, &body).await?;
        samples.push(started.elapsed());
    }
    // The server, the client and the store all run in this process.
    let cost = meter.per(&bench.store, sizes.b6_tasks, Per::Task)?;
    let latency = Percentiles::of(&samples).context("no samples")?;
    let per_client = sizes.b6_tasks.div_ceil(CLIENTS);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, token, body) =
                (client.clone(), url.clone(), token.clone(), body.clone());
            tokio::spawn(async move {
                for _ in 0..per_client {
                    post_task(&client, &url, &token, &body).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for handle in clients {
        handle.await??;
    }
    let eight_clients = (per_client * CLIENTS) as f64 / started.elapsed().as_secs_f64();
    server.abort();
    bench.close().await;
    let mut figure = Figure::new("B6H", db.name(), "http_create_p50", latency.p50, "ms")
        .target(Target::AtMost(3.0), "p50 ≤ 3 ms; ≥ 2,000/s with 8 clients")
        .latency(Some(latency))
        .cost(cost)
        .extra("tasks_per_s_8_clients", eight_clients);
    figure.also_required = Some(eight_clients >= 2000.0);
    Ok(figure)
}

/// One `POST /v1/tasks`; anything but 201 Created is an error naming the status and body.
async fn post_task(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(
        status == reqwest::StatusCode::CREATED,
        "POST {url} answered {status}: {text}"
    );
    Ok(())
}
