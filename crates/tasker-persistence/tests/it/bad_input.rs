//! Bad input gets a typed error and changes nothing.

use serde_json::json;
use tasker_domain::{DefaultIdentity, HashIdentity, StepId, StepState, TaskId, TaskState};
use tasker_persistence::{CreateTaskOptions, StoreError};

use crate::support::*;

#[tokio::test]
async fn unknown_ids_and_templates_are_typed_errors() {
    on_each_database(|store, _| async move {
        let missing = TaskId::new();
        assert!(
            matches!(store.task(missing).await, Err(StoreError::TaskNotFound(id)) if id == missing)
        );
        let err = store
            .transition_task(
                missing,
                TaskState::Pending,
                TaskState::Cancelled,
                json!({}),
                t0(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TaskNotFound(_)));
        let step = StepId::new();
        assert!(matches!(
            store.step_transitions(step).await,
            Err(StoreError::StepNotFound(_))
        ));
        let err = store
            .find_template("nowhere", "nothing", None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no task template nowhere/nothing");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn invalid_transitions_are_refused_without_changes() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &diamond()).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let a = step_id(&created, "a");
        let err = store
            .transition_step(
                a,
                StepState::Pending,
                StepState::Complete,
                None,
                json!({}),
                t0(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "step cannot move from pending to complete: not allowed"
        );
        let d = step_id(&created, "d");
        let err = store
            .transition_step(
                d,
                StepState::Pending,
                StepState::InProgress,
                None,
                json!({}),
                t0(),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("0 of 2 parent steps done"),
            "{err}"
        );
        let err = store
            .transition_step(
                a,
                StepState::Error,
                StepState::Pending,
                None,
                json!({}),
                t0(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { ref actual, .. } if actual == "pending"),
            "{err}"
        );
        let err = store
            .transition_task(
                created.task_id,
                TaskState::Pending,
                TaskState::Complete,
                json!({}),
                t0(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition(_)), "{err}");
        assert!(store.step_transitions(a).await?.is_empty());
        assert!(store.task_transitions(created.task_id).await?.is_empty());
        assert_eq!(store.task(created.task_id).await?.state, TaskState::Pending);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn bad_contexts_bypasses_and_duplicates_write_nothing() {
    on_each_database(|store, _| async move {
        let template = template(
            "name: typed\nschema:\n  type: object\n  required: [order]\n  properties:\n    order:\n      type: object\n      \
             properties:\n        total: { type: number, exclusiveMinimum: 0 }\n    priority: { type: string, default: normal }\n\
             step_templates:\n  - name: a\n    handler_class: X\n",
        );
        let registered = register(&store, &template).await;
        let options = CreateTaskOptions { now: t0(), identity: &DefaultIdentity, correlation_id: None, trace_parent: None };
        let bad = request_for(&template).context(json!({"order": {"total": -5}}));
        match store.create_task(&registered, &bad, &options).await {
            Err(StoreError::InvalidContext(errors)) => assert_eq!(errors[0].path, "/order/total"),
            other => panic!("expected InvalidContext, got {other:?}"),
        }
        let missing = request_for(&template).context(json!({}));
        let err = store.create_task(&registered, &missing, &options).await.unwrap_err();
        assert!(err.to_string().contains("order"), "{err}");
        let bypass = request_for(&template).context(json!({"order": {}})).bypass_steps(["a"]);
        let err = store.create_task(&registered, &bypass, &options).await.unwrap_err();
        assert_eq!(err.to_string(), "cannot bypass step `a`: the template does not mark it skippable");
        assert_eq!(counts(&store).await, (0, 0));

        let good = request_for(&template).context(json!({"order": {"total": 5}}));
        let created = store.create_task(&registered, &good, &options).await?;
        assert_eq!(created.context, json!({"order": {"total": 5}, "priority": "normal"}), "defaults are stored");
        let hashed = CreateTaskOptions { now: t0(), identity: &HashIdentity::new(), correlation_id: None, trace_parent: None };
        store.create_task(&registered, &good, &hashed).await?;
        let err = store.create_task(&registered, &good, &hashed).await.unwrap_err();
        assert!(matches!(err, StoreError::DuplicateTask { .. }), "{err}");
        assert_eq!(counts(&store).await, (2, 2));
        Ok(())
    })
    .await;
}
