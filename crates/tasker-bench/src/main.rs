//! Tasker's benchmark workloads (B0–B6, B6H over HTTP, B7: resident memory, B8: several
//! `tasker worker` processes on PostgreSQL; docs/performance.md defines each and its target) on
//! SQLite and PostgreSQL with no-op step handlers, printed as a table and saved as JSON.
//!
//! Built in release mode by `cargo xtask bench`, which runs this binary; run it directly with
//! `cargo run --release -p tasker-bench -- --help`. A package of its own, so that xtask's checks
//! never compile the engine. Figures are never asserted: the
//! machine is shared, so each target is judged against B0 measured in the same run where it can be.

mod cost;
mod multi;
mod report;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

use report::{Figure, Skipped};
use workloads::{Db, Sizes};

/// Figures that cannot be measured yet.
const PENDING: &[&str] = &[];

const ALL: [&str; 10] = ["B0", "B1", "B2", "B3", "B4", "B5", "B6", "B6H", "B7", "B8"];

/// Why B8 does not run on SQLite.
const B8_ON_SQLITE: &str =
    "several worker processes need PostgreSQL: SQLite lets one process at a time run the engine";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DbChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    bin_name = "cargo xtask bench",
    about = "Tasker benchmarks B0–B8 and B6H (docs/performance.md) on SQLite and PostgreSQL"
)]
struct Cli {
    /// Which database; PostgreSQL from TASKER_BENCH_DATABASE_URL, else TASKER_TEST_DATABASE_URL,
    /// else postgres://postgres@127.0.0.1:5432/tasker_test (a database is created per workload)
    #[arg(long, value_enum, default_value = "both")]
    db: DbChoice,
    /// Smaller sizes: both databases in well under two minutes
    #[arg(long)]
    quick: bool,
    /// Only these workloads, e.g. B1,B2 (B0 always runs when a ratio needs it)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the JSON (default: target/bench/latest.json in the workspace)
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `tasker` binary B8 starts as worker processes (default: next to this binary;
    /// `cargo xtask bench` builds it in release mode and passes it)
    #[arg(long)]
    tasker: Option<PathBuf>,
}

/// What one run does.
#[derive(Debug, Clone)]
struct Plan {
    dbs: Vec<Db>,
    sizes: Sizes,
    only: Vec<&'static str>,
    tasker: PathBuf,
}

impl Plan {
    fn from_cli(cli: &Cli) -> Result<Self> {
        let dbs = match cli.db {
            DbChoice::Sqlite => vec![Db::Sqlite],
            DbChoice::Postgres => vec![Db::Postgres],
            DbChoice::Both => vec![Db::Sqlite, Db::Postgres],
        };
        let mut only = Vec::new();
        for wanted in &cli.only {
            let wanted = wanted.trim().to_ascii_uppercase();
            match ALL.iter().find(|id| **id == wanted) {
                Some(id) => only.push(*id),
                None => bail!(
                    "unknown workload `{wanted}`: expected one of {}",
                    ALL.join(", ")
                ),
            }
        }
        if only.is_empty() {
            only = ALL.to_vec();
        }
        Ok(Self {
            dbs,
            sizes: if cli.quick {
                Sizes::quick()
            } else {
                Sizes::full()
            },
            only,
            tasker: cli.tasker.clone().unwrap_or_else(multi::default_tasker),
        })
    }

