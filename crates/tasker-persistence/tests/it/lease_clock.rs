//! Leases on the database's clock: a caller whose clock is far behind or far ahead neither
//! shortens, lengthens nor takes back another process's live claim.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use tasker_domain::{DefaultIdentity, StepState};
use tasker_persistence::{
    CreateTaskOptions, CreatedTask, LeaseClock, RegisteredTemplate, SqlValue, StepOutcome, Store,
    to_micros,
};

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

/// How far the database's clock and this process's may drift apart while a test runs (the
/// database is local; this only absorbs the time the statements take).
const SLACK: Duration = Duration::from_secs(5);

/// A caller clock 26 years behind.
fn past(secs: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap() + Duration::from_secs(secs)
}

/// A caller clock 974 years ahead.
fn future() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap()
}

/// `store` with leases on the database's clock.
fn on_database_clock(store: &Store) -> Store {
    let store = store.clone().with_lease_clock(LeaseClock::Database);
    assert_eq!(store.lease_clock(), LeaseClock::Database);
    store
}

/// A task created at the caller's (past) `now`, so that its steps are ready at that clock.
async fn create_in_the_past(store: &Store, registered: &RegisteredTemplate) -> CreatedTask {
    store
        .create_task(
            registered,
            &request_for(&registered.template),
            &CreateTaskOptions {
                now: past(0),
                identity: &DefaultIdentity,
                correlation_id: None,
                trace_parent: None,
            },
        )
        .await
        .unwrap()
}

/// Panics unless `expiry` is `lease` after some instant between `before` and now (this
/// process's clock standing in for the database's).
fn assert_runs_from_the_database_clock(
    expiry: DateTime<Utc>,
    before: DateTime<Utc>,
    lease: Duration,
    what: &str,
) {
    let earliest = before + lease - SLACK;
    let latest = Utc::now() + lease + SLACK;
    assert!(
        earliest <= expiry && expiry <= latest,
        "{what}: lease expires at {expiry}, expected between {earliest} and {latest}"
    );
}

