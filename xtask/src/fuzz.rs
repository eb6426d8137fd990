//! `cargo xtask fuzz-api`: an outside checker for the REST and GraphQL APIs. Schemathesis (from
//! PyPI) reads the OpenAPI document of a live `tasker serve` and sends it generated requests,
//! valid and invalid, over every operation, with every check: no 5xx, every response as
//! documented, schema-valid requests accepted and invalid ones refused, authentication
//! enforced. Then it reads the committed GraphQL SDL (docs/schema.graphql) and sends generated
//! queries and mutations to `/v1/graphql`, checking that none is answered with a server error.
//!
//! The server runs with JWT authentication on a fresh database; the run uses a token minted by
//! `tasker token mint` with every permission, and aims the task- and step-scoped operations at
//! a real task and step created beforehand with `tasker tasks create`, so they reach more than
//! a 404. `tests/fuzz/schemathesis.toml` holds the settings and explains each exception.
//!
//! Schemathesis is not a Rust crate: `.ci/run` installs a pinned version into its venv and puts
//! it on PATH. The `tasker` binary comes from `cargo build -p tasker-server`.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// Which database the fuzzed server stores tasks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

/// `cargo xtask fuzz-api` options.
#[derive(Debug, Args)]
pub(crate) struct FuzzArgs {
    /// The server's database: SQLite in a temporary directory, or a fresh PostgreSQL database on
    /// the server of TASKER_TEST_DATABASE_URL
    #[arg(long, value_enum, default_value = "sqlite")]
    pub(crate) db: Db,
    /// Examples generated per operation and phase
    #[arg(long, default_value_t = DEFAULT_EXAMPLES)]
    pub(crate) max_examples: u32,
    /// Hypothesis seed, for a reproducible run
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// Examples per operation and phase when not told otherwise (CI's setting).
pub(crate) const DEFAULT_EXAMPLES: u32 = 25;

const SCHEMATHESIS: &str = "st";
const CONFIG: &str = "tests/fuzz/schemathesis.toml";
/// The template the task-scoped operations are aimed at (a built-in, registered by `serve`).
const TARGET_TEMPLATE: &str = "engine_shapes/diamond_workflow";

pub(crate) fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    which(SCHEMATHESIS).with_context(|| {
        format!(
            "`{SCHEMATHESIS}` (schemathesis) is not on PATH: `pip install schemathesis` (bash .ci/run installs the pinned version)"
        )
    })?;
    let tasker = build_tasker(&root)?;
    let secret = format!("fuzz-secret-of-one-run-{}", uuid_like());
    let instance = Instance::create(
        args.db,
        &format!(
            "[auth]\nauthenticators = [\"jwt\"]\nallow_global_wildcard = true\n\n[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{secret}\"\n"
        ),
    )?;
    let tasker_cmd = |args: &[&str]| instance.command(&tasker, args);
    // The coordinator stays off: the target task stays pending, so its steps can be changed,
    // and its event stream stays open like a running task's.
    let server = Server::start(tasker_cmd(&[
        "serve",
        "--migrate",
        "--no-worker",
        "--bind",
        "127.0.0.1:0",
    ]))?;
    let outcome = (|| {
        let token = stdout_of(tasker_cmd(&[
            "token",
            "mint",
            "--sub",
            "fuzzer",
            "--permission",
            "*",
            "--ttl",
            "2h",
        ]))?;
        let client = |args: &[&str]| {
            let mut command = tasker_cmd(args);
            command
                .env("TASKER_TOKEN", &token)
                .env("TASKER_SERVER", &server.base);
            command
        };
        let task: serde_json::Value = serde_json::from_str(&stdout_of(client(&[
            "tasks",
            "create",
            TARGET_TEMPLATE,
            "--json",
        ]))?)
        .context("`tasker tasks create --json` printed no JSON")?;
        let task_id = task["task_id"]
            .as_str()
            .context("the created task has no task_id")?
            .to_owned();
        let steps: serde_json::Value =
            serde_json::from_str(&stdout_of(client(&["steps", "list", &task_id, "--json"]))?)
                .context("`tasker steps list --json` printed no JSON")?;
        let step_id = steps[0]["step_id"]
            .as_str()
            .context("the created task has no steps")?
            .to_owned();
        println!(
            "fuzz-api: {} on {}, aiming at task {task_id} step {step_id}",
            server.base,
            args.db.name()
        );
        let run = || {
            Command::new(SCHEMATHESIS)
                .current_dir(&root)
                .args(["--config-file", CONFIG, "run"])
                .arg(format!("{}/v1/openapi.json", server.base))
                .arg("--url")
                .arg(format!("{}/v1", server.base))
                .args(["--workers", "1"])
                .arg("--max-examples")
                .arg(args.max_examples.to_string())
                .arg("--seed")
                .arg(args.seed.to_string())
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"))
                .env("TASKER_FUZZ_TASK_ID", &task_id)
                .env("TASKER_FUZZ_STEP_ID", &step_id)
                .output()
                .context("running schemathesis")
        };
        let mut output = run()?;
        print_output(&output);
        // schemathesis (through hypothesis) sometimes fails inside itself while generating
        // data: a "Runtime Error" with no failure found in the API. One more run separates that
        // from a real problem; a failure, or any other error, is never retried.
        if !output.status.success() && is_tool_error_only(&String::from_utf8_lossy(&output.stdout))
        {
            println!(
                "fuzz-api: schemathesis failed inside itself, not on the API; running it once more"
            );
            output = run()?;
            print_output(&output);
        }
        if !output.status.success() {
            return anyhow::Ok(output.status);
        }
        // GraphQL: schemathesis reads the committed SDL and sends generated queries and
        // mutations to the same server, with the same token; any 5xx (an internal error) fails.
        println!("fuzz-api: GraphQL at {}/v1/graphql", server.base);
        let graphql = Command::new(SCHEMATHESIS)
            .current_dir(&root)
            .args(["run", "docs/schema.graphql", "--url"])
            .arg(format!("{}/v1/graphql", server.base))
            .args(["--workers", "1", "--checks", "not_a_server_error"])
            .arg("--max-examples")
            .arg(args.max_examples.to_string())
            .arg("--seed")
            .arg(args.seed.to_string())
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .output()
            .context("running schemathesis against GraphQL")?;
        print_output(&graphql);
        anyhow::Ok(graphql.status)
    })();
    let log = server.stop();
    instance.database.drop();
    let status: ExitStatus = outcome?;
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        bail!("the server panicked during the run: {line}");
    }
    if !status.success() {
        bail!("schemathesis found problems ({status}); its report is above");
    }
    println!("fuzz-api: ok");
    Ok(())
}