    fn wants(&self, id: &str) -> bool {
        self.only.contains(&id)
    }
}

fn progress(db: Db, id: &str) {
    eprintln!("bench: {} {id}", db.name());
}

/// Runs the plan; figures in the order B0, B1, … per database, and the workloads skipped.
async fn run(plan: &Plan) -> Result<(Vec<Figure>, Vec<Skipped>)> {
    use workloads::*;
    let mut figures = Vec::new();
    let mut skipped = Vec::new();
    for &db in &plan.dbs {
        let mut mine = Vec::new();
        // B7 first: its resident figure should carry as little of the other workloads as can be.
        if plan.wants("B7") {
            progress(db, "B7");
            mine.push(b7(db, &plan.sizes).await?);
        }
        let ceiling = if plan.wants("B0") || plan.wants("B1") || plan.wants("B2") {
            progress(db, "B0");
            let (ceiling, figure) = b0(db, &plan.sizes).await?;
            if plan.wants("B0") {
                mine.push(figure);
            }
            Some(ceiling)
        } else {
            None
        };
        if let Some(ceiling) = &ceiling {
            if plan.wants("B1") {
                progress(db, "B1");
                mine.push(b1(db, &plan.sizes, ceiling).await?);
            }
            if plan.wants("B2") {
                progress(db, "B2");
                mine.push(b2(db, &plan.sizes, ceiling).await?);
            }
        }
        if plan.wants("B3") {
            progress(db, "B3");
            mine.push(b3(db, &plan.sizes).await?);
        }
        if plan.wants("B4") {
            progress(db, "B4");
            mine.push(b4(db, &plan.sizes).await?);
        }
        if plan.wants("B5") {
            progress(db, "B5");
            mine.push(b5(db, &plan.sizes).await?);
        }
        if plan.wants("B6") {
            progress(db, "B6");
            mine.push(b6(db, &plan.sizes).await?);
        }
        if plan.wants("B6H") {
            progress(db, "B6H");
            mine.push(b6_http(db, &plan.sizes).await?);
        }
        if plan.wants("B8") {
            match db {
                Db::Postgres => mine.push(multi::b8(&plan.sizes, &plan.tasker).await?),
                Db::Sqlite => skipped.push(Skipped {
                    id: "B8",
                    db: db.name(),
                    reason: B8_ON_SQLITE,
                }),
            }
        }
        mine.sort_by_key(|f| f.id);
        figures.extend(mine);
    }
    Ok((figures, skipped))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `target/bench/latest.json` in the workspace, two levels above this crate
/// (`crates/tasker-bench`).
fn default_json_path() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .join("target")
        .join("bench")
        .join("latest.json")
}

async fn main_inner(cli: Cli) -> Result<()> {
    let plan = Plan::from_cli(&cli)?;
    let (figures, skipped) = run(&plan).await?;
    let json = report::to_json(&figures, cores(), cli.quick, PENDING, &skipped);
    let path = cli.json.clone().unwrap_or_else(default_json_path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "Tasker bench ({}; {} cores; no-op handlers; release)",
        if cli.quick {
            "quick sizes"
        } else {
            "full sizes"
        },
        cores()
    );
    print!("{}", report::table(&figures));
    for pending in PENDING {
        println!("{pending}");
    }
    for skip in &skipped {
        println!("{} {}: skipped: {}", skip.id, skip.db, skip.reason);
    }
    println!("JSON: {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The engine's and the store's warnings and errors on stderr (`RUST_LOG` overrides): a
    // workload whose claims or writes fail then says why, not only that a task ended short.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_inner(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_selects_workloads_and_databases() {
        let cli = Cli::parse_from(["bench", "--db", "sqlite", "--quick", "--only", "b1,B4"]);
        let plan = Plan::from_cli(&cli).unwrap();
        assert_eq!(
            (plan.dbs, plan.sizes, plan.only),
            (vec![Db::Sqlite], Sizes::quick(), vec!["B1", "B4"])
        );
        let cli = Cli::parse_from(["bench", "--only", "B9"]);
        assert_eq!(
            Plan::from_cli(&cli).unwrap_err().to_string(),
            "unknown workload `B9`: expected one of B0, B1, B2, B3, B4, B5, B6, B6H, B7, B8"
        );
    }

    #[test]
    fn the_default_json_goes_to_the_workspace_target() {
        let path = default_json_path();
        assert!(
            path.ends_with("target/bench/latest.json"),
            "{}",
            path.display()
        );
        let workspace = path.ancestors().nth(3).unwrap();
        let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{}", workspace.display());
    }

    /// Checks one database's results: the workloads in `ids`, in order, each with finite
    /// positive numbers, and the CPU, statement and transaction costs of its timed part.
    fn check_shape(json: &serde_json::Value, db: &str, ids: &[&str]) {
        assert!(json["cores"].as_u64().unwrap() >= 1);
        let results = json["results"].as_array().unwrap();
        let found: Vec<(&str, &str)> = results
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r["db"].as_str().unwrap()))
            .collect();
        let expected: Vec<(&str, &str)> = ids.iter().map(|id| (*id, db)).collect();
        assert_eq!(found, expected);
        let positive = |v: &serde_json::Value, what: &str| {
            let n = v
                .as_f64()
                .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
            assert!(n.is_finite() && n > 0.0, "{what} = {n}");
        };
        for result in results {
            let id = result["id"].as_str().unwrap();
            positive(&result["value"], &format!("{id}.value"));
            positive(&result["cores"], &format!("{id}.cores"));
            for key in ["metric", "unit", "target"] {
                assert!(result[key].is_string(), "{id}.{key}");
            }
            assert!(result["meets_target"].is_boolean() || id == "B0", "{id}");
            for (name, value) in result["extra"].as_object().unwrap() {
                if name.starts_with("transactions_per_") {
                    // Creation on PostgreSQL is one statement outside any transaction.
                    let n = value.as_f64().unwrap_or(-1.0);
                    assert!(n.is_finite() && n >= 0.0, "{id}.extra.{name} = {value}");
                } else {
                    positive(value, &format!("{id}.extra.{name}"));
                }
            }
            if ["B0", "B2", "B4"].contains(&id) {
                for p in ["p50_ms", "p95_ms", "p99_ms"] {
                    positive(&result[p], &format!("{id}.{p}"));
                }
            }
            if ["B1", "B2"].contains(&id) {
                positive(&result["ratio_to_b0"], &format!("{id}.ratio_to_b0"));
            }
            // Every workload but B0 reports its costs, per task where it creates tasks.
            let per = match id {
                "B0" => continue,
                "B6" | "B6H" => "task",
                _ => "step",
            };
            for cost in ["cpu_us", "statements", "calls", "transactions"] {
                // B8's workers report their statements, not their driver calls.
                if cost == "calls" && id == "B8" {
                    continue;
                }
                let name = format!("{cost}_per_{per}");
                assert!(
                    result["extra"][&name].is_number(),
                    "{id} {db} has no extra.{name}: {result}"
                );
            }
        }
    }

    /// Every workload at tiny sizes on `db`, as the JSON report.
    async fn run_tiny(db: Db) -> serde_json::Value {
        let plan = Plan {
            dbs: vec![db],
            sizes: Sizes::tiny(),
            only: ALL.to_vec(),
            tasker: multi::default_tasker(),
        };
        let (figures, skipped) = run(&plan).await.unwrap();
        report::to_json(&figures, cores(), true, PENDING, &skipped)
    }

    /// Behaviour, not timings: every workload runs on SQLite and reports finite positive
    /// numbers; B8 is skipped there, with its reason.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_workload_reports_a_well_formed_figure_on_sqlite() {
        let json = run_tiny(Db::Sqlite).await;
        check_shape(&json, "sqlite", &ALL[..9]);
        assert_eq!(
            json["skipped"],
            serde_json::json!([{"id": "B8", "db": "sqlite", "reason": B8_ON_SQLITE}])
        );
    }

    /// The same on PostgreSQL (when `TASKER_TEST_DATABASE_URL` names a server), B8 included: it
    /// starts the debug `tasker` binary that `cargo test --workspace` builds as workers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_workload_reports_a_well_formed_figure_on_postgres() {
        if std::env::var("TASKER_TEST_DATABASE_URL").is_err() {
            return;
        }
        let json = run_tiny(Db::Postgres).await;
        check_shape(&json, "postgres", &ALL);
        assert_eq!(json["skipped"], serde_json::json!([]));
        let b8 = &json["results"].as_array().unwrap()[9];
        assert_eq!(b8["unit"], "×");
        assert_eq!(b8["target"], "2 processes ≥ 0.9 × 1 process");
        for processes in ["1_process", "2_processes", "4_processes"] {
            for figure in [
                "steps_per_s",
                "seconds",
                "cpu_us_per_step",
                "statements_per_step",
                "transactions_per_step",
            ] {
                let name = format!("{figure}_{processes}");
                assert!(b8["extra"][&name].is_number(), "no B8 extra.{name}: {b8}");
            }
        }
        assert!(b8["extra"]["ratio_4_over_1_process"].is_number(), "{b8}");
        assert_eq!(b8["extra"]["rounds"], 2.0, "{b8}");
    }
}
