//! Post 04: `process_refund` in two namespaces at two versions, each resolved and run, and the
//! customer success workflow delegating to the payments one.

use std::sync::Arc;

use mockall::predicate::eq;
use serde_json::{Value, json};
use tasker_blog_examples::mock::ServiceFailure;
use tasker_blog_examples::post_04_team_scaling::{PaymentGateway, ValidatePaymentEligibility};
use tasker_domain::{StepState, TaskRequest, TaskState};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

const PAYMENTS: &str = "payments/process_refund";
const CUSTOMER_SUCCESS: &str = "customer_success/process_refund";

mockall::mock! {
    pub Gateway {}
    impl PaymentGateway for Gateway {
        fn validate_payment_eligibility<'a>(
            &self,
            payment_id: &'a str,
            refund_amount: i64,
            refund_reason: &'a str,
            partial_refund: bool,
        ) -> Result<Value, ServiceFailure>;
        fn process_refund<'a>(&self, payment_id: &'a str, refund_amount: i64, idempotency_key: &'a str) -> Result<Value, ServiceFailure>;
        fn update_payment_record<'a>(&self, payment_id: &'a str, refund_id: &'a str) -> Result<Value, ServiceFailure>;
        fn send_refund_notice<'a>(&self, payment_id: &'a str, refund_id: &'a str) -> Result<Value, ServiceFailure>;
    }
}

