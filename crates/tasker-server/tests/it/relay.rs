//! Live events across processes on PostgreSQL: `tasker serve --no-worker` (no coordinator)
//! streams, over Server-Sent Events, a task that a separate `tasker worker` process runs; the
//! live part of the stream can only have come through the relay.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tasker_persistence::testing::{Backend, on_each_database};

use crate::serve::start;

pub(crate) const DIAMOND: &str = "name: relayed\nnamespace_name: relay\nversion: 1.0.0\nstep_templates:\n  \
                       - name: a\n    handler_class: tasker::noop\n  \
                       - name: b\n    handler_class: tasker::noop\n    depends_on_step: a\n  \
                       - name: c\n    handler_class: tasker::noop\n    depends_on_step: a\n  \
                       - name: d\n    handler_class: tasker::noop\n    depends_on_steps: [b, c]\n";

/// The steps the worker runs (`a` is resolved by hand before it starts).
const STEPS: [&str; 3] = ["b", "c", "d"];

/// A failure guard on every read of a stream, never a wait: events arrive in milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);

/// One Server-Sent Event: its name and its data as JSON.
#[derive(Debug, Clone)]
struct Sse {
    name: String,
    data: Value,
}

/// The events of a streaming response, read chunk by chunk (keep-alive comments skipped).
struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
    ready: std::collections::VecDeque<Sse>,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Self {
            response,
            buffer: Vec::new(),
            name: None,
            data: None,
            ready: Default::default(),
        }
    }

    /// The next event, or `None` when the server ended the stream; panics after [`DEADLINE`].
    async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(DEADLINE, self.read())
            .await
            .expect("the next event arrives within the deadline")
    }

    async fn read(&mut self) -> Option<Sse> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = self.response.chunk().await.expect("the stream reads")?;
            self.buffer.extend_from_slice(&chunk);
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8(line[..end].to_vec()).unwrap();
                let line = line.strip_suffix('\r').unwrap_or(&line);
                if line.is_empty() {
                    if let Some(data) = self.data.take() {
                        self.ready.push_back(Sse {
                            name: self.name.take().unwrap_or_else(|| "message".into()),
                            data: serde_json::from_str(&data)
                                .unwrap_or_else(|e| panic!("{e}: {data}")),
                        });
                    }
                    self.name = None;
                } else if let Some(name) = line.strip_prefix("event:") {
                    self.name = Some(name.trim_start().to_owned());
                } else if let Some(data) = line.strip_prefix("data:") {
                    let data = data.strip_prefix(' ').unwrap_or(data);
                    match &mut self.data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(data);
                        }
                        None => self.data = Some(data.to_owned()),
                    }
                }
            }
        }
    }
}

/// Starts `tasker worker` on `namespace` and returns it with its owner id, read from the line
/// it prints once running.
pub(crate) fn start_worker(database: &str, namespace: &str) -> (Child, String) {
    let mut worker = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(["worker", "--namespace", namespace, "--database", database])
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_ENGINE__POLL_INTERVAL", "0.05")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tasker binary runs");
    let mut stderr = BufReader::new(worker.stderr.take().unwrap());
    let mut owner = None;
    let mut seen = String::new();
    let mut line = String::new();
    while owner.is_none() && stderr.read_line(&mut line).unwrap() > 0 {
        owner = line
            .strip_prefix("worker ")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned);
        seen.push_str(&line);
        line.clear();
    }
    let owner = owner.unwrap_or_else(|| panic!("the worker never said it runs: {seen}"));
    // The rest of stderr, read off so the pipe never fills.
    std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).ok();
    });
    (worker, owner)
}

/// SIGTERM, then the exit status, waited for off the runtime's thread so this test's own
/// connections (closing the streams it dropped) keep running meanwhile.
pub(crate) async fn stop(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "stops cleanly");
}

/// What identifies a live event: two equal keys are the same event delivered twice.
fn key(event: &Sse) -> (String, Value, Value, Value, Value) {
    let d = &event.data["payload"];
    (
        event.name.clone(),
        d["step_id"].clone(),
        d["attempt"].clone(),
        d["from_state"].clone(),
        d["state"].clone(),
    )
}

