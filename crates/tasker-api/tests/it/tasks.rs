//! Tasks: creation (validation, idempotency, correlation ids), listing with keyset pagination,
//! showing, updating, and the operator actions with their 409s and history.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasker_persistence::testing::on_each_database;

use crate::support::{open_access, serve};

#[tokio::test]
async fn a_task_is_created_run_and_shown_with_steps_analysis_and_graph() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let reply = server
            .call(
                Method::POST,
                "/tasks",
                Some(json!({"namespace": "shop", "name": "order", "context": {"order_id": 7}, "tags": ["vip"]})),
                &[("x-correlation-id", "order-7")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["state"], "pending");
        assert_eq!(reply.body["version"], "1.0.0");
        assert_eq!(reply.body["correlation_id"], "order-7");
        assert_eq!(reply.headers["x-correlation-id"], "order-7");
        assert_eq!(reply.body["initiator"], "anonymous");
        let id: tasker_domain::TaskId = reply.body["task_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(server.drive(id).await.state, tasker_domain::TaskState::Complete);

        let shown = server
            .get(&format!("/tasks/{id}?include=steps,analysis,graph"))
            .await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        assert_eq!(shown.body["state"], "complete");
        assert_eq!(shown.body["tags"], json!(["vip"]));
        let steps = shown.body["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["validate", "charge", "reserve", "notify"]);
        let id_of = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap()["step_id"].clone();
        let notify = steps.iter().find(|s| s["name"] == "notify").unwrap();
        assert_eq!(notify["parents"], json!([id_of("charge"), id_of("reserve")]));
        assert_eq!(steps[0]["children"], json!([id_of("charge"), id_of("reserve")]));
        assert_eq!(notify["results"]["context"]["order_id"], 7);
        assert!(shown.body["analysis"]["step_readiness"].is_array());
        assert_eq!(shown.body["graph"]["edges"].as_array().unwrap().len(), 4);
        assert!(shown.body["graph"]["mermaid"].as_str().unwrap().contains("validate"));

        // No extras unless asked for.
        let plain = server.get(&format!("/tasks/{id}")).await;
        assert!(plain.body.get("steps").is_none());
        let diagram = server.get(&format!("/tasks/{id}/diagram")).await;
        assert_eq!(diagram.body["nodes"].as_array().unwrap().len(), 4);
    })
    .await;
}