#[tokio::test]
async fn the_same_name_resolves_per_namespace_and_version() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let registry = h.engine.registry();
        let payments = registry.resolve("payments", "process_refund", None).unwrap();
        let cs = registry
            .resolve("customer_success", "process_refund", None)
            .unwrap();
        let shape = |t: &tasker_template::TaskTemplate| -> Vec<(String, Vec<String>, String)> {
            t.step_templates
                .iter()
                .map(|s| (s.name.clone(), s.depends_on_steps.clone(), s.handler_class.clone()))
                .collect()
        };
        assert_eq!(payments.template.version.to_string(), "2.1.0");
        assert_eq!(cs.template.version.to_string(), "1.3.0");
        let chain = |t: &tasker_template::TaskTemplate| {
            shape(t)
                .into_iter()
                .map(|(name, deps, class)| format!("{name}<-{}:{class}", deps.join("+")))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            chain(&payments.template),
            [
                "validate_payment_eligibility<-:payments::validate_payment_eligibility",
                "process_gateway_refund<-validate_payment_eligibility:payments::process_gateway_refund",
                "update_payment_records<-process_gateway_refund:payments::update_payment_records",
                "notify_customer<-update_payment_records:payments::notify_customer",
            ]
        );
        assert_eq!(chain(&cs.template).len(), 5);
        assert_eq!(
            chain(&cs.template)[3],
            "execute_refund_workflow<-get_manager_approval:customer_success::execute_refund_workflow"
        );
        // Asking for the other team's version in a namespace finds nothing.
        let wrong = TaskRequest::new("process_refund")
            .namespace("payments")
            .version("1.3.0".parse().unwrap());
        assert_eq!(
            h.engine.create_task(wrong).await.unwrap_err().to_string(),
            "no task template payments/process_refund@1.3.0"
        );
        // Both create pending tasks in their own namespace.
        for run_name in [PAYMENTS, CUSTOMER_SUCCESS] {
            let request = sample_request(run_name);
            let created = h.engine.create_task(request.clone()).await.unwrap();
            let task = h.engine.store().task(created.task_id).await.unwrap();
            assert_eq!(
                (task.state, task.namespace.as_str(), task.name.as_str(), task.version.as_str()),
                (TaskState::Pending, request.namespace.as_str(), "process_refund", request.version.unwrap().to_string().as_str())
            );
            assert_eq!(task.context["refund_amount"], request.context["refund_amount"]);
        }
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_payments_refund_completes_through_the_gateway() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let run = h.run(sample_request(PAYMENTS)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.count(StepState::Complete), 4);
        let gateway = &h.services.post_04.gateway;
        assert_eq!(
            gateway.last_call("validate_payment_eligibility").unwrap().arguments,
            json!({"payment_id": "pay_123456789", "refund_amount": 7500, "refund_reason": "customer_request", "partial_refund": false})
        );
        for method in ["validate_payment_eligibility", "process_refund", "update_payment_record", "send_refund_notice"] {
            assert_eq!(gateway.call_count(method), 1, "{method}");
        }
        assert_eq!(run.results("notify_customer")["refund_id"], "rfnd_0000000000000001");
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn customer_success_approves_then_delegates_to_payments() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let run = h.run(sample_request(CUSTOMER_SUCCESS)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.count(StepState::Complete), 5);
        let cs = &h.services.post_04.customer_service;
        assert_eq!(cs.call_count("request_manager_approval"), 1, "12000 cents needs approval");
        assert_eq!(run.results("get_manager_approval")["approval_id"], "APPR-00000001");
        let delegated = run.results("execute_refund_workflow");
        assert_eq!(delegated["delegated_task_id"], "task_0000000000000001");
        assert_eq!(delegated["correlation_id"], "cs_workflow_456");
        assert_eq!(
            cs.last_call("update_ticket").unwrap().arguments["status"],
            "resolved"
        );
        // The request the API received is a valid payments task: run it on the same engine.
        let api = &h.services.post_04.tasker_api;
        assert_eq!(api.call_count("create_task"), 1);
        let payload = api.last_call("create_task").unwrap().arguments;
        assert_eq!(
            payload["context"],
            json!({"payment_id": "pay_987654321", "refund_amount": 12000, "refund_reason": "customer_request",
                   "partial_refund": false, "correlation_id": "cs_workflow_456"})
        );
        let request = TaskRequest::new(payload["workflow_name"].as_str().unwrap())
            .namespace(payload["namespace"].as_str().unwrap())
            .version(payload["workflow_version"].as_str().unwrap().parse().unwrap())
            .context(payload["context"].clone());
        let payments = h.run(request).await;
        assert_eq!(payments.task.state, TaskState::Complete);
        assert_eq!(
            h.services.post_04.gateway.last_call("process_refund").unwrap().arguments["refund_amount"],
            12000
        );
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn small_refunds_skip_approval_and_api_answers_are_classified() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let small = |c: &mut Value| c["refund_amount"] = json!(5000);
        let run = h.run(edited(CUSTOMER_SUCCESS, small)).await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.results("get_manager_approval")["auto_approved"], true);
        let cs = &h.services.post_04.customer_service;
        assert_eq!(cs.call_count("request_manager_approval"), 0);

        let api = &h.services.post_04.tasker_api;
        let cases = [
            (
                json!({"status": 403, "body": {"error": "forbidden"}}),
                StepState::Error,
                1,
                "HTTP_403",
            ),
            (
                json!({"status": 201, "body": {"status": "rejected"}}),
                StepState::Error,
                1,
                "DELEGATION_REJECTED",
            ),
            (
                json!({"status": 503, "body": {}}),
                StepState::Error,
                3,
                "HTTP_503",
            ),
        ];
        for (stub, state, attempts, code) in cases {
            api.stub_response("create_task", stub.clone());
            let run = h.run(edited(CUSTOMER_SUCCESS, small)).await;
            assert_eq!(run.task.state, TaskState::Error, "{stub}");
            let step = run.step("execute_refund_workflow");
            assert_eq!((step.state, step.attempts), (state, attempts), "{stub}");
            assert_eq!(run.error_code("execute_refund_workflow"), code);
            assert_eq!(run.step("update_ticket_status").state, StepState::Pending);
        }

        cs.stub_response("get_ticket", json!({"status": "closed"}));
        let run = h.run(sample_request(CUSTOMER_SUCCESS)).await;
        assert_eq!(
            run.error_code("validate_refund_request"),
            "TICKET_NOT_REFUNDABLE"
        );
        assert_eq!(run.step("validate_refund_request").attempts, 1);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn eligibility_calls_the_gateway_once_and_maps_its_failures() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let mut gateway = MockGateway::new();
        gateway
            .expect_validate_payment_eligibility()
            .with(eq("pay_1"), eq(5000), eq("customer_request"), eq(false))
            .times(1)
            .returning(|_, _, _, _| Ok(json!({"status": "eligible", "original_amount": 9900})));
        gateway
            .expect_validate_payment_eligibility()
            .with(eq("pay_down"), eq(5000), eq("customer_request"), eq(false))
            .times(3)
            .returning(|_, _, _, _| {
                Err(ServiceFailure {
                    service: "payment_gateway",
                    method: "validate".into(),
                    message: "Gateway timeout".into(),
                })
            });
        gateway
            .expect_validate_payment_eligibility()
            .with(
                eq("pay_refused"),
                eq(5000),
                eq("customer_request"),
                eq(false),
            )
            .times(1)
            .returning(|_, _, _, _| {
                Err(ServiceFailure {
                    service: "payment_gateway",
                    method: "validate".into(),
                    message: "Connection failed: TLS handshake".into(),
                })
            });
        h.engine.registry().replace_step_handler(
            "payments::validate_payment_eligibility",
            Arc::new(ValidatePaymentEligibility(
                Arc::new(gateway),
                Arc::new(h.clock.clone()),
            )),
        );
        let request = |payment_id: &str| {
            edited(PAYMENTS, |c| {
                c["payment_id"] = json!(payment_id);
                c["refund_amount"] = json!(5000);
            })
        };
        let run = h.run(request("pay_1")).await;
        assert_eq!(run.task.state, TaskState::Complete);
        let results = run.results("validate_payment_eligibility");
        assert_eq!(
            (
                &results["payment_validated"],
                &results["eligibility_status"],
                &results["original_amount"]
            ),
            (&json!(true), &json!("eligible"), &json!(9900))
        );
        assert_eq!(results["validation_timestamp"], json!(t0()));

        let run = h.run(request("pay_down")).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(
            run.step("validate_payment_eligibility").attempts,
            3,
            "a timeout is retried"
        );
        assert_eq!(
            run.error_code("validate_payment_eligibility"),
            "GATEWAY_UNAVAILABLE"
        );

        let run = h.run(request("pay_refused")).await;
        assert_eq!(
            run.step("validate_payment_eligibility").attempts,
            1,
            "a refused connection is not"
        );
        assert_eq!(
            run.error_code("validate_payment_eligibility"),
            "GATEWAY_ERROR"
        );
        h.engine.shutdown().await;
    })
    .await;
}
