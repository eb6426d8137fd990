//! Runtime switches: stored with an audit trail, and honoured by claims (pauses exclude, a
//! namespace limit holds across concurrent claimers).

use std::time::Duration;

use serde_json::json;
use tasker_persistence::{ClaimFilter, NamespaceLimit, StepOutcome, SwitchKind, SwitchTarget};

use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn switches_are_stored_replaced_lifted_and_every_change_is_logged() {
    on_each_database(|store, db| async move {
        let billing = SwitchTarget::namespace("billing");
        let refunds = SwitchTarget::template("billing", "refund", Some("1.0.0".into()));
        store
            .pause(&billing, "incident 1", "alice", at(1.0))
            .await?;
        store
            .pause(&billing, "incident 1, still", "bob", at(2.0))
            .await?;
        store
            .pause(&refunds, "bad release", "alice", at(3.0))
            .await?;
        store
            .limit_namespace("batch", Some(4), "protect the API", "carol", at(4.0))
            .await?;
        let switches = store.runtime_switches().await?;
        let keys: Vec<(SwitchKind, String, Option<u32>)> = switches
            .iter()
            .map(|s| (s.kind, s.target.key(), s.max_running))
            .collect();
        assert_eq!(
            keys,
            vec![
                (SwitchKind::Limit, "batch".into(), Some(4)),
                (SwitchKind::Pause, "billing".into(), None),
                (SwitchKind::Pause, "billing/refund@1.0.0".into(), None),
            ],
            "{db}"
        );
        let billing_switch = &switches[1];
        assert_eq!(
            (
                billing_switch.reason.as_str(),
                billing_switch.set_by.as_str(),
                billing_switch.set_at
            ),
            ("incident 1, still", "bob", at(2.0)),
            "pausing again replaces the reason"
        );
        assert!(
            store
                .resume(&billing, "fixed", "bob", at(5.0))
                .await?
                .is_some()
        );
        assert!(
            store
                .resume(&billing, "again", "bob", at(6.0))
                .await?
                .is_none(),
            "nothing to resume: nothing logged"
        );
        assert!(
            store
                .limit_namespace("batch", None, "done", "carol", at(7.0))
                .await?
                .is_some()
        );
        assert_eq!(store.runtime_switches().await?.len(), 1);
        let log = store.runtime_switch_changes(10).await?;
        let actions: Vec<(&str, String, &str, &str)> = log
            .iter()
            .map(|c| {
                (
                    c.action.as_str(),
                    c.target.key(),
                    c.changed_by.as_str(),
                    c.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            vec![
                ("unlimit", "batch".into(), "carol", "done"),
                ("resume", "billing".into(), "bob", "fixed"),
                ("limit", "batch".into(), "carol", "protect the API"),
                (
                    "pause",
                    "billing/refund@1.0.0".into(),
                    "alice",
                    "bad release"
                ),
                ("pause", "billing".into(), "bob", "incident 1, still"),
                ("pause", "billing".into(), "alice", "incident 1"),
            ]
        );
        assert_eq!(log[2].max_running, Some(4));
        assert_eq!(log[0].changed_at, at(7.0));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_paused_template_gets_no_claims_and_a_namespace_limit_caps_what_runs() {
    on_each_database(|store, db| async move {
        let paused = register(&store, &shape("paused", &[("a", &[])], 3)).await;
        let limited = register(
            &store,
            &shape("limited", &[("a", &[]), ("b", &[]), ("c", &[])], 3),
        )
        .await;
        let other = register(&store, &shape("other", &[("a", &[])], 3)).await;
        let paused_task = create(&store, &paused, request_for(&paused.template)).await;
        let mut limited_tasks = Vec::new();
        for n in 0..2 {
            let mut request = request_for(&limited.template);
            request.context = json!({"n": n});
            limited_tasks.push(create(&store, &limited, request).await);
        }
        let other_task = create(&store, &other, request_for(&other.template)).await;
        let filter = ClaimFilter {
            paused_named_task_ids: vec![paused.named_task_id],
            limits: vec![NamespaceLimit {
                namespace: "default".into(),
                max_running: 2,
                named_task_ids: vec![limited.named_task_id],
            }],
            ..ClaimFilter::default()
        };
        // Two claimers ("processes"), each asking for far more than the limit allows.
        let first = store
            .claim_ready_steps_where("worker-a", 50, LEASE, at(1.0), &filter)
            .await?;
        let second = store
            .claim_ready_steps_where("worker-b", 50, LEASE, at(1.0), &filter)
            .await?;
        let named = |batch: &tasker_persistence::ClaimBatch, id: tasker_domain::TemplateId| {
            batch.steps().filter(|s| s.named_task_id == id).count()
        };
        assert_eq!(
            named(&first, limited.named_task_id) + named(&second, limited.named_task_id),
            2,
            "{db}: the limit"
        );
        assert_eq!(
            named(&first, other.named_task_id),
            1,
            "{db}: unlimited namespaces still claim"
        );
        assert_eq!(
            named(&first, paused.named_task_id) + named(&second, paused.named_task_id),
            0,
            "{db}: paused"
        );
        assert_eq!(store.steps(paused_task.task_id).await?[0].attempts, 0);
        assert!(store.steps(other_task.task_id).await?[0].attempts == 1);

        // One limited attempt finishes: exactly one more may start, in the same transaction.
        let running = first
            .steps()
            .chain(second.steps())
            .find(|s| s.named_task_id == limited.named_task_id)
            .unwrap()
            .clone();
        let owner = if first.steps().any(|s| s.step_id == running.step_id) {
            "worker-a"
        } else {
            "worker-b"
        };
        let (_, next) = store
            .record_outcomes_and_claim_where(
                owner,
                [StepOutcome::Success {
                    step_id: running.step_id,
                    attempt: running.attempt,
                    results: json!({}),
                }],
                at(2.0),
                50,
                LEASE,
                &filter,
            )
            .await?;
        assert_eq!(
            named(&next, limited.named_task_id),
            1,
            "{db}: one slot freed"
        );
        assert!(
            store
                .claim_ready_steps_where("worker-b", 50, LEASE, at(2.0), &filter)
                .await?
                .into_steps()
                .is_empty()
        );

        // Lifting the pause (an empty filter) lets the paused task's step be claimed.
        let lifted = ClaimFilter {
            limits: filter.limits.clone(),
            ..ClaimFilter::default()
        };
        let batch = store
            .claim_ready_steps_where("worker-a", 50, LEASE, at(3.0), &lifted)
            .await?;
        assert_eq!(named(&batch, paused.named_task_id), 1, "{db}");
        assert_eq!(
            named(&batch, limited.named_task_id),
            0,
            "{db}: still at the limit"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_claimers_never_exceed_a_namespace_limit() {
    on_each_database(|store, db| async move {
        let wide = register(
            &store,
            &shape("wide", &[("a", &[]), ("b", &[]), ("c", &[]), ("d", &[])], 3),
        )
        .await;
        for n in 0..5 {
            let mut request = request_for(&wide.template);
            request.context = json!({"n": n});
            create(&store, &wide, request).await;
        }
        let filter = ClaimFilter {
            limits: vec![NamespaceLimit {
                namespace: "default".into(),
                max_running: 3,
                named_task_ids: vec![wide.named_task_id],
            }],
            ..ClaimFilter::default()
        };
        let claims = (0..6).map(|i| {
            let store = store.clone();
            let filter = filter.clone();
            tokio::spawn(async move {
                store
                    .claim_ready_steps_where(&format!("worker-{i}"), 10, LEASE, at(1.0), &filter)
                    .await
                    .map(|batch| batch.len())
            })
        });
        let mut total = 0;
        for claim in claims.collect::<Vec<_>>() {
            total += claim.await.unwrap()?;
        }
        assert_eq!(
            total, 3,
            "{db}: six concurrent claimers took exactly the limit"
        );
        Ok(())
    })
    .await;
}
