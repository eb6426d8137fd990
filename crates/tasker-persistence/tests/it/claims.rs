//! Claims and leases: stale owners, expired leases, concurrent workers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tasker_domain::{StepState, TaskState};
use tasker_persistence::{
    Claim, ClaimFilter, FollowingClaim, NamespaceLimit, SqlValue, StepOutcome, StoreError,
};

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

/// On PostgreSQL a claim never waits for the row of a pending task that another transaction
/// holds: it takes the other tasks' steps and leaves that task's to a later claim. (A claim
/// that waited could wait for a task another engine's recording holds while that engine's
/// claim waited for one this claim held.) Both claims: the one statement, and the one that
/// reads candidates first because a namespace has a limit. SQLite has one writer at a time.
#[tokio::test]
async fn a_claim_passes_over_a_pending_task_whose_row_is_held() {
    on_each_database(|store, backend| async move {
        if backend != "postgres" {
            return Ok(());
        }
        let registered = register(&store, &shape("held", &[("only", &[])], 3)).await;
        let unlimited = ClaimFilter::default();
        let limited = ClaimFilter {
            limits: vec![NamespaceLimit {
                namespace: registered.template.namespace_name.clone(),
                max_running: 10,
                named_task_ids: vec![registered.named_task_id],
            }],
            ..ClaimFilter::default()
        };
        for (round, filter) in [unlimited, limited].iter().enumerate() {
            let mut tasks = Vec::new();
            for n in 0..2 {
                let request =
                    request_for(&registered.template).context(json!({"round": round, "n": n}));
                tasks.push(create(&store, &registered, request).await.task_id);
            }
            let (held, free) = (tasks[0], tasks[1]);
            let holder = store.begin().await?;
            let locked = holder
                .execute(
                    "SELECT task_id FROM tasker_tasks WHERE task_id = $1 FOR UPDATE",
                    [SqlValue::from(held.as_uuid())],
                )
                .await?;
            assert_eq!(locked, 1);
            // Bounded only so that a claim that waited fails the test instead of hanging it.
            let claimed = tokio::time::timeout(
                Duration::from_secs(60),
                store.claim_ready_steps_where("worker", 10, LEASE, t0(), filter),
            )
            .await
            .expect("the claim waited for the held task's row")?
            .into_steps();
            let claimed: Vec<_> = claimed.iter().map(|s| s.task_id).collect();
            assert_eq!(claimed, [free], "round {round}");
            assert_eq!(store.task(held).await?.state, TaskState::Pending);
            holder.rollback().await?;
            let later = store
                .claim_ready_steps_where("worker", 10, LEASE, at(1.0), filter)
                .await?
                .into_steps();
            let later: Vec<_> = later.iter().map(|s| s.task_id).collect();
            assert_eq!(later, [held], "round {round}");
            assert_eq!(store.task(held).await?.state, TaskState::InProgress);
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_stale_owner_cannot_record_over_a_newer_attempt() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &shape("leased", &[("slow", &[])], 3)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let first = store
            .claim_ready_steps("worker-a", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(first.len(), 1);
        assert_eq!(
            store
                .extend_leases("worker-b", &[first[0].step_id], LEASE, at(10.0))
                .await?,
            Vec::<tasker_domain::StepId>::new(),
            "only the owner extends"
        );
        assert_eq!(
            store
                .extend_leases("worker-a", &[first[0].step_id], LEASE, at(10.0))
                .await?,
            [first[0].step_id],
            "the steps still held come back"
        );
        assert!(
            store.reclaim_expired(at(35.0)).await?.recorded.is_empty(),
            "the extended lease runs to 40 s"
        );

        // worker-a stalls; its lease expires and the attempt is failed as LEASE_EXPIRED.
        let reclaimed = store.reclaim_expired(at(41.0)).await?;
        assert_eq!(reclaimed.recorded.len(), 1);
        assert_eq!(reclaimed.recorded[0].next_attempt_at, Some(at(41.0)));
        let step = store.step(first[0].step_id).await?;
        assert_eq!(step.last_error.unwrap()["error_code"], "LEASE_EXPIRED");

        let second = store
            .claim_ready_steps("worker-b", 10, LEASE, at(41.0))
            .await?
            .into_steps();
        assert_eq!((second[0].attempt, second[0].retried), (2, true));
        let stale = StepOutcome::Success {
            step_id: first[0].step_id,
            attempt: first[0].attempt,
            results: json!({"from": "a"}),
        };
        let report = store
            .record_outcomes("worker-a", vec![stale], at(42.0))
            .await?;
        assert_eq!(report.rejected, [first[0].step_id]);
        let wrong_attempt = StepOutcome::Success {
            step_id: second[0].step_id,
            attempt: 1,
            results: json!({}),
        };
        assert_eq!(
            store
                .record_outcomes("worker-b", vec![wrong_attempt], at(42.0))
                .await?
                .rejected
                .len(),
            1
        );

        let good = StepOutcome::Success {
            step_id: second[0].step_id,
            attempt: 2,
            results: json!({"from": "b"}),
        };
        let report = store
            .record_outcomes("worker-b", vec![good], at(43.0))
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        assert_eq!(
            store.step(first[0].step_id).await?.results,
            Some(json!({"from": "b"}))
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_abandoned_claim_runs_again_after_its_lease_and_counts_its_attempt() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &shape("crashy", &[("once", &[])], 1)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        store.claim_ready_steps("crashed", 10, LEASE, t0()).await?;
        // retry_limit 1: the abandoned attempt was the only one, so the task ends in error.
        let report = store.reclaim_expired(at(31.0)).await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Error)]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_claim_loops_never_share_a_live_claim() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let mut tasks = Vec::new();
        for _ in 0..25 {
            tasks.push(
                create(&store, &registered, request_for(&registered.template))
                    .await
                    .task_id,
            );
        }
        let seen: Arc<Mutex<HashSet<(tasker_domain::StepId, u32)>>> = Arc::default();
        let duplicates = Arc::new(Mutex::new(0usize));
        let mut workers = Vec::new();
        for w in 0..6 {
            let store = store.clone();
            let seen = seen.clone();
            let duplicates = duplicates.clone();
            workers.push(tokio::spawn(async move {
                let owner = format!("worker-{w}");
                let mut idle_rounds = 0;
                while idle_rounds < 20 {
                    let batch = store
                        .claim_ready_steps(&owner, 3, LEASE, t0())
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        idle_rounds += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle_rounds = 0;
                    let mut outcomes = Vec::new();
                    for step in batch.into_steps() {
                        if !seen.lock().unwrap().insert((step.step_id, step.attempt)) {
                            *duplicates.lock().unwrap() += 1;
                        }
                        outcomes.push(StepOutcome::Success {
                            step_id: step.step_id,
                            attempt: step.attempt,
                            results: json!({}),
                        });
                    }
                    let report = store.record_outcomes(&owner, outcomes, t0()).await.unwrap();
                    assert!(report.rejected.is_empty());
                }
            }));
        }
        for worker in workers {
            worker.await?;
        }
        assert_eq!(
            *duplicates.lock().unwrap(),
            0,
            "{backend}: a step attempt was claimed twice"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            100,
            "{backend}: every step ran exactly once"
        );
        for task in tasks {
            assert_eq!(store.task(task).await?.state, TaskState::Complete);
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn of_two_concurrent_writers_exactly_one_wins() {
    on_each_database(|store, _| async move {
        let registered = register(&store, &diamond()).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let step = step_id(&created, "a");
        let attempts = (0..4).map(|i| {
            let store = store.clone();
            async move {
                store
                    .transition_step(
                        step,
                        StepState::Pending,
                        StepState::ResolvedManually,
                        None,
                        json!({"writer": i}),
                        at(1.0),
                    )
                    .await
            }
        });
        let results = futures::future::join_all(attempts).await;
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        assert!(
            results
                .iter()
                .filter(|r| r.is_err())
                .all(|r| matches!(r, Err(StoreError::Conflict { .. })))
        );
        let history = store.step_transitions(step).await?;
        assert_eq!(history.len(), 1);
        assert_eq!(store.task(created.task_id).await?.done_steps, 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn wide_batches_span_several_statements_and_count_every_parent_once() {
    on_each_database(|store, backend| async move {
        let middle: Vec<String> = (0..998).map(|i| format!("m{i}")).collect();
        let mut steps: Vec<(&str, Vec<&str>)> = vec![("root", vec![])];
        steps.extend(middle.iter().map(|m| (m.as_str(), vec!["root"])));
        steps.push(("join", middle.iter().map(String::as_str).collect()));
        let borrowed: Vec<(&str, &[&str])> =
            steps.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        let registered = register(&store, &shape("wide", &borrowed, 3)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let root = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        let report = store
            .record_outcomes(
                "w",
                vec![StepOutcome::Success {
                    step_id: root[0].step_id,
                    attempt: 1,
                    results: json!({}),
                }],
                t0(),
            )
            .await?;
        assert_eq!(report.newly_ready.len(), 998, "{backend}");
        let claimed = store
            .claim_ready_steps("w", 1_000, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(
            claimed.len(),
            998,
            "{backend}: one claim statement set spans several chunks"
        );
        let outcomes: Vec<StepOutcome> = claimed
            .iter()
            .map(|s| StepOutcome::Success {
                step_id: s.step_id,
                attempt: 1,
                results: json!({}),
            })
            .collect();
        let report = store.record_outcomes("w", outcomes, t0()).await?;
        assert_eq!(report.recorded.len(), 998);
        assert_eq!(
            report.newly_ready,
            [step_id(&created, "join")],
            "{backend}: the join is released once, after all 998 parents"
        );
        let join = store.step(step_id(&created, "join")).await?;
        assert_eq!((join.unfinished_parents, join.total_parents), (0, 998));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_claim_returns_each_steps_context_correlation_id_and_parents_results() {
    on_each_database(|store, backend| async move {
        let registered = register(
            &store,
            &shape("inputs", &[("a", &[]), ("b", &[]), ("c", &["a", "b"])], 3),
        )
        .await;
        let options = |correlation: &str| tasker_persistence::CreateTaskOptions {
            now: t0(),
            identity: &tasker_domain::DefaultIdentity,
            correlation_id: Some(correlation.to_owned()),
            trace_parent: None,
        };
        let first = store
            .create_task(
                &registered,
                &request_for(&registered.template).context(json!({"order": 1, "note": "é \"q\""})),
                &options("corr-1"),
            )
            .await?;
        let second = store
            .create_task(
                &registered,
                &request_for(&registered.template).context(json!({"order": 2})),
                &options("corr-2"),
            )
            .await?;
        let roots = store.claim_ready_steps("w", 10, LEASE, t0()).await?;
        assert_eq!(roots.len(), 4, "{backend}");
        for Claim { step, inputs } in &roots.claims {
            assert_eq!(inputs.step_id, step.step_id);
            assert!(inputs.parent_results.is_empty());
            assert_eq!(inputs.inputs, json!({}));
            let created = if step.task_id == first.task_id {
                &first
            } else {
                &second
            };
            assert_eq!(inputs.task_context, created.context, "{backend}");
            assert_eq!(inputs.correlation_id, created.correlation_id);
        }
        // In the first task, a succeeds with results; b fails (to retry in a minute) and is
        // resolved by hand without any.
        let a = step_id(&first, "a");
        let b = step_id(&first, "b");
        let attempt = |id| roots.steps().find(|s| s.step_id == id).unwrap().attempt;
        let report = store
            .record_outcomes(
                "w",
                vec![
                    StepOutcome::Success {
                        step_id: a,
                        attempt: attempt(a),
                        results: json!({"total": 12.5, "items": ["x", null]}),
                    },
                    StepOutcome::Failure(tasker_persistence::StepFailure {
                        step_id: b,
                        attempt: attempt(b),
                        error: tasker_domain::StepError::retryable("later"),
                        retry_delay: Duration::from_secs(60),
                    }),
                ],
                at(1.0),
            )
            .await?;
        assert_eq!(report.recorded.len(), 2, "{backend}");
        store
            .transition_step(
                b,
                StepState::Error,
                StepState::ResolvedManually,
                None,
                json!({"by": "ops"}),
                at(1.0),
            )
            .await?;
        let joins = store.claim_ready_steps("w", 10, LEASE, at(1.0)).await?;
        assert_eq!(joins.len(), 1, "{backend}");
        assert_eq!(joins.claims[0].step.step_id, step_id(&first, "c"));
        let inputs = &joins.claims[0].inputs;
        assert_eq!(inputs.correlation_id, "corr-1");
        assert_eq!(inputs.task_context["order"], 1);
        assert_eq!(
            inputs.parent_results,
            [
                ("a".to_owned(), json!({"total": 12.5, "items": ["x", null]})),
                ("b".to_owned(), serde_json::Value::Null),
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(
            vec![joins.claims[0].inputs.clone()],
            store.step_inputs(&[joins.claims[0].step.step_id]).await?,
            "{backend}: the same as step_inputs"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn recording_and_claiming_in_one_transaction_hands_off_to_the_released_steps() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let root = store.claim_ready_steps("w", 10, LEASE, t0()).await?;
        let a = &root.claims[0].step;
        let success =
            |step: &tasker_persistence::ClaimedStep, owner_attempt: u32| StepOutcome::Success {
                step_id: step.step_id,
                attempt: owner_attempt,
                results: json!({"from": step.name.clone()}),
            };
        // A stale outcome is refused and claims nothing it should not; a limit of 0 claims nothing.
        let (report, batch) = store
            .record_outcomes_and_claim("w", vec![success(a, 7)], at(1.0), 10, LEASE)
            .await?;
        assert_eq!(report.rejected, [a.step_id], "{backend}");
        assert!(batch.is_empty());
        let (report, batch) = store
            .record_outcomes_and_claim("w", vec![success(a, 1)], at(1.0), 0, LEASE)
            .await?;
        assert_eq!(report.newly_ready.len(), 2);
        assert!(batch.is_empty(), "{backend}: limit 0");
        // b and c were released by the recorded outcome; the next hand-off records b and claims c
        // and nothing else (d still waits for c).
        let middle = store.claim_ready_steps("w", 1, LEASE, at(2.0)).await?;
        assert_eq!(middle.len(), 1);
        let (report, batch) = store
            .record_outcomes_and_claim(
                "w",
                vec![success(&middle.claims[0].step, 1)],
                at(3.0),
                10,
                LEASE,
            )
            .await?;
        assert_eq!(report.recorded.len(), 1, "{backend}");
        assert!(report.newly_ready.is_empty());
        assert_eq!(batch.len(), 1, "{backend}");
        assert_ne!(batch.claims[0].step.step_id, middle.claims[0].step.step_id);
        assert_eq!(
            batch.claims[0].inputs.parent_results["a"],
            json!({"from": "a"}),
            "{backend}"
        );
        // Recording the last middle step releases d, which the same transaction claims.
        let (report, batch) = store
            .record_outcomes_and_claim(
                "w",
                vec![success(&batch.claims[0].step, 1)],
                at(4.0),
                10,
                LEASE,
            )
            .await?;
        assert_eq!(report.newly_ready, [step_id(&created, "d")], "{backend}");
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.claims[0].step.name, "d");
        assert_eq!(batch.claims[0].step.lease_expires_at, at(4.0) + LEASE);
        assert_eq!(batch.claims[0].inputs.parent_results.len(), 2);
        assert_eq!(
            store.step(batch.claims[0].step.step_id).await?.state,
            StepState::InProgress
        );
        let (report, batch) = store
            .record_outcomes_and_claim(
                "w",
                vec![success(&batch.claims[0].step, 1)],
                at(5.0),
                10,
                LEASE,
            )
            .await?;
        assert_eq!(report.finalized, [(created.task_id, TaskState::Complete)]);
        assert!(batch.is_empty());
        Ok(())
    })
    .await;
}

/// A recording told that nothing else is ready claims only when its own outcomes may have
/// readied a step: a released child, or a failure whose retry may be due. The last outcome of a
/// task readies nothing, so that transaction makes no claim, even if the caller was wrong and
/// another step is ready (an ordinary hand-off then takes it).
#[tokio::test]
async fn a_recording_claims_only_if_its_outcomes_readied_a_step_when_asked_to() {
    on_each_database(|store, backend| async move {
        let chain = register(
            &store,
            &shape("pair_chain", &[("first", &[]), ("last", &["first"])], 3),
        )
        .await;
        let single = register(&store, &shape("single", &[("only", &[])], 3)).await;
        let created = create(&store, &chain, request_for(&chain.template)).await;
        let first = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(first.len(), 1, "{backend}");
        let filter = ClaimFilter::default();
        let readied_only = FollowingClaim {
            limit: 10,
            lease: LEASE,
            filter: &filter,
            only_if_readied: true,
        };
        // `first` releases `last`: claimed in the same transaction.
        let (report, batch) = store
            .record_outcomes_and_claim_with(
                "w",
                [success(&first[0], json!({}))],
                at(1.0),
                readied_only,
            )
            .await?;
        assert_eq!(report.newly_ready, [step_id(&created, "last")], "{backend}");
        let last = batch.into_steps();
        assert_eq!(last.len(), 1, "{backend}: a released child is claimed");
        // Another task's step becomes ready meanwhile; recording `last` (a leaf) readies nothing,
        // so this transaction leaves it.
        let other = create(&store, &single, request_for(&single.template)).await;
        let (report, batch) = store
            .record_outcomes_and_claim_with(
                "w",
                [success(&last[0], json!({}))],
                at(2.0),
                readied_only,
            )
            .await?;
        assert_eq!(
            report.finalized,
            [(created.task_id, TaskState::Complete)],
            "{backend}"
        );
        assert!(
            batch.is_empty(),
            "{backend}: no claim after a task's last outcome"
        );
        assert_eq!(
            store.step(step_id(&other, "only")).await?.state,
            StepState::Pending
        );
        // A failure may be due at once: the claim is made and takes the retry.
        let again = create(
            &store,
            &chain,
            request_for(&chain.template).context(json!({"n": 2})),
        )
        .await;
        let claimed = store
            .claim_ready_steps("w", 10, LEASE, at(3.0))
            .await?
            .into_steps();
        assert_eq!(claimed.len(), 2, "{backend}");
        let flaky = claimed.iter().find(|s| s.task_id == again.task_id).unwrap();
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: flaky.step_id,
            attempt: flaky.attempt,
            error: tasker_domain::StepError::retryable("try again"),
            retry_delay: Duration::ZERO,
        });
        let (_, batch) = store
            .record_outcomes_and_claim_with("w", [failure], at(4.0), readied_only)
            .await?;
        let retried = batch.into_steps();
        assert_eq!(retried.len(), 1, "{backend}: the retry is claimed");
        assert_eq!((retried[0].step_id, retried[0].attempt), (flaky.step_id, 2));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_failure_due_at_once_is_claimed_again_in_its_own_transaction_with_one_current_row() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &shape("again", &[("flaky", &[])], 3)).await;
        create(&store, &registered, request_for(&registered.template)).await;
        let first = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(first.len(), 1, "{backend}");
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: first[0].step_id,
            attempt: 1,
            error: tasker_domain::StepError::retryable("try again"),
            retry_delay: Duration::ZERO,
        });
        let (report, batch) = store
            .record_outcomes_and_claim("w", vec![failure], at(1.0), 10, LEASE)
            .await?;
        assert_eq!(report.recorded.len(), 1, "{backend}");
        let again = batch.into_steps();
        assert_eq!(again.len(), 1, "{backend}: the retry is due at once");
        assert_eq!(
            (again[0].step_id, again[0].attempt, again[0].retried),
            (first[0].step_id, 2, true),
            "{backend}"
        );
        let history = store.step_transitions(first[0].step_id).await?;
        let path: Vec<(Option<String>, String, bool)> = history
            .iter()
            .map(|t| (t.from_state.clone(), t.to_state.clone(), t.most_recent))
            .collect();
        let step =
            |from: &str, to: &str, current: bool| (Some(from.to_owned()), to.to_owned(), current);
        assert_eq!(
            path,
            [
                step("pending", "in_progress", false),
                step("in_progress", "error", false),
                step("error", "pending", false),
                step("pending", "in_progress", true),
            ],
            "{backend}: one history write, only its last row current"
        );
        assert!(
            history.windows(2).all(|w| w[0].sort_key < w[1].sort_key),
            "{backend}: sort keys rise"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_next_wake_times_are_the_earliest_backoff_and_lease_in_one_read() {
    on_each_database(|store, backend| async move {
        assert_eq!(
            store.next_wake_times(t0()).await?,
            (None, None),
            "{backend}"
        );
        let registered = register(&store, &shape("timers", &[("a", &[]), ("b", &[])], 3)).await;
        create(&store, &registered, request_for(&registered.template)).await;
        let claimed = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(claimed.len(), 2, "{backend}");
        assert_eq!(
            store.next_wake_times(t0()).await?,
            (None, Some(at(LEASE.as_secs_f64()))),
            "{backend}: two leases, no backoff"
        );
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: claimed[0].step_id,
            attempt: 1,
            error: tasker_domain::StepError::retryable("later"),
            retry_delay: Duration::from_secs(7),
        });
        store.record_outcomes("w", vec![failure], at(1.0)).await?;
        assert_eq!(
            store.next_wake_times(at(1.0)).await?,
            (Some(at(8.0)), Some(at(LEASE.as_secs_f64()))),
            "{backend}: the backoff ends at 8 s, the other lease still runs"
        );
        assert_eq!(
            store.next_wake_times(at(9.0)).await?.0,
            None,
            "{backend}: a step already due is not a future wake-up"
        );
        Ok(())
    })
    .await;
}
