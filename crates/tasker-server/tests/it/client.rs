//! `tasker tasks` and `tasker steps` against a real `tasker serve`: the binary as the client,
//! its tables, its `--json`, its exit codes and its error messages.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tasker_persistence::testing::on_each_database;

use super::serve::start;
use super::text;

const QUICK: &str = "name: quick\nnamespace_name: cli\nversion: 1.0.0\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  - name: b\n    handler_class: tasker::echo\n    depends_on_step: a\n";
const SLOW: &str = "name: slow\nnamespace_name: cli\nversion: 1.0.0\nstep_templates:\n  - name: nap\n    handler_class: tasker::sleep\n    handler_config: { millis: 1500 }\n";
const LONG: &str = "name: long\nnamespace_name: cli\nversion: 1.0.0\nstep_templates:\n  - name: nap\n    handler_class: tasker::sleep\n    handler_config: { millis: 600000 }\n";
const DOOMED: &str = "name: doomed\nnamespace_name: cli\nversion: 1.0.0\nstep_templates:\n  - name: charge\n    handler_class: tasker::fail\n    handler_config: { permanent: true, times: 100 }\n  - name: ship\n    handler_class: tasker::noop\n    depends_on_step: charge\n";

/// A `tasker serve` process, stopped with SIGTERM when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(database: &str, extra: &[&str], templates: &[&str]) -> Self {
        let (child, base, _stderr) = start(database, extra);
        let server = Self { child, base };
        let client = reqwest::Client::new();
        for template in templates {
            let response = client
                .post(format!("{}/v1/templates", server.base))
                .header("content-type", "application/yaml")
                .body(template.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "registering a template");
        }
        server
    }

    /// Runs `tasker <args> --server <this server>` with no credentials from the environment.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = client_command(args);
        command
            .args(["--server", &self.base])
            .envs(env.iter().copied());
        command.output().expect("the tasker binary runs")
    }

    /// Runs a client command that must succeed and returns its `--json` output.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .ok();
        self.child.wait().ok();
    }
}

/// The client binary with no server, credentials or configuration from the environment.
fn client_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tasker"));
    command.args(args);
    for variable in [
        "TASKER_SERVER",
        "TASKER_TOKEN",
        "TASKER_API_KEY",
        "TASKER_CLIENT__SERVER",
        "TASKER_CLIENT__TOKEN",
        "TASKER_CLIENT__API_KEY",
    ] {
        command.env_remove(variable);
    }
    command
}

fn id_of(task: &Value) -> String {
    task["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task_id in {task}"))
        .to_owned()
}

