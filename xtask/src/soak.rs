//! `cargo xtask soak [ARGS]`: builds the `tasker` binary and the soak (`crates/tasker-bench`'s
//! `soak` binary) in the debug profile and runs the soak with ARGS (docs/soak.md). The debug
//! profile is the one `cargo test --workspace` has already built, so in CI the soak costs no
//! build of its own; the harness lives in tasker-bench so that xtask never compiles the engine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = crate::workspace_root();
    for (package, bin) in [("tasker-server", "tasker"), ("tasker-bench", "soak")] {
        let status = crate::cargo()
            .current_dir(&root)
            .args(["build", "--quiet", "--package", package, "--bin", bin])
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --package {package} --bin {bin} failed ({status})");
        }
    }
    let debug = target_dir(&root).join("debug");
    let status = Command::new(debug.join("soak"))
        .arg("--tasker")
        .arg(debug.join("tasker"))
        .args(args)
        .status()
        .context("running the soak")?;
    if !status.success() {
        bail!("the soak failed ({status}); its report is above");
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}
