//! Post 01: the checkout completes with the blog's arithmetic, retries flaky services, and stops
//! at once on a declined card or a bad request.

use serde_json::json;
use tasker_domain::{StepState, TaskState};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

const RUN: &str = "blog_examples/process_order";
const STEPS: [&str; 5] = [
    "validate_cart",
    "process_payment",
    "update_inventory",
    "create_order",
    "send_confirmation",
];

#[tokio::test]
async fn the_sample_checkout_completes_with_the_blog_arithmetic() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(
            run.summary(),
            STEPS.map(|s| (s, StepState::Complete, 1)).to_vec()
        );
        let cart = run.results("validate_cart");
        assert_eq!(
            [
                &cart["subtotal"],
                &cart["tax"],
                &cart["shipping"],
                &cart["total"]
            ],
            [&json!(109.97), &json!(8.8), &json!(5.99), &json!(124.76)]
        );
        assert_eq!(cart["validated_items"][0]["line_total"], json!(59.98));
        let payment = &h.services.post_01.payment;
        assert_eq!(payment.call_count("process_payment"), 1);
        let charge = payment.last_call("process_payment").unwrap();
        assert_eq!(
            (&charge.arguments["amount"], &charge.arguments["method"]),
            (&json!(124.76), &json!("credit_card"))
        );
        assert_eq!(charge.at, t0());
        assert_eq!(run.results("process_payment")["status"], "completed");
        assert_eq!(
            run.results("process_payment")["payment_id"],
            "pay_0000000000000001"
        );
        let inventory = &h.services.post_01.inventory;
        assert_eq!(
            (
                inventory.call_count("check_availability"),
                inventory.call_count("reserve_inventory")
            ),
            (2, 2)
        );
        assert_eq!(run.results("update_inventory")["total_items_reserved"], 3);
        let order = run.results("create_order");
        assert!(
            order["order_number"]
                .as_str()
                .unwrap()
                .starts_with("ORD-20260101-"),
            "{order}"
        );
        assert_eq!(order["total_amount"], json!(124.76));
        assert_eq!(order["estimated_delivery"], "January 8, 2026");
        let email = &h.services.post_01.email;
        assert_eq!(email.call_count("send_confirmation"), 1);
        assert_eq!(
            email.last_call("send_confirmation").unwrap().arguments["to"],
            "customer@example.com"
        );
        assert_eq!(
            run.results("send_confirmation")["recipient"],
            "customer@example.com"
        );
        // The context is stored as given, with the schema's default priority.
        let sample = sample_request(RUN).context;
        assert_eq!(run.task.context["customer_info"], sample["customer_info"]);
        assert_eq!(run.task.context["payment_info"]["amount"], json!(124.76));
        assert_eq!(run.task.context["priority"], "standard");
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn premium_and_express_checkouts_complete_with_their_extra_context() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let run = h
            .run(edited(RUN, |c| {
                c["customer_info"]["tier"] = json!("premium");
                c["priority"] = json!("express");
            }))
            .await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(
            run.task.context["premium_processing"],
            json!({"priority": "high", "faster_processing": true})
        );
        assert_eq!(
            run.task.context["express_processing"]["payment_timeout_ms"],
            15000
        );
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_payment_failing_once_is_retried_and_the_checkout_completes() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let payment = &h.services.post_01.payment;
        payment.fail_times("process_payment", 1, "Payment gateway timeout");
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        let step = run.step("process_payment");
        assert_eq!(
            (step.state, step.attempts, step.retry_limit),
            (StepState::Complete, 2, 3)
        );
        assert_eq!(payment.call_count("process_payment"), 2);
        // Both attempts carried the same idempotency key.
        let keys: Vec<_> = payment
            .calls_to("process_payment")
            .into_iter()
            .map(|c| c.arguments["idempotency_key"].clone())
            .collect();
        assert_eq!(keys[0], keys[1]);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_inventory_check_that_always_fails_ends_in_error_after_two_attempts() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let inventory = &h.services.post_01.inventory;
        inventory.fail_always("check_availability", "Inventory service unavailable");
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(
            run.summary(),
            [
                ("validate_cart", StepState::Complete, 1),
                ("process_payment", StepState::Complete, 1),
                ("update_inventory", StepState::Error, 2),
                ("create_order", StepState::Pending, 0),
                ("send_confirmation", StepState::Pending, 0),
            ]
        );
        // Each attempt stops at the first item.
        assert_eq!(inventory.call_count("check_availability"), 2);
        assert_eq!(inventory.call_count("reserve_inventory"), 0);
        assert_eq!(h.services.post_01.email.calls(), []);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_confirmation_email_gets_five_attempts() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let email = &h.services.post_01.email;
        email.fail_times("send_confirmation", 4, "SMTP connection reset");
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        let step = run.step("send_confirmation");
        assert_eq!((step.attempts, step.retry_limit), (5, 5));
        assert_eq!(email.call_count("send_confirmation"), 5);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_declined_card_or_a_wrong_amount_stops_the_checkout_at_once() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        h.services
            .post_01
            .payment
            .stub_response("process_payment", json!({"status": "card_declined"}));
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.step("process_payment").attempts, 1);
        assert_eq!(run.error_code("process_payment"), "PAYMENT_DECLINED");
        assert_eq!(run.count(StepState::Complete), 1);

        let run = h
            .run(edited(RUN, |c| c["payment_info"]["amount"] = json!(100.0)))
            .await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.error_code("process_payment"), "PAYMENT_AMOUNT_MISMATCH");
        assert_eq!(
            h.services.post_01.payment.call_count("process_payment"),
            1,
            "a mismatch never reaches the processor"
        );
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_bad_email_or_an_empty_cart_is_refused_at_creation_by_path() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let errors = h
            .refused(edited(RUN, |c| {
                c["customer_info"]["email"] = json!("not-an-email")
            }))
            .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "/customer_info/email");
        let errors = h
            .refused(edited(RUN, |c| c["cart_items"] = json!([])))
            .await;
        assert_eq!(errors[0].0, "/cart_items");
        let health = db.store.health_counts(t0()).await.unwrap();
        assert!(health.tasks_by_state.is_empty(), "nothing was stored");
        h.engine.shutdown().await;
    })
    .await;
}