/// The task a creation answers with (built from what was written, not read back) is exactly
/// what showing it right after gives: with and without bypassed steps.
#[tokio::test]
async fn a_created_task_is_answered_as_showing_it_then_does() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let body = json!({
            "namespace": "shop",
            "name": "order",
            "version": "1.0.0",
            "context": {"order_id": 7, "z": {"y": [1, 2.5, "ü"], "x": null}, "a": 0.1},
            "tags": ["vip", "eu"],
            "initiator": "alice",
            "source_system": "shop-web",
            "reason": "checkout",
        });
        let mut bypassing = body.clone();
        bypassing["bypass_steps"] = json!(["notify"]);
        for body in [body, bypassing] {
            let created = server
                .call(
                    Method::POST,
                    "/tasks",
                    Some(body.clone()),
                    &[("x-correlation-id", "order-7")],
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
            let id = created.body["task_id"].as_str().unwrap();
            let shown = server.get(&format!("/tasks/{id}")).await;
            assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
            assert_eq!(created.body, shown.body, "for {body}");
            assert_eq!(created.body["state"], "pending");
            assert_eq!(created.body["correlation_id"], "order-7");
            let bypassed = body.get("bypass_steps").cloned().unwrap_or(json!([]));
            assert_eq!(created.body["bypass_steps"], bypassed);
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_requests_get_the_envelope_and_store_nothing() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let cases = [
            (json!({"namespace": "shop", "name": "order", "context": {"order_id": "seven"}}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_context"),
            (json!({"namespace": "shop", "name": "nope"}), StatusCode::NOT_FOUND, "template_not_found"),
            (json!({"namespace": "shop", "name": "order", "version": "x.y"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (json!({"namespace": "shop", "name": "order", "context": {"order_id": 1}, "bypass_steps": ["charge"]}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_bypass"),
            (json!({"name": "order", "surprise": 1}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (json!([1, 2]), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ];
        for (body, status, code) in cases {
            let reply = server.post("/tasks", body.clone()).await;
            assert_eq!((reply.status, reply.code()), (status, code), "{body}: {}", reply.body);
            assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
            assert_eq!(
                reply.body["error"]["correlation_id"],
                reply.headers["x-correlation-id"].to_str().unwrap()
            );
        }
        // The context error names the JSON path.
        let reply = server
            .post("/tasks", json!({"namespace": "shop", "name": "order", "context": {"order_id": "seven"}}))
            .await;
        assert_eq!(reply.body["error"]["details"][0]["path"], "/order_id");

        // Malformed JSON, the wrong content type and an oversized correlation id.
        let raw = server
            .client
            .post(format!("{}/tasks", server.base))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
        let raw = server
            .client
            .post(format!("{}/tasks", server.base))
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // serde would read a struct from an array of its fields; the API wants an object.
        let reply = server
            .post("/tasks", json!(["shop", "order"]))
            .await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
        assert!(reply.body["error"]["message"].as_str().unwrap().contains("an array"));
        let long = "a".repeat(101);
        let reply = server
            .call(Method::GET, "/tasks", None, &[("x-correlation-id", &long)])
            .await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "bad_request"));

        let listed = server.get("/tasks").await;
        assert_eq!(listed.body["total"], 0, "nothing was stored");
        let missing = server.get(&format!("/tasks/{}", uuid::Uuid::now_v7())).await;
        assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));
        let malformed = server.get("/tasks/not-a-uuid").await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        let nowhere = server.get("/nowhere").await;
        assert_eq!((nowhere.status, nowhere.code()), (StatusCode::NOT_FOUND, "not_found"));
        let wrong_method = server.call(Method::PATCH, "/tasks", None, &[]).await;
        assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong_method.code(), "method_not_allowed");
    })
    .await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_task() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let body = json!({"namespace": "shop", "name": "order", "context": {"order_id": 1}});
        let first = server
            .call(
                Method::POST,
                "/tasks",
                Some(body.clone()),
                &[("idempotency-key", "k-1")],
            )
            .await;
        assert_eq!(first.status, StatusCode::CREATED);
        let other_context =
            json!({"namespace": "shop", "name": "order", "context": {"order_id": 2}});
        let again = server
            .call(
                Method::POST,
                "/tasks",
                Some(other_context),
                &[("idempotency-key", "k-1")],
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.body["task_id"], first.body["task_id"]);
        assert_eq!(again.body["context"]["order_id"], 1);
        let different = server
            .call(
                Method::POST,
                "/tasks",
                Some(body),
                &[("idempotency-key", "k-2")],
            )
            .await;
        assert_eq!(different.status, StatusCode::CREATED);
        assert_ne!(different.body["task_id"], first.body["task_id"]);
        assert_eq!(server.get("/tasks").await.body["total"], 2);
    })
    .await;
}

#[tokio::test]
async fn pages_never_repeat_or_skip_a_task_while_tasks_are_created() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let mut expected = Vec::new();
        for i in 0..7 {
            expected.push(server.create_order(i).await);
        }
        let mut seen: Vec<tasker_domain::TaskId> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/tasks?limit=3&namespace=shop&cursor={c}"),
                None => "/tasks?limit=3&namespace=shop".to_owned(),
            };
            let page = server.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            for item in page.body["items"].as_array().unwrap() {
                seen.push(item["task_id"].as_str().unwrap().parse().unwrap());
            }
            pages += 1;
            // New tasks arrive while the client pages: they are newer than the cursor.
            server.create_order(100 + pages).await;
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        expected.reverse();
        assert_eq!(seen, expected, "newest first, each once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());

        // Oldest first, the same way.
        let page = server.get("/tasks?sort=created_at&limit=2").await;
        let first: tasker_domain::TaskId = page.body["items"][0]["task_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(first, *expected.last().unwrap());
        for bad in [
            "sort=name",
            "state=nope",
            "cursor=zzz",
            "annotation=x",
            "limit=abc",
            "surprise=1",
        ] {
            let reply = server.get(&format!("/tasks?{bad}")).await;
            assert_eq!(
                (reply.status, reply.code()),
                (StatusCode::BAD_REQUEST, "bad_request"),
                "{bad}"
            );
        }
        // The limit is capped, not refused.
        let capped = server.get("/tasks?limit=100000").await;
        assert_eq!(capped.body["limit"], 200);
    })
    .await;
}

