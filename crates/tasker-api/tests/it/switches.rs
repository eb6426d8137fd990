//! `/runtime/switches`: pause and resume, namespace limits, the audit log, and bad input.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tasker_domain::{StepState, TaskState};
use tasker_persistence::testing::on_each_database;

use crate::support::{open_access, serve};

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
