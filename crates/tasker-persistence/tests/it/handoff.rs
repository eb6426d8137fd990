//! The hand-off of a caller that knows nothing else is ready: the recording claims the children
//! its outcomes make ready (on PostgreSQL in the recording statement itself), with the
//! parents' results as just recorded, their history, and no more than the limit.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use tasker_domain::{StepId, StepState, TaskState};
use tasker_persistence::{ClaimBatch, ClaimFilter, FollowingClaim, SqlValue, StepOutcome, Store};

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

/// `a` releases `b`, `c` and `x`; `x` also waits for `b`, so `a` readies only `b` and `c`.
fn fan() -> tasker_template::TaskTemplate {
    shape(
        "fan",
        &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("x", &["a", "b"])],
        3,
    )
}

/// A hand-off that claims only what its outcomes ready, up to `limit`.
fn readied_only(limit: usize, filter: &ClaimFilter) -> FollowingClaim<'_> {
    FollowingClaim {
        limit,
        lease: LEASE,
        filter,
        only_if_readied: true,
    }
}

fn names(batch: &ClaimBatch) -> BTreeSet<String> {
    batch.steps().map(|s| s.name.clone()).collect()
}

/// The state and metadata of `step`'s last history row (which must be current), and how many
/// of its rows are current.
async fn last_row(store: &Store, step: StepId) -> (String, serde_json::Value, usize) {
    let history = store.step_transitions(step).await.unwrap();
    let current = history.iter().filter(|t| t.most_recent).count();
    let last = history.last().unwrap();
    assert!(last.most_recent);
    (last.to_state.clone(), last.metadata.clone(), current)
}

#[tokio::test]
async fn a_hand_off_claims_the_children_it_readies_with_the_results_it_recorded() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &fan()).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let first = store.claim_ready_steps("w", 10, LEASE, t0()).await?;
        assert_eq!(names(&first), BTreeSet::from(["a".to_owned()]), "{backend}");
        let a = first.into_steps().remove(0);
        let filter = ClaimFilter::default();

        let calls = (store.calls(), store.statements(), store.transactions());
        let (report, batch) = store
            .record_outcomes_and_claim_with(
                "w",
                [success(&a, json!({"n": 7}))],
                at(1.0),
                readied_only(10, &filter),
            )
            .await?;
        let sent = (
            store.calls() - calls.0,
            store.statements() - calls.1,
            store.transactions() - calls.2,
        );
        if backend == "postgres" {
            assert_eq!(
                sent,
                (1, 1, 1),
                "one statement records and claims, without BEGIN and COMMIT"
            );
        } else {
            assert_eq!(
                (sent.0, sent.2),
                (1, 1),
                "one call to the driver carries the whole transaction"
            );
        }
        let mut readied = vec![step_id(&created, "b"), step_id(&created, "c")];
        readied.sort();
        assert_eq!(report.newly_ready, readied, "{backend}");
        assert_eq!(
            names(&batch),
            BTreeSet::from(["b".to_owned(), "c".to_owned()]),
            "{backend}"
        );
        for claim in &batch.claims {
            assert_eq!(claim.step.attempt, 1, "{backend}");
            assert_eq!(claim.step.lease_expires_at, at(1.0) + LEASE, "{backend}");
            assert_eq!(claim.step.named_task_id, registered.named_task_id);
            assert_eq!(
                claim.inputs.parent_results["a"],
                json!({"n": 7}),
                "{backend}: the parent's results as this hand-off recorded them"
            );
            assert_eq!(claim.inputs.task_context, json!({}), "{backend}");
            let step = store.step(claim.step.step_id).await?;
            assert_eq!(step.state, StepState::InProgress, "{backend}");
            assert_eq!(step.claim_owner.as_deref(), Some("w"), "{backend}");
            assert_eq!(
                last_row(&store, claim.step.step_id).await,
                (
                    "in_progress".to_owned(),
                    json!({"attempt_number": 1, "claim_owner": "w"}),
                    1
                ),
                "{backend}"
            );
        }
        assert_eq!(
            store.step(step_id(&created, "x")).await?.state,
            StepState::Pending,
            "{backend}: a child with a parent left is released, not claimed"
        );

        // `b` readies `x`, whose other parent finished in the hand-off before.
        let claimed = batch.into_steps();
        let b = claimed.iter().find(|s| s.name == "b").unwrap();
        let c = claimed.iter().find(|s| s.name == "c").unwrap();
        let (report, batch) = store
            .record_outcomes_and_claim_with(
                "w",
                [success(b, json!({"b": true})), success(c, json!(null))],
                at(2.0),
                readied_only(10, &filter),
            )
            .await?;
        assert_eq!(report.newly_ready, [step_id(&created, "x")], "{backend}");
        assert_eq!(names(&batch), BTreeSet::from(["x".to_owned()]), "{backend}");
        let x = &batch.claims[0];
        assert_eq!(x.inputs.parent_results["a"], json!({"n": 7}), "{backend}");
        assert_eq!(
            x.inputs.parent_results["b"],
            json!({"b": true}),
            "{backend}"
        );

        let x = batch.into_steps().remove(0);
        let (report, batch) = store
            .record_outcomes_and_claim_with(
                "w",
                [success(&x, json!(1))],
                at(3.0),
                readied_only(10, &filter),
            )
            .await?;
        assert!(batch.is_empty(), "{backend}");
        assert_eq!(
            report.finalized,
            [(created.task_id, TaskState::Complete)],
            "{backend}"
        );
        let task = store.task(created.task_id).await?;
        assert_eq!(task.state, TaskState::Complete, "{backend}");
        assert_eq!(
            last_row(&store, x.step_id).await,
            ("complete".to_owned(), json!({"attempt_number": 1}), 1),
            "{backend}"
        );
        let history = store.task_transitions(created.task_id).await?;
        assert_eq!(
            history.iter().filter(|t| t.most_recent).count(),
            1,
            "{backend}"
        );
        let last = history.last().unwrap();
        assert_eq!(
            (last.to_state.as_str(), &last.metadata, last.most_recent),
            (
                "complete",
                &json!({"reason": "all_steps_done", "total_steps": 4}),
                true
            ),
            "{backend}: the finalization's history row"
        );
        Ok(())
    })
    .await;
}