#[tokio::test]
async fn filters_select_by_template_state_and_time() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let done = server.create_order(1).await;
        server.drive(done).await;
        let doomed = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let doomed_id: tasker_domain::TaskId =
            doomed.body["task_id"].as_str().unwrap().parse().unwrap();
        server.drive(doomed_id).await;
        // A task that stays unfinished while the (now running) coordinator works: its one
        // step sleeps for an hour.
        let slow = "name: slow\nnamespace_name: lab\nstep_templates:\n  - name: nap\n    handler_class: tasker::sleep\n    handler_config: { millis: 3600000 }\n";
        server
            .engine
            .register_template(tasker_template::TaskTemplate::from_yaml_str(slow, None).unwrap(), false)
            .await
            .unwrap();
        let reply = server.post("/tasks", json!({"namespace": "lab", "name": "slow"})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let pending = reply.body["task_id"].as_str().unwrap().to_owned();

        let ids = |reply: &crate::support::Reply| -> Vec<String> {
            reply.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["task_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            ids(&server.get("/tasks?state=complete").await),
            [done.to_string()]
        );
        assert_eq!(
            ids(&server.get("/tasks?state=error").await),
            [doomed_id.to_string()]
        );
        assert_eq!(
            ids(&server.get("/tasks?name=doomed").await),
            [doomed_id.to_string()]
        );
        assert_eq!(
            ids(&server.get("/tasks?namespace=elsewhere").await),
            Vec::<String>::new()
        );
        let completed = server
            .get("/tasks?completed_after=2000-01-01T00:00:00Z")
            .await;
        assert_eq!(
            completed.body["total"], 2,
            "the sleeping task has not completed"
        );
        let future = server
            .get("/tasks?created_after=2999-01-01T00:00:00Z")
            .await;
        assert_eq!(future.body["total"], 0);
        let all = server
            .get("/tasks?created_before=2999-01-01T00:00:00Z")
            .await;
        assert_eq!(all.body["total"], 3);
        assert!(ids(&all).contains(&pending));
    })
    .await;
}

#[tokio::test]
async fn the_correlation_id_filter_finds_a_task_by_its_id_and_refuses_a_bad_one() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let body = json!({"namespace": "shop", "name": "order", "context": {"order_id": 1}});
        let mut created = Vec::new();
        for id in ["order-1", "order-2"] {
            let reply = server
                .call(
                    Method::POST,
                    "/tasks",
                    Some(body.clone()),
                    &[("x-correlation-id", id)],
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            created.push(reply.body["task_id"].as_str().unwrap().to_owned());
        }
        let found = server.get("/tasks?correlation_id=order-2").await;
        assert_eq!(found.status, StatusCode::OK);
        assert_eq!(found.body["total"], 1);
        assert_eq!(found.body["items"][0]["task_id"], created[1].as_str());
        let none = server
            .get("/tasks?correlation_id=order-3&namespace=shop")
            .await;
        assert_eq!(none.body["total"], 0);
        let bad = server.get("/tasks?correlation_id=not%20valid").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.code(), "bad_request");
    })
    .await;
}

