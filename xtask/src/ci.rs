//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::{codegen, deploy, docs, fuzz, layers, soak, tidy, ui_test};

enum Step {
    /// `cargo` with these arguments, inheriting stdout, stderr and the environment.
    Cargo(&'static [&'static str]),
    /// `lint-layers`, run in this process.
    LintLayers,
    /// `validate-docs`, run in this process.
    ValidateDocs,
    /// `codegen --check`, run in this process.
    CodegenCheck,
    /// `tidy`, run in this process.
    Tidy,
    /// `lint-deploy`, run in this process.
    LintDeploy,
    /// `migrate check`, run in this process.
    MigrateCheck,
    /// `new --selftest`, run in this process.
    GeneratorsSelftest,
    /// `fuzz-api --db DB`, run in this process.
    FuzzApi(fuzz::Db),
    /// `soak --quick`: on the debug binaries the tests built.
    SoakQuick,
    /// `ui-test --db both`, run in this process.
    UiTest,
}

const STEPS: &[Step] = &[
    Step::Cargo(&["fmt", "--all", "--", "--check"]),
    Step::Cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]),
    Step::LintLayers,
    Step::CodegenCheck,
    Step::Tidy,
    Step::Cargo(&["test", "--workspace"]),
    Step::SoakQuick,
    Step::MigrateCheck,
    Step::GeneratorsSelftest,
    Step::ValidateDocs,
    Step::LintDeploy,
    Step::FuzzApi(fuzz::Db::Sqlite),
    Step::FuzzApi(fuzz::Db::Postgres),
    Step::UiTest,
];

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Cargo(args) => write!(f, "cargo {}", args.join(" ")),
            Step::LintLayers => write!(f, "cargo xtask lint-layers"),
            Step::ValidateDocs => write!(f, "cargo xtask validate-docs"),
            Step::CodegenCheck => write!(f, "cargo xtask codegen --check"),
            Step::Tidy => write!(f, "cargo xtask tidy"),
            Step::LintDeploy => write!(f, "cargo xtask lint-deploy"),
            Step::MigrateCheck => write!(f, "cargo xtask migrate check"),
            Step::GeneratorsSelftest => write!(f, "cargo xtask new --selftest"),
            Step::FuzzApi(db) => write!(f, "cargo xtask fuzz-api --db {}", db.name()),
            Step::SoakQuick => write!(f, "cargo xtask soak --quick"),
            Step::UiTest => write!(f, "cargo xtask ui-test --db both"),
        }
    }
}

impl Step {
    fn run(&self, workspace_root: &Path) -> anyhow::Result<()> {
        match self {
            Step::Cargo(args) => {
                let status = crate::cargo()
                    .args(*args)
                    .current_dir(workspace_root)
                    .status()
                    .with_context(|| format!("could not start `{self}`"))?;
                anyhow::ensure!(status.success(), "`{self}` failed ({status})");
                Ok(())
            }
            Step::LintLayers => layers::run(),
            Step::ValidateDocs => docs::run(),
            Step::CodegenCheck => codegen::run(true),
            Step::Tidy => tidy::run(),
            Step::LintDeploy => deploy::run(),
            Step::MigrateCheck => crate::migrate::run(crate::migrate::Action::Check),
            Step::GeneratorsSelftest => crate::new::selftest(),
            Step::FuzzApi(db) => fuzz::run(&fuzz::FuzzArgs {
                db: *db,
                max_examples: fuzz::DEFAULT_EXAMPLES,
                seed: 1,
            }),
            Step::SoakQuick => soak::run(&["--quick".to_owned()]),
            Step::UiTest => ui_test::run(&ui_test::UiTestArgs {
                db: ui_test::Dbs::Both,
            }),
        }
    }
}

/// `cargo xtask ci`.
pub(crate) fn run() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let workspace_root = root.as_path();
    for step in STEPS {
        println!("+ {step}");
        std::io::stdout().flush()?;
        step.run(workspace_root)
            .with_context(|| format!("ci: stopped at `{step}`"))?;
    }
    println!("ci: ok ({} steps)", STEPS.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_order() {
        let printed: Vec<String> = STEPS.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                "cargo fmt --all -- --check",
                "cargo clippy --workspace --all-targets -- -D warnings",
                "cargo xtask lint-layers",
                "cargo xtask codegen --check",
                "cargo xtask tidy",
                "cargo test --workspace",
                "cargo xtask soak --quick",
                "cargo xtask migrate check",
                "cargo xtask new --selftest",
                "cargo xtask validate-docs",
                "cargo xtask lint-deploy",
                "cargo xtask fuzz-api --db sqlite",
                "cargo xtask fuzz-api --db postgres",
                "cargo xtask ui-test --db both",
            ]
        );
    }
}