/// The limit holds: of two children readied, a hand-off allowed one claims one and leaves the
/// other ready for the next claim; one whose named task is paused claims none.
#[tokio::test]
async fn a_hand_off_claims_no_more_children_than_its_limit_and_none_its_filter_refuses() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &fan()).await;
        let paused = ClaimFilter {
            paused_named_task_ids: vec![registered.named_task_id],
            ..ClaimFilter::default()
        };
        let open = ClaimFilter::default();
        for (filter, limit, taken) in [(&open, 1, 1), (&paused, 10, 0)] {
            let created = create(&store, &registered, request_for(&registered.template)).await;
            let a = store
                .claim_ready_steps("w", 10, LEASE, t0())
                .await?
                .into_steps()
                .remove(0);
            let (report, batch) = store
                .record_outcomes_and_claim_with(
                    "w",
                    [success(&a, json!({}))],
                    at(1.0),
                    readied_only(limit, filter),
                )
                .await?;
            assert_eq!(report.newly_ready.len(), 2, "{backend}");
            assert_eq!(batch.len(), taken, "{backend}: limit {limit}");
            let mut pending = 0;
            for name in ["b", "c"] {
                let step = store.step(step_id(&created, name)).await?;
                if step.state == StepState::Pending {
                    pending += 1;
                    assert_eq!(step.attempts, 0, "{backend}");
                    assert!(
                        store.step_transitions(step.step_id).await?.is_empty(),
                        "{backend}: no history before a step's first claim"
                    );
                }
            }
            assert_eq!(pending, 2 - taken, "{backend}");
            // What the hand-off left is ready for the next claim.
            let rest = store.claim_ready_steps("w", 10, LEASE, at(2.0)).await?;
            assert_eq!(rest.len(), 2 - taken, "{backend}");
            let mut all: Vec<StepId> = batch
                .steps()
                .chain(rest.steps())
                .map(|s| s.step_id)
                .collect();
            all.sort();
            assert_eq!(report.newly_ready, all, "{backend}");
        }
        Ok(())
    })
    .await;
}

