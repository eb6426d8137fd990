//! Post 02: the analytics pipeline completes, and a failing branch stops only its dependants
//! while the independent extracts and transforms finish.

use serde_json::json;
use tasker_domain::{StepState, TaskState};
use tasker_engine::tasker_events::Interest;
use tasker_persistence::testing::on_each_database;

use crate::support::*;

const RUN: &str = "blog_examples/customer_analytics";

#[tokio::test]
async fn the_nightly_pipeline_completes_with_one_call_per_step() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let mut pipeline = h
            .engine
            .events()
            .stream(vec![Interest::pattern("data_pipeline.*")], 64);
        let run = h.run(sample_request(RUN)).await;
        // The template's custom events, published by the handlers under their declared names.
        let mut published: Vec<String> = pipeline.drain().iter().map(|e| e.summary()).collect();
        published.sort();
        assert_eq!(
            published,
            [
                "data_pipeline.extraction_completed extract_orders",
                "data_pipeline.extraction_completed extract_products",
                "data_pipeline.extraction_completed extract_users",
                "data_pipeline.extraction_started extract_orders",
                "data_pipeline.extraction_started extract_products",
                "data_pipeline.extraction_started extract_users",
                "data_pipeline.milestone_reached generate_insights",
            ]
        );
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!((run.steps.len(), run.count(StepState::Complete)), (8, 8));
        assert!(run.steps.iter().all(|s| s.attempts == 1));
        let warehouse = &h.services.post_02.warehouse;
        let calls = |methods: &[&str]| -> usize {
            methods.iter().map(|m| warehouse.call_count(m)).sum()
        };
        assert_eq!(
            calls(&["extract_orders", "extract_users", "extract_products"]),
            3
        );
        assert_eq!(
            calls(&["transform_customer_metrics", "transform_product_metrics"]),
            2
        );
        assert_eq!(warehouse.call_count("generate_insights"), 1);
        let dashboard = &h.services.post_02.dashboard;
        assert_eq!(dashboard.call_count("update_dashboard"), 1);
        assert_eq!(dashboard.call_count("send_notifications"), 1);
        assert_eq!(
            dashboard.last_call("send_notifications").unwrap().arguments["channels"],
            json!(["#data-team", "#analytics"])
        );
        assert_eq!(
            run.results("extract_orders")["orders_data"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
        assert_eq!(
            run.results("generate_insights")["insights"],
            json!({"top_customer": "Dan Brown", "top_product": "Pro Suite", "total_revenue_cents": 40988})
        );
        assert_eq!(
            run.results("send_notifications")["notifications_sent"]["notifications_sent"],
            2
        );
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_warehouse_timeout_once_is_retried() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let warehouse = &h.services.post_02.warehouse;
        warehouse.fail_times("extract_orders", 1, "Database connection timeout");
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.step("extract_orders").attempts, 2);
        assert_eq!(warehouse.call_count("extract_orders"), 2);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_extract_does_not_stop_the_independent_extracts() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let warehouse = &h.services.post_02.warehouse;
        let unknown = h
            .services
            .configure_failures(&[("data_warehouse", "extract_orders"), ("nowhere", "x")]);
        assert_eq!(unknown, ["nowhere"]);
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(
            run.summary(),
            [
                ("extract_orders", StepState::Error, 3),
                ("extract_users", StepState::Complete, 1),
                ("extract_products", StepState::Complete, 1),
                ("transform_customer_metrics", StepState::Pending, 0),
                ("transform_product_metrics", StepState::Pending, 0),
                ("generate_insights", StepState::Pending, 0),
                ("update_dashboard", StepState::Pending, 0),
                ("send_notifications", StepState::Pending, 0),
            ]
        );
        let error = run.step("extract_orders").last_error.clone().unwrap();
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("Database connection timeout"),
            "{error}"
        );
        assert_eq!(warehouse.call_count("extract_orders"), 3);
        assert_eq!(warehouse.call_count("extract_users"), 1);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_transform_does_not_stop_the_other_transform() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        h.services.post_02.warehouse.fail_always(
            "transform_customer_metrics",
            "Out of memory during transformation",
        );
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.count(StepState::Complete), 4);
        assert_eq!(
            (
                run.step("transform_customer_metrics").state,
                run.step("transform_customer_metrics").attempts
            ),
            (StepState::Error, 2)
        );
        assert_eq!(
            run.step("transform_product_metrics").state,
            StepState::Complete
        );
        assert_eq!(run.step("generate_insights").state, StepState::Pending);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dashboard_and_notification_failures_leave_six_and_seven_steps_complete() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let dashboard = &h.services.post_02.dashboard;
        dashboard.fail_always("update_dashboard", "Dashboard API authentication failed");
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.count(StepState::Complete), 6);
        assert_eq!(
            (
                run.step("update_dashboard").state,
                run.step("update_dashboard").attempts
            ),
            (StepState::Error, 3)
        );
        assert_eq!(run.step("send_notifications").state, StepState::Pending);

        h.services.reset_all();
        h.services
            .configure_failures(&[("dashboard", "send_notifications")]);
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.count(StepState::Complete), 7);
        assert_eq!(
            (
                run.step("send_notifications").state,
                run.step("send_notifications").attempts
            ),
            (StepState::Error, 5)
        );
        assert_eq!(run.error_code("send_notifications"), "RATE_LIMITED");
        assert_eq!(dashboard.call_count("send_notifications"), 5);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_date_range_is_refused_and_a_bad_date_stops_the_extracts() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let errors = h
            .refused(edited(RUN, |c| {
                c.as_object_mut().unwrap().remove("date_range");
            }))
            .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].0, "",
            "a missing property is reported on its parent"
        );
        assert!(errors[0].1.contains("date_range"), "{errors:?}");
        let errors = h
            .refused(edited(RUN, |c| {
                c["date_range"].as_object_mut().unwrap().remove("end_date");
            }))
            .await;
        assert_eq!(errors[0].0, "/date_range");
        assert!(errors[0].1.contains("end_date"), "{errors:?}");

        let run = h
            .run(edited(RUN, |c| {
                c["date_range"]["start_date"] = json!("2024-02-01")
            }))
            .await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.error_code("extract_orders"), "INVALID_DATE_RANGE");
        assert_eq!(
            (
                run.step("extract_orders").attempts,
                run.step("extract_users").attempts
            ),
            (1, 1),
            "a permanent error is not retried"
        );
        assert_eq!(run.step("extract_products").state, StepState::Complete);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn high_memory_mode_and_strict_thresholds_are_accepted() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let run = h
            .run(edited(RUN, |c| {
                c["processing_mode"] = json!("high_memory");
                c["quality_thresholds"] =
                    json!({"min_customer_records": 1000, "max_null_percentage": 0.01});
            }))
            .await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(
            run.task.context["quality_thresholds"]["min_order_records"], 50,
            "schema defaults fill the rest"
        );
        h.engine.shutdown().await;
    })
    .await;
}
