//! `cargo xtask ui-test`: the dashboard in a real headless browser. Builds the `tasker`
//! binary, starts `tasker serve` (with its coordinator) on a fresh SQLite file and/or a fresh
//! PostgreSQL database, signs with JWT and database API keys set up as docs/auth.md describes
//! (`tasker token mint`, `tasker keys create`), and runs `tests/ui/dashboard.mjs`: Debian's
//! Chromium driven by playwright-core (pinned in tests/ui/package-lock.json, installed with
//! `npm ci`; never a downloaded browser). Screenshots are written under the target
//! directory's `ui-screenshots/<db>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::fuzz::{self, Db, Instance, Server};

/// Which databases the dashboard is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Dbs {
    Sqlite,
    Postgres,
    Both,
}

impl Dbs {
    fn each(self) -> &'static [Db] {
        match self {
            Dbs::Sqlite => &[Db::Sqlite],
            Dbs::Postgres => &[Db::Postgres],
            Dbs::Both => &[Db::Sqlite, Db::Postgres],
        }
    }
}

/// `cargo xtask ui-test` options.
#[derive(Debug, Args)]
pub(crate) struct UiTestArgs {
    /// The server's database: SQLite in a temporary directory, a fresh PostgreSQL database on
    /// the server of TASKER_TEST_DATABASE_URL, or one run on each
    #[arg(long, value_enum, default_value = "both")]
    pub(crate) db: Dbs,
}

const SCRIPT: &str = "tests/ui/dashboard.mjs";
const PACKAGE_DIR: &str = "tests/ui";
const SAMPLE: &str = "crates/tasker-blog-examples/samples/post_01_process_order.json";
/// Where Debian's `chromium` package puts the browser (`TASKER_UI_CHROMIUM` overrides it).
const CHROMIUM: &str = "/usr/bin/chromium";

/// What the operator signed in with the token may do.
const OPERATOR: &[&str] = &[
    "tasker.task:*",
    "tasker.workflow_step:*",
    "tasker.template:*",
    "tasker.event_stream:*",
    "tasker.analytics:index",
    "tasker.runtime_switch:*",
];

/// What the viewer's API key may do: read, and nothing else.
const VIEWER: &[&str] = &[
    "tasker.task:index",
    "tasker.task:show",
    "tasker.workflow_step:index",
    "tasker.workflow_step:show",
    "tasker.template:index",
    "tasker.template:show",
    "tasker.event_stream:subscribe",
    "tasker.analytics:index",
    "tasker.runtime_switch:index",
];

pub(crate) fn run(args: &UiTestArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let node = fuzz::which("node").context("`node` is not on PATH: apt-get install -y nodejs")?;
    let chromium = std::env::var_os("TASKER_UI_CHROMIUM")
        .map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    if !chromium.is_file() {
        bail!(
            "no browser at {}: apt-get install -y chromium (bash .ci/run installs it)",
            chromium.display()
        );
    }
    install_packages(&root)?;
    let tasker = fuzz::build_tasker(&root)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for db in args.db.each() {
        let shots = target.join("ui-screenshots").join(db.name());
        run_on(&root, &node, &chromium, &tasker, *db, &shots)
            .with_context(|| format!("ui-test on {}", db.name()))?;
        println!(
            "ui-test: {} ok; screenshots in {}",
            db.name(),
            shots.display()
        );
    }
    Ok(())
}

/// `npm ci` in tests/ui when playwright-core is not installed there yet.
fn install_packages(root: &Path) -> anyhow::Result<()> {
    let dir = root.join(PACKAGE_DIR);
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Ok(());
    }
    let npm = fuzz::which("npm").context("`npm` is not on PATH: apt-get install -y npm")?;
    let status = Command::new(npm)
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"])
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("npm ci in {PACKAGE_DIR} failed ({status})");
    }
    Ok(())
}

fn run_on(
    root: &Path,
    node: &Path,
    chromium: &Path,
    tasker: &Path,
    db: Db,
    shots: &Path,
) -> anyhow::Result<()> {
    let secret = format!("ui-test-secret-of-one-run-{}", fuzz::uuid_like());
    let instance = Instance::create(
        db,
        &format!(
            "[auth]\nauthenticators = [\"jwt\", \"api_key\"]\n\n[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{secret}\"\n\n[auth.api_keys]\ndatabase = true\n"
        ),
    )?;
    let tasker_cmd = |args: &[&str]| instance.command(tasker, args);
    let server = Server::start(tasker_cmd(&["serve", "--migrate", "--bind", "127.0.0.1:0"]))?;
    let outcome = (|| {
        let mut mint = vec!["token", "mint", "--sub", "operator", "--ttl", "2h"];
        for permission in OPERATOR {
            mint.extend(["--permission", permission]);
        }
        let token = fuzz::stdout_of(tasker_cmd(&mint))?;
        let mut create = vec!["keys", "create", "--name", "viewer"];
        for permission in VIEWER {
            create.extend(["--permission", permission]);
        }
        let key = fuzz::stdout_of(tasker_cmd(&create))?;
        let key = key
            .lines()
            .find(|l| l.starts_with("tsk_"))
            .context("`tasker keys create` printed no key")?
            .trim()
            .to_owned();
        std::fs::create_dir_all(shots).with_context(|| format!("creating {}", shots.display()))?;
        println!("ui-test: {} on {}", server.base, db.name());
        Command::new(node)
            .current_dir(root.join(PACKAGE_DIR))
            .arg(root.join(SCRIPT))
            .env("TASKER_UI_BASE", &server.base)
            .env("TASKER_UI_ADMIN_TOKEN", &token)
            .env("TASKER_UI_VIEWER_KEY", &key)
            .env("TASKER_UI_SCREENSHOTS", shots)
            .env("TASKER_UI_SAMPLE", root.join(SAMPLE))
            .env("TASKER_UI_CHROMIUM", chromium)
            .status()
            .context("running the browser tests")
    })();
    let log = server.stop();
    instance.database.drop();
    let status = outcome?;
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        bail!("the server panicked during the run: {line}");
    }
    if !status.success() {
        bail!("the browser tests failed ({status}); their report is above");
    }
    Ok(())
}
