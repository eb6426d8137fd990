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

/// What the engine's hot path costs, which the bench's figures rest on, as (driver calls,
/// statements, transactions). On PostgreSQL a call is a statement: a creation is one sent on
/// its own, a claim one (it starts the task and writes the history too), a hand-off (a success
/// and the next claim) two in one transaction, and the last success, which finalizes the task,
/// one. SQLite's driver runs each connection on a thread of its own, so that a call is a
/// hand-over to that thread and back, and statements that need nothing from one another's
/// answers share a call: a creation is one call (`BEGIN`, task, steps and edges, `COMMIT`), a
/// claim two (the candidates, the start of their tasks and the claim; the history of both
/// tables), a hand-off five, the last success five. (A hand-off that claims only what it
/// releases is one call on both: `tests/it/handoff.rs`.)
#[tokio::test]
async fn the_hot_path_costs_few_calls_on_each_database() {
    on_each_database(|store, backend| async move {
        let expected = |postgres: (u64, u64, u64), sqlite: (u64, u64, u64)| {
            if backend == "postgres" {
                postgres
            } else {
                sqlite
            }
        };
        let registered = register(&store, &shape("pair", &[("a", &[]), ("b", &["a"])], 1)).await;
        let reading = || (store.calls(), store.statements(), store.transactions());
        let cost = |before: (u64, u64, u64)| {
            let now = reading();
            (now.0 - before.0, now.1 - before.1, now.2 - before.2)
        };
        let before = reading();
        let created = create(&store, &registered, request_for(&registered.template)).await;
        assert_eq!(
            cost(before),
            expected((1, 1, 1), (1, 3, 1)),
            "{backend}: the creation"
        );
        let before = reading();
        let first = store
            .claim_ready_steps("w", 10, LEASE, at(1.0))
            .await?
            .into_steps();
        assert_eq!(first.len(), 1);
        assert_eq!(
            cost(before),
            expected((1, 1, 1), (2, 7, 1)),
            "{backend}: the claim"
        );
        let before = reading();
        let (_, batch) = store
            .record_outcomes_and_claim("w", vec![success(&first[0], json!({}))], at(2.0), 10, LEASE)
            .await?;
        let second = batch.into_steps();
        assert_eq!(second.len(), 1);
        assert_eq!(
            cost(before),
            expected((2, 2, 1), (5, 8, 1)),
            "{backend}: the hand-off"
        );
        let before = reading();
        let report = store
            .record_outcomes("w", vec![success(&second[0], json!({}))], at(3.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        assert_eq!(
            cost(before),
            expected((1, 1, 1), (5, 8, 1)),
            "{backend}: the last success"
        );
        // The history the statements wrote: each owner's last row current, in order.
        for step in [first[0].step_id, second[0].step_id] {
            assert_eq!(
                states(&store.step_transitions(step).await?),
                [("in_progress", false), ("complete", true)],
                "{backend}: {step:?}"
            );
        }
        assert_eq!(
            states(&store.task_transitions(created.task_id).await?),
            [("in_progress", false), ("complete", true)],
            "{backend}"
        );
        Ok(())
    })
    .await;
}
