//! Claims made by creation: while this engine's coordinator runs, a task it creates is written
//! with its root steps already claimed for it (`Store::claim_at_creation`), and the coordinator
//! starts them without a claim of its own: one commit per task fewer.
//!
//! The claims travel to the coordinator through [`CreatedClaims`], which it opens once it has
//! read its claim filter and closes when it drains or stops; a creation claims only while it is
//! open, and a claim that finds it closed is given back at once. Each claim holds a slot of
//! `engine.max_concurrent_steps` (`Inner::reserve_slots`) from before the write until the
//! coordinator runs or holds its step. The write and the hand-over run on a task of their own,
//! so a caller that stops waiting strands no claim.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tasker_domain::StepId;
use tasker_persistence::{ClaimBatch, CreatedTask, PreparedTask};
use tasker_template::TaskTemplate;

use super::{Engine, Inner};
use crate::error::EngineError;

/// Claims made at creation on their way to the coordinator.
#[derive(Debug, Default)]
pub(crate) struct CreatedClaims {
    /// Whether the coordinator takes claims: set once it has read its claim filter, cleared
    /// when it drains or stops.
    open: bool,
    batches: Vec<ClaimBatch>,
}

impl Engine {
    /// Makes `prepared` claim its root steps for this engine as it is written, when this
    /// engine would claim them next anyway: its coordinator takes claims, the claim filter
    /// takes the task's template, no namespace limit is in force (those are counted in the
    /// database, inside a claim), and `engine.max_concurrent_steps` has room for all of them.
    pub(super) fn claim_at_creation(&self, prepared: &mut PreparedTask) -> Option<Reservation> {
        let inner = &self.inner;
        let wanted = prepared.claimable_at_creation();
        if wanted == 0 || !self.created_claims().open {
            return None;
        }
        let template = prepared.named_task_id();
        {
            let filter = inner.claim_filter.lock().expect("claim filter lock");
            let allowed = filter.limits.is_empty()
                && !filter.paused_named_task_ids.contains(&template)
                && filter
                    .named_task_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&template));
            if !allowed {
                return None;
            }
        }
        let busy = inner.running.len()
            + usize::try_from(inner.metrics.gauges.held.load(Ordering::Relaxed)).unwrap_or(0);
        let slots = inner.reserve_slots(busy, wanted, true);
        if slots == 0 {
            return None;
        }
        let reservation = Reservation {
            inner: inner.clone(),
            slots,
        };
        let claimed = inner.store.claim_at_creation(
            prepared,
            &inner.owner,
            inner.config.lease,
            inner.clock.now(),
        );
        debug_assert_eq!(claimed, slots, "all the root steps or none");
        Some(reservation)
    }

    /// Writes `prepared`, which claims at creation, and hands its claims to the coordinator:
    /// on a task of its own, so that both happen even if the caller stops waiting.
    pub(super) async fn create_claimed(
        &self,
        template: Arc<TaskTemplate>,
        prepared: PreparedTask,
        reservation: Reservation,
        now: DateTime<Utc>,
    ) -> Result<CreatedTask, EngineError> {
        let engine = self.clone();
        let written = tokio::spawn(async move {
            let mut created = engine.inner.creator.create(prepared).await?;
            // The task's creation event comes before the events of its claims.
            engine.created(&template, &created, now);
            let claimed = std::mem::take(&mut created.claimed);
            engine.hand_over(reservation, claimed).await;
            Ok(created)
        });
        written.await.map_err(|_| EngineError::ShutDown)?
    }

    /// Gives the coordinator the claims made at creation with their slots; if it no longer
    /// takes claims, gives them back to the database at once (ready for any engine).
    async fn hand_over(&self, mut reservation: Reservation, claimed: ClaimBatch) {
        if claimed.is_empty() {
            // Nothing was claimed after all: the coordinator claims the task's steps.
            return;
        }
        let refused = {
            let mut created = self.created_claims();
            if created.open {
                created.batches.push(claimed);
                // The coordinator gives the slots back once it runs or holds the steps.
                reservation.slots = 0;
                None
            } else {
                Some(claimed)
            }
        };
        match refused {
            None => self.inner.created_wake.notify_one(),
            Some(claimed) => {
                let steps: Vec<StepId> = claimed.steps().map(|step| step.step_id).collect();
                let inner = &self.inner;
                if let Err(err) = inner
                    .store
                    .release_claims(&inner.owner, &steps, inner.clock.now())
                    .await
                {
                    tracing::warn!(error = %err, "giving back claims made at creation failed; they lapse at their lease");
                }
            }
        }
    }

    fn created_claims(&self) -> std::sync::MutexGuard<'_, CreatedClaims> {
        self.inner
            .created_claims
            .lock()
            .expect("created claims lock")
    }

    /// The coordinator takes claims made at creation (`true`), or no longer does.
    pub(crate) fn accept_claims_at_creation(&self, open: bool) {
        self.created_claims().open = open;
    }

    /// The claims made at creation that the coordinator has not taken over yet, as one batch.
    pub(crate) fn take_created_claims(&self) -> ClaimBatch {
        let batches = std::mem::take(&mut self.created_claims().batches);
        let mut all = ClaimBatch::default();
        for batch in batches {
            all.absorb(batch);
        }
        all
    }
}

/// Slots of `engine.max_concurrent_steps` held for a task's claims at creation: given back if
/// they do not reach the coordinator (the write failed, or the coordinator no longer takes
/// claims), which then looks for work again.
pub(super) struct Reservation {
    inner: Arc<Inner>,
    slots: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.slots > 0 {
            self.inner.release_slots(self.slots);
            // A claim of the coordinator's may have found no room because of these slots.
            self.inner.wake.notify_one();
        }
    }
}