/// A batch too large for a list of parameters (its successes sent as one JSON parameter) claims
/// the children it readies the same way, each with its own parent's results, up to the limit.
#[tokio::test]
async fn a_large_hand_off_claims_what_it_readies_up_to_its_limit() {
    on_each_database(|store, backend| async move {
        let names: Vec<(String, Vec<String>)> = (0..20)
            .flat_map(|i| {
                [
                    (format!("r{i:02}"), vec![]),
                    (format!("c{i:02}"), vec![format!("r{i:02}")]),
                ]
            })
            .collect();
        let steps: Vec<(&str, Vec<&str>)> = names
            .iter()
            .map(|(n, d)| (n.as_str(), d.iter().map(String::as_str).collect()))
            .collect();
        let steps: Vec<(&str, &[&str])> = steps.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        let registered = register(&store, &shape("wide", &steps, 3)).await;
        let filter = ClaimFilter::default();
        for (limit, taken) in [(100, 20), (5, 5)] {
            let created = create(&store, &registered, request_for(&registered.template)).await;
            let roots = store
                .claim_ready_steps("w", 100, LEASE, t0())
                .await?
                .into_steps();
            assert_eq!(roots.len(), 20, "{backend}");
            let outcomes: Vec<_> = roots
                .iter()
                .map(|root| success(root, json!({"root": root.name})))
                .collect();
            let (report, batch) = store
                .record_outcomes_and_claim_with(
                    "w",
                    outcomes,
                    at(1.0),
                    readied_only(limit, &filter),
                )
                .await?;
            assert_eq!(report.recorded.len(), 20, "{backend}");
            assert_eq!(report.newly_ready.len(), 20, "{backend}");
            assert_eq!(batch.len(), taken, "{backend}: limit {limit}");
            for claim in &batch.claims {
                let root = format!("r{}", &claim.step.name[1..]);
                assert_eq!(
                    claim.inputs.parent_results[&root],
                    json!({"root": root}),
                    "{backend}"
                );
                assert_eq!(
                    last_row(&store, claim.step.step_id).await.0,
                    "in_progress",
                    "{backend}"
                );
            }
            let mut pending = 0;
            for (name, _) in names.iter().filter(|(n, _)| n.starts_with('c')) {
                if store.step(step_id(&created, name)).await?.state == StepState::Pending {
                    pending += 1;
                }
            }
            assert_eq!(pending, 20 - taken, "{backend}");
        }
        Ok(())
    })
    .await;
}

/// A child the filter refuses takes no room from one it allows: of a batch readying a child of
/// a paused named task and one of another, a hand-off allowed one claim takes the allowed one.
#[tokio::test]
async fn a_refused_child_leaves_the_room_to_an_allowed_one() {
    on_each_database(|store, backend| async move {
        let paused = register(&store, &shape("paused", &[("a", &[]), ("b", &["a"])], 3)).await;
        let open = register(&store, &shape("open", &[("a", &[]), ("b", &["a"])], 3)).await;
        let filter = ClaimFilter {
            paused_named_task_ids: vec![paused.named_task_id],
            ..ClaimFilter::default()
        };
        for _ in 0..3 {
            create(&store, &paused, request_for(&paused.template)).await;
        }
        let allowed = create(&store, &open, request_for(&open.template)).await;
        let roots = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(roots.len(), 4, "{backend}");
        let outcomes: Vec<_> = roots.iter().map(|root| success(root, json!({}))).collect();
        let (report, batch) = store
            .record_outcomes_and_claim_with("w", outcomes, at(1.0), readied_only(1, &filter))
            .await?;
        assert_eq!(report.newly_ready.len(), 4, "{backend}");
        let claimed = batch.into_steps();
        assert_eq!(claimed.len(), 1, "{backend}");
        assert_eq!(claimed[0].step_id, step_id(&allowed, "b"), "{backend}");
        Ok(())
    })
    .await;
}

