//! Performance and bottleneck reports: exact counts, nearest-rank percentiles, the window's
//! boundaries, filters and limits, over tasks seeded on a fixed clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tasker_domain::{DefaultIdentity, StepError, TaskId, TaskState};
use tasker_persistence::{
    AnalyticsScope, Bottlenecks, CreateTaskOptions, Performance, RegisteredTemplate, StepFailure,
    StepOutcome, Store, TemplatePerformance,
};

use crate::support::*;

async fn create_at(store: &Store, registered: &RegisteredTemplate, now: DateTime<Utc>) -> TaskId {
    store
        .create_task(
            registered,
            &request_for(&registered.template),
            &CreateTaskOptions {
                now,
                identity: &DefaultIdentity,
                correlation_id: None,
                trace_parent: None,
            },
        )
        .await
        .unwrap()
        .task_id
}

/// Claims the one ready step at `start` and records `result` for it at `end`.
async fn attempt(
    store: &Store,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    result: Result<(), StepError>,
) {
    let claimed = store
        .claim_ready_steps("w", 10, Duration::from_secs(3600), start)
        .await
        .unwrap()
        .into_steps();
    assert_eq!(claimed.len(), 1, "exactly one step is ready at {start}");
    let step = &claimed[0];
    let outcome = match result {
        Ok(()) => StepOutcome::Success {
            step_id: step.step_id,
            attempt: step.attempt,
            results: json!({}),
        },
        Err(error) => StepOutcome::Failure(StepFailure {
            step_id: step.step_id,
            attempt: step.attempt,
            error,
            retry_delay: Duration::ZERO,
        }),
    };
    let report = store
        .record_outcomes("w", vec![outcome], end)
        .await
        .unwrap();
    assert_eq!(report.recorded.len(), 1);
}

/// `t0` plus `secs` seconds (negative for before it).
fn when(secs: f64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::milliseconds((secs * 1000.0) as i64)
}

fn timeout() -> StepError {
    StepError::retryable("slow").with_code("TIMEOUT")
}

/// Seeds, with the window `[t0, t0 + 1 h)` in mind:
/// - `default/timed` (step `only`): 20 tasks created at `t0 + 60 i` s finishing `i + 1` s later;
///   one failing permanently after 30 s; one created 10 minutes before the window and finishing
///   in it (650 s); one finishing exactly at the window's end; one cancelled; one created at
///   the window's end.
/// - `ops/other` (step `x`): one task of 60 s.
/// - `default/flaky` (step `call`): task A fails twice with `TIMEOUT` (2 s, 5 s) then succeeds
///   (10 s); task B fails once with `HTTP_500` (1 s) then succeeds (2 s).
async fn seed(store: &Store) {
    let timed = register(store, &shape("timed", &[("only", &[])], 1)).await;
    let mut other = shape("other", &[("x", &[])], 1);
    other.namespace_name = "ops".into();
    let other = register(store, &other).await;
    let flaky = register(store, &shape("flaky", &[("call", &[])], 3)).await;

    create_at(store, &timed, when(-600.0)).await;
    attempt(store, when(-600.0), when(50.0), Ok(())).await;
    for i in 0..20 {
        let start = f64::from(i) * 60.0;
        create_at(store, &timed, when(start)).await;
        attempt(store, when(start), when(start + f64::from(i) + 1.0), Ok(())).await;
    }
    create_at(store, &timed, when(1300.0)).await;
    attempt(
        store,
        when(1300.0),
        when(1330.0),
        Err(StepError::permanent("exploded", "BOOM")),
    )
    .await;
    create_at(store, &timed, when(100.0)).await;
    attempt(store, when(100.0), when(3600.0), Ok(())).await;

    create_at(store, &other, when(10.0)).await;
    attempt(store, when(10.0), when(70.0), Ok(())).await;

    create_at(store, &flaky, when(200.0)).await;
    attempt(store, when(200.0), when(202.0), Err(timeout())).await;
    attempt(store, when(210.0), when(215.0), Err(timeout())).await;
    attempt(store, when(220.0), when(230.0), Ok(())).await;
    create_at(store, &flaky, when(300.0)).await;
    attempt(
        store,
        when(300.0),
        when(301.0),
        Err(StepError::retryable("server error").with_code("HTTP_500")),
    )
    .await;
    attempt(store, when(310.0), when(312.0), Ok(())).await;

    let cancelled = create_at(store, &timed, when(400.0)).await;
    store
        .transition_task(
            cancelled,
            TaskState::Pending,
            TaskState::Cancelled,
            json!({}),
            when(410.0),
        )
        .await
        .unwrap();
    create_at(store, &timed, when(3600.0)).await;
}

