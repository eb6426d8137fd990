//! `tasker serve` as an operator runs it: a real process answering HTTP, running what it is
//! sent, answering `tasker health`, and stopping cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tasker_persistence::testing::on_each_database;

const JOB: &str = "name: served\nnamespace_name: http\nversion: 1.0.0\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  - name: b\n    handler_class: tasker::echo\n    depends_on_step: a\n";

/// Starts `tasker serve` and returns it with its base URL, read from its first line.
pub(crate) fn start(
    database: &str,
    extra: &[&str],
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    spawn(None, database, extra)
}

/// [`start`] with a configuration file.
pub(crate) fn start_with_config(
    config: &std::path::Path,
    database: &str,
    extra: &[&str],
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    spawn(Some(config), database, extra)
}

fn spawn(
    config: Option<&std::path::Path>,
    database: &str,
    extra: &[&str],
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tasker"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .args(["serve", "--bind", "127.0.0.1:0", "--database", database])
        .args(extra)
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_ENGINE__POLL_INTERVAL", "0.05")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tasker binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let base = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|address| format!("http://{address}"))
        .unwrap_or_else(|| panic!("no address in `{first}`"));
    // The rest of stderr, read off so the pipe never fills, and handed over at the end.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).ok();
        tx.send(rest).ok();
    });
    (child, base, rx)
}

#[tokio::test]
async fn serve_runs_what_it_is_sent_answers_health_and_stops_on_sigterm() {
    on_each_database(|db| async move {
        let (mut server, base, stderr) = start(&db.url, &[]);
        let client = reqwest::Client::new();
        let ready: Value = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ok", "{ready}");
        let checks: Vec<&str> = ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(checks, ["database", "schema", "coordinator"]);

        let registered = client
            .post(format!("{base}/v1/templates"))
            .header("content-type", "application/yaml")
            .body(JOB)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
        let created: Value = client
            .post(format!("{base}/v1/tasks"))
            .json(&json!({"namespace": "http", "name": "served", "context": {"n": 1}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["task_id"].as_str().unwrap().to_owned();
        // The task's event stream ends when the task does: no polling.
        let events = client
            .get(format!("{base}/v1/tasks/{id}/events"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            events.contains("event: task.completed")
                || events.contains("\"to_state\":\"complete\""),
            "{events}"
        );
        let task: Value = client
            .get(format!("{base}/v1/tasks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(task["state"], "complete");
        let spec: Value = client
            .get(format!("{base}/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(spec["paths"]["/tasks"].is_object());

        let health = Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args(["health", "--url", &base])
            .output()
            .unwrap();
        assert_eq!(
            health.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&health.stdout)
        );

        assert!(
            String::from_utf8_lossy(&health.stdout).starts_with("ready\n  ok    database"),
            "{}",
            String::from_utf8_lossy(&health.stdout)
        );
        let status = tasker(&["health", "--status", "--server", &base]);
        assert_eq!(status.status.code(), Some(0), "{}", text(&status));
        let report = text(&status);
        assert!(report.starts_with("healthy\n"), "{report}");
        assert!(report.contains("  tasks:   complete 1"), "{report}");
        let report = tasker(&["health", "--status", "--json", "--server", &base]);
        let report: Value = serde_json::from_slice(&report.stdout).unwrap();
        assert_eq!(report["counts"]["tasks"]["complete"], 1, "{report}");
        let local = tasker(&["--database", &db.url, "health", "--local"]);
        assert_eq!(local.status.code(), Some(0), "{}", text(&local));
        assert!(text(&local).contains("ok    schema"), "{}", text(&local));

        let sent = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = server.wait().unwrap();
        let rest = stderr.recv().unwrap();
        assert_eq!(status.code(), Some(0), "{rest}");
        assert!(rest.contains("stopped"), "{rest}");

        // Nobody listens any more: the health check says so.
        let down = Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args(["health", "--url", &base])
            .output()
            .unwrap();
        assert_eq!(down.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&down.stderr).contains("cannot reach the server"),
            "{}",
            String::from_utf8_lossy(&down.stderr)
        );
    })
    .await;
}

fn tasker(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(args)
        .env_remove("TASKER_DATABASE_URL")
        .output()
        .unwrap()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn health_local_fails_naming_a_database_it_cannot_reach() {
    // Nothing listens on port 1.
    let output = tasker(&[
        "--database",
        "postgres://postgres@127.0.0.1:1/tasker",
        "health",
        "--local",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(
        report.starts_with("not ready\n  FAIL  database"),
        "{report}"
    );
    let json = tasker(&[
        "--database",
        "postgres://postgres@127.0.0.1:1/tasker",
        "health",
        "--local",
        "--json",
    ]);
    let view: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(view["status"], "unavailable");
    assert_eq!(view["checks"][0]["ok"], false);
}

#[tokio::test]
async fn serve_refuses_a_schema_older_than_the_binary_unless_asked_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("fresh.db").display()
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &url])
        .env_remove("TASKER_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tasker migrate") && stderr.contains("pending"),
        "{stderr}"
    );

    let (mut server, base, _stderr) = start(&url, &["--migrate", "--no-worker"]);
    let ready = reqwest::get(format!("{base}/health/ready"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ready.contains("\"schema\""), "{ready}");
    assert!(
        !ready.contains("coordinator"),
        "no coordinator is expected: {ready}"
    );
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(server.wait().unwrap().code(), Some(0));
}
