//! Creation, readiness, outcomes, retries, finalization, skip, cancel, manual resolution.

use std::time::Duration;

use serde_json::json;
use tasker_domain::{StepError, StepState, TaskState};
use tasker_persistence::{
    BlockingReason, ExecutionStatus, HealthStatus, StepFailure, StepOutcome, Store,
};

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

fn failure(
    claimed: &tasker_persistence::ClaimedStep,
    error: StepError,
    delay_secs: u64,
) -> StepOutcome {
    StepOutcome::Failure(StepFailure {
        step_id: claimed.step_id,
        attempt: claimed.attempt,
        error,
        retry_delay: Duration::from_secs(delay_secs),
    })
}

async fn claim_names(
    store: &Store,
    now: f64,
) -> anyhow::Result<Vec<tasker_persistence::ClaimedStep>> {
    Ok(store
        .claim_ready_steps("w1", 100, LEASE, at(now))
        .await?
        .into_steps())
}

fn names<'a>(steps: impl IntoIterator<Item = &'a tasker_persistence::ClaimedStep>) -> Vec<&'a str> {
    steps.into_iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn a_diamond_runs_in_dependency_order_and_completes() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &diamond()).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        assert_eq!(created.state, TaskState::Pending);

        let readiness = store.step_readiness(created.task_id, t0()).await?;
        let summary: Vec<_> = readiness
            .iter()
            .map(|r| (r.name.as_str(), r.ready_for_execution, r.blocking_reason))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", true, None),
                ("b", false, Some(BlockingReason::DependenciesNotSatisfied)),
                ("c", false, Some(BlockingReason::DependenciesNotSatisfied)),
                ("d", false, Some(BlockingReason::DependenciesNotSatisfied)),
            ]
        );
        assert_eq!(
            (readiness[3].total_parents, readiness[3].completed_parents),
            (2, 0)
        );

        let batch = store.claim_ready_steps("w1", 10, LEASE, t0()).await?;
        assert_eq!(names(batch.steps()), ["a"]);
        assert_eq!(batch.claims[0].inputs.step_id, batch.claims[0].step.step_id);
        assert_eq!(
            batch.claims[0].inputs.correlation_id,
            created.correlation_id
        );
        assert_eq!(batch.claims[0].inputs.task_context, created.context);
        assert!(
            batch.claims[0].inputs.parent_results.is_empty(),
            "a root has none"
        );
        assert_eq!(batch.started_tasks, [created.task_id]);
        assert_eq!(batch.claims[0].step.attempt, 1);
        assert_eq!(batch.claims[0].step.named_task_id, registered.named_task_id);
        assert!(
            claim_names(&store, 0.0).await?.is_empty(),
            "a claimed step is not claimable again"
        );

        let report = store
            .record_outcomes(
                "w1",
                vec![success(&batch.claims[0].step, json!({"n": 1}))],
                at(1.0),
            )
            .await?;
        assert_eq!(report.newly_ready.len(), 2);
        let claimed = store.claim_ready_steps("w1", 100, LEASE, at(1.0)).await?;
        assert_eq!(names(claimed.steps()), ["b", "c"]);
        let middle = claimed.clone().into_steps();
        let ids: Vec<_> = claimed.steps().map(|s| s.step_id).collect();
        assert_eq!(
            claimed
                .claims
                .iter()
                .map(|c| c.inputs.clone())
                .collect::<Vec<_>>(),
            store.step_inputs(&ids).await?,
            "the claim returns what step_inputs reads, in the same order"
        );
        assert_eq!(
            claimed.claims[0].inputs.parent_results.get("a"),
            Some(&json!({"n": 1}))
        );

        store
            .record_outcomes("w1", vec![success(&middle[0], json!({}))], at(2.0))
            .await?;
        assert!(claim_names(&store, 2.0).await?.is_empty(), "d waits for c");
        store
            .record_outcomes("w1", vec![success(&middle[1], json!({}))], at(2.0))
            .await?;
        let last = claim_names(&store, 2.0).await?;
        assert_eq!(names(&last), ["d"]);
        let report = store
            .record_outcomes("w1", vec![success(&last[0], json!({}))], at(3.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);

        let task = store.task(created.task_id).await?;
        assert_eq!(
            (
                task.state,
                task.done_steps,
                task.active_steps,
                task.total_steps
            ),
            (TaskState::Complete, 4, 0, 4)
        );
        let history: Vec<_> = store
            .task_transitions(created.task_id)
            .await?
            .into_iter()
            .map(|t| (t.from_state, t.to_state, t.sort_key, t.most_recent))
            .collect();
        assert_eq!(
            history,
            [
                (Some("pending".into()), "in_progress".into(), 10, false),
                (Some("in_progress".into()), "complete".into(), 20, true),
            ]
        );
        let step_history: Vec<_> = store
            .step_transitions(step_id(&created, "d"))
            .await?
            .into_iter()
            .map(|t| (t.from_state.unwrap(), t.to_state, t.most_recent))
            .collect();
        assert_eq!(
            step_history,
            [
                ("pending".into(), "in_progress".into(), false),
                ("in_progress".into(), "complete".into(), true)
            ]
        );
        let context = store
            .task_execution_context(created.task_id, at(3.0))
            .await?;
        assert_eq!(
            (context.execution_status, context.completion_percentage),
            (ExecutionStatus::AllComplete, 100.0)
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn retryable_failures_back_off_then_retry_until_attempts_run_out() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &shape("flaky", &[("only", &[])], 2)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let first = claim_names(&store, 0.0).await?;
        let report = store
            .record_outcomes(
                "w1",
                vec![failure(&first[0], StepError::retryable("timeout"), 10)],
                at(1.0),
            )
            .await?;
        assert_eq!(report.recorded[0].state, StepState::Error);
        assert_eq!(report.recorded[0].next_attempt_at, Some(at(11.0)));
        assert!(
            report.finalized.is_empty(),
            "a step waiting for backoff keeps the task alive"
        );

        let readiness = store.step_readiness(created.task_id, at(5.0)).await?;
        assert_eq!(
            readiness[0].blocking_reason,
            Some(BlockingReason::WaitingForBackoff)
        );
        assert_eq!(readiness[0].next_retry_at, Some(at(11.0)));
        let context = store
            .task_execution_context(created.task_id, at(5.0))
            .await?;
        assert_eq!(
            (context.execution_status, context.health_status),
            (
                ExecutionStatus::WaitingForDependencies,
                HealthStatus::Recovering
            )
        );
        assert!(
            claim_names(&store, 10.9).await?.is_empty(),
            "not before the backoff expires"
        );

        let second = store
            .claim_ready_steps("w1", 10, LEASE, at(11.0))
            .await?
            .into_steps();
        assert_eq!((second[0].attempt, second[0].retried), (2, true));
        let report = store
            .record_outcomes(
                "w1",
                vec![failure(&second[0], StepError::retryable("timeout"), 10)],
                at(12.0),
            )
            .await?;
        assert_eq!(
            report.recorded[0].next_attempt_at, None,
            "retry_limit 2 counts both attempts"
        );
        assert_eq!(report.finalized, [(created.task_id, TaskState::Error)]);

        let history: Vec<_> = store
            .step_transitions(step_id(&created, "only"))
            .await?
            .into_iter()
            .map(|t| format!("{}>{}", t.from_state.unwrap(), t.to_state))
            .collect();
        assert_eq!(
            history,
            [
                "pending>in_progress",
                "in_progress>error",
                "error>pending",
                "pending>in_progress",
                "in_progress>error"
            ]
        );
        let context = store
            .task_execution_context(created.task_id, at(20.0))
            .await?;
        assert_eq!(
            (context.execution_status, context.health_status),
            (ExecutionStatus::BlockedByFailures, HealthStatus::Blocked)
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn permanent_errors_and_non_retryable_steps_are_never_retried() {
    on_each_database(|store, _| async move {
        let mut template = shape("strict", &[("permanent", &[]), ("no_retry", &[])], 5);
        template.step_templates[1].default_retryable = false;
        let registered = register(&store, &template).await;
        let created = create(&store, &registered, request_for(&template)).await;
        let claimed = claim_names(&store, 0.0).await?;
        assert_eq!(
            names(&claimed),
            ["permanent", "no_retry"],
            "the first attempt always runs, retryable or not"
        );
        let report = store
            .record_outcomes(
                "w1",
                vec![
                    failure(
                        &claimed[0],
                        StepError::permanent("card declined", "PAYMENT_DECLINED"),
                        1,
                    ),
                    failure(&claimed[1], StepError::retryable("flaky"), 1),
                ],
                at(1.0),
            )
            .await?;
        assert!(report.recorded.iter().all(|r| r.next_attempt_at.is_none()));
        assert_eq!(report.finalized, [(created.task_id, TaskState::Error)]);
        assert!(claim_names(&store, 100.0).await?.is_empty());
        let step = store.step(step_id(&created, "permanent")).await?;
        assert_eq!(step.last_error.unwrap()["error_code"], "PAYMENT_DECLINED");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_branch_does_not_stop_independent_branches() {
    on_each_database(|store, _| async move {
        let template = shape(
            "isolated",
            &[
                ("bad", &[]),
                ("good", &[]),
                ("after_good", &["good"]),
                ("join", &["bad", "after_good"]),
            ],
            1,
        );
        let registered = register(&store, &template).await;
        let created = create(&store, &registered, request_for(&template)).await;
        let roots = claim_names(&store, 0.0).await?;
        let report = store
            .record_outcomes(
                "w1",
                vec![
                    failure(&roots[0], StepError::retryable("boom"), 1),
                    success(&roots[1], json!({})),
                ],
                at(1.0),
            )
            .await?;
        assert!(report.finalized.is_empty(), "after_good still has to run");
        let next = claim_names(&store, 1.0).await?;
        assert_eq!(names(&next), ["after_good"]);
        let report = store
            .record_outcomes("w1", vec![success(&next[0], json!({}))], at(2.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Error)]);
        let task = store.task(created.task_id).await?;
        assert_eq!(
            (task.done_steps, task.blocked_steps, task.active_steps),
            (2, 1, 0)
        );
        // Finalized by the success that left nothing to run (on PostgreSQL, inside the
        // recording's own statement).
        let last = store
            .task_transitions(created.task_id)
            .await?
            .pop()
            .expect("the finalization's row");
        assert_eq!(
            (
                last.from_state.as_deref(),
                last.to_state.as_str(),
                last.sort_key,
                last.most_recent,
                last.metadata,
                last.created_at
            ),
            (
                Some("in_progress"),
                "error",
                20,
                true,
                json!({"reason": "steps_in_error", "done_steps": 2, "total_steps": 4}),
                at(2.0)
            )
        );
        assert_eq!(task.completed_at, Some(at(2.0)));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn bypassed_skippable_steps_resolve_without_running() {
    on_each_database(|store, _| async move {
        let mut template = shape("skipping", &[("optional", &[]), ("then", &["optional"])], 3);
        template.step_templates[0].skippable = true;
        let registered = register(&store, &template).await;
        let created = create(
            &store,
            &registered,
            request_for(&template).bypass_steps(["optional"]),
        )
        .await;
        assert_eq!(created.skipped, ["optional"]);
        let claimed = claim_names(&store, 0.0).await?;
        assert_eq!(names(&claimed), ["then"], "the dependant proceeds at once");
        let history = store
            .step_transitions(step_id(&created, "optional"))
            .await?;
        assert_eq!(history.len(), 1);
        assert_eq!(
            (
                history[0].to_state.as_str(),
                &history[0].metadata["skipped"]
            ),
            ("resolved_manually", &json!(true))
        );
        let report = store
            .record_outcomes("w1", vec![success(&claimed[0], json!({}))], at(1.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn manual_resolution_unblocks_dependants() {
    on_each_database(|store, _| async move {
        let registered = register(
            &store,
            &shape("manual", &[("stuck", &[]), ("next", &["stuck"])], 1),
        )
        .await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let claimed = claim_names(&store, 0.0).await?;
        let report = store
            .record_outcomes(
                "w1",
                vec![failure(&claimed[0], StepError::retryable("down"), 1)],
                at(1.0),
            )
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Error)]);
        // The task is in error; an operator resolves the step and sends the task back to work.
        store
            .transition_task(
                created.task_id,
                TaskState::Error,
                TaskState::Pending,
                json!({"by": "ops"}),
                at(2.0),
            )
            .await?;
        let stuck = step_id(&created, "stuck");
        let (_, report) = store
            .transition_step(
                stuck,
                StepState::Pending,
                StepState::ResolvedManually,
                Some(json!({"fixed": true})),
                json!({"by": "ops"}),
                at(3.0),
            )
            .await?;
        assert_eq!(report.newly_ready, [step_id(&created, "next")]);
        let next = claim_names(&store, 3.0).await?;
        assert_eq!(names(&next), ["next"]);
        assert_eq!(
            store.step_inputs(&[next[0].step_id]).await?[0].parent_results["stuck"],
            json!({"fixed": true})
        );
        let report = store
            .record_outcomes("w1", vec![success(&next[0], json!({}))], at(4.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn retrying_a_failed_task_resets_its_exhausted_steps() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &shape("again", &[("flaky", &[])], 1)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let claimed = claim_names(&store, 0.0).await?;
        store
            .record_outcomes(
                "w1",
                vec![failure(&claimed[0], StepError::retryable("down"), 1)],
                at(1.0),
            )
            .await?;
        store
            .transition_task(
                created.task_id,
                TaskState::Error,
                TaskState::Pending,
                json!({}),
                at(2.0),
            )
            .await?;
        let retried = claim_names(&store, 2.0).await?;
        assert_eq!(
            (retried[0].attempt, retried[0].retried),
            (1, false),
            "a fresh attempt budget"
        );
        let report = store
            .record_outcomes("w1", vec![success(&retried[0], json!({}))], at(3.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        let states: Vec<_> = store
            .task_transitions(created.task_id)
            .await?
            .into_iter()
            .map(|t| t.to_state)
            .collect();
        assert_eq!(
            states,
            ["in_progress", "error", "pending", "in_progress", "complete"]
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_steps_and_stops_claims() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &diamond()).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let running = claim_names(&store, 0.0).await?;
        store
            .transition_task(
                created.task_id,
                TaskState::InProgress,
                TaskState::Cancelled,
                json!({"by": "user"}),
                at(1.0),
            )
            .await?;
        let states: Vec<_> = store
            .steps(created.task_id)
            .await?
            .into_iter()
            .map(|s| s.state)
            .collect();
        assert_eq!(states, [StepState::Cancelled; 4]);
        let report = store
            .record_outcomes("w1", vec![success(&running[0], json!({}))], at(2.0))
            .await?;
        assert_eq!(
            report.rejected,
            [running[0].step_id],
            "the running handler's outcome is refused"
        );
        assert!(claim_names(&store, 100.0).await?.is_empty());
        let history = store.step_transitions(running[0].step_id).await?;
        assert_eq!(
            history.last().unwrap().from_state.as_deref(),
            Some("in_progress")
        );
        Ok(())
    })
    .await;
}
