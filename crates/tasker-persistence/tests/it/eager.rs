//! Claims made by creation: the root steps written already claimed for the creating engine,
//! with the task started and both transitions in the history, in the creation's own write.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tasker_domain::{DefaultIdentity, IdempotencyKey, StepState, TaskState};
use tasker_persistence::{
    CreateTaskOptions, LeaseClock, PreparedTask, RegisteredTemplate, Store, StoreError,
};

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

fn options() -> CreateTaskOptions<'static> {
    CreateTaskOptions {
        now: t0(),
        identity: &DefaultIdentity,
        correlation_id: Some("corr-1".to_owned()),
        trace_parent: None,
    }
}

fn prepared(registered: &RegisteredTemplate) -> PreparedTask {
    Store::prepare_task(registered, &request_for(&registered.template), &options()).unwrap()
}

#[tokio::test]
async fn creation_claims_the_root_steps_and_starts_the_task_in_its_own_write() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let mut task = prepared(&registered);
        assert_eq!(task.claimable_at_creation(), 1, "{backend}: one root");
        assert_eq!(store.claim_at_creation(&mut task, "w", LEASE, at(1.0)), 1);
        assert_eq!(task.claimable_at_creation(), 0, "{backend}: claims once");
        let calls = (store.calls(), store.statements());
        let created = store.create_prepared(vec![task]).await.pop().unwrap()?;
        if backend == "postgres" {
            assert_eq!(
                (store.calls() - calls.0, store.statements() - calls.1),
                (1, 1),
                "one statement creates and claims"
            );
        }
        assert_eq!(created.state, TaskState::InProgress, "{backend}");
        assert_eq!(created.claimed.started_tasks, vec![created.task_id]);
        let claims = &created.claimed.claims;
        assert_eq!(claims.len(), 1, "{backend}");
        let a = &claims[0];
        assert_eq!(
            (
                a.step.step_id,
                a.step.name.as_str(),
                a.step.attempt,
                a.step.retried
            ),
            (step_id(&created, "a"), "a", 1, false),
            "{backend}"
        );
        // The attempt and its lease start when the claim was made, not when the task was laid
        // out.
        assert_eq!(a.step.lease_expires_at, at(1.0) + LEASE, "{backend}");
        assert_eq!(a.inputs.task_created_at, t0());
        assert_eq!(a.step.named_task_id, registered.named_task_id);
        assert_eq!(a.inputs.correlation_id, "corr-1");
        assert_eq!(a.inputs.task_context, created.context);
        assert!(a.inputs.parent_results.is_empty());

        // Stored as a claim would have left it.
        let stored = store.step(a.step.step_id).await?;
        assert_eq!(stored.state, StepState::InProgress, "{backend}");
        assert_eq!(stored.claim_owner.as_deref(), Some("w"));
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.lease_expires_at, Some(at(1.0) + LEASE));
        assert_eq!(stored.last_attempted_at, Some(at(1.0)));
        assert_eq!(stored.next_attempt_at, None);
        let history = store.step_transitions(a.step.step_id).await?;
        assert_eq!(states(&history), vec![("in_progress", true)], "{backend}");
        assert_eq!(history[0].metadata["claim_owner"], json!("w"));
        let task = store.task(created.task_id).await?;
        assert_eq!(task.state, TaskState::InProgress, "{backend}");
        let task_history = store.task_transitions(created.task_id).await?;
        assert_eq!(
            states(&task_history),
            vec![("in_progress", true)],
            "{backend}"
        );
        for name in ["b", "c", "d"] {
            let step = store.step(step_id(&created, name)).await?;
            assert_eq!(
                (step.state, step.claim_owner, step.lease_expires_at),
                (StepState::Pending, None, None),
                "{backend}: {name}"
            );
        }

        // Nothing is left to claim, and the claim records like any other.
        assert!(
            store
                .claim_ready_steps("v", 10, LEASE, at(1.0))
                .await?
                .is_empty()
        );
        let (report, batch) = store
            .record_outcomes_and_claim("w", [success(&a.step, json!({"n": 1}))], at(2.0), 10, LEASE)
            .await?;
        assert_eq!(report.recorded.len(), 1, "{backend}");
        let mut next: Vec<String> = batch.steps().map(|s| s.name.clone()).collect();
        next.sort();
        assert_eq!(next, vec!["b", "c"], "{backend}");
        assert_eq!(
            batch.claims[0].inputs.parent_results["a"],
            json!({"n": 1}),
            "{backend}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_claims_nothing() {
    on_each_database(|store, backend| async move {
        let registered = register(&store, &diamond()).await;
        let key = IdempotencyKey("order-1".to_owned());
        let keyed = || {
            Store::prepare_task(
                &registered,
                &request_for(&registered.template),
                &CreateTaskOptions {
                    identity: &key,
                    ..options()
                },
            )
        };
        store.create_prepared(vec![keyed()?]).await.pop().unwrap()?;
        let mut again = keyed()?;
        assert_eq!(store.claim_at_creation(&mut again, "w", LEASE, t0()), 1);
        let refused = store.create_prepared(vec![again]).await.pop().unwrap();
        assert!(
            matches!(refused, Err(StoreError::DuplicateTask { .. })),
            "{backend}: {refused:?}"
        );
        let health = store.health_counts(t0()).await?;
        assert_eq!(
            (health.claimed_steps, health.ready_steps),
            (0, 1),
            "{backend}: the first task's root is ready, unclaimed"
        );
        Ok(())
    })
    .await;
}

