//! `cargo xtask bench [ARGS]`: builds the `tasker` binary (tasker-server) and the `tasker-bench`
//! package in release mode and runs the bench with ARGS, passing `--tasker` (B8 starts that
//! binary as worker processes) unless ARGS name one; its table goes to stdout. The workloads
//! live in `crates/tasker-bench`.

use anyhow::{Context, Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = crate::workspace_root();
    let status = crate::cargo()
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            "tasker-server",
            "--bin",
            "tasker",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release --package tasker-server --bin tasker failed ({status})");
    }
    // A relative CARGO_TARGET_DIR is relative to where cargo was run, not to the bench's folder.
    let here = std::env::current_dir().context("the working directory")?;
    let tasker = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| here.join(dir))
        .unwrap_or_else(|| root.join("target"))
        .join("release")
        .join("tasker");
    let mut command = crate::cargo();
    command.current_dir(&root).args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "tasker-bench",
        "--bin",
        "bench",
        "--",
    ]);
    if !args
        .iter()
        .any(|a| a == "--tasker" || a.starts_with("--tasker="))
    {
        command.arg("--tasker").arg(&tasker);
    }
    let status = command.args(args).status().context("running cargo")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    Ok(())
}
