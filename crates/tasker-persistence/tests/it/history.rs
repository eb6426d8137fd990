//! History rows and statement costs on the hot path: what each database writes for claims,
//! retries, completions and finalizations, and what PostgreSQL's claims and hand-offs cost.

use std::time::Duration;

use serde_json::json;
use tasker_domain::TaskState;
use tasker_persistence::StepOutcome;

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

/// Whether a statement writes its own history rows (PostgreSQL's claim and recording, which
/// also finalizes) or the transaction writes them at its end (SQLite), the rows say the same:
/// who claimed which attempt, the retry, the completion, the task's start and finish, each at
/// its time.
#[tokio::test]
async fn claims_retries_and_completions_write_the_same_history_on_both_databases() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &shape("told", &[("flaky", &[])], 3)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let first = store
            .claim_ready_steps("w1", 10, LEASE, at(1.0))
            .await?
            .into_steps();
        assert_eq!(first.len(), 1, "{backend}");
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: first[0].step_id,
            attempt: 1,
            error: tasker_domain::StepError::retryable("try again"),
            retry_delay: Duration::ZERO,
        });
        let (_, batch) = store
            .record_outcomes_and_claim("w1", vec![failure], at(2.0), 10, LEASE)
            .await?;
        let again = batch.into_steps();
        assert_eq!(again.len(), 1, "{backend}");
        let success = StepOutcome::Success {
            step_id: again[0].step_id,
            attempt: again[0].attempt,
            results: json!({"ok": true}),
        };
        store.record_outcomes("w1", vec![success], at(3.0)).await?;

        let rows = |history: Vec<tasker_persistence::TransitionRecord>| {
            history
                .into_iter()
                .map(|t| {
                    (
                        t.from_state.unwrap_or_default(),
                        t.to_state,
                        t.sort_key,
                        t.most_recent,
                        t.metadata,
                        t.created_at,
                    )
                })
                .collect::<Vec<_>>()
        };
        let row = |from: &str, to: &str, key: i32, current: bool, metadata, secs| {
            (
                from.to_owned(),
                to.to_owned(),
                key,
                current,
                metadata,
                at(secs),
            )
        };
        let steps = rows(store.step_transitions(first[0].step_id).await?);
        let failed = json!({
            "attempt_number": 1,
            "error_message": "try again",
            "error_code": null,
            "retry_available": true,
            "backoff_until": at(2.0),
        });
        assert_eq!(
            steps,
            [
                row(
                    "pending",
                    "in_progress",
                    10,
                    false,
                    json!({"attempt_number": 1, "claim_owner": "w1"}),
                    1.0
                ),
                row("in_progress", "error", 20, false, failed, 2.0),
                row(
                    "error",
                    "pending",
                    30,
                    false,
                    json!({"reason": "retry", "retry_attempt": 2}),
                    2.0
                ),
                row(
                    "pending",
                    "in_progress",
                    40,
                    false,
                    json!({"attempt_number": 2, "claim_owner": "w1"}),
                    2.0
                ),
                row(
                    "in_progress",
                    "complete",
                    50,
                    true,
                    json!({"attempt_number": 2}),
                    3.0
                ),
            ],
            "{backend}"
        );
        let tasks = rows(store.task_transitions(created.task_id).await?);
        assert_eq!(
            tasks,
            [
                row(
                    "pending",
                    "in_progress",
                    10,
                    false,
                    json!({"reason": "steps_claimed"}),
                    1.0
                ),
                row(
                    "in_progress",
                    "complete",
                    20,
                    true,
                    json!({"reason": "all_steps_done", "total_steps": 1}),
                    3.0
                ),
            ],
            "{backend}"
        );
        Ok(())
    })
    .await;
}