#[tokio::test]
async fn operator_actions_record_who_and_why_and_refused_transitions_are_409() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let reply = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let id: tasker_domain::TaskId = reply.body["task_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            server.drive(id).await.state,
            tasker_domain::TaskState::Error
        );

        // Retrying or resolving needs a task in error.
        let resolved = server
            .post(
                &format!("/tasks/{id}/resolve"),
                json!({"reason": "refunded by hand"}),
            )
            .await;
        assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
        assert_eq!(resolved.body["state"], "resolved_manually");
        for action in ["retry", "resolve"] {
            let again = server
                .post(&format!("/tasks/{id}/{action}"), json!({}))
                .await;
            assert_eq!(
                again.status,
                StatusCode::CONFLICT,
                "{action}: {}",
                again.body
            );
            assert_eq!(
                again.code(),
                "invalid_transition",
                "{action}: {}",
                again.body
            );
            assert!(
                again.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("is resolved_manually: only a task that is in error can be"),
                "{action}: {}",
                again.body
            );
        }
        let history = server.get(&format!("/tasks/{id}/transitions")).await;
        assert_eq!(history.status, StatusCode::OK);
        let transitions = history.body["transitions"].as_array().unwrap();
        let last = transitions
            .iter()
            .rev()
            .find(|t| t["step_id"].is_null())
            .unwrap();
        assert_eq!(last["to_state"], "resolved_manually");
        assert_eq!(last["actor"], "anonymous");
        assert_eq!(last["metadata"]["note"], "refunded by hand");
        assert!(
            transitions
                .iter()
                .any(|t| t["step_name"] == "broken" && t["to_state"] == "error")
        );

        // Cancel a pending task through DELETE, with no body at all; a body that is there
        // must be a JSON object (or null), and a refused one changes nothing. The coordinator
        // runs since the drive above, so the namespace is paused first: the task stays pending
        // however fast the engine would run it.
        let paused = server
            .post(
                "/runtime/switches/pause",
                json!({"namespace": "shop", "reason": "hold the next order"}),
            )
            .await;
        assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
        let pending = server.create_order(3).await;
        for (body, status) in [
            ("  \n", StatusCode::BAD_REQUEST),
            ("[\"why\"]", StatusCode::UNPROCESSABLE_ENTITY),
            ("\"why\"", StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            let raw = server
                .client
                .post(format!("{}/tasks/{pending}/cancel", server.base))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(raw.status(), status, "{body:?}");
        }
        assert_eq!(
            server.get(&format!("/tasks/{pending}")).await.body["state"],
            "pending"
        );
        let cancelled = server
            .call(Method::DELETE, &format!("/tasks/{pending}"), None, &[])
            .await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        assert_eq!(cancelled.body["state"], "cancelled");

        // Reason and tags change in any state.
        let updated = server
            .call(
                Method::PATCH,
                &format!("/tasks/{pending}"),
                Some(json!({"reason": "audit", "tags": ["a", "b"]})),
                &[],
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(
            (updated.body["reason"].clone(), updated.body["tags"].clone()),
            (json!("audit"), json!(["a", "b"]))
        );
    })
    .await;
}

#[tokio::test]
async fn retrying_a_task_in_error_runs_its_failed_step_again() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let reply = server
            .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
            .await;
        let id: tasker_domain::TaskId = reply.body["task_id"].as_str().unwrap().parse().unwrap();
        server.drive(id).await;
        let retried = server
            .post(
                &format!("/tasks/{id}/retry"),
                json!({"reason": "fixed upstream"}),
            )
            .await;
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
        let record = server.drive(id).await;
        assert_eq!(
            record.state,
            tasker_domain::TaskState::Error,
            "the handler still fails"
        );
        let history = server.get(&format!("/tasks/{id}/transitions")).await;
        let failures = history.body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["step_name"] == "broken" && t["to_state"] == "error")
            .count();
        assert_eq!(
            failures, 2,
            "one failed attempt before the retry, one after"
        );
        let retry = history.body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["step_id"].is_null() && t["metadata"]["reason"] == "retry_requested")
            .unwrap()
            .clone();
        assert_eq!(retry["metadata"]["note"], "fixed upstream");
    })
    .await;
}

/// A 409 for an action the task's or step's state refuses: `invalid_transition`, a message
/// naming it, its state and what the action needs, and nothing about another writer.
fn refused(reply: &crate::support::Reply, message: &str, state: &str, action: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::CONFLICT, "invalid_transition"),
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["message"], message, "{}", reply.body);
    assert_eq!(reply.body["error"]["details"]["state"], state);
    assert_eq!(reply.body["error"]["details"]["action"], action);
}

