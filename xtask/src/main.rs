//! Project automation for Tasker: `cargo xtask <command>`.
//!
//! Architecture Invariant: nothing depends on xtask; its checks also run as `#[test]`s so
//! `cargo test --workspace` is the whole local check.

mod bench;
mod ci;
mod codegen;
mod deploy;
mod docs;
mod fuzz;
mod layers;
mod migrate;
mod new;
mod reference;
mod soak;
mod template_schema;
mod tidy;
mod ui_test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Tasker project automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check workspace dependencies against ARCHITECTURE.md's layer rules
    LintLayers,
    /// Write every generated file (ARCHITECTURE.md's layer table, docs/errors.md, the template
    /// JSON Schema, docs/openapi.json)
    Codegen {
        /// Change nothing; fail naming each stale file
        #[arg(long)]
        check: bool,
    },
    /// Tidy checks: file headers, self-contained docs, the doctest list
    Tidy,
    /// Run what CI runs: fmt, clippy, lint-layers, tests, lint-deploy; stop at the first failure
    Ci,
    /// Generate code for an application on Tasker: task, handler, subscriber, authenticator,
    /// authorization, events (docs/generators.md); --selftest builds and tests every kind
    New(new::NewArgs),
    /// Database migrations against TASKER_DATABASE_URL (default sqlite://tasker.db?mode=rwc)
    Migrate {
        #[command(subcommand)]
        action: migrate::Action,
    },
    /// Validate the documentation: templates in docs, doctests, blog samples end to end
    ValidateDocs,
    /// Lint the deployment files: hadolint, docker compose config, kustomize + kubernetes-validate
    LintDeploy,
    /// Fuzz the REST API of a live `tasker serve` with schemathesis, every check on
    FuzzApi(fuzz::FuzzArgs),
    /// Test the web dashboard in headless Chromium (playwright-core) against a live `tasker
    /// serve` on SQLite and PostgreSQL; screenshots under the target directory
    UiTest(ui_test::UiTestArgs),
    /// Benchmarks B0–B8 in release mode (docs/performance.md); `cargo xtask bench --help` for options
    #[command(disable_help_flag = true)]
    Bench {
        /// Passed to the bench binary: [--db sqlite|postgres|both] [--quick] [--only B1,B2] [--json FILE]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The soak on PostgreSQL: workers killed and the database restarted under load, then
    /// checks that no work was lost or run twice at once (docs/soak.md); `cargo xtask soak --help`
    #[command(disable_help_flag = true)]
    Soak {
        /// Passed to the soak binary: [--workers N] [--duration S] [--kill-every S] [--pg-restart] [--quick] [--json FILE]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The root of the checkout this run was started in. `cargo run` and `cargo test` set
/// `CARGO_MANIFEST_DIR` at run time; the compile-time value is only a fallback, because an
/// xtask binary built in another checkout that shares the target directory would otherwise
/// check, write and validate that other checkout's files.
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let xtask = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    xtask
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or(xtask)
}

/// A `cargo` command for a nested build or test, with the cargo that started this xtask (the
/// same toolchain). The variables `cargo run` set for the xtask itself are removed: a build
/// script that watches one of them (ring's watches `CARGO_PKG_NAME`, among others) would see
/// it change and rebuild on every nested run, costing a minute of a warm check.
pub(crate) fn cargo() -> std::process::Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let inherited = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            );
        if inherited {
            command.env_remove(name);
        }
    }
    command
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::LintLayers => layers::run(),
        Task::Codegen { check } => codegen::run(check),
        Task::Tidy => tidy::run(),
        Task::New(args) => new::run(&args),
        Task::Ci => ci::run(),
        Task::Migrate { action } => migrate::run(action),
        Task::Bench { args } => bench::run(&args),
        Task::Soak { args } => soak::run(&args),
        Task::ValidateDocs => docs::run(),
        Task::LintDeploy => deploy::run(),
        Task::FuzzApi(args) => fuzz::run(&args),
        Task::UiTest(args) => ui_test::run(&args),
    };
    // `{:#}` prints the context chain on one line, without anyhow's backtrace.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
