//! Recording batches of outcomes: each only where its claim holds, results stored as given,
//! children released once, counters moved and tasks finalized by the same batch.

use serde_json::json;
use tasker_domain::{StepState, TaskState};
use tasker_persistence::StepOutcome;

use crate::support::*;

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test]
async fn a_batch_of_successes_records_each_where_its_claim_holds() {
    on_each_database(|store, backend| async move {
        let names: Vec<String> = (0..150).map(|i| format!("s{i}")).collect();
        let registered = register(&store, &flat("flat", &names, 3)).await;
        let created = create(&store, &registered, request_for(&registered.template)).await;
        let claimed = store
            .claim_ready_steps("w", 1_000, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(claimed.len(), 150);
        let success = |i: usize, attempt: u32| StepOutcome::Success {
            step_id: claimed[i].step_id,
            attempt,
            results: json!({"i": i, "text": format!("é{i}")}),
        };
        // 147 good outcomes, one stale attempt, one step named twice (only the first counts),
        // and one step left running.
        let mut outcomes: Vec<StepOutcome> = (0..148).map(|i| success(i, 1)).collect();
        outcomes[5] = success(5, 2);
        outcomes.push(success(7, 1));
        let report = store.record_outcomes("w", outcomes, at(1.0)).await?;
        assert_eq!(
            report.rejected,
            [claimed[5].step_id, claimed[7].step_id],
            "{backend}"
        );
        assert_eq!(report.recorded.len(), 147, "{backend}");
        assert!(
            report
                .recorded
                .iter()
                .all(|r| r.state == StepState::Complete)
        );
        let stored = store.step(claimed[100].step_id).await?;
        assert_eq!(
            (stored.state, stored.results),
            (StepState::Complete, Some(json!({"i": 100, "text": "é100"})))
        );
        assert_eq!(
            store.step(claimed[5].step_id).await?.state,
            StepState::InProgress
        );
        let task = store.task(created.task_id).await?;
        assert_eq!(
            (task.done_steps, task.active_steps, task.state),
            (147, 3, TaskState::InProgress),
            "{backend}"
        );
        let history = store.step_transitions(claimed[100].step_id).await?;
        assert_eq!(
            history.iter().filter(|t| t.most_recent).count(),
            1,
            "{backend}"
        );
        assert_eq!(history.last().unwrap().to_state, "complete");
        Ok(())
    })
    .await;
}

/// A batch of nothing but successes, each step once (PostgreSQL records it in one statement,
/// a small batch's successes as parameters, a large one's as one JSON parameter): results of
/// every JSON kind are stored as given, `null` as JSON's null, and the outcomes whose claims do
/// not hold (a stale attempt, another owner's claim) change nothing.
#[tokio::test]
async fn a_batch_of_successes_stores_each_result_as_given() {
    on_each_database(|store, backend| async move {
        for fillers in [0, 40] {
            let mut names: Vec<String> = ["n", "s", "o", "a", "stale", "other"]
                .iter()
                .map(|n| (*n).to_owned())
                .collect();
            names.extend((0..fillers).map(|i| format!("f{i}")));
            let registered = register(&store, &flat(&format!("kinds{fillers}"), &names, 3)).await;
            create(&store, &registered, request_for(&registered.template)).await;
            let claimed = store
                .claim_ready_steps("w", 100, LEASE, t0())
                .await?
                .into_steps();
            assert_eq!(claimed.len(), names.len(), "{backend}");
            let by_name = |name: &str| {
                claimed
                    .iter()
                    .find(|c| c.name == name)
                    .map(|c| c.step_id)
                    .expect("claimed")
            };
            let mut given = vec![
                ("n".to_owned(), json!(null)),
                ("s".to_owned(), json!("text with \"quotes\" and \\ é")),
                (
                    "o".to_owned(),
                    json!({"nested": {"list": [1, 2.5, null, true]}}),
                ),
                ("a".to_owned(), json!([])),
            ];
            given.extend((0..fillers).map(|i| (format!("f{i}"), json!(i))));
            let mut outcomes: Vec<StepOutcome> = given
                .iter()
                .map(|(name, results)| StepOutcome::Success {
                    step_id: by_name(name),
                    attempt: 1,
                    results: results.clone(),
                })
                .collect();
            outcomes.push(StepOutcome::Success {
                step_id: by_name("stale"),
                attempt: 2,
                results: json!("stale"),
            });
            let report = store.record_outcomes("w", &outcomes, at(1.0)).await?;
            assert_eq!(report.rejected, [by_name("stale")], "{backend} {fillers}");
            assert_eq!(report.recorded.len(), given.len(), "{backend} {fillers}");
            let other = store
                .record_outcomes(
                    "someone-else",
                    [StepOutcome::Success {
                        step_id: by_name("other"),
                        attempt: 1,
                        results: json!("theirs"),
                    }],
                    at(1.0),
                )
                .await?;
            assert_eq!(other.rejected, [by_name("other")], "{backend} {fillers}");
            for (name, results) in given {
                let stored = store.step(by_name(&name)).await?;
                assert_eq!(
                    (stored.state, stored.results),
                    (StepState::Complete, Some(results)),
                    "{backend} {fillers} {name}"
                );
            }
            for name in ["stale", "other"] {
                let stored = store.step(by_name(name)).await?;
                assert_eq!(
                    (stored.state, stored.results),
                    (StepState::InProgress, None),
                    "{backend} {fillers} {name}"
                );
            }
        }
        Ok(())
    })
    .await;
}

/// A batch of successes across two tasks, with a stale outcome among them: a child of several
/// parents completed together is released once, each task's counters move by its own steps,
/// and tasks finished by the same batch are finalized together. Run at a width PostgreSQL
/// records in one statement and at one where the middle batch (250 outcomes) is past it and
/// takes a statement per phase: both give the same answers.
#[tokio::test]
async fn a_batch_across_tasks_releases_a_shared_child_once_and_counts_each_task() {
    on_each_database(|store, backend| async move {
        for width in [4_usize, 125] {
            let middles: Vec<String> = (0..width).map(|i| format!("m{i}")).collect();
            let mut steps: Vec<(&str, &[&str])> = vec![("root", &[])];
            steps.extend(middles.iter().map(|m| (m.as_str(), &["root"][..])));
            let middle_names: Vec<&str> = middles.iter().map(String::as_str).collect();
            steps.push(("join", &middle_names));
            let registered = register(&store, &shape(&format!("fan_{width}"), &steps, 3)).await;
            let mut tasks = Vec::new();
            for n in 0..2 {
                let request = request_for(&registered.template).context(json!({ "n": n }));
                tasks.push(create(&store, &registered, request).await);
            }
            tasks.sort_by_key(|t| t.task_id);
            let (one, two) = (&tasks[0], &tasks[1]);
            let roots = store
                .claim_ready_steps("w", 10, LEASE, t0())
                .await?
                .into_steps();
            assert_eq!(roots.len(), 2, "{backend} {width}");
            let done = |steps: &[tasker_persistence::ClaimedStep]| -> Vec<StepOutcome> {
                steps.iter().map(|s| success(s, json!({}))).collect()
            };
            let (report, batch) = store
                .record_outcomes_and_claim("w", done(&roots), at(1.0), 0, LEASE)
                .await?;
            assert_eq!(report.newly_ready.len(), 2 * width, "{backend} {width}");
            assert!(batch.is_empty());
            for task in &tasks {
                let stored = store.task(task.task_id).await?;
                assert_eq!(
                    (stored.done_steps, stored.active_steps),
                    (1, u32::try_from(width).unwrap()),
                    "{backend} {width}"
                );
            }
            let middle = store
                .claim_ready_steps("w", 1_000, LEASE, at(2.0))
                .await?
                .into_steps();
            assert_eq!(middle.len(), 2 * width, "{backend} {width}");
            // Every middle step of task one, all but one of task two's, and that one's outcome
            // again with a stale attempt.
            let (of_two, of_one): (Vec<_>, Vec<_>) = middle
                .iter()
                .cloned()
                .partition(|s| s.task_id == two.task_id);
            let mut outcomes = done(&of_one);
            outcomes.extend(done(&of_two[1..]));
            let mut stale = of_two[0].clone();
            stale.attempt += 1;
            outcomes.push(success(&stale, json!({})));
            let (report, batch) = store
                .record_outcomes_and_claim("w", outcomes, at(3.0), 0, LEASE)
                .await?;
            assert_eq!(report.rejected, [stale.step_id], "{backend} {width}");
            assert_eq!(report.recorded.len(), 2 * width - 1, "{backend} {width}");
            assert_eq!(
                report.newly_ready,
                [step_id(one, "join")],
                "{backend} {width}"
            );
            assert!(report.finalized.is_empty() && batch.is_empty());
            let width = u32::try_from(width).unwrap();
            let counters =
                |t: tasker_persistence::TaskRecord| (t.done_steps, t.active_steps, t.state);
            assert_eq!(
                counters(store.task(one.task_id).await?),
                (1 + width, 1, TaskState::InProgress),
                "{backend} {width}: the join is active"
            );
            assert_eq!(
                counters(store.task(two.task_id).await?),
                (width, 1, TaskState::InProgress),
                "{backend} {width}: one middle step still runs"
            );
            // The last middle step's hand-off claims both joins.
            let (report, batch) = store
                .record_outcomes_and_claim("w", done(&of_two[..1]), at(4.0), 10, LEASE)
                .await?;
            assert_eq!(
                report.newly_ready,
                [step_id(two, "join")],
                "{backend} {width}"
            );
            let joins = batch.into_steps();
            assert_eq!(joins.len(), 2, "{backend} {width}");
            let report = store.record_outcomes("w", done(&joins), at(5.0)).await?;
            assert_eq!(
                report.finalized,
                [
                    (one.task_id, TaskState::Complete),
                    (two.task_id, TaskState::Complete)
                ],
                "{backend} {width}"
            );
            for task in &tasks {
                assert_eq!(
                    counters(store.task(task.task_id).await?),
                    (width + 2, 0, TaskState::Complete),
                    "{backend} {width}"
                );
                assert_eq!(
                    states(&store.task_transitions(task.task_id).await?),
                    [("in_progress", false), ("complete", true)],
                    "{backend} {width}"
                );
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tasks_finished_by_one_batch_are_finalized_together_each_with_one_current_row() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &shape("pair", &[("only", &[])], 1)).await;
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(create(&store, &registered, request_for(&registered.template)).await);
        }
        let claimed = store
            .claim_ready_steps("w", 10, LEASE, t0())
            .await?
            .into_steps();
        assert_eq!(claimed.len(), 3, "{backend}");
        let outcomes: Vec<StepOutcome> = claimed.iter().map(|s| success(s, json!({}))).collect();
        let report = store.record_outcomes("w", outcomes, at(1.0)).await?;
        let mut finalized = report.finalized.clone();
        finalized.sort();
        let mut expected: Vec<_> = tasks
            .iter()
            .map(|t| (t.task_id, TaskState::Complete))
            .collect();
        expected.sort();
        assert_eq!(finalized, expected, "{backend}");
        for created in &tasks {
            let task = store.task(created.task_id).await?;
            assert_eq!(
                (task.state, task.completed_at),
                (TaskState::Complete, Some(at(1.0))),
                "{backend}"
            );
            let history = store.task_transitions(created.task_id).await?;
            let current: Vec<&str> = history
                .iter()
                .filter(|t| t.most_recent)
                .map(|t| t.to_state.as_str())
                .collect();
            assert_eq!(current, ["complete"], "{backend}");
        }
        Ok(())
    })
    .await;
}
