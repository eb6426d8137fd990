//! A GraphQL subscription on `tasker serve --no-worker` receives, on PostgreSQL, the events of a
//! task a separate `tasker worker` process runs: they can only have come through the relay.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tasker_persistence::testing::{Backend, on_each_database};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::relay::{DIAMOND, start_worker, stop};
use crate::serve::start;

/// A failure guard on every read of the socket, never a wait: events arrive in milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next protocol message other than keep-alives.
async fn receive(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a message within the deadline")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("ping") => send(socket, json!({"type": "pong"})).await,
                Some("pong") => {}
                _ => return value,
            }
        }
    }
}

#[tokio::test]
async fn a_subscription_on_serve_receives_what_a_worker_process_runs() {
    on_each_database(|db| async move {
        if db.backend == Backend::Sqlite {
            eprintln!("cross-process subscriptions: PostgreSQL only; set TASKER_TEST_DATABASE_URL");
            return;
        }
        let (server, base, _stderr) = start(&db.url, &["--no-worker"]);
        let client = reqwest::Client::new();
        let registered = client
            .post(format!("{base}/v1/templates"))
            .header("content-type", "application/yaml")
            .body(DIAMOND)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
        let created: Value = client
            .post(format!("{base}/v1/graphql"))
            .json(&json!({"query": "mutation { createTask(input: {namespace: \"relay\", name: \"relayed\", context: {}}) { id state } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["data"]["createTask"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_owned();

        let url = format!("{}/v1/graphql/ws", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        send(&mut socket, json!({"type": "connection_init", "payload": {}})).await;
        assert_eq!(receive(&mut socket).await["type"], "connection_ack");
        send(&mut socket, json!({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: UUID!) { taskEvents(taskId: $id) { name stepName state relayedFrom taskId } }",
            "variables": {"id": id}}})).await;
        // Answered after the subscription is registered: only then does the worker start.
        send(&mut socket, json!({"id": "2", "type": "subscribe", "payload": {"query": "{ __typename }"}})).await;
        assert_eq!(receive(&mut socket).await["id"], "2");
        assert_eq!(receive(&mut socket).await["type"], "complete");
        let (worker, owner) = start_worker(&db.url, "relay");

        let mut events = Vec::new();
        loop {
            let message = receive(&mut socket).await;
            assert_eq!(message["id"], "1", "{message}");
            match message["type"].as_str().unwrap() {
                "next" => events.push(message["payload"]["data"]["taskEvents"].clone()),
                "complete" => break,
                other => panic!("{other}: {message}"),
            }
        }
        let summary: Vec<String> = events
            .iter()
            .map(|e| format!("{} {}", e["name"], e["stepName"]))
            .collect();
        assert!(events.iter().all(|e| e["relayedFrom"] == owner.as_str() && e["taskId"] == id.as_str()), "{summary:?}");
        assert_eq!(events.last().unwrap()["name"], "task.completed", "{summary:?}");
        let position = |step: &str| {
            events
                .iter()
                .position(|e| e["name"] == "step.completed" && e["stepName"] == step)
                .unwrap_or_else(|| panic!("{step} never completed: {summary:?}"))
        };
        assert!(position("a") < position("b") && position("a") < position("c"), "{summary:?}");
        assert!(position("b") < position("d") && position("c") < position("d"), "{summary:?}");
        stop(worker).await;
        stop(server).await;
    })
    .await;
}
