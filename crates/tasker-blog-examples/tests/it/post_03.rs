//! Post 03: registration across four mock services; 409 is idempotent success, typed errors
//! decide what is retried.

use serde_json::json;
use tasker_domain::{StepState, TaskState};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

const RUN: &str = "blog_examples/user_registration";

#[tokio::test]
async fn the_sample_registration_completes_in_dependency_order() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let mut events = h.engine.subscribe();
        let run = h.run(sample_request(RUN)).await;
        // One orchestration pass in Rails left update_user_status failing (its own fresh mock
        // did not know user 1); here the steps share the user service and the task completes.
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.count(StepState::Complete), 5);
        assert!(run.steps.iter().all(|s| s.attempts == 1));
        for step in [
            "create_user_account",
            "setup_billing_profile",
            "initialize_preferences",
            "send_welcome_sequence",
        ] {
            assert_eq!(run.results(step)["user_id"], 1, "{step}");
        }
        let log = step_log(&drain(&mut events));
        let at = |entry: &str| log.iter().position(|e| e == entry).unwrap();
        assert!(at("completed:create_user_account#1") < at("started:setup_billing_profile#1"));
        assert!(at("completed:create_user_account#1") < at("started:initialize_preferences#1"));
        assert!(at("completed:setup_billing_profile#1") < at("started:send_welcome_sequence#1"));
        assert!(at("completed:initialize_preferences#1") < at("started:send_welcome_sequence#1"));
        assert!(at("completed:send_welcome_sequence#1") < at("started:update_user_status#1"));

        assert_eq!(run.results("create_user_account")["status"], "created");
        assert_eq!(
            run.results("create_user_account")["service_response_time"],
            "12ms"
        );
        let welcome = run.results("send_welcome_sequence");
        assert_eq!(
            welcome["plan_features"],
            json!(["analytics", "priority_support", "integrations"])
        );
        assert_eq!(welcome["messages_sent"], 1);
        let users = h.services.post_03.users.users();
        assert_eq!(users[0]["status"], "registration_complete");
        let context = &run.task.context;
        assert!(
            context["correlation_id"]
                .as_str()
                .unwrap()
                .starts_with("reg_1767268800_")
        );
        assert_eq!(
            (&context["plan_type"], &context["registration_source"]),
            (&json!("pro"), &json!("web"))
        );
        let annotations = db.store.annotations(run.task.task_id).await.unwrap();
        assert_eq!(
            annotations,
            [(
                "registration_outcome".to_owned(),
                json!({"state": "complete"})
            )]
        );
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn registering_the_same_user_twice_is_idempotent() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let first = h.run(sample_request(RUN)).await;
        let second = h.run(sample_request(RUN)).await;
        assert_eq!(
            (first.task.state, second.task.state),
            (TaskState::Complete, TaskState::Complete)
        );
        for step in [
            "create_user_account",
            "setup_billing_profile",
            "initialize_preferences",
        ] {
            assert_eq!(second.results(step)["status"], "already_exists", "{step}");
            assert_eq!(second.results(step)["user_id"], 1, "{step}");
        }
        assert_eq!(h.services.post_03.users.users().len(), 1);
        assert_eq!(h.services.post_03.users.call_count("create_user"), 2);

        // The same email with different details is a conflict, not a retry.
        let run = h
            .run(edited(RUN, |c| {
                c["user_info"]["name"] = json!("Someone Else")
            }))
            .await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.error_code("create_user_account"), "USER_CONFLICT");
        assert_eq!(run.step("create_user_account").attempts, 1);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_user_service_that_forgot_the_user_ends_in_error_without_retrying() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        // What the Rails spec saw: update_user_status answered 404.
        h.services.post_03.users.stub_response(
            "update_user_status",
            json!({"status": 404, "body": {"error": "user 1 not found"}}),
        );
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.count(StepState::Complete), 4);
        assert_eq!(
            (
                run.step("update_user_status").state,
                run.step("update_user_status").attempts
            ),
            (StepState::Error, 1)
        );
        assert_eq!(run.error_code("update_user_status"), "USER_NOT_FOUND");
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn plans_without_billing_info_and_flaky_services() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        // Enterprise with no payment method: billing answers 402, which no retry can fix;
        // preferences, in the other branch, still complete.
        let run = h
            .run(edited(RUN, |c| {
                c["user_info"] = json!({"email": "ceo@bigcorp.example", "name": "Big Corp", "plan": "enterprise"});
                c.as_object_mut().unwrap().remove("billing_info");
            }))
            .await;
        assert_eq!(run.task.state, TaskState::Error);
        assert_eq!(run.error_code("setup_billing_profile"), "PAYMENT_REQUIRED");
        assert_eq!(run.step("setup_billing_profile").attempts, 1);
        assert_eq!(run.step("create_user_account").state, StepState::Complete);
        assert_eq!(run.step("initialize_preferences").state, StepState::Complete);
        assert_eq!(run.task.context["plan_type"], "enterprise");

        // Free plan, no billing info, a notification outage for one attempt: completes.
        h.services
            .post_03
            .notifications
            .fail_times("send_welcome_sequence", 1, "connection refused");
        let run = h
            .run(edited(RUN, |c| {
                c["user_info"] = json!({"email": "free@example.com", "name": "Free User"});
                c.as_object_mut().unwrap().remove("billing_info");
                c["correlation_id"] = json!("corr-given-123");
            }))
            .await;
        assert_eq!(run.task.state, TaskState::Complete);
        assert_eq!(run.step("send_welcome_sequence").attempts, 2);
        assert_eq!(
            run.results("send_welcome_sequence")["plan_features"],
            json!(["basic_features", "community_support"])
        );
        assert_eq!(run.task.context["correlation_id"], "corr-given-123");
        assert_eq!(run.task.context["plan_type"], "free");
        assert_eq!(run.task.context["user_info"]["plan"], "free", "schema default");
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_notification_rate_limit_is_retried_until_attempts_run_out() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        h.services.post_03.notifications.stub_response(
            "send_welcome_sequence",
            json!({"status": 429, "body": {"error": "slow down"}, "headers": {"Retry-After": "5"}}),
        );
        let run = h.run(sample_request(RUN)).await;
        assert_eq!(run.task.state, TaskState::Error);
        let step = run.step("send_welcome_sequence");
        assert_eq!((step.state, step.attempts), (StepState::Error, 5));
        assert_eq!(run.error_code("send_welcome_sequence"), "RATE_LIMITED");
        assert_eq!(run.step("update_user_status").state, StepState::Pending);
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_invalid_email_is_refused_at_creation_by_path() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        let errors = h
            .refused(edited(RUN, |c| {
                c["user_info"]["email"] = json!("jane at example")
            }))
            .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "/user_info/email");
        assert_eq!(h.services.post_03.users.calls(), []);
        h.engine.shutdown().await;
    })
    .await;
}
