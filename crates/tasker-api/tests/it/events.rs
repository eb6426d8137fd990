//! Server-Sent Events: a task's stream replays its history, then follows it live, and ends
//! with the task; the all-events stream filters by template.

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::json;
use tasker_persistence::testing::on_each_database;

use crate::support::{Server, open_access, serve};

/// Reads an SSE response to its end, or through the first event named `until`:
/// `(event name, data)` pairs.
pub(crate) async fn read_events(
    response: reqwest::Response,
    until: Option<&str>,
) -> Vec<(String, serde_json::Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if !data.is_empty() {
                let done = until == Some(name.as_str());
                events.push((name, serde_json::from_str(&data).unwrap()));
                if done {
                    return events;
                }
            }
        }
    }
    events
}

pub(crate) async fn open(server: &Server, path: &str) -> reqwest::Response {
    let response = server
        .client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// A guard against a hung stream: a failing test, not a hung suite.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_task_stream_replays_then_follows_live_then_ends() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        // A task with a history: it ran and ended in error.
        let doomed = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let id: tasker_domain::TaskId = doomed.body["task_id"].as_str().unwrap().parse().unwrap();
        server.drive(id).await;
        let response = open(&server, &format!("/tasks/{id}/events")).await;
        // A task in error may be retried again, so its stream stays open: read up to the end.
        let reader = tokio::spawn(read_events(response, Some("task.failed")));
        // Then it runs again, live.
        let retried = server.post(&format!("/tasks/{id}/retry"), json!({})).await;
        assert_eq!(retried.status, StatusCode::OK);
        server.drive(id).await;
        let events = tokio::time::timeout(PATIENCE, reader)
            .await
            .unwrap()
            .unwrap();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        let live_start = names
            .iter()
            .position(|n| *n != "transition")
            .expect("live events");
        assert!(live_start > 0, "the history comes first: {names:?}");
        assert!(
            names[live_start..].iter().all(|n| *n != "transition"),
            "{names:?}"
        );
        let replayed_error = events[..live_start]
            .iter()
            .any(|(_, t)| t["step_id"].is_null() && t["to_state"] == "error");
        assert!(replayed_error, "the replay holds the first run's end");
        assert!(names[live_start..].contains(&"step.failed"), "{names:?}");
        assert_eq!(*names.last().unwrap(), "task.failed", "{names:?}");
        let (_, last) = events.last().unwrap();
        assert_eq!(last["payload"]["task_id"], json!(id.to_string()));

        // A client that connects after the end gets the whole history, then the end.
        let order = server.create_order(9).await;
        server.drive(order).await;
        let late = read_events(open(&server, &format!("/tasks/{order}/events")).await, None).await;
        assert!(late.iter().all(|(n, _)| n == "transition"));
        let task_final = late
            .iter()
            .rev()
            .find(|(_, t)| t["step_id"].is_null())
            .unwrap();
        assert_eq!(task_final.1["to_state"], "complete");
        let step_completions = late
            .iter()
            .filter(|(_, t)| t["step_id"].is_string() && t["to_state"] == "complete")
            .count();
        assert_eq!(step_completions, 4);
    })
    .await;
}

#[tokio::test]
async fn the_event_stream_keeps_one_workflows_events() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let response = open(
            &server,
            "/events/stream?namespace=shop&name=doomed&events=task.*",
        )
        .await;
        let reader = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut text = String::new();
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if text.contains("event: task.failed") {
                    break;
                }
            }
            text
        });
        let order = server.create_order(1).await;
        server.drive(order).await;
        let doomed = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let doomed_id: tasker_domain::TaskId =
            doomed.body["task_id"].as_str().unwrap().parse().unwrap();
        server.drive(doomed_id).await;
        let text = tokio::time::timeout(PATIENCE, reader)
            .await
            .unwrap()
            .unwrap();
        assert!(text.contains(&doomed_id.to_string()));
        assert!(
            !text.contains(&order.to_string()),
            "another workflow's events leaked"
        );
        assert!(!text.contains("event: step."), "only task.* was asked for");

        let bad = server.get("/events/stream?category=nonsense").await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::BAD_REQUEST, "bad_request")
        );
    })
    .await;
}