#[tokio::test]
async fn a_claim_by_a_caller_clock_in_the_past_gets_a_lease_from_the_database_clock() {
    on_each_database(|store, backend| async move {
        let store = on_database_clock(&store);
        let registered = register(&store, &shape("behind", &[("a", &[]), ("b", &["a"])], 3)).await;
        let created = create_in_the_past(&store, &registered).await;

        let before = Utc::now();
        let claimed = store
            .claim_ready_steps("slow-clock", 10, LEASE, past(1))
            .await?
            .into_steps();
        assert_eq!(claimed.len(), 1, "{backend}");
        assert_runs_from_the_database_clock(
            claimed[0].lease_expires_at,
            before,
            LEASE,
            &format!("{backend}: the claim"),
        );
        let stored = store.step(claimed[0].step_id).await?;
        assert_eq!(
            stored.lease_expires_at,
            Some(claimed[0].lease_expires_at),
            "{backend}: the claim reports the lease it stored"
        );
        assert_eq!(
            stored.last_attempted_at,
            Some(past(1)),
            "{backend}: other times keep the caller's clock"
        );

        // A process whose clock is far ahead neither counts the lease as lapsed nor takes it.
        let health = store.health_counts(future()).await?;
        assert_eq!(
            (health.claimed_steps, health.expired_claims),
            (1, 0),
            "{backend}"
        );
        assert!(
            store.reclaim_expired(future()).await?.recorded.is_empty(),
            "{backend}: a live lease is not reclaimed whatever the caller's clock says"
        );
        assert_eq!(
            store.step(claimed[0].step_id).await?.state,
            StepState::InProgress,
            "{backend}"
        );

        // Recording and claiming in one transaction leases from the database's clock too.
        let before = Utc::now();
        let (report, batch) = store
            .record_outcomes_and_claim(
                "slow-clock",
                vec![StepOutcome::Success {
                    step_id: claimed[0].step_id,
                    attempt: claimed[0].attempt,
                    results: json!({}),
                }],
                past(2),
                10,
                LEASE,
            )
            .await?;
        assert_eq!(report.newly_ready, [step_id(&created, "b")], "{backend}");
        assert_eq!(batch.len(), 1, "{backend}");
        assert_runs_from_the_database_clock(
            batch.claims[0].step.lease_expires_at,
            before,
            LEASE,
            &format!("{backend}: the claim after recording"),
        );
        assert!(
            store.reclaim_expired(future()).await?.recorded.is_empty(),
            "{backend}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_lease_the_database_clock_says_has_lapsed_is_reclaimed_at_any_caller_clock() {
    on_each_database(|store, backend| async move {
        let store = on_database_clock(&store);
        let registered = register(&store, &shape("lapsed", &[("a", &[])], 3)).await;
        create_in_the_past(&store, &registered).await;
        let claimed = store
            .claim_ready_steps("stalled", 10, LEASE, past(1))
            .await?
            .into_steps();
        assert_eq!(claimed.len(), 1, "{backend}");
        assert!(
            store.reclaim_expired(past(1)).await?.recorded.is_empty(),
            "{backend}: not yet lapsed"
        );

        // The lease ran out a minute ago (written, not slept for): lapsed by the database's
        // clock, though 26 years ahead of the caller's.
        let txn = store.begin().await?;
        let moved = txn
            .execute(
                "UPDATE tasker_workflow_steps SET lease_expires_at = $1",
                [SqlValue::from(to_micros(
                    Utc::now() - Duration::from_secs(60),
                ))],
            )
            .await?;
        txn.commit().await?;
        assert_eq!(moved, 1, "{backend}");

        let health = store.health_counts(past(2)).await?;
        assert_eq!(
            (health.claimed_steps, health.expired_claims),
            (0, 1),
            "{backend}: lapsed by the database's clock, though not by the caller's"
        );
        let reclaimed = store.reclaim_expired(past(2)).await?;
        assert_eq!(reclaimed.recorded.len(), 1, "{backend}");
        assert_eq!(reclaimed.recorded[0].step_id, claimed[0].step_id);
        assert_eq!(
            reclaimed.recorded[0].next_attempt_at,
            Some(past(2)),
            "{backend}: the retry is due at the caller's now"
        );
        let step = store.step(claimed[0].step_id).await?;
        assert_eq!(step.state, StepState::Error, "{backend}");
        assert_eq!(step.last_error.unwrap()["error_code"], "LEASE_EXPIRED");
        assert_eq!(step.lease_expires_at, None, "{backend}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn extending_a_lease_with_a_skewed_caller_clock_runs_from_the_database_clock() {
    on_each_database(|store, backend| async move {
        let store = on_database_clock(&store);
        let registered = register(&store, &shape("extended", &[("a", &[])], 3)).await;
        create_in_the_past(&store, &registered).await;
        let claimed = store
            .claim_ready_steps("worker", 10, LEASE, past(1))
            .await?
            .into_steps();
        let id = claimed[0].step_id;

        // A caller clock far ahead: the lease is not pushed into the year 3000.
        let longer = Duration::from_secs(600);
        let before = Utc::now();
        assert_eq!(
            store
                .extend_leases("worker", &[id], longer, future())
                .await?,
            [id],
            "{backend}"
        );
        let step = store.step(id).await?;
        assert_runs_from_the_database_clock(
            step.lease_expires_at.unwrap(),
            before,
            longer,
            &format!("{backend}: extended from a clock ahead"),
        );
        assert_eq!(
            step.updated_at,
            future(),
            "{backend}: other times keep the caller's clock"
        );

        // A caller clock far behind: the lease is not left lapsed in the year 2000.
        let before = Utc::now();
        assert_eq!(
            store.extend_leases("worker", &[id], LEASE, past(2)).await?,
            [id],
            "{backend}"
        );
        assert_runs_from_the_database_clock(
            store.step(id).await?.lease_expires_at.unwrap(),
            before,
            LEASE,
            &format!("{backend}: extended from a clock behind"),
        );
        assert!(
            store.reclaim_expired(future()).await?.recorded.is_empty(),
            "{backend}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_caller_clock_still_decides_when_a_store_is_set_to_it() {
    on_each_database(|store, backend| async move {
        let store = store.with_lease_clock(LeaseClock::Caller);
        let registered = register(&store, &shape("caller", &[("a", &[])], 3)).await;
        create_in_the_past(&store, &registered).await;
        let claimed = store
            .claim_ready_steps("worker", 10, LEASE, past(1))
            .await?
            .into_steps();
        assert_eq!(claimed[0].lease_expires_at, past(1) + LEASE, "{backend}");
        assert_eq!(
            store
                .extend_leases("worker", &[claimed[0].step_id], LEASE, past(10))
                .await?
                .len(),
            1
        );
        assert_eq!(
            store.step(claimed[0].step_id).await?.lease_expires_at,
            Some(past(10) + LEASE),
            "{backend}"
        );
        let health = store.health_counts(past(41)).await?;
        assert_eq!(
            (health.claimed_steps, health.expired_claims),
            (0, 1),
            "{backend}"
        );
        assert_eq!(
            store.reclaim_expired(past(41)).await?.recorded.len(),
            1,
            "{backend}: the caller's clock expires the lease"
        );
        Ok(())
    })
    .await;
}