#[tokio::test]
async fn create_list_show_watch_and_history_over_a_real_server() {
    on_each_database(|db| async move {
        let server = Server::start(&db.url, &[], &[QUICK, SLOW]).await;

        // Create, then again with the same idempotency key: the same task answers.
        let created = server.json(&[
            "tasks",
            "create",
            "cli/quick@1.0.0",
            "--context",
            r#"{"n": 1}"#,
            "--idempotency-key",
            "order-1",
            "--reason",
            "first order",
        ]);
        let first = id_of(&created);
        assert_eq!(created["context"]["n"], 1);
        assert_eq!(created["reason"], "first order");
        let again = server.run(&[
            "tasks",
            "create",
            "cli/quick",
            "--context",
            r#"{"n": 1}"#,
            "--idempotency-key",
            "order-1",
        ]);
        assert!(again.status.success(), "{}", text(&again.stderr));
        assert!(
            text(&again.stdout).starts_with(&format!("task {first} cli/quick@1.0.0: ")),
            "{}",
            text(&again.stdout)
        );
        assert!(
            text(&again.stderr).contains("an existing task answers idempotency key `order-1`"),
            "{}",
            text(&again.stderr)
        );

        // Watch it to the end: the summary table of `tasker run`, exit 0.
        let watched = server.run(&["tasks", "watch", &first]);
        assert_eq!(watched.status.code(), Some(0), "{}", text(&watched.stderr));
        let summary = text(&watched.stdout);
        assert!(
            summary.contains(&format!("task {first} cli/quick@1.0.0: complete in ")),
            "{summary}"
        );
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with("b ") && l.contains("complete")),
            "{summary}"
        );

        let shown = server.json(&["tasks", "show", &first]);
        assert_eq!(shown["state"], "complete");
        let steps: Vec<&str> = shown["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["complete", "complete"]);
        let table = server.run(&["tasks", "show", &first, "--graph"]);
        let table = text(&table.stdout);
        assert!(
            table.contains("initiator: anonymous (cli)") && table.contains("reason: first order"),
            "{table}"
        );
        assert!(table.contains("graph TD"), "{table}");

        let history = server.json(&["tasks", "history", &first]);
        let task_states: Vec<&str> = history["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t.get("step_id").is_none())
            .map(|t| t["to_state"].as_str().unwrap())
            .collect();
        assert_eq!(task_states.last(), Some(&"complete"), "{history}");
        let table = text(&server.run(&["tasks", "history", &first]).stdout);
        assert!(
            table
                .lines()
                .any(|l| l.contains("step b") && l.contains("in_progress -> complete")),
            "{table}"
        );

        // Steps, by name and by id; an unknown name lists the real ones.
        let listed = server.json(&["steps", "list", &first]);
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let b_id = listed[1]["step_id"].as_str().unwrap();
        assert_eq!(server.json(&["steps", "show", &first, b_id])["name"], "b");
        let b = text(&server.run(&["steps", "show", &first, "b"]).stdout);
        assert!(
            b.contains("state: complete") && b.contains("depends on: a"),
            "{b}"
        );
        let missing = server.run(&["steps", "show", &first, "zzz"]);
        assert_eq!(missing.status.code(), Some(2));
        assert!(
            text(&missing.stderr).contains(&format!(
                "task {first} has no step `zzz`; its steps are: a, b"
            )),
            "{}",
            text(&missing.stderr)
        );

        // More tasks, then pages: a cursor moves on, `--all` reaches every task exactly once.
        let mut ids = vec![first.clone()];
        for n in 2..=5 {
            ids.push(id_of(&server.json(&[
                "tasks",
                "create",
                "cli/quick",
                "--context",
                &format!(r#"{{"n": {n}}}"#),
            ])));
        }
        let page = server.json(&[
            "tasks",
            "list",
            "--namespace",
            "cli",
            "--name",
            "quick",
            "--limit",
            "2",
        ]);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["total"], 5);
        let cursor = page["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let next = server.json(&[
            "tasks",
            "list",
            "--namespace",
            "cli",
            "--name",
            "quick",
            "--limit",
            "2",
            "--cursor",
            &cursor,
        ]);
        assert_ne!(next["items"][0]["task_id"], page["items"][0]["task_id"]);
        assert_ne!(next["items"][0]["task_id"], page["items"][1]["task_id"]);
        let all = server.json(&[
            "tasks",
            "list",
            "--namespace",
            "cli",
            "--limit",
            "2",
            "--all",
        ]);
        let listed: Vec<String> = all["items"].as_array().unwrap().iter().map(id_of).collect();
        assert_eq!(listed.len(), 5, "{all}");
        assert_eq!(
            listed.iter().collect::<HashSet<_>>(),
            ids.iter().collect::<HashSet<_>>()
        );
        assert!(all["next_cursor"].is_null());
        let complete = server.json(&["tasks", "list", "--state", "complete", "--namespace", "cli"]);
        let complete: Vec<String> = complete["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect();
        assert!(complete.contains(&first), "{complete:?}");
        let table = server.run(&[
            "tasks",
            "list",
            "--namespace",
            "cli",
            "--limit",
            "2",
            "--all",
        ]);
        assert!(
            text(&table.stdout).starts_with("TASK "),
            "{}",
            text(&table.stdout)
        );
        assert!(text(&table.stdout).contains(&first));
        assert!(
            text(&table.stderr).contains("5 of 5 task(s) in 3 page(s)"),
            "{}",
            text(&table.stderr)
        );
        let none = server.json(&["tasks", "list", "--name", "no_such_workflow"]);
        assert_eq!(none["total"], 0);

        // A task still running when the watch starts: its live step events are shown.
        let slow = server.json(&[
            "tasks",
            "create",
            "cli/slow",
            "--correlation-id",
            "slow-order-7",
        ]);
        assert_eq!(slow["correlation_id"], "slow-order-7", "{slow}");
        let slow = id_of(&slow);
        let watched = server.run(&["tasks", "watch", &slow]);
        let progress = text(&watched.stderr);
        assert_eq!(watched.status.code(), Some(0), "{progress}");
        assert!(
            progress.contains("completed: nap (attempt 1)"),
            "{progress}"
        );
        assert!(
            text(&watched.stdout).contains(": complete in "),
            "{}",
            text(&watched.stdout)
        );

        let unknown = server.run(&["tasks", "show", "00000000-0000-4000-8000-000000000000"]);
        assert_eq!(unknown.status.code(), Some(2));
        let stderr = text(&unknown.stderr);
        assert!(stderr.starts_with("error: not_found: "), "{stderr}");
        assert!(stderr.contains("correlation id: "), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn operators_cancel_retry_and_resolve_tasks_and_steps() {
    on_each_database(|db| async move {
        let server = Server::start(&db.url, &[], &[DOOMED, LONG]).await;
        let doomed = || id_of(&server.json(&["tasks", "create", "cli/doomed"]));

        // A task that fails: watch exits 1 with the failed step named.
        let task = doomed();
        let watched = server.run(&["tasks", "watch", &task]);
        assert_eq!(watched.status.code(), Some(1), "{}", text(&watched.stderr));
        assert!(text(&watched.stdout).contains(&format!("task {task} cli/doomed@1.0.0: error")));
        assert!(
            text(&watched.stderr).contains("failed step `charge` after 1 attempt(s)"),
            "{}",
            text(&watched.stderr)
        );

        // Retry the task: it runs again and fails again.
        let retried = server.run(&["tasks", "retry", &task, "--reason", "card updated"]);
        assert!(retried.status.success(), "{}", text(&retried.stderr));
        assert_eq!(
            server.run(&["tasks", "watch", &task]).status.code(),
            Some(1)
        );
        // Retry the step: the same.
        let step = server.json(&["steps", "retry", &task, "charge", "--reason", "once more"]);
        assert_eq!(step["name"], "charge");
        assert_eq!(
            server.run(&["tasks", "watch", &task]).status.code(),
            Some(1)
        );
        // Resolve the step by hand: its dependant runs and the task completes.
        let resolved = server.run(&[
            "steps",
            "resolve",
            &task,
            "charge",
            "--results",
            r#"{"charged": true}"#,
            "--reason",
            "paid by phone",
        ]);
        assert!(resolved.status.success(), "{}", text(&resolved.stderr));
        assert!(
            text(&resolved.stdout)
                .starts_with(&format!("step charge of task {task}: resolved_manually")),
            "{}",
            text(&resolved.stdout)
        );
        assert_eq!(
            server.run(&["tasks", "watch", &task]).status.code(),
            Some(0)
        );
        let charge = server.json(&["steps", "show", &task, "charge"]);
        assert_eq!(charge["results"]["charged"], true);
        assert_eq!(charge["state"], "resolved_manually");

        // The history keeps who acted and why.
        let history = server.json(&["tasks", "history", &task]);
        let notes: Vec<(&str, &str)> = history["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| Some((t["actor"].as_str()?, t["metadata"]["note"].as_str()?)))
            .collect();
        for note in ["card updated", "once more", "paid by phone"] {
            assert!(notes.contains(&("anonymous", note)), "{note}: {notes:?}");
        }
        let table = text(&server.run(&["tasks", "history", &task]).stdout);
        assert!(table.contains("(note: paid by phone)"), "{table}");

        // A finished task stays finished: cancelling or retrying it is refused, and the
        // server's 409 shows its envelope.
        let refused = server.run(&["tasks", "cancel", &task, "--reason", "refunded"]);
        assert_eq!(refused.status.code(), Some(2));
        let stderr = text(&refused.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: invalid_transition: task {task} is complete: only a task that is pending or in_progress can be cancelled"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("\n  details: {")
                && stderr.contains("\"state\":\"complete\"")
                && stderr.contains("\n  correlation id: "),
            "{stderr}"
        );
        let refused = server.run(&["tasks", "retry", &task]);
        assert_eq!(refused.status.code(), Some(2));
        let stderr = text(&refused.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: invalid_transition: task {task} is complete: only a task that is in error can be retried"
            )),
            "{stderr}"
        );
        assert_eq!(server.json(&["tasks", "show", &task])["state"], "complete");

        // Ctrl-C stops watching a running task, not the task; then cancel it.
        let long = id_of(&server.json(&["tasks", "create", "cli/long"]));
        let mut watch = client_command(&["tasks", "watch", &long, "--server", &server.base])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(watch.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(
            first.starts_with(&format!("watching task {long} (cli/long@1.0.0, ")),
            "{first}"
        );
        let sent = Command::new("kill")
            .args(["-INT", &watch.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        assert_eq!(watch.wait().unwrap().code(), Some(130), "{rest}");
        assert!(
            rest.contains(&format!(
                "interrupted: stopped watching; task {long} goes on"
            )),
            "{rest}"
        );
        let state = server.json(&["tasks", "show", &long])["state"].clone();
        assert!(state == "pending" || state == "in_progress", "{state}");
        let cancelled = server.run(&["tasks", "cancel", &long, "--reason", "too slow"]);
        assert!(
            text(&cancelled.stdout).starts_with(&format!("task {long} cli/long@1.0.0: cancelled")),
            "{}",
            text(&cancelled.stdout)
        );
        assert_eq!(
            server.run(&["tasks", "watch", &long]).status.code(),
            Some(1)
        );
        let again = server.json(&["tasks", "cancel", &long]);
        assert_eq!(
            again["state"], "cancelled",
            "cancelling twice changes nothing"
        );

        // Resolve a task in error by hand; cancel the step a failed task never reached.
        let task = doomed();
        assert_eq!(
            server.run(&["tasks", "watch", &task]).status.code(),
            Some(1)
        );
        let ship = server.json(&["steps", "cancel", &task, "ship", "--reason", "not needed"]);
        assert_eq!(ship["state"], "cancelled");
        let resolved = server.json(&["tasks", "resolve", &task, "--reason", "handled offline"]);
        assert_eq!(resolved["state"], "resolved_manually");
        let steps = text(&server.run(&["steps", "list", &task]).stdout);
        assert!(
            steps
                .lines()
                .any(|l| l.starts_with("ship ") && l.contains("cancelled")),
            "{steps}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_server_with_jwt_auth_takes_the_token_and_says_plainly_when_it_is_missing() {
    use std::time::Duration;
    use tasker_auth::JwtAlgorithm;
    use tasker_auth::jwt::{SigningKey, TokenRequest};

    const SECRET: &str = "a-client-test-secret-of-32-bytes";
    let db = tasker_persistence::testing::TestDatabase::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("[auth]\nauthenticators = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let server = Server::start(&db.url, &["--config", config.to_str().unwrap()], &[]).await;
    let mut request = TokenRequest::new("ci-bot", Duration::from_secs(600));
    request.permissions = vec![
        "tasker.task:*".parse().unwrap(),
        "tasker.workflow_step:*".parse().unwrap(),
    ];
    let token = SigningKey::hmac(SECRET.as_bytes(), JwtAlgorithm::HS256)
        .unwrap()
        .mint(&request, chrono::Utc::now())
        .unwrap();

    let refused = server.run(&["tasks", "list"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(stderr.starts_with("error: unauthorized: "), "{stderr}");
    assert!(
        stderr.contains("401 Unauthorized") && stderr.contains("TASKER_TOKEN"),
        "{stderr}"
    );
    let forged = server.run_with(
        &["tasks", "list"],
        &[("TASKER_TOKEN", &format!("{token}x"))],
    );
    assert_eq!(forged.status.code(), Some(2));
    assert!(
        text(&forged.stderr).contains("was refused"),
        "{}",
        text(&forged.stderr)
    );

    let listed = server.run_with(&["tasks", "list", "--json"], &[("TASKER_TOKEN", &token)]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let page: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(page["total"], 0);

    // The token from the configuration file works the same, and its subject is the actor.
    let client_config = dir.path().join("client.toml");
    std::fs::write(
        &client_config,
        format!(
            "[client]\nserver = \"{}\"\ntoken = \"{token}\"\n",
            server.base
        ),
    )
    .unwrap();
    let config_arg = client_config.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut command = client_command(args);
        command.args(["--config", config_arg, "--json"]);
        let out = command.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = run(&[
        "tasks",
        "create",
        "engine_shapes/linear_workflow",
        "--context",
        "{}",
    ]);
    assert_eq!(created["initiator"], "ci-bot");
    let id = id_of(&created);
    run(&["tasks", "cancel", &id, "--reason", "by the bot"]);
    let history = run(&["tasks", "history", &id]);
    let last = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|t| t.get("step_id").is_none())
        .unwrap()
        .clone();
    assert_eq!(
        (last["to_state"].as_str(), last["actor"].as_str()),
        (Some("cancelled"), Some("ci-bot")),
        "{history}"
    );
    assert_eq!(last["metadata"]["note"], "by the bot");
    drop(server);
    db.cleanup().await;
}

#[test]
fn bad_input_and_an_unreachable_server_are_named_without_a_panic() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let run = |args: &[&str]| client_command(args).output().unwrap();

    let out = run(&["tasks", "list", "--server", &nowhere]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(&format!("error: cannot reach the server at {nowhere}: ")),
        "{}",
        text(&out.stderr)
    );

    // Checked before anything is sent: the unreachable server is never mentioned.
    let out = run(&[
        "tasks",
        "create",
        "cli/quick",
        "--context",
        "{not json",
        "--server",
        &nowhere,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(
            "error: --context is not valid JSON: key must be a string at line 1 column 2"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "steps",
        "resolve",
        "00000000-0000-4000-8000-000000000000",
        "a",
        "--results",
        "[1,",
        "--server",
        &nowhere,
    ]);
    assert!(
        text(&out.stderr).starts_with("error: --results is not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["tasks", "show", "not-a-task", "--server", &nowhere]);
    assert!(
        text(&out.stderr).starts_with("error: `not-a-task` is not a task id"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["tasks", "create", "cli/quick@one", "--server", &nowhere]);
    assert!(
        text(&out.stderr).contains("version `one` in `cli/quick@one` is not semver"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["tasks", "list", "--server", "localhost:8080"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .starts_with("error: server URL `localhost:8080` must be http:// or https://"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn operators_pause_resume_and_limit_namespaces_from_the_command_line() {
    on_each_database(|db| async move {
        let server = Server::start(&db.url, &[], &[QUICK]).await;
        let paused = server.json(&[
            "switches",
            "pause",
            "namespace",
            "cli",
            "--reason",
            "deploy in progress",
        ]);
        assert_eq!(
            (paused["action"].as_str(), paused["target"].as_str()),
            (Some("pause"), Some("cli"))
        );
        let task = id_of(&server.json(&["tasks", "create", "cli/quick", "--context", "{}"]));
        let listed = server.run(&["switches", "list"]);
        let table = text(&listed.stdout);
        assert!(
            table.contains("pause   cli") && table.contains("deploy in progress"),
            "{table}"
        );
        assert!(
            table.contains("pause cli by anonymous: deploy in progress"),
            "{table}"
        );
        let resumed = server.run(&[
            "switches",
            "resume",
            "namespace",
            "cli",
            "--reason",
            "deployed",
        ]);
        assert!(resumed.status.success(), "{}", text(&resumed.stderr));
        let watched = server.run(&["tasks", "watch", &task]);
        assert_eq!(watched.status.code(), Some(0), "{}", text(&watched.stderr));
        let again = server.run(&[
            "switches",
            "resume",
            "namespace",
            "cli",
            "--reason",
            "twice",
        ]);
        assert!(!again.status.success());
        assert!(
            text(&again.stderr).contains("cli is not paused"),
            "{}",
            text(&again.stderr)
        );

        let limited = server.json(&[
            "switches",
            "limit",
            "namespace",
            "cli",
            "2",
            "--reason",
            "gentle",
        ]);
        assert_eq!(limited["max_running"], 2);
        let bad = server.run(&[
            "switches",
            "limit",
            "namespace",
            "cli",
            "two",
            "--reason",
            "x",
        ]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(
            text(&bad.stderr).contains("got `two`"),
            "{}",
            text(&bad.stderr)
        );
        let lifted = server.json(&[
            "switches",
            "limit",
            "namespace",
            "cli",
            "none",
            "--reason",
            "done",
        ]);
        assert_eq!(lifted["action"], "unlimit");
        let one = server.json(&[
            "switches",
            "pause",
            "template",
            "cli/quick@1.0.0",
            "--reason",
            "bad release",
        ]);
        assert_eq!(one["target"], "cli/quick@1.0.0");
        let template = server.run(&[
            "switches",
            "pause",
            "template",
            "cli-quick",
            "--reason",
            "x",
        ]);
        assert_eq!(template.status.code(), Some(2));
        assert!(
            text(&template.stderr).contains("namespace/name"),
            "{}",
            text(&template.stderr)
        );
    })
    .await;
}
