//! The `tasker` binary as a user runs it: real processes, real databases (SQLite always,
//! PostgreSQL when `TASKER_TEST_DATABASE_URL` is set).

mod auth;
mod client;
mod deploy;
mod graphql;
mod init;
mod metrics;
mod relay;
mod serve;
mod traces;
mod worker;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tasker_persistence::testing::on_each_database;

const DIAMOND: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tasker-blog-examples/templates/engine_shapes/diamond.yaml"
);

fn tasker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(args)
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_ENGINE__BACKOFF__BASE", "0.05")
        .env("TASKER_ENGINE__BACKOFF__JITTER", "0")
        .output()
        .expect("the tasker binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn config_check_exits_0_when_valid_and_2_with_the_reasons_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(
        dir.path(),
        "db_url",
        "postgres://tasker:pw@db:5432/tasker\n",
    );
    let config = write(dir.path(), "tasker.toml", "[engine]\nlease = 20.0\n");
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args([
            "config",
            "check",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ])
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_DATABASE__URL_FILE", &secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    let url = report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "database.url")
        .unwrap();
    assert_eq!(url["value"], "postgres://tasker:***@db:5432/tasker");
    assert_eq!(
        url["source"],
        format!("file {} (from TASKER_DATABASE__URL_FILE)", secret.display())
    );

    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(["config", "check", "--config", config.to_str().unwrap()])
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_PROFILE", "production")
        .env("TASKER_ENGINE__LEASE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .contains("error: auth: auth.authenticators includes `open` in the production profile"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error: engine: ") && stdout.contains("lease"),
        "{stdout}"
    );
    assert!(
        stdout.contains("configuration is invalid: 2 error(s)"),
        "{stdout}"
    );
}

#[test]
fn config_schema_prints_the_json_schema_of_tasker_toml_without_reading_any_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // A broken configuration file does not stop it: the schema is not about this file.
    let config = write(dir.path(), "tasker.toml", "[engine]\nleese = 1\n");
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(["config", "schema", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    let engine = &schema["$defs"]["EngineConfig"];
    assert_eq!(engine["additionalProperties"], false);
    assert_eq!(engine["properties"]["lease"]["default"], 30.0);
    assert_eq!(engine["properties"]["lease"]["x-unit"], "seconds");
    assert!(
        engine["properties"]["lease"]["description"]
            .as_str()
            .unwrap()
            .contains("claim"),
        "{engine}"
    );
    let sections: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    for section in [
        "database", "engine", "log", "server", "api", "auth", "client", "metrics",
    ] {
        assert!(
            sections.contains(&&section.to_owned()),
            "{section}: {sections:?}"
        );
    }
}

#[test]
fn validate_reports_every_error_with_file_line_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let good = tasker(&["validate", DIAMOND]);
    assert!(good.status.success());
    assert!(
        text(&good.stdout).contains("(engine_shapes/diamond_workflow@1.0.0, 7 steps)"),
        "{}",
        text(&good.stdout)
    );
    let bad = write(
        dir.path(),
        "bad.yaml",
        "name: t\nstep_templates:\n  - name: a\n    handler_class: X\n    retry_limit: 2\n",
    );
    let out = tasker(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "{}:5:5: step `a`: unknown key `retry_limit` in step template (did you mean `default_retry_limit`?)",
            bad.display()
        )
    );
}

#[test]
fn graph_prints_mermaid_dot_and_text() {
    let out = tasker(&["graph", DIAMOND, "--format", "mermaid"]);
    assert!(out.status.success());
    let mermaid = text(&out.stdout);
    assert!(
        mermaid.starts_with("graph TD\n") && mermaid.contains("s0 --> s1"),
        "{mermaid}"
    );
    let out = tasker(&["graph", DIAMOND, "--format", "text"]);
    assert!(text(&out.stdout).contains("critical path (5 steps): start_workflow -> branch_one_process -> branch_one_validate -> merge_branches -> end_workflow"));
}

#[tokio::test]
async fn run_prints_the_final_task_document_and_fails_on_error() {
    on_each_database(|db| async move {
        let url = db.url.clone();
        let out = tasker(&["run", DIAMOND, "--json", "--database", &url]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["status"], "complete");
        assert_eq!(doc["steps"]["branch_one_process"]["attempts"], 2);
        assert_eq!(doc["steps"]["end_workflow"]["status"], "complete");

        let dir = tempfile::tempdir().unwrap();
        let failing = write(
            dir.path(),
            "failing.yaml",
            "name: doomed\nstep_templates:\n  - name: charge\n    handler_class: tasker::fail\n    handler_config: { permanent: true }\n",
        );
        let out = tasker(&["run", failing.to_str().unwrap(), "--database", &url]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("failed step `charge` after 1 attempt(s): tasker::fail: attempt 1 of 1 planned failures"), "{stderr}");
        assert!(text(&out.stdout).contains("default/doomed@0.1.0: error"));
    })
    .await;
}