fn hour() -> AnalyticsScope {
    AnalyticsScope::window(t0(), when(3600.0))
}

fn find<'a>(performance: &'a Performance, name: &str) -> &'a TemplatePerformance {
    performance
        .templates
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no `{name}` in {performance:?}"))
}

#[tokio::test]
async fn performance_counts_rates_and_nearest_rank_percentiles() {
    on_each_database(|store, _| async move {
        seed(&store).await;
        let performance = store.performance(&hour()).await?;
        assert_eq!(
            performance
                .templates
                .iter()
                .map(|t| format!("{}/{}", t.namespace, t.name))
                .collect::<Vec<_>>(),
            ["default/flaky", "default/timed", "ops/other"],
            "namespace and name order"
        );
        let timed = find(&performance, "timed");
        // Created in the window: 20 + failing + end-of-window finisher + cancelled; not the
        // one created before it, nor the one created at its (excluded) end.
        assert_eq!(timed.created, 23);
        // Finished in the window: 20 + the early one; the one finishing at the end is out.
        assert_eq!(
            (
                timed.completed,
                timed.failed,
                timed.cancelled,
                timed.resolved_manually
            ),
            (21, 1, 1, 0)
        );
        assert_eq!(timed.finished(), 23);
        // 22 durations: 1..=20 s, 30 s, 650 s. Ranks ceil(p n / 100): 11, 21, 22.
        assert_eq!(timed.duration_p50_ms, Some(11_000.0));
        assert_eq!(timed.duration_p95_ms, Some(30_000.0));
        assert_eq!(timed.duration_p99_ms, Some(650_000.0));
        let flaky = find(&performance, "flaky");
        assert_eq!((flaky.created, flaky.completed, flaky.failed), (2, 2, 0));
        assert_eq!(flaky.duration_p50_ms, Some(12_000.0));
        assert_eq!(flaky.duration_p95_ms, Some(30_000.0));
        let other = find(&performance, "other");
        assert_eq!(other.duration_p99_ms, Some(60_000.0));
        assert_eq!(performance.scope.minutes(), 60.0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn performance_windows_and_filters() {
    on_each_database(|store, _| async move {
        seed(&store).await;
        // Before anything happened: empty, not an error.
        let empty = store
            .performance(&AnalyticsScope::window(when(-7200.0), when(-3600.0)))
            .await?;
        assert!(empty.templates.is_empty(), "{empty:?}");
        // The start is included: only the task created at t0 and those finishing in the first
        // minute count.
        let minute = store
            .performance(&AnalyticsScope::window(t0(), when(60.0)))
            .await?;
        let timed = find(&minute, "timed");
        assert_eq!((timed.created, timed.completed), (1, 2));
        assert_eq!(timed.duration_p50_ms, Some(1_000.0));
        assert_eq!(timed.duration_p99_ms, Some(650_000.0));
        // The end of the hour onwards: the finisher at t0 + 1 h and the task created then.
        let after = store
            .performance(&AnalyticsScope::window(when(3600.0), when(7200.0)))
            .await?;
        let timed = find(&after, "timed");
        assert_eq!((timed.created, timed.completed), (1, 1));
        assert_eq!(timed.duration_p50_ms, Some(3_500_000.0));

        let ops = store
            .performance(&AnalyticsScope {
                namespace: Some("ops".into()),
                ..hour()
            })
            .await?;
        assert_eq!(ops.templates.len(), 1);
        assert_eq!(
            (ops.templates[0].name.as_str(), ops.templates[0].created),
            ("other", 1)
        );
        let named = store
            .performance(&AnalyticsScope {
                name: Some("flaky".into()),
                version: Some("0.1.0".into()),
                ..hour()
            })
            .await?;
        assert_eq!(named.templates.len(), 1, "{named:?}");
        assert_eq!(named.templates[0].name, "flaky");
        let none = store
            .performance(&AnalyticsScope {
                namespace: Some("ops".into()),
                name: Some("flaky".into()),
                ..hour()
            })
            .await?;
        assert!(none.templates.is_empty());
        Ok(())
    })
    .await;
}

fn step_names(bottlenecks: &Bottlenecks) -> [Vec<String>; 3] {
    [
        bottlenecks
            .slowest_steps
            .iter()
            .map(|s| format!("{}/{}", s.name, s.step))
            .collect(),
        bottlenecks
            .most_retried_steps
            .iter()
            .map(|s| format!("{}/{}", s.name, s.step))
            .collect(),
        bottlenecks
            .error_hot_spots
            .iter()
            .map(|s| format!("{}/{}", s.name, s.step))
            .collect(),
    ]
}

#[tokio::test]
async fn bottlenecks_rank_slow_retried_and_failing_steps() {
    on_each_database(|store, _| async move {
        seed(&store).await;
        let report = store.bottlenecks(&hour(), 10).await?;
        assert_eq!(
            step_names(&report),
            [
                vec!["other/x", "timed/only", "flaky/call"],
                vec!["flaky/call"],
                vec!["flaky/call", "timed/only"],
            ]
            .map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>())
        );
        let timed = &report.slowest_steps[1];
        // 22 attempts in the window: 1..=20 s, 30 s, 650 s (claimed before the window).
        assert_eq!(timed.attempts, 22);
        assert_eq!(timed.p95_ms, 30_000.0);
        assert_eq!(timed.max_ms, 650_000.0);
        assert!(
            (timed.mean_ms - 890_000.0 / 22.0).abs() < 1e-6,
            "{}",
            timed.mean_ms
        );
        let flaky = &report.slowest_steps[2];
        // 1, 2, 2, 5, 10 s.
        assert_eq!(
            (flaky.attempts, flaky.p95_ms, flaky.max_ms),
            (5, 10_000.0, 10_000.0)
        );
        assert!((flaky.mean_ms - 4_000.0).abs() < 1e-6);

        let retried = &report.most_retried_steps[0];
        assert_eq!(
            (
                retried.attempts,
                retried.retries,
                retried.steps_retried,
                retried.max_attempt
            ),
            (5, 3, 2, 3)
        );

        let hot = &report.error_hot_spots[0];
        assert_eq!((hot.attempts, hot.failed_attempts), (5, 3));
        assert_eq!(
            (
                hot.top_error_code.as_deref(),
                hot.top_error_message.as_deref(),
                hot.top_error_count
            ),
            (Some("TIMEOUT"), Some("slow"), 2)
        );
        let boom = &report.error_hot_spots[1];
        assert_eq!(
            (
                boom.attempts,
                boom.failed_attempts,
                boom.top_error_code.as_deref()
            ),
            (22, 1, Some("BOOM"))
        );
        assert_eq!(boom.top_error_message.as_deref(), Some("exploded"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn bottlenecks_limits_windows_and_filters() {
    on_each_database(|store, _| async move {
        seed(&store).await;
        let two = store.bottlenecks(&hour(), 2).await?;
        assert_eq!(two.limit, 2);
        assert_eq!(
            step_names(&two)[0],
            ["other/x", "timed/only"],
            "the limit cuts the slowest first"
        );
        let clamped = store.bottlenecks(&hour(), 0).await?;
        assert_eq!((clamped.limit, clamped.slowest_steps.len()), (1, 1));
        assert_eq!(store.bottlenecks(&hour(), 1_000).await?.limit, 100);

        let empty = store
            .bottlenecks(&AnalyticsScope::window(when(-7200.0), when(-3600.0)), 10)
            .await?;
        assert_eq!(
            step_names(&empty),
            [vec![], vec![], vec![]] as [Vec<String>; 3]
        );

        // [t0 + 200 s, t0 + 215 s): flaky A's first two attempts end in it (the second at
        // 215 s is out), so one failure and no retry.
        let early = store
            .bottlenecks(&AnalyticsScope::window(when(200.0), when(215.0)), 10)
            .await?;
        assert_eq!(step_names(&early)[0], ["flaky/call"]);
        assert_eq!(early.slowest_steps[0].attempts, 1);
        assert!(early.most_retried_steps.is_empty());
        assert_eq!(early.error_hot_spots[0].failed_attempts, 1);

        let ops = store
            .bottlenecks(
                &AnalyticsScope {
                    namespace: Some("ops".into()),
                    ..hour()
                },
                10,
            )
            .await?;
        assert_eq!(
            step_names(&ops),
            [vec!["other/x".to_owned()], vec![], vec![]]
        );
        let timed = store
            .bottlenecks(
                &AnalyticsScope {
                    name: Some("timed".into()),
                    ..hour()
                },
                10,
            )
            .await?;
        assert_eq!(
            step_names(&timed),
            [
                vec!["timed/only".to_owned()],
                vec![],
                vec!["timed/only".to_owned()]
            ]
        );
        Ok(())
    })
    .await;
}
