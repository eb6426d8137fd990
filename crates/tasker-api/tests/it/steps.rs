//! Steps: listing, showing, the attempt limit, cancel, resolve and retry of one step.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasker_domain::TaskState;
use tasker_persistence::testing::on_each_database;

use crate::support::{open_access, serve};

fn step<'a>(steps: &'a Value, name: &str) -> &'a Value {
    steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn a_failed_step_is_resolved_by_hand_and_its_task_completes() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let reply = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let id: tasker_domain::TaskId = reply.body["task_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(server.drive(id).await.state, TaskState::Error);
        let steps = server.get(&format!("/tasks/{id}/workflow_steps")).await;
        assert_eq!(steps.status, StatusCode::OK);
        let broken = step(&steps.body, "broken");
        assert_eq!(broken["state"], "error");
        assert!(
            broken["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("tasker::fail")
        );
        let broken_id = broken["step_id"].as_str().unwrap().to_owned();

        let shown = server
            .get(&format!("/tasks/{id}/workflow_steps/{broken_id}"))
            .await;
        assert_eq!(
            shown.body["parents"],
            json!([step(&steps.body, "first")["step_id"]])
        );

        // A step of another task is not found under this one.
        let other = server.create_order(1).await;
        let elsewhere = server
            .get(&format!("/tasks/{other}/workflow_steps/{broken_id}"))
            .await;
        assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);

        let resolved = server
            .post(
                &format!("/tasks/{id}/workflow_steps/{broken_id}/resolve"),
                json!({"results": {"done_by": "ops"}, "reason": "charged by phone"}),
            )
            .await;
        assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
        assert_eq!(resolved.body["state"], "resolved_manually");
        assert_eq!(resolved.body["results"], json!({"done_by": "ops"}));
        let task = server.get(&format!("/tasks/{id}")).await;
        assert_eq!(task.body["state"], "complete");

        // A finished step cannot be cancelled, retried or changed.
        for action in ["cancel", "retry"] {
            let reply = server
                .post(
                    &format!("/tasks/{id}/workflow_steps/{broken_id}/{action}"),
                    json!({}),
                )
                .await;
            assert_eq!(
                (reply.status, reply.code()),
                (StatusCode::CONFLICT, "invalid_transition"),
                "{action}"
            );
        }
        let update = server
            .call(
                Method::PATCH,
                &format!("/tasks/{id}/workflow_steps/{broken_id}"),
                Some(json!({"retry_limit": 5})),
                &[],
            )
            .await;
        assert_eq!(
            (update.status, update.code()),
            (StatusCode::CONFLICT, "invalid_transition")
        );
        assert_eq!(
            update.body["error"]["message"],
            format!(
                "step {broken_id} (`broken`) is resolved_manually: only a step that is pending can have its retry_limit changed"
            )
        );

        let history = server.get(&format!("/tasks/{id}/transitions")).await;
        let resolution = history.body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["step_name"] == "broken" && t["to_state"] == "resolved_manually")
            .unwrap()
            .clone();
        assert_eq!(resolution["metadata"]["note"], "charged by phone");
        assert_eq!(resolution["actor"], "anonymous");
    })
    .await;
}

#[tokio::test]
async fn a_step_is_retried_alone_and_a_pending_steps_limit_changes() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        // Before anything runs (the coordinator starts with the first drive), steps stay pending.
        let fresh = server.create_order(5).await;
        let steps = server.get(&format!("/tasks/{fresh}/workflow_steps")).await;
        let notify = step(&steps.body, "notify")["step_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/tasks/{fresh}/workflow_steps/{notify}");
        let updated = server
            .call(Method::PUT, &path, Some(json!({"retry_limit": 7})), &[])
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(updated.body["retry_limit"], 7);
        // JSON Schema counts 6.0 as an integer, so the server does too.
        let updated = server
            .call(Method::PATCH, &path, Some(json!({"retry_limit": 6.0})), &[])
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(updated.body["retry_limit"], 6);
        for bad in [
            json!({"retry_limit": 0}),
            json!({"retry_limit": 1000}),
            json!({"retry_limit": 2.5}),
            json!({"retry_limit": -1}),
            json!({"retry_limit": "x"}),
            json!({}),
        ] {
            let reply = server
                .call(Method::PATCH, &path, Some(bad.clone()), &[])
                .await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        let cancelled = server.call(Method::DELETE, &path, None, &[]).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        assert_eq!(cancelled.body["state"], "cancelled");
        let reply = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let id: tasker_domain::TaskId = reply.body["task_id"].as_str().unwrap().parse().unwrap();
        server.drive(id).await;
        let steps = server.get(&format!("/tasks/{id}/workflow_steps")).await;
        let broken_id = step(&steps.body, "broken")["step_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let retried = server
            .post(
                &format!("/tasks/{id}/workflow_steps/{broken_id}/retry"),
                json!({}),
            )
            .await;
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
        // The coordinator is running: the step may already be claimed again, so its state is
        // checked in the history below.
        assert_eq!(retried.body["step_id"].as_str(), Some(broken_id.as_str()));
        assert_eq!(
            server.drive(id).await.state,
            TaskState::Error,
            "the handler still fails"
        );
        let history = server.get(&format!("/tasks/{id}/transitions")).await;
        let transitions = history.body["transitions"].as_array().unwrap();
        let failures = transitions
            .iter()
            .filter(|t| t["step_name"] == "broken" && t["to_state"] == "error")
            .count();
        assert_eq!(
            failures, 2,
            "one failure before the step's retry, one after"
        );
        assert!(transitions.iter().any(|t| t["step_name"] == "broken"
            && t["from_state"] == "error"
            && t["to_state"] == "pending"
            && t["metadata"]["reason"] == "retry_requested"));
        assert!(
            transitions.iter().any(|t| t["step_id"].is_null()
                && t["from_state"] == "error"
                && t["to_state"] == "pending"),
            "the task was reopened"
        );
    })
    .await;
}
