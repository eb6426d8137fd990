//! Upkeep, every `engine.lease / 3`: renew the leases of the attempts running here and of the
//! claims held back, cancel the attempts whose claims are gone, reclaim expired leases (any
//! owner's), forget what is no longer needed and refresh the claim filter; between upkeeps, the
//! runtime switches are re-read every `engine.switch_refresh`. And a drain's giving back of
//! claims.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tasker_domain::StepId;

use super::Coordinator;
use super::decide::{Due, lost_claims};

impl Coordinator {
    /// Runs upkeep or the switch refresh when due at `now`.
    pub(super) async fn upkeep_if_due(&mut self, now: DateTime<Utc>) {
        let due = self.schedule.due(now);
        if !matches!(due, Due::Nothing) {
            // Reclaimed leases and a changed claim filter can make steps ready.
            self.claim_need.maybe_ready();
        }
        match due {
            Due::Upkeep => {
                let held_ids: Vec<StepId> =
                    self.held.iter().map(|(step, _)| step.step_id).collect();
                let lost = self.renew_and_reclaim(&held_ids, now).await;
                if !lost.is_empty() {
                    self.held.retain(|(step, _)| !lost.contains(&step.step_id));
                }
                self.engine
                    .inner
                    .revoked
                    .retain(|id, _| held_ids.contains(id));
                self.engine.refresh_claim_filter().await;
                self.schedule.upkept(now);
                // What the events of a task need is kept only while it has attempts here (a
                // claim rebuilds it), so tasks finished elsewhere or by an operator do not
                // accumulate.
                let (per_task, held) = (&self.per_task, &self.held);
                self.tasks.retain(|id, _| {
                    per_task.contains_key(id) || held.iter().any(|(step, _)| step.task_id == *id)
                });
            }
            Due::SwitchRefresh => {
                self.engine.refresh_switches().await;
                self.schedule.switches_refreshed(now);
            }
            Due::Nothing => {}
        }
    }

    /// Renews the leases of the attempts running here and of the steps claimed but held back by
    /// the per-task limit (`held`), and reclaims expired leases. An attempt whose claim is gone
    /// (reclaimed, or finished by an operator) or whose lease lapsed while renewal failed (the
    /// database unreachable for a whole lease since the last renewal) is cancelled here, so its
    /// outcome is never recorded; returns the held steps whose claims are gone in the same way
    /// (never to be started).
    async fn renew_and_reclaim(&mut self, held: &[StepId], now: DateTime<Utc>) -> HashSet<StepId> {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        let running: Vec<(StepId, u32)> = inner.running.iter().map(|e| *e.key()).collect();
        let ids: Vec<StepId> = running
            .iter()
            .map(|(id, _)| *id)
            .chain(held.iter().copied())
            .collect();
        let mut lost = HashSet::new();
        if ids.is_empty() {
            self.schedule.last_renewed = now;
        } else {
            let renewed = inner
                .store
                .extend_leases(&inner.owner, &ids, inner.config.lease, now)
                .await;
            let kept = match renewed {
                Ok(kept) => {
                    inner.metrics.leases_renewed.add(kept.len() as u64, &[]);
                    Some(kept)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "extending leases failed");
                    None
                }
            };
            lost = lost_claims(
                &ids,
                kept.as_deref(),
                self.schedule.last_renewed,
                inner.config.lease,
                now,
            );
            if kept.is_some() {
                self.schedule.last_renewed = now;
            }
        }
        if !lost.is_empty() {
            let mut cancelled = 0usize;
            for key in &running {
                if lost.contains(&key.0)
                    && let Some(entry) = inner.running.get(key)
                {
                    entry.value().1.cancel();
                    cancelled += 1;
                }
            }
            tracing::warn!(
                running = cancelled,
                held = lost.len() - cancelled,
                "claims lost or leases lapsed: those attempts are cancelled here and not recorded"
            );
        }
        match inner.store.reclaim_expired(now).await {
            Ok(report) if !report.recorded.is_empty() => {
                inner
                    .metrics
                    .leases_reclaimed
                    .add(report.recorded.len() as u64, &[]);
                tracing::warn!(
                    steps = report.recorded.len(),
                    "reclaimed attempts whose lease expired"
                );
                self.after_record(&report, &HashMap::new(), now).await;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "reclaiming expired leases failed"),
        }
        lost.retain(|id| held.contains(id));
        lost
    }

    /// Gives back this engine's claims on `steps` without using up their attempts (a drain).
    pub(super) async fn release_claims(&self, steps: &[StepId]) {
        let inner = &self.engine.inner;
        match inner
            .store
            .release_claims(&inner.owner, steps, inner.clock.now())
            .await
        {
            Ok(released) => {
                if !released.is_empty() {
                    tracing::info!(
                        steps = released.len(),
                        "gave back claims on shutdown; the steps are ready again"
                    );
                }
            }
            // The claims lapse at their lease expiry instead (the attempt then counts).
            Err(err) => tracing::warn!(error = %err, "giving back claims on shutdown failed"),
        }
    }
}