#[tokio::test]
async fn actions_a_state_refuses_say_which_state_and_what_the_action_needs() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let step_of = |steps: &Value, name: &str| {
            steps
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap()["step_id"]
                .as_str()
                .unwrap()
                .to_owned()
        };

        // Before anything runs (the coordinator starts with the first drive), steps stay
        // pending. A step that is not in error has no failure to retry.
        let fresh = server.create_order(3).await;
        let steps = server.get(&format!("/tasks/{fresh}/workflow_steps")).await;
        let validate = step_of(&steps.body, "validate");
        let retried = server
            .post(
                &format!("/tasks/{fresh}/workflow_steps/{validate}/retry"),
                json!({}),
            )
            .await;
        refused(
            &retried,
            &format!(
                "step {validate} (`validate`) is pending: only a step that is in error can be retried"
            ),
            "pending",
            "retry",
        );
        assert_eq!(retried.body["error"]["details"]["id"], validate.as_str());
        // Cancelling a cancelled task changes nothing.
        let gone = server.create_order(2).await;
        for _ in 0..2 {
            let cancelled = server.post(&format!("/tasks/{gone}/cancel"), json!({})).await;
            assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
            assert_eq!(cancelled.body["state"], "cancelled");
        }
        let history = server.get(&format!("/tasks/{gone}/transitions")).await;
        let cancellations = history.body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["step_id"].is_null() && t["to_state"] == "cancelled")
            .count();
        assert_eq!(cancellations, 1, "the second cancel wrote nothing");
        // A complete task: nothing to retry or resolve, and it stays complete.
        let done = server.create_order(1).await;
        assert_eq!(
            server.drive(done).await.state,
            tasker_domain::TaskState::Complete
        );
        let retried = server.post(&format!("/tasks/{done}/retry"), json!({})).await;
        refused(
            &retried,
            &format!("task {done} is complete: only a task that is in error can be retried"),
            "complete",
            "retry",
        );
        assert_eq!(retried.body["error"]["details"]["allowed_states"], json!(["error"]));
        let resolved = server.post(&format!("/tasks/{done}/resolve"), json!({})).await;
        refused(
            &resolved,
            &format!("task {done} is complete: only a task that is in error can be resolved"),
            "complete",
            "resolve",
        );
        for cancel in [
            server.post(&format!("/tasks/{done}/cancel"), json!({})).await,
            server
                .call(Method::DELETE, &format!("/tasks/{done}"), None, &[])
                .await,
        ] {
            refused(
                &cancel,
                &format!(
                    "task {done} is complete: only a task that is pending or in_progress can be cancelled"
                ),
                "complete",
                "cancel",
            );
        }
        let steps = server.get(&format!("/tasks/{done}/workflow_steps")).await;
        let charge = step_of(&steps.body, "charge");
        let cancel_step = server
            .post(
                &format!("/tasks/{done}/workflow_steps/{charge}/cancel"),
                json!({}),
            )
            .await;
        refused(
            &cancel_step,
            &format!("task {done} is complete: the steps of a finished task cannot be cancelled"),
            "complete",
            "cancel",
        );
        let task = server.get(&format!("/tasks/{done}")).await;
        assert_eq!(task.body["state"], "complete", "refused: nothing changed");
        let history = server.get(&format!("/tasks/{done}/transitions")).await;
        assert!(
            history.body["transitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["to_state"] != "cancelled"),
            "{}",
            history.body
        );

        // The cancelled task has nothing to retry.
        let retried = server.post(&format!("/tasks/{gone}/retry"), json!({})).await;
        refused(
            &retried,
            &format!("task {gone} is cancelled: only a task that is in error can be retried"),
            "cancelled",
            "retry",
        );

        let done_steps = server.get(&format!("/tasks/{done}/workflow_steps")).await;
        let retried = server
            .post(
                &format!(
                    "/tasks/{done}/workflow_steps/{}/retry",
                    step_of(&done_steps.body, "validate")
                ),
                json!({}),
            )
            .await;
        refused(
            &retried,
            &format!("task {done} is complete: the steps of a finished task cannot be retried"),
            "complete",
            "retry",
        );
    })
    .await;
}

#[tokio::test]
async fn text_holding_a_nul_is_refused_before_it_reaches_the_database() {
    // PostgreSQL cannot store U+0000 in text; found by the OpenAPI fuzzer as a 500.
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let task = server.create_order(1).await;
        let path = format!("/tasks/{task}");
        let reply = server
            .call(
                Method::PATCH,
                &path,
                Some(json!({"reason": "r", "tags": ["ok", "bad\u{0}tag"]})),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
        assert_eq!(reply.code(), "invalid_body");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`tags[1]`"), "{message}");
        let shown = server.get(&path).await;
        assert_eq!(shown.body["tags"], json!([]), "nothing was stored: {}", shown.body);
        let created = server
            .post(
                "/tasks",
                json!({"namespace": "shop", "name": "order", "context": {"order_id": 2, "note\u{0}": 1}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", created.body);
    })
    .await;
}
