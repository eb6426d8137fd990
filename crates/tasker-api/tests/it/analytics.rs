//! `/analytics/performance` and `/analytics/bottlenecks` over real HTTP: reports of tasks the
//! engine ran on its manual clock, strict parameters, and the `tasker.analytics:index` grant.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasker_persistence::testing::{TestDatabase, on_each_database};

use crate::support::{Server, header_access, open_access, serve};

fn millis_between(task: &Value) -> f64 {
    let at = |key: &str| {
        task[key]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    (at("completed_at") - at("created_at"))
        .num_microseconds()
        .unwrap() as f64
        / 1000.0
}

async fn run_tasks(server: &Server) -> Vec<f64> {
    let mut order_durations = Vec::new();
    for order_id in [1, 2] {
        let task = server.create_order(order_id).await;
        server.drive(task).await;
        let shown = server.get(&format!("/tasks/{task}")).await;
        assert_eq!(shown.body["state"], "complete", "{}", shown.body);
        order_durations.push(millis_between(&shown.body));
    }
    let reply = server
        .post("/tasks", json!({"namespace": "shop", "name": "doomed"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let doomed = reply.body["task_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        server.drive(doomed).await.state,
        tasker_domain::TaskState::Error
    );
    order_durations.sort_by(f64::total_cmp);
    order_durations
}

#[tokio::test]
async fn reports_cover_the_tasks_the_engine_ran() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, open_access()).await;
        let durations = run_tasks(&server).await;
        // The window ends now, excluded: move past the instant the tasks finished at.
        server.clock.advance(std::time::Duration::from_secs(1));

        let reply = server.get("/analytics/performance").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let body = reply.body;
        assert_eq!(body["scope"]["window_seconds"], 3600.0);
        let names: Vec<&str> = body["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["doomed", "order"]);
        let totals = &body["totals"];
        assert_eq!(
            (
                &totals["created"],
                &totals["completed"],
                &totals["failed"],
                &totals["finished"]
            ),
            (&json!(3), &json!(2), &json!(1), &json!(3))
        );
        assert_eq!(totals["completion_rate"], json!(2.0 / 3.0));
        assert_eq!(totals["error_rate"], json!(1.0 / 3.0));
        assert_eq!(totals["throughput_per_minute"], json!(2.0 / 60.0));
        let order = &body["templates"][1];
        assert_eq!(
            (&order["namespace"], &order["version"]),
            (&json!("shop"), &json!("1.0.0"))
        );
        assert_eq!(order["completion_rate"], 1.0);
        // Nearest rank over two durations: the median is the shorter, the 99th the longer.
        assert_eq!(order["duration_p50_ms"], json!(durations[0]));
        assert_eq!(order["duration_p99_ms"], json!(durations[1]));
        let doomed = &body["templates"][0];
        assert_eq!(
            (&doomed["failed"], &doomed["error_rate"]),
            (&json!(1), &json!(1.0))
        );

        let reply = server.get("/analytics/bottlenecks?limit=5").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let body = reply.body;
        assert_eq!(body["limit"], 5);
        let hot = &body["error_hot_spots"][0];
        assert_eq!(
            (&hot["name"], &hot["step"]),
            (&json!("doomed"), &json!("broken"))
        );
        assert_eq!(hot["failed_attempts"], hot["attempts"], "{hot}");
        assert_eq!(hot["top_error_count"], hot["failed_attempts"]);
        assert_eq!(hot["error_rate"], 1.0);
        let slow: Vec<String> = body["slowest_steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["name"].as_str().unwrap(),
                    s["step"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(slow.len(), 5, "{slow:?}");
        assert!(body["most_retried_steps"].as_array().unwrap().is_empty());

        // Filters and a window before anything ran give empty reports, not errors.
        let reply = server.get("/analytics/performance?namespace=nope").await;
        assert_eq!(reply.body["templates"], json!([]), "{}", reply.body);
        assert_eq!(reply.body["totals"]["completion_rate"], Value::Null);
        let reply = server
            .get("/analytics/bottlenecks?name=order&until=2020-01-01T00:00:00Z&window=7d")
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["slowest_steps"], json!([]));
        assert_eq!(reply.body["scope"]["since"], "2019-12-25T00:00:00Z");
        let reply = server
            .get("/analytics/performance?namespace=shop&name=order&version=1.0.0")
            .await;
        assert_eq!(reply.body["templates"].as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn bad_parameters_are_400s_naming_the_parameter() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, open_access()).await;
        let cases = [
            ("/analytics/performance?window=soon", "window"),
            ("/analytics/performance?window=31d", "window"),
            ("/analytics/performance?window=0s", "window"),
            ("/analytics/performance?since=yesterday", "since"),
            ("/analytics/performance?until=2026-13-01T00:00:00Z", "until"),
            (
                "/analytics/performance?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
                "since",
            ),
            (
                "/analytics/performance?since=2025-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
                "30 days",
            ),
            (
                "/analytics/bottlenecks?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&window=1h",
                "window",
            ),
            ("/analytics/performance?version=1.x", "version"),
            ("/analytics/bottlenecks?limit=0", "limit"),
            ("/analytics/bottlenecks?limit=101", "limit"),
            ("/analytics/bottlenecks?limit=ten", "limit"),
            ("/analytics/performance?limit=10", "limit"),
            ("/analytics/performance?period=24", "period"),
        ];
        for (path, parameter) in cases {
            let reply = server.get(path).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.body);
            assert_eq!(reply.code(), "bad_request");
            let message = reply.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(parameter), "{path}: `{message}` should name `{parameter}`");
        }
    })
    .await;
}

#[tokio::test]
async fn analytics_need_their_own_permission() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, header_access()).await;
        for path in ["/analytics/performance", "/analytics/bottlenecks"] {
            let reply = server.get(path).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
            let reply = server
                .call(
                    Method::GET,
                    path,
                    None,
                    &[(
                        "x-test-grants",
                        "tasker.task:index,tasker.health_status:index",
                    )],
                )
                .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
            assert!(
                reply.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("tasker.analytics:index"),
                "{}",
                reply.body
            );
            let reply = server
                .call(
                    Method::GET,
                    path,
                    None,
                    &[("x-test-grants", "tasker.analytics:index")],
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        }
    })
    .await;
}

#[tokio::test]
async fn reports_are_reused_for_the_cache_ttl_then_computed_again() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, open_access()).await;
        let created = |body: &Value| -> u64 {
            body["totals"]["created"]
                .as_u64()
                .unwrap_or_else(|| panic!("no totals in {body}"))
        };
        let task = server.create_order(1).await;
        server.drive(task).await;
        server.clock.advance(std::time::Duration::from_secs(1));
        let first = server.get("/analytics/performance").await;
        assert_eq!(created(&first.body), 1, "{}", first.body);
        let slow_first = server.get("/analytics/bottlenecks?limit=5").await;

        let task = server.create_order(2).await;
        server.drive(task).await;
        server.clock.advance(std::time::Duration::from_secs(1));
        let again = server.get("/analytics/performance").await;
        assert_eq!(again.body, first.body, "the cached report, within the TTL");
        let slow_again = server.get("/analytics/bottlenecks?limit=5").await;
        assert_eq!(slow_again.body, slow_first.body);
        // Other parameters are another report.
        let other = server.get("/analytics/performance?window=2h").await;
        assert_eq!(created(&other.body), 2, "{}", other.body);

        server.clock.advance(std::time::Duration::from_secs(15));
        let later = server.get("/analytics/performance").await;
        assert_eq!(created(&later.body), 2, "computed again after the TTL");
    })
    .await;
}
