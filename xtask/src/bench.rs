//! `cargo xtask bench [ARGS]`: builds the `tasker-bench` package in release mode and runs it
//! with ARGS; its table goes to stdout. The workloads live in `crates/tasker-bench`.

use anyhow::{Context, Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let status = crate::cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "tasker-bench",
            "--",
        ])
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    Ok(())
}
