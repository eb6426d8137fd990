//! `/runtime/switches`: pause and resume, namespace limits, the audit log, the
//! `runtime.switch_changed` events (across processes too), and bad input.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasker_domain::{StepState, TaskState};
use tasker_engine::tasker_events::names::runtime;
use tasker_engine::tasker_events::{Category, Event, EventStream, Interest};
use tasker_persistence::testing::{Backend, on_each_database};

use crate::events::{PATIENCE, open, read_events};
use crate::support::{Server, open_access, serve};

#[tokio::test]
async fn pausing_a_namespace_holds_its_tasks_until_resumed_and_every_change_is_logged() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let paused = server
            .post(
                "/runtime/switches/pause",
                json!({"namespace": "shop", "reason": "payment provider down"}),
            )
            .await;
        assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
        assert_eq!(paused.body["action"], "pause");
        assert_eq!(paused.body["target"], "shop");
        assert_eq!(paused.body["changed_by"], "anonymous");

        // Tasks can still be created; their steps wait.
        let task = server.create_order(7).await;
        server.engine.start();
        server.engine.wait_until_idle().await;
        let steps = server.engine.store().steps(task).await.unwrap();
        assert!(
            steps
                .iter()
                .all(|s| s.state == StepState::Pending && s.attempts == 0)
        );

        let listed = server.get("/runtime/switches").await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body["switches"][0]["kind"], "pause");
        assert_eq!(
            listed.body["switches"][0]["reason"],
            "payment provider down"
        );

        let resumed = server
            .post(
                "/runtime/switches/resume",
                json!({"namespace": "shop", "reason": "provider back"}),
            )
            .await;
        assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
        assert_eq!(server.drive(task).await.state, TaskState::Complete);
        let again = server
            .post(
                "/runtime/switches/resume",
                json!({"namespace": "shop", "reason": "twice"}),
            )
            .await;
        assert_eq!(
            (again.status, again.code()),
            (StatusCode::NOT_FOUND, "not_found")
        );

        let limited = server
            .call(
                Method::PUT,
                "/runtime/switches/limits/shop",
                Some(json!({"max_running": 3, "reason": "rate limits"})),
                &[],
            )
            .await;
        assert_eq!(limited.status, StatusCode::OK, "{}", limited.body);
        assert_eq!(limited.body["max_running"], 3);
        let lifted = server
            .call(
                Method::PUT,
                "/runtime/switches/limits/shop",
                Some(json!({"max_running": null, "reason": "done"})),
                &[],
            )
            .await;
        assert_eq!(lifted.body["action"], "unlimit");
        let log = server.get("/runtime/switches").await.body["recent_changes"].clone();
        let actions: Vec<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["unlimit", "limit", "resume", "pause"]);
    })
    .await;
}

#[tokio::test]
async fn bad_switch_requests_are_refused_and_store_nothing() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        for (body, needle) in [
            (
                json!({"namespace": "shop", "reason": ""}),
                "reason must not be empty",
            ),
            (
                json!({"namespace": "", "reason": "x"}),
                "namespace must not be empty",
            ),
            (
                json!({"namespace": "shop", "template": {"version": "1.0.0"}, "reason": "x"}),
                "missing field `name`",
            ),
            (
                json!({"namespace": "shop", "template": {"name": "order", "version": "one"}, "reason": "x"}),
                "not a semantic version",
            ),
            (json!({"namespace": "shop\u{0}", "reason": "x"}), "NUL"),
        ] {
            let reply = server.post("/runtime/switches/pause", body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(
                reply.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(needle),
                "{}",
                reply.body
            );
        }
        let reply = server
            .post("/runtime/switches/pause", json!({"namespace": "shop"}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a reason is required"
        );
        let zero = server
            .call(
                Method::PUT,
                "/runtime/switches/limits/shop",
                Some(json!({"max_running": 0, "reason": "x"})),
                &[],
            )
            .await;
        assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
        let none = server
            .call(
                Method::PUT,
                "/runtime/switches/limits/shop",
                Some(json!({"max_running": null, "reason": "x"})),
                &[],
            )
            .await;
        assert_eq!(none.status, StatusCode::NOT_FOUND);
        let listed = server.get("/runtime/switches").await;
        assert_eq!(listed.body, json!({"switches": [], "recent_changes": []}));
    })
    .await;
}

/// The next `n` events of `stream`, within [`PATIENCE`].
async fn next_events(stream: &mut EventStream, n: usize) -> Vec<std::sync::Arc<Event>> {
    let mut events = Vec::new();
    while events.len() < n {
        let event = tokio::time::timeout(PATIENCE, stream.recv())
            .await
            .expect("the event arrives")
            .expect("the bus is open");
        events.push(event);
    }
    events
}