#[tokio::test]
async fn serve_streams_a_task_a_worker_process_runs_through_the_postgres_relay() {
    on_each_database(|db| async move {
        if db.backend == Backend::Sqlite {
            // SQLite serves one process: there is nothing to relay (the engine suite checks
            // that `relay_events` declines there).
            eprintln!("cross-process relay: PostgreSQL only; set TASKER_TEST_DATABASE_URL");
            return;
        }
        let (server, base, server_stderr) = start(&db.url, &["--no-worker"]);
        let client = reqwest::Client::new();
        let registered = client
            .post(format!("{base}/v1/templates"))
            .header("content-type", "application/yaml")
            .body(DIAMOND)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201, "{}", registered.text().await.unwrap());
        let created: Value = client
            .post(format!("{base}/v1/tasks"))
            .json(&json!({"namespace": "relay", "name": "relayed", "context": {}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["task_id"].as_str().unwrap().to_owned();
        // Nothing runs the task yet. An operator resolves its first step by hand, so its
        // history holds one transition, made here, before anyone streams.
        let steps: Value = client
            .get(format!("{base}/v1/tasks/{id}/workflow_steps"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first = steps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "a")
            .unwrap()["step_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resolved = client
            .post(format!("{base}/v1/tasks/{id}/workflow_steps/{first}/resolve"))
            .json(&json!({"results": {"by": "hand"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resolved.status(), 200, "{}", resolved.text().await.unwrap());
        let history: Value = client
            .get(format!("{base}/v1/tasks/{id}/transitions"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let history = history["transitions"].as_array().unwrap().clone();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(
            (&history[0]["step_name"], &history[0]["to_state"]),
            (&json!("a"), &json!("resolved_manually"))
        );

        // Both streams subscribe on the server before they answer; then the worker starts.
        let mut all = SseReader::new(
            client
                .get(format!("{base}/v1/events/stream?namespace=relay"))
                .send()
                .await
                .unwrap(),
        );
        let mut task = SseReader::new(
            client
                .get(format!("{base}/v1/tasks/{id}/events"))
                .send()
                .await
                .unwrap(),
        );
        let mut replayed = Vec::new();
        for _ in &history {
            let event = task.next().await.expect("the history is replayed");
            assert_eq!(event.name, "transition", "the replay comes first: {event:?}");
            replayed.push(event.data);
        }
        assert_eq!(replayed, history, "the replay is the stored history");
        let (worker, owner) = start_worker(&db.url, "relay");

        let mut live = Vec::new();
        while let Some(event) = task.next().await {
            live.push(event);
        }
        let summary: Vec<String> = live
            .iter()
            .map(|e| format!("{} {}", e.name, e.data["payload"]["step_name"]))
            .collect();
        // Every live event came from the worker through the relay: this process runs no
        // coordinator.
        for event in &live {
            assert_ne!(event.name, "transition", "replayed once, first: {summary:?}");
            assert_eq!(event.data["payload"]["task_id"], id.as_str(), "{summary:?}");
            assert_eq!(
                event.data["relayed_from"],
                owner.as_str(),
                "{event:?}: {summary:?}"
            );
        }
        // Nothing twice: not within the live part, and nothing replayed is sent again.
        let mut keys = HashSet::new();
        for event in &live {
            assert!(keys.insert(key(event)), "twice: {event:?} in {summary:?}");
            assert_ne!(
                event.data["payload"]["step_name"], "a",
                "step a's resolution was replayed, not sent again: {summary:?}"
            );
        }
        // The task starts first and its completion ends the stream.
        let position = |name: &str, step: Option<&str>| {
            live.iter()
                .position(|e| {
                    e.name == name
                        && step.is_none_or(|s| e.data["payload"]["step_name"] == s)
                })
                .unwrap_or_else(|| panic!("no {name} {step:?} in {summary:?}"))
        };
        let started = position("task.start_requested", None);
        let last = live.last().unwrap();
        assert_eq!(last.name, "task.completed", "{summary:?}");
        assert_eq!(last.data["payload"]["state"], "complete");
        assert_eq!(last.data["payload"]["from_state"], "in_progress");
        // Each step starts after the task did and completes once, after its parents completed.
        let completed: Vec<usize> = STEPS
            .iter()
            .map(|step| position("step.completed", Some(step)))
            .collect();
        for (i, step) in STEPS.iter().enumerate() {
            let runs = position("step.execution_requested", Some(step));
            assert!(started < runs && runs < completed[i], "{step}: {summary:?}");
            let done = live
                .iter()
                .filter(|e| e.name == "step.completed" && e.data["payload"]["step_name"] == *step)
                .count();
            assert_eq!(done, 1, "{step}: {summary:?}");
        }
        let runs = |step| position("step.execution_requested", Some(step));
        assert!(completed[0] < runs("d") && completed[1] < runs("d"), "{summary:?}");

        // The all-events stream, filtered to the namespace, carries the worker's events too.
        let mut everything = Vec::new();
        while let Some(event) = all.next().await {
            let done = event.name == "task.completed" && event.data["payload"]["task_id"] == id.as_str();
            everything.push(event);
            if done {
                break;
            }
        }
        for event in &everything {
            assert_eq!(event.data["relayed_from"], owner.as_str(), "{event:?}");
            assert_eq!(event.data["payload"]["namespace"], "relay", "{event:?}");
        }
        for step in STEPS {
            assert_eq!(
                everything
                    .iter()
                    .filter(|e| e.name == "step.completed" && e.data["payload"]["step_name"] == step)
                    .count(),
                1,
                "{step}"
            );
        }
        let task_events: Vec<(String, Value)> = live
            .iter()
            .map(|e| (e.name.clone(), e.data["payload"]["step_id"].clone()))
            .collect();
        let streamed: Vec<(String, Value)> = everything
            .iter()
            .filter(|e| e.data["payload"]["task_id"] == id.as_str())
            .map(|e| (e.name.clone(), e.data["payload"]["step_id"].clone()))
            .collect();
        assert_eq!(streamed, task_events, "both streams carry the same events in order");

        let state: Value = client
            .get(format!("{base}/v1/tasks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["state"], "complete");
        // Streams left open would hold the server's shutdown until its grace cuts them.
        drop((all, task));
        stop(worker).await;
        stop(server).await;
        let rest = server_stderr.recv().unwrap();
        assert!(
            rest.contains("stopped") && !rest.contains("cut after the grace"),
            "the streams this test dropped were closed, none was cut: {rest}"
        );
    })
    .await;
}