/// What the engine's hot path costs in statements on PostgreSQL, which the bench's figures
/// rest on: a claim is one statement sent on its own (it starts the task and writes the
/// history too), a hand-off (a success and the next claim) two in one transaction, and the
/// last success, which finalizes the task, one. SQLite writes each phase apart.
#[tokio::test]
async fn on_postgresql_a_claim_is_one_statement_and_a_hand_off_two() {
    on_each_database(|store, backend| async move {
        if backend != "postgres" {
            return Ok(());
        }
        let registered = register(&store, &shape("pair", &[("a", &[]), ("b", &["a"])], 1)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let cost = |before: (u64, u64)| {
            (
                store.statements() - before.0,
                store.transactions() - before.1,
            )
        };
        let before = (store.statements(), store.transactions());
        let first = store
            .claim_ready_steps("w", 10, LEASE, at(1.0))
            .await?
            .into_steps();
        assert_eq!(first.len(), 1);
        assert_eq!(cost(before), (1, 1), "the claim");
        let success = |step: &tasker_persistence::ClaimedStep| StepOutcome::Success {
            step_id: step.step_id,
            attempt: step.attempt,
            results: json!({}),
        };
        let before = (store.statements(), store.transactions());
        let (_, batch) = store
            .record_outcomes_and_claim("w", vec![success(&first[0])], at(2.0), 10, LEASE)
            .await?;
        let second = batch.into_steps();
        assert_eq!(second.len(), 1);
        assert_eq!(cost(before), (2, 1), "the hand-off");
        let before = (store.statements(), store.transactions());
        let report = store
            .record_outcomes("w", vec![success(&second[0])], at(3.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        assert_eq!(cost(before), (1, 1), "the last success");
        let history = store.task_transitions(created.task_id).await?;
        assert_eq!(
            history
                .iter()
                .map(|t| (t.to_state.as_str(), t.most_recent))
                .collect::<Vec<_>>(),
            [("in_progress", false), ("complete", true)]
        );
        Ok(())
    })
    .await;
}

/// What the same path costs on SQLite, whose driver runs each connection on a thread of its
/// own, so that every call is a hand-over to that thread and back: a creation is one call (the
/// task, its steps and its edges as three statements of one string), a claim two (the
/// candidates, the start of their pending tasks and the claim as three statements of one
/// string; the history of both tables in another), a hand-off five, the last success five.
#[tokio::test]
async fn on_sqlite_a_creation_is_one_call_a_claim_two_and_a_hand_off_five() {
    on_each_database(|store, backend| async move {
        if backend != "sqlite" {
            return Ok(());
        }
        let registered = register(&store, &shape("pair", &[("a", &[]), ("b", &["a"])], 1)).await;
        let cost = |before: (u64, u64)| (store.calls() - before.0, store.statements() - before.1);
        let before = (store.calls(), store.statements());
        let created = create(&store, &registered, request_for(&registered.template)).await;
        assert_eq!(cost(before), (1, 3), "the creation: calls, statements");
        let before = (store.calls(), store.statements());
        let first = store
            .claim_ready_steps("w", 10, LEASE, at(1.0))
            .await?
            .into_steps();
        assert_eq!(first.len(), 1);
        assert_eq!(cost(before), (2, 7), "the claim: calls, statements");
        let success = |step: &tasker_persistence::ClaimedStep| StepOutcome::Success {
            step_id: step.step_id,
            attempt: step.attempt,
            results: json!({}),
        };
        let before = (store.calls(), store.statements());
        let (_, batch) = store
            .record_outcomes_and_claim("w", vec![success(&first[0])], at(2.0), 10, LEASE)
            .await?;
        let second = batch.into_steps();
        assert_eq!(second.len(), 1);
        assert_eq!(cost(before), (5, 8), "the hand-off: calls, statements");
        let before = (store.calls(), store.statements());
        let report = store
            .record_outcomes("w", vec![success(&second[0])], at(3.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        assert_eq!(cost(before), (5, 8), "the last success: calls, statements");
        // The history the strings wrote: each owner's last row current, in order.
        let steps = [first[0].step_id, second[0].step_id];
        for step in steps {
            let rows = store.step_transitions(step).await?;
            assert_eq!(
                rows.iter()
                    .map(|t| (t.to_state.as_str(), t.most_recent))
                    .collect::<Vec<_>>(),
                [("in_progress", false), ("complete", true)],
                "{step:?}"
            );
        }
        let history = store.task_transitions(created.task_id).await?;
        assert_eq!(
            history
                .iter()
                .map(|t| (t.to_state.as_str(), t.most_recent))
                .collect::<Vec<_>>(),
            [("in_progress", false), ("complete", true)]
        );
        Ok(())
    })
    .await;
}