/// Sends one switch change; its logged change.
async fn switch(server: &Server, method: Method, path: &str, body: Value) -> Value {
    let reply = server.call(method, path, Some(body), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply.body
}

#[tokio::test]
async fn every_switch_change_through_the_api_is_published_once_it_commits() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let mut seen = server
            .engine
            .events()
            .stream(vec![Interest::Category(Category::Runtime)], 64);
        // One workflow's stream keeps the changes that concern it: its namespace's and its
        // template's, not another template's or namespace's.
        let stream = open(
            &server,
            "/events/stream?namespace=shop&name=order&events=runtime.switch_changed,task.initialize_requested",
        )
        .await;
        let reader = tokio::spawn(read_events(stream, Some("task.initialize_requested")));

        let post = |path: &'static str, body: Value| switch(&server, Method::POST, path, body);
        let paused = post(
            "/runtime/switches/pause",
            json!({"namespace": "shop", "reason": "payment provider down"}),
        )
        .await;
        post(
            "/runtime/switches/pause",
            json!({"namespace": "shop", "template": {"name": "order", "version": "1.0.0"}, "reason": "bad release"}),
        )
        .await;
        post(
            "/runtime/switches/pause",
            json!({"namespace": "shop", "template": {"name": "doomed"}, "reason": "noisy"}),
        )
        .await;
        post(
            "/runtime/switches/pause",
            json!({"namespace": "billing", "reason": "elsewhere"}),
        )
        .await;
        let limited = switch(
            &server,
            Method::PUT,
            "/runtime/switches/limits/shop",
            json!({"max_running": 3, "reason": "rate limits"}),
        )
        .await;
        switch(
            &server,
            Method::PUT,
            "/runtime/switches/limits/shop",
            json!({"max_running": null, "reason": "done"}),
        )
        .await;
        post(
            "/runtime/switches/resume",
            json!({"namespace": "shop", "reason": "provider back"}),
        )
        .await;
        // Nothing to lift: refused, and nothing is published.
        let again = server
            .post(
                "/runtime/switches/resume",
                json!({"namespace": "shop", "reason": "twice"}),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);

        let events = next_events(&mut seen, 7).await;
        let summaries: Vec<String> = events.iter().map(|e| e.summary()).collect();
        assert_eq!(
            summaries,
            [
                "runtime.switch_changed pause shop",
                "runtime.switch_changed pause shop/order@1.0.0",
                "runtime.switch_changed pause shop/doomed",
                "runtime.switch_changed pause billing",
                "runtime.switch_changed limit shop",
                "runtime.switch_changed unlimit shop",
                "runtime.switch_changed resume shop",
            ]
        );
        let first = serde_json::to_value(&*events[0]).unwrap();
        assert_eq!(
            first,
            json!({
                "name": "runtime.switch_changed",
                "category": "runtime",
                "timestamp": paused["changed_at"],
                "payload": {
                    "kind": "switch",
                    "change_id": paused["change_id"],
                    "action": "pause",
                    "scope": "namespace",
                    "target": "shop",
                    "namespace": "shop",
                    "actor": "anonymous",
                    "reason": "payment provider down",
                },
            })
        );
        let version = serde_json::to_value(&events[1].payload).unwrap();
        assert_eq!(
            (&version["scope"], &version["name"], &version["version"]),
            (&json!("template_version"), &json!("order"), &json!("1.0.0"))
        );
        assert_eq!(serde_json::to_value(&events[2].payload).unwrap()["scope"], "template");
        let limit = serde_json::to_value(&events[4].payload).unwrap();
        assert_eq!(
            (&limit["change_id"], &limit["max_running"], &limit["reason"]),
            (&limited["change_id"], &json!(3), &json!("rate limits"))
        );

        server.create_order(1).await;
        let streamed = tokio::time::timeout(PATIENCE, reader)
            .await
            .expect("the stream reaches the task")
            .unwrap();
        let targets: Vec<String> = streamed
            .iter()
            .map(|(name, data)| match data["payload"]["target"].as_str() {
                Some(target) => format!("{name} {} {target}", data["payload"]["action"].as_str().unwrap()),
                None => name.clone(),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "runtime.switch_changed pause shop",
                "runtime.switch_changed pause shop/order@1.0.0",
                "runtime.switch_changed limit shop",
                "runtime.switch_changed unlimit shop",
                "runtime.switch_changed resume shop",
                "task.initialize_requested",
            ]
        );
        server.engine.events().settled().await;
        assert!(seen.try_recv().is_none(), "one event per change");
    })
    .await;
}

#[tokio::test]
async fn a_switch_change_reaches_the_other_processes_through_the_relay() {
    on_each_database(|db| async move {
        if db.backend == Backend::Sqlite {
            // SQLite serves one process: there is nothing to relay to.
            eprintln!(
                "switch events across processes: PostgreSQL only; set TASKER_TEST_DATABASE_URL"
            );
            return;
        }
        let server = serve(db, open_access()).await;
        let replica = server.replica(open_access(), |api| api).await;
        let _sending = server
            .engine
            .relay_events()
            .await
            .unwrap()
            .expect("PostgreSQL relays");
        let _listening = replica
            .engine
            .relay_events()
            .await
            .unwrap()
            .expect("PostgreSQL relays");
        let mut there = replica
            .engine
            .events()
            .stream(vec![Interest::name(runtime::SWITCH_CHANGED)], 64);
        let mut here = server
            .engine
            .events()
            .stream(vec![Interest::name(runtime::SWITCH_CHANGED)], 64);

        let paused = switch(
            &server,
            Method::POST,
            "/runtime/switches/pause",
            json!({"namespace": "shop", "reason": "incident"}),
        )
        .await;
        let relayed = next_events(&mut there, 1).await.remove(0);
        assert_eq!(relayed.relayed_from.as_deref(), Some(server.engine.owner()));
        let local = next_events(&mut here, 1).await.remove(0);
        assert_eq!(relayed.payload, local.payload, "the same change");
        assert_eq!(
            serde_json::to_value(&relayed.payload).unwrap()["change_id"],
            paused["change_id"]
        );
        // The sender does not hear its own change twice.
        server.engine.events().settled().await;
        assert!(here.try_recv().is_none());
    })
    .await;
}