/// A batch mixing claimed and unclaimed tasks, one of them too large for SQLite's one-call
/// write (the transaction path), each gets its own claims.
#[tokio::test]
async fn a_batch_claims_each_task_s_roots_on_every_write_path() {
    on_each_database(|store, backend| async move {
        let names: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
        let wide = register(&store, &flat("wide", &names, 3)).await;
        let small = register(&store, &diamond()).await;
        let mut big = prepared(&wide);
        assert_eq!(store.claim_at_creation(&mut big, "w", LEASE, t0()), 200);
        let mut claimed = prepared(&small);
        store.claim_at_creation(&mut claimed, "w", LEASE, t0());
        let other = Store::prepare_task(
            &small,
            &request_for(&small.template),
            &CreateTaskOptions {
                now: at(0.5),
                ..options()
            },
        )?;
        let results = store.create_prepared(vec![big, claimed, other]).await;
        let created: Vec<_> = results.into_iter().collect::<Result<_, _>>()?;
        assert_eq!(created[0].claimed.len(), 200, "{backend}");
        assert_eq!(created[1].claimed.len(), 1, "{backend}");
        assert!(created[2].claimed.is_empty(), "{backend}");
        assert_eq!(created[2].state, TaskState::Pending);
        for claim in created[0]
            .claimed
            .claims
            .iter()
            .chain(&created[1].claimed.claims)
        {
            let stored = store.step(claim.step.step_id).await?;
            assert_eq!(
                (stored.state, stored.lease_expires_at),
                (StepState::InProgress, Some(claim.step.lease_expires_at)),
                "{backend}: {}",
                claim.step.name
            );
        }
        let health = store.health_counts(at(1.0)).await?;
        assert_eq!(
            (health.claimed_steps, health.ready_steps),
            (201, 1),
            "{backend}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_claim_at_creation_takes_its_lease_from_the_database_clock() {
    on_each_database(|store, backend| async move {
        let store = store.with_lease_clock(LeaseClock::Database);
        let registered = register(&store, &diamond()).await;
        let mut task = prepared(&registered);
        store.claim_at_creation(&mut task, "w", LEASE, t0());
        let before = Utc::now();
        let created = store.create_prepared(vec![task]).await.pop().unwrap()?;
        let lease = created.claimed.claims[0].step.lease_expires_at;
        let slack = Duration::from_secs(5);
        assert!(
            before + LEASE - slack <= lease && lease <= Utc::now() + LEASE + slack,
            "{backend}: the lease runs from the database's clock, not the caller's {}: {lease}",
            t0()
        );
        let stored = store.step(created.claimed.claims[0].step.step_id).await?;
        assert_eq!(stored.lease_expires_at, Some(lease), "{backend}");
        assert_eq!(stored.last_attempted_at, Some(t0()), "{backend}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_task_with_bypassed_steps_is_not_claimed_at_creation() {
    on_each_database(|store, backend| async move {
        let registered = register(
            &store,
            &template(
                "name: skippy\nstep_templates:\n  \
                 - name: a\n    handler_class: t\n    skippable: true\n  \
                 - name: b\n    handler_class: t\n    depends_on_step: a\n",
            ),
        )
        .await;
        let mut request = request_for(&registered.template);
        request.bypass_steps = vec!["a".to_owned()];
        let mut task = Store::prepare_task(&registered, &request, &options())?;
        assert_eq!(task.claimable_at_creation(), 0);
        assert_eq!(store.claim_at_creation(&mut task, "w", LEASE, t0()), 0);
        let created = store.create_prepared(vec![task]).await.pop().unwrap()?;
        assert_eq!(created.state, TaskState::Pending, "{backend}");
        assert!(created.claimed.is_empty());
        // Its bypass history is written by the one-statement write too.
        let history = store.step_transitions(step_id(&created, "a")).await?;
        assert_eq!(
            states(&history),
            vec![("resolved_manually", true)],
            "{backend}"
        );
        Ok(())
    })
    .await;
}