fn print_output(output: &std::process::Output) {
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
}

/// Whether a schemathesis report found no failure and its only errors are its own (Python
/// exceptions while generating data), not the API's (a refused connection, a timeout).
fn is_tool_error_only(report: &str) -> bool {
    let summary = report.rsplit("SUMMARY").next().unwrap_or("");
    !summary.contains("Failures:")
        && summary.contains("Runtime Error")
        && !summary.contains("Network Error")
        && !summary.contains("Timeout")
}

/// Builds the `tasker` binary (a no-op after `cargo test --workspace`) and returns its path.
pub(crate) fn build_tasker(root: &Path) -> anyhow::Result<PathBuf> {
    let status = crate::cargo()
        .current_dir(root)
        .args(["build", "--quiet", "-p", "tasker-server", "--bin", "tasker"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p tasker-server failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let tasker = target.join("debug").join("tasker");
    if !tasker.is_file() {
        bail!("no tasker binary at {}", tasker.display());
    }
    Ok(tasker)
}

pub(crate) fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").context("PATH is not set")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{program} not found"))
}

/// Runs `command` and returns its trimmed stdout; a failure carries its stderr.
pub(crate) fn stdout_of(mut command: Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A unique-enough suffix for names and secrets of one run.
pub(crate) fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// A directory removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("tasker-fuzz-{}", uuid_like()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A fresh database and a configuration file in a temporary directory: what one run's
/// server uses.
pub(crate) struct Instance {
    /// Removed when the instance is dropped.
    pub(crate) dir: TempDir,
    /// Drop it (`Database::drop`) when done.
    pub(crate) database: Database,
    config: PathBuf,
}

impl Instance {
    /// A database on `db` and `tasker.toml` holding `config`.
    pub(crate) fn create(db: Db, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        let database = Database::create(db, &dir.0)?;
        let path = dir.0.join("tasker.toml");
        std::fs::write(&path, config).context("writing the server's configuration")?;
        Ok(Self {
            dir,
            database,
            config: path,
        })
    }

    /// `tasker ARGS` on this instance's configuration and database, run in its directory.
    pub(crate) fn command(&self, tasker: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(tasker);
        command
            .current_dir(&self.dir.0)
            .arg("--config")
            .arg(&self.config)
            .arg("--database")
            .arg(&self.database.url)
            .args(args)
            .env_remove("TASKER_DATABASE_URL");
        command
    }
}

/// The server's database.
pub(crate) struct Database {
    pub(crate) url: String,
    /// PostgreSQL: the admin URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl Database {
    pub(crate) fn create(db: Db, dir: &Path) -> anyhow::Result<Self> {
        match db {
            Db::Sqlite => Ok(Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("fuzz.db").display()),
                postgres: None,
            }),
            Db::Postgres => {
                let admin = std::env::var("TASKER_TEST_DATABASE_URL").context(
                    "--db postgres needs TASKER_TEST_DATABASE_URL (a PostgreSQL server to create a database on)",
                )?;
                let name = format!("tasker_fuzz_{}", uuid_like());
                psql(&admin, &format!("CREATE DATABASE {name}"))?;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    postgres: Some((admin, name)),
                })
            }
        }
    }

    pub(crate) fn drop(self) {
        if let Some((admin, name)) = &self.postgres
            && let Err(error) = psql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
        {
            eprintln!("fuzz-api: warning: {error:#}");
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A running `tasker serve`, its base URL read from its first line of output.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    pub(crate) fn start(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tasker serve")?;
        let mut stderr = BufReader::new(child.stderr.take().context("no stderr")?);
        let mut first = String::new();
        stderr
            .read_line(&mut first)
            .context("reading tasker serve's output")?;
        let Some(base) = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|address| format!("http://{address}"))
        else {
            child.kill().ok();
            let mut rest = String::new();
            stderr.read_to_string(&mut rest).ok();
            bail!("tasker serve did not start: {first}{rest}");
        };
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            stderr.read_to_string(&mut rest).ok();
            tx.send(rest).ok();
        });
        Ok(Self { child, base, log })
    }

    /// Stops the server and returns what it logged.
    pub(crate) fn stop(mut self) -> String {
        self.child.kill().ok();
        self.child.wait().ok();
        self.log.recv().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tools_own_errors_are_retried() {
        let tool = "== SUMMARY ==\nErrors:\n  Runtime Error: 1\nTest cases:\n  1800 passed";
        assert!(is_tool_error_only(tool));
        let failure = "== SUMMARY ==\nFailures:\n  ST201: 1\nErrors:\n  Runtime Error: 1";
        assert!(!is_tool_error_only(failure));
        let network = "== SUMMARY ==\nErrors:\n  Network Error: 3\n  Runtime Error: 1";
        assert!(!is_tool_error_only(network));
        assert!(!is_tool_error_only("== SUMMARY ==\n1906 passed"));
    }
}