/// `tasker::http` refuses loopback unless `[http_handler]` allows private networks; the refusal
/// is permanent (one attempt) and names the setting.
#[test]
fn the_http_handler_reaches_private_addresses_only_when_configured() {
    use std::io::{Read as _, Write as _};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let template = write(
        dir.path(),
        "call.yaml",
        &format!(
            "name: call\nstep_templates:\n  - name: notify\n    handler_class: tasker::http\n    \
             handler_config: {{ url: \"{hook}\" }}\n    default_retry_limit: 3\n"
        ),
    );
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let out = tasker(&["run", template.to_str().unwrap(), "--database", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("failed step `notify` after 1 attempt(s)")
            && stderr.contains("set http_handler.allow_private_networks to allow it"),
        "{stderr}"
    );

    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let n = socket.read(&mut request).unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args([
            "run",
            template.to_str().unwrap(),
            "--json",
            "--database",
            &url,
        ])
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_HTTP_HANDLER__ALLOW_PRIVATE_NETWORKS", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "complete");
    assert!(server.join().unwrap().starts_with("GET /hook HTTP/1.1"));
}

#[test]
fn bad_input_fails_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db_file = dir.path().join("never.db");
    let url = format!("sqlite://{}?mode=rwc", db_file.display());
    let out = tasker(&["run", DIAMOND, "--context", "{not json", "--database", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(
            "error: --context is not valid JSON: key must be a string at line 1 column 2"
        ),
        "{}",
        text(&out.stderr)
    );
    let broken = write(
        dir.path(),
        "typo.yaml",
        "name: t\nstep_templates:\n  - name: a\n    handler_class: tasker::nop\n",
    );
    let out = tasker(&["run", broken.to_str().unwrap(), "--database", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "step `a` of default/t@0.1.0: no step handler is registered as `tasker::nop`"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = tasker(&["run", "nowhere/ghost@1.0.0", "--database", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no task template nowhere/ghost@1.0.0"),
        "{}",
        text(&out.stderr)
    );
    let out = tasker(&[
        "run",
        DIAMOND,
        "--database",
        "sqlite:///no/such/dir/x.db?mode=rwc",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot open database `sqlite:///no/such/dir/x.db?mode=rwc`"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_killed_run_loses_nothing_and_resume_finishes_it() {
    on_each_database(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let template = write(
            dir.path(),
            "slow.yaml",
            "name: slow\nstep_templates:\n  - name: nap\n    handler_class: tasker::sleep\n    handler_config: { millis: 300 }\n  - name: after\n    handler_class: tasker::noop\n    depends_on_step: nap\n",
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args(["run", template.to_str().unwrap(), "--database", &db.url])
            .env("TASKER_ENGINE__LEASE", "0.5")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut task_id = None;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("task ") {
                task_id = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("started: nap") {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let task_id = task_id.expect("the run printed its task id");
        let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args(["resume", &task_id, "--json", "--database", &db.url])
            .env("TASKER_ENGINE__LEASE", "0.5")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["status"], "complete");
        assert_eq!(doc["steps"]["nap"]["attempts"], 2, "the killed attempt counts; the step ran again");
        assert_eq!(doc["steps"]["after"]["status"], "complete");
    })
    .await;
}

#[tokio::test]
async fn sigterm_and_ctrl_c_drain_a_run_and_give_back_its_claim_unspent() {
    on_each_database(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let template = write(
            dir.path(),
            "slow.yaml",
            "name: slow\nstep_templates:\n  - name: nap\n    handler_class: tasker::sleep\n    handler_config: { millis: 300 }\n  - name: after\n    handler_class: tasker::noop\n    depends_on_step: nap\n",
        );
        for signal in ["-TERM", "-INT"] {
            let mut child = Command::new(env!("CARGO_BIN_EXE_tasker"))
                .args(["run", template.to_str().unwrap(), "--database", &db.url])
                .env("TASKER_ENGINE__SHUTDOWN_GRACE", "0")
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let mut task_id = None;
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            for line in lines.by_ref() {
                let line = line.unwrap();
                if let Some(rest) = line.strip_prefix("task ") {
                    task_id = rest.split_whitespace().next().map(str::to_owned);
                }
                if line.starts_with("started: nap") {
                    break;
                }
            }
            let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
            assert!(sent.success());
            let rest: Vec<String> = lines.map(Result::unwrap).collect();
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(130), "{signal}: {rest:?}");
            assert!(rest.iter().any(|l| l.starts_with("interrupted: drained")), "{signal}: {rest:?}");
            let task_id = task_id.expect("the run printed its task id");
            // No lease to wait for: the drain gave the claim back.
            let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
                .args(["resume", &task_id, "--json", "--database", &db.url])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["status"], "complete");
            assert_eq!(doc["steps"]["nap"]["attempts"], 1, "{signal}: the drained attempt was not spent");
        }
    })
    .await;
}

#[test]
fn built_in_examples_run_by_name_on_their_sample_context() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let listed = tasker(&["templates", "--database", &url]);
    let listed = text(&listed.stdout);
    for name in [
        "blog_examples/process_order@1.0.0",
        "payments/process_refund@2.1.0",
        "customer_success/process_refund@1.3.0",
    ] {
        assert!(
            listed.lines().any(|l| l == name),
            "{name} missing from:\n{listed}"
        );
    }
    let out = tasker(&[
        "run",
        "blog_examples/process_order",
        "--json",
        "--database",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "complete");
    assert_eq!(doc["context"]["payment_info"]["amount"], 124.76);
    assert_eq!(doc["steps"]["send_confirmation"]["status"], "complete");
}

#[test]
fn events_lists_every_rails_name_with_what_tasker_publishes() {
    let out = tasker(&["events", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    let catalog = listing["catalog"].as_array().unwrap();
    let names: Vec<&str> = catalog
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // The Rails catalog: 55 distinct names (plus step.before_handle and step.handle among the ten
    // step names) and the 14 registry constants.
    for name in [
        "task.initialize_requested",
        "task.before_transition",
        "step.before_handle",
        "workflow.task_reenqueue_delayed",
        "observability.step.max_retries_reached",
        "tasker.telemetry.plugin_unregistered",
        "Test.Event",
        "registry.coordination_complete",
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    assert_eq!(names.len(), 70, "and Tasker's own runtime.switch_changed");
    assert!(names.contains(&"runtime.switch_changed"));
    // Each entry says whether it is published, and when or why not.
    for entry in catalog {
        match entry["publication"]["published"].as_str().unwrap() {
            "yes" => assert!(!entry["publication"]["when"].as_str().unwrap().is_empty()),
            "no" => assert!(!entry["publication"]["why"].as_str().unwrap().is_empty()),
            other => panic!("{other}"),
        }
    }
    let custom: Vec<&str> = listing["custom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        custom.contains(&"data_pipeline.milestone_reached"),
        "{custom:?}"
    );

    let one = tasker(&["events", "observability.step.backoff"]);
    assert!(one.status.success());
    let described = text(&one.stdout);
    assert!(
        described.contains("published with the step.failed"),
        "{described}"
    );
    assert!(described.contains("next_attempt_at"), "{described}");

    let filtered = text(&tasker(&["events", "--category", "workflow", "--published"]).stdout);
    assert!(
        filtered.contains("workflow.viable_steps_discovered"),
        "{filtered}"
    );
    assert!(!filtered.contains("workflow.task_started"), "{filtered}");

    let typo = tasker(&["events", "task.complete"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        text(&typo.stderr).contains("did you mean `task.completed`"),
        "{}",
        text(&typo.stderr)
    );
    let bad = tasker(&["events", "--category", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("known: task, step"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn run_logs_one_json_record_per_event_with_the_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(["run", DIAMOND, "--json", "--database", &url])
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_LOG__FORMAT", "json")
        .env("TASKER_LOG__LEVEL", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    let records: Vec<Value> = text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["target"] == "tasker::events")
        .collect();
    let completed: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "step.completed")
        .collect();
    assert_eq!(completed.len(), 7, "one per step of the diamond");
    assert!(
        records
            .iter()
            .all(|r| r["correlation_id"].is_null()
                || r["correlation_id"] == task["correlation_id"]),
        "every task record carries the task's correlation id"
    );
    assert!(
        task["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(
        records.iter().any(
            |r| r["event"] == "task.completed" && r["correlation_id"] == task["correlation_id"]
        )
    );
}