/// PostgreSQL: two engines record the two parents of one child at once, each statement
/// starting before either commits (the task's row is held until both wait for it). The one
/// that commits second finds the child ready, but its snapshot holds the other parent's old
/// results; the child must be handed its parents' results as recorded, whichever claims it.
#[tokio::test]
async fn a_child_readied_by_two_engines_at_once_gets_both_parents_results() {
    on_each_database(|store, backend| async move {
        if backend != "postgres" {
            return Ok(());
        }
        let registered = register(
            &store,
            &shape("join", &[("a", &[]), ("b", &[]), ("x", &["a", "b"])], 3),
        )
        .await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let roots = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(roots.len(), 2);
        let holder = store.begin().await?;
        let held = holder
            .execute(
                "SELECT task_id FROM tasker_tasks WHERE task_id = $1 FOR UPDATE",
                [SqlValue::from(created.task_id.as_uuid())],
            )
            .await?;
        assert_eq!(held, 1);
        let mut handoffs = Vec::new();
        for root in roots {
            let store = store.clone();
            handoffs.push(tokio::spawn(async move {
                let filter = ClaimFilter::default();
                let results = json!({"from": root.name});
                store
                    .record_outcomes_and_claim_with(
                        "w",
                        [success(&root, results)],
                        at(1.0),
                        readied_only(10, &filter),
                    )
                    .await
            }));
        }
        // Both statements have started (and taken their snapshots) once both wait for the row.
        let waiting = async {
            loop {
                let probe = store.begin().await.unwrap();
                let waits = probe
                    .execute("SELECT 1 FROM pg_locks WHERE NOT granted", [])
                    .await
                    .unwrap();
                probe.rollback().await.unwrap();
                if waits >= 2 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("both hand-offs wait for the task's row");
        holder.rollback().await?;
        let mut claimed = Vec::new();
        for handoff in handoffs {
            let (_, batch) = handoff.await.unwrap()?;
            claimed.extend(batch.claims);
        }
        assert_eq!(claimed.len(), 1, "x is claimed once");
        assert_eq!(claimed[0].step.step_id, step_id(&created, "x"));
        assert_eq!(
            claimed[0].inputs.parent_results,
            [
                ("a".to_owned(), json!({"from": "a"})),
                ("b".to_owned(), json!({"from": "b"}))
            ]
            .into_iter()
            .collect(),
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_hand_off_claims_only_what_it_releases_for_successes_on_postgresql() {
    on_each_database(|store, backend| async move {
        let success = |step_id| StepOutcome::Success {
            step_id,
            attempt: 1,
            results: json!({}),
        };
        let (a, b) = (StepId::new(), StepId::new());
        let failure = StepOutcome::Failure(tasker_persistence::StepFailure {
            step_id: b,
            attempt: 1,
            error: tasker_domain::StepError::retryable("later"),
            retry_delay: Duration::from_secs(1),
        });
        let open = ClaimFilter::default();
        let limited = ClaimFilter {
            limits: vec![tasker_persistence::NamespaceLimit {
                namespace: "default".into(),
                max_running: 1,
                named_task_ids: Vec::new(),
            }],
            ..ClaimFilter::default()
        };
        let postgres = backend == "postgres";
        let cases = [
            ("successes", vec![success(a), success(b)], &open, postgres),
            ("a failure", vec![success(a), failure], &open, false),
            ("a step twice", vec![success(a), success(a)], &open, false),
            ("a namespace limit", vec![success(a)], &limited, false),
            ("nothing", Vec::new(), &open, false),
        ];
        for (case, outcomes, filter, expected) in cases {
            assert_eq!(
                store.hand_off_claims_only_released(&outcomes, filter),
                expected,
                "{backend}: {case}"
            );
        }
        Ok(())
    })
    .await;
}

/// A fan task created on `store`, and the claim of its root `a` for `w`.
async fn fan_with_a_claimed(
    store: &Store,
) -> anyhow::Result<(
    tasker_persistence::CreatedTask,
    tasker_persistence::ClaimedStep,
)> {
    let registered = register(store, &fan()).await;
    let created = create(store, &registered, request_for(&registered.template)).await;
    let a = store
        .claim_ready_steps("w", 10, LEASE, t0())
        .await?
        .into_steps()
        .remove(0);
    Ok((created, a))
}

/// Runs `statements` of raw SQL in one transaction of `store` (a test's trigger).
async fn run_sql(store: &Store, statements: &[&str]) -> anyhow::Result<()> {
    let txn = store.begin().await?;
    for sql in statements {
        txn.execute(sql, Vec::<SqlValue>::new()).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A hand-off the database refuses part-way, at the history rows it writes last, leaves
/// nothing behind (on SQLite its transaction is one script of statements, on PostgreSQL one
/// statement): the step still runs under its claim, its children still wait for it, and the
/// same hand-off succeeds once the database takes it.
#[tokio::test]
async fn a_hand_off_refused_part_way_leaves_nothing_behind() {
    on_each_database(|store, backend| async move {
        let (created, a) = fan_with_a_claimed(&store).await?;
        let filter = ClaimFilter::default();
        let (refuse, allow): (&[&str], &[&str]) = if backend == "postgres" {
            (
                &[
                    "CREATE FUNCTION refuse_history() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                    "CREATE TRIGGER refuse_history BEFORE INSERT ON tasker_workflow_step_transitions \
                     FOR EACH ROW EXECUTE FUNCTION refuse_history()",
                ],
                &["DROP TRIGGER refuse_history ON tasker_workflow_step_transitions"],
            )
        } else {
            (
                &[
                    "CREATE TRIGGER refuse_history BEFORE INSERT ON tasker_workflow_step_transitions \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
                ],
                &["DROP TRIGGER refuse_history"],
            )
        };
        run_sql(&store, refuse).await?;
        let history = store.step_transitions(a.step_id).await?.len();
        let hand_off = || {
            store.record_outcomes_and_claim_with(
                "w",
                [success(&a, json!({"n": 1}))],
                at(1.0),
                readied_only(10, &filter),
            )
        };
        let err = hand_off().await.unwrap_err();
        assert!(
            err.to_string().contains("refused by the test"),
            "{backend}: {err}"
        );
        let step = store.step(a.step_id).await?;
        assert_eq!(
            (step.state, step.claim_owner.as_deref(), step.results),
            (StepState::InProgress, Some("w"), None),
            "{backend}"
        );
        assert_eq!(
            store.step_transitions(a.step_id).await?.len(),
            history,
            "{backend}"
        );
        for (name, parents) in [("b", 1), ("c", 1), ("x", 2)] {
            let child = store.step(step_id(&created, name)).await?;
            assert_eq!(
                (child.state, child.unfinished_parents),
                (StepState::Pending, parents),
                "{backend}: {name}"
            );
        }

        run_sql(&store, allow).await?;
        let (report, batch) = hand_off().await?;
        assert_eq!(report.recorded.len(), 1, "{backend}");
        assert_eq!(
            names(&batch),
            BTreeSet::from(["b".to_owned(), "c".to_owned()]),
            "{backend}"
        );
        assert_eq!(
            store.step(step_id(&created, "x")).await?.unfinished_parents,
            1,
            "{backend}: counted down once"
        );
        Ok(())
    })
    .await;
}

/// SQLite: a hand-off whose caller stops waiting while its script waits for the write lock is
/// rolled back, and the writer's connection goes back to the pool outside any transaction, so
/// the next write works.
#[tokio::test]
async fn an_abandoned_hand_off_on_sqlite_leaves_the_writer_usable() {
    on_each_database_url(|url, backend| async move {
        if backend != "sqlite" {
            return Ok(());
        }
        let options = tasker_persistence::ConnectOptions {
            lease_clock: tasker_persistence::LeaseClock::Caller,
            ..Default::default()
        };
        let store = Store::connect(&url, &options).await?;
        let other = Store::connect(
            &url,
            &tasker_persistence::ConnectOptions {
                migrate: false,
                ..options.clone()
            },
        )
        .await?;
        let (created, a) = fan_with_a_claimed(&store).await?;

        let holder = other.begin().await?;
        let before = store.calls();
        let abandoned = tokio::spawn({
            let store = store.clone();
            let outcome = success(&a, json!({"n": 1}));
            async move {
                let filter = ClaimFilter::default();
                store
                    .record_outcomes_and_claim_with(
                        "w",
                        [outcome],
                        at(1.0),
                        readied_only(10, &filter),
                    )
                    .await
                    .map(drop)
            }
        });
        // The script is sent once it is counted; it then waits for the holder's lock.
        while store.calls() == before {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        holder.rollback().await?;

        let filter = ClaimFilter::default();
        let (report, batch) = store
            .record_outcomes_and_claim_with(
                "w",
                [success(&a, json!({"n": 2}))],
                at(2.0),
                readied_only(10, &filter),
            )
            .await?;
        assert_eq!(report.recorded.len(), 1);
        assert_eq!(
            names(&batch),
            BTreeSet::from(["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            store.step(a.step_id).await?.results,
            Some(json!({"n": 2})),
            "the abandoned hand-off recorded nothing"
        );
        assert_eq!(
            store.step(step_id(&created, "x")).await?.unfinished_parents,
            1
        );
        other.close().await;
        store.close().await;
        Ok(())
    })
    .await;
}
