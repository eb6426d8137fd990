//! Post 05: the monitored checkout completes, and business metrics come from events alone.

use expect_test::expect;
use serde_json::json;
use tasker_blog_examples::money::Cents;
use tasker_blog_examples::post_05_production_observability::BusinessMetricsSubscriber;
use tasker_domain::{StepState, TaskState};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

const RUN: &str = "blog_examples/monitored_checkout";

#[tokio::test]
async fn a_monitored_checkout_completes_and_its_events_become_business_metrics() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let mut metrics = BusinessMetricsSubscriber::new(&h.engine);
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.count(StepState::Complete), 5);
        assert_eq!(run.results("validate_cart")["cart_total"], json!(129.97));
        assert_eq!(run.results("create_order")["order_value"], json!(129.97));
        assert_eq!(
            run.results("send_confirmation")["sent_to"],
            "shopper@example.com"
        );
        let context = &run.task.context;
        assert_eq!(
            context["business_context"],
            json!({"domain": "ecommerce", "impact_level": "standard", "sla_tier": "standard"})
        );
        assert_eq!(context["monitoring_target"], "checkout_workflow");
        assert!(
            context["correlation_id"]
                .as_str()
                .unwrap()
                .starts_with("checkout_")
        );

        let observed = metrics.catch_up().await.clone();
        assert_eq!(observed.checkout_conversions_total, 1);
        assert_eq!(observed.checkout_failures_total, 0);
        assert_eq!(observed.revenue_processed, Cents(12997));
        assert_eq!(observed.step_execution_duration_seconds.len(), 5);
        assert!(observed.step_failures_total.is_empty());
        expect![[r#"
            task.initialize_requested
            task.start_requested
            step.execution_requested validate_cart#1
            step.before_handle validate_cart#1
            step.completed validate_cart#1
            step.execution_requested process_payment#1
            step.before_handle process_payment#1
            step.completed process_payment#1
            step.execution_requested update_inventory#1
            step.before_handle update_inventory#1
            step.completed update_inventory#1
            step.execution_requested create_order#1
            step.before_handle create_order#1
            step.completed create_order#1
            step.execution_requested send_confirmation#1
            step.before_handle send_confirmation#1
            step.completed send_confirmation#1
            task.completed
        "#]]
        .assert_eq(&(metrics.event_log().join("\n") + "\n"));
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_add_up_across_checkouts_and_ignore_other_workflows() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let mut metrics = BusinessMetricsSubscriber::new(&h.engine);
        let premium = h
            .run(edited(RUN, |c| {
                c["customer_tier"] = json!("premium");
                c["cart_items"] = json!([{"sku": "PRO-SUITE", "price": 199.99, "quantity": 1}]);
                c["correlation_id"] = json!("checkout-given");
            }))
            .await;
        assert_eq!(premium.task.state, TaskState::Complete);
        assert_eq!(
            premium.task.context["business_context"]["sla_tier"],
            "premium"
        );
        assert_eq!(premium.task.context["correlation_id"], "checkout-given");
        let standard = h.run(sample_request(RUN)).await;
        assert_eq!(standard.task.state, TaskState::Complete);
        let empty = h.run(edited(RUN, |c| c["cart_items"] = json!([]))).await;
        assert_eq!(empty.task.state, TaskState::Error);
        assert_eq!(empty.error_code("validate_cart"), "EMPTY_CART");
        assert_eq!(
            empty.step("validate_cart").last_error.as_ref().unwrap()["message"],
            "Cart is empty"
        );
        // Another post's workflow on the same engine is not a checkout.
        let other = h.run(sample_request("payments/process_refund")).await;
        assert_eq!(other.task.state, TaskState::Complete);

        let observed = metrics.catch_up().await;
        assert_eq!(observed.checkout_conversions_total, 2);
        assert_eq!(observed.checkout_failures_total, 1);
        assert_eq!(observed.revenue_processed, Cents(19999 + 12997));
        assert_eq!(observed.step_execution_duration_seconds.len(), 10);
        assert_eq!(observed.step_failures_total.get("validate_cart"), Some(&1));
        assert_eq!(observed.step_retries_total.len(), 0);
        h.engine.shutdown().await;
    })
    .await;
}
