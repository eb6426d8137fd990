//! The coordinator: claim ready steps in batches, run them concurrently under limits, record
//! outcomes in batches (group commit), and sleep until the next wake-up: a new task, a finished
//! attempt, the next backoff expiry, lease upkeep, or the poll fallback for other processes.

use crate::engine::{Engine, IdleReport, Inner};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_domain::duration::saturating_add;
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskState, TemplateId};
use tasker_events::names::workflow;
use tasker_events::{Event, Payload, TaskLabels, WorkflowPayload};
use tasker_persistence::{Claim, ClaimBatch, ClaimedStep, StepInputs};
use tokio::sync::mpsc;
use tracing::Span;

use crate::emit::{StepEvent, StepIdentity, TaskEvent, TemplateNames, distinct_tasks};
use crate::trace_context;

mod attempt;
mod record;

use attempt::spawn_attempt;
use record::{Unrecorded, after_record, record};

/// An attempt's end, sent from its task to the coordinator.
struct Finished {
    step: ClaimedStep,
    started: DateTime<Utc>,
    result: AttemptResult,
}

enum AttemptResult {
    Completed(Value),
    Failed(StepError),
    Cancelled,
}

/// What the coordinator keeps about a task while it runs steps of it.
struct TaskInfo {
    named_task_id: TemplateId,
    labels: TaskLabels,
    created_at: DateTime<Utc>,
    span: Span,
}

/// What the events of a recorded attempt need.
struct AttemptInfo {
    who: StepIdentity,
    attempt: u32,
    started: Option<DateTime<Utc>>,
    error: Option<StepError>,
}

fn identity(step: &ClaimedStep, labels: &TaskLabels) -> StepIdentity {
    StepIdentity {
        task_id: step.task_id,
        step_id: step.step_id,
        step_name: step.name.as_str().into(),
        labels: labels.clone(),
        retry_limit: step.retry_limit,
    }
}

fn millis_since(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// A coordinator that panics again within this time of its last restart (on the engine's
/// clock) is restarted only after this delay, so a panic that repeats at once does not spin.
pub(crate) const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs the coordinator and restarts it, logged at ERROR and counted, whenever it panics, until
/// the engine shuts down. A restarted coordinator starts from the database: the attempts the dead
/// one was running lose their outcome channel, and their claims lapse and are reclaimed like a
/// dead process's.
pub(crate) async fn supervise(inner: Arc<Inner>) {
    let mut last_restart: Option<DateTime<Utc>> = None;
    loop {
        match tokio::spawn(coordinate(inner.clone())).await {
            Ok(()) => return,
            Err(err) if err.is_panic() => {
                let message = crate::hooks::panic_message(&*err.into_panic());
                let restarts = inner.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(panic = %message, restarts, "the coordinator panicked; restarting it");
                let now = inner.clock.now();
                if last_restart.is_some_and(|at| now < saturating_add(at, RESTART_DELAY)) {
                    tokio::select! {
                        () = inner.clock.sleep(RESTART_DELAY) => {}
                        () = inner.shutdown.cancelled() => return,
                    }
                }
                if inner.drain.is_cancelled() || inner.shutdown.is_cancelled() {
                    return;
                }
                last_restart = Some(inner.clock.now());
            }
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        }
    }
}

async fn coordinate(inner: Arc<Inner>) {
    let engine = Engine {
        inner: inner.clone(),
    };
    let config = &inner.config;
    let bus = &inner.bus;
    let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
    let mut per_task: HashMap<TaskId, usize> = HashMap::new();
    let mut held: VecDeque<(ClaimedStep, StepInputs)> = VecDeque::new();
    let mut finished: Vec<Finished> = Vec::new();
    let mut tasks: HashMap<TaskId, TaskInfo> = HashMap::new();
    let mut next_upkeep = inner.clock.now();
    let mut next_switch_refresh = saturating_add(inner.clock.now(), config.switch_refresh);
    let mut last_upkeep: Option<DateTime<Utc>> = None;
    // When leases were last renewed (or there were none to renew).
    let mut last_renewed = inner.clock.now();
    // Continues a restarted coordinator's count, so waiters compare against later reports.
    let mut epoch = inner.idle.borrow().epoch;
    let mut was_idle = true;
    // Next-attempt times of the failures this engine recorded.
    let mut known_due: std::collections::BinaryHeap<std::cmp::Reverse<DateTime<Utc>>> =
        Default::default();
    let mut unrecorded = Unrecorded::default();
    engine.refresh_claim_filter().await;
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let mut progressed = false;
        let draining = inner.drain.is_cancelled();
        if draining && !held.is_empty() {
            // Claimed but never started: given back at once.
            let ids: Vec<StepId> = held.drain(..).map(|(step, _)| step.step_id).collect();
            release_claims(&inner, &ids).await;
        }
        let gate = inner.gate.lock().await;
        // Steps claimed in the same transaction that recorded outcomes (one commit per hand-off).
        let mut claimed_with_record = None;
        let retried = unrecorded.take_due(inner.clock.now());
        let retrying = !retried.is_empty();
        finished.extend(retried);
        while finished.len() < config.record_batch_size {
            match rx.try_recv() {
                Ok(f) => finished.push(f),
                Err(_) => break,
            }
        }
        if !finished.is_empty() {
            progressed = true;
            let batch = std::mem::take(&mut finished);
            let recorded = record(
                &engine,
                batch,
                &mut per_task,
                &mut tasks,
                held.len(),
                &mut claimed_with_record,
            )
            .await;
            known_due.extend(recorded.due.into_iter().map(std::cmp::Reverse));
            if recorded.kept.is_empty() {
                if retrying {
                    unrecorded.recorded();
                }
            } else {
                unrecorded.keep(recorded.kept, inner.clock.now());
            }
            inner.unrecorded.send_replace(unrecorded.finished.len());
        }
        let now = inner.clock.now();
        if now >= next_upkeep {
            let held_ids: Vec<StepId> = held.iter().map(|(step, _)| step.step_id).collect();
            let lost = upkeep(&engine, &mut tasks, &held_ids, &mut last_renewed, now).await;
            if !lost.is_empty() {
                held.retain(|(step, _)| !lost.contains(&step.step_id));
            }
            inner.revoked.retain(|id, _| held_ids.contains(id));
            engine.refresh_claim_filter().await;
            last_upkeep = Some(now);
            next_upkeep = saturating_add(now, config.lease / 3);
            next_switch_refresh = saturating_add(now, config.switch_refresh);
            // What the events of a task need is kept only while it has attempts here (a claim
            // rebuilds it), so tasks finished elsewhere or by an operator do not accumulate.
            tasks.retain(|id, _| {
                per_task.contains_key(id) || held.iter().any(|(step, _)| step.task_id == *id)
            });
        } else if now >= next_switch_refresh {
            engine.refresh_switches().await;
            next_switch_refresh = saturating_add(now, config.switch_refresh);
        }
        // Start held steps whose task has room now.
        let mut still_held = VecDeque::new();
        while let Some((step, inputs)) = held.pop_front() {
            if per_task.get(&step.task_id).copied().unwrap_or(0)
                < config.max_concurrent_steps_per_task
            {
                spawn_attempt(&engine, step, inputs, &tx, &mut per_task, &tasks).await;
                progressed = true;
            } else {
                still_held.push_back((step, inputs));
            }
        }
        held = still_held;
        let capacity = config
            .max_concurrent_steps
            .saturating_sub(inner.running.len() + held.len());
        if !draining && (capacity > 0 || claimed_with_record.is_some()) {
            let limit = capacity.min(config.claim_batch_size);
            let claim_started = std::time::Instant::now();
            // A batch claimed in the record's own transaction has no claim time of its own.
            let piggybacked = claimed_with_record.take();
            let timed = piggybacked.is_none();
            let claimed = match piggybacked {
                Some(batch) => Ok(batch),
                None => {
                    inner
                        .store
                        .claim_ready_steps_where(
                            &inner.owner,
                            limit,
                            config.lease,
                            now,
                            &engine.current_claim_filter(),
                        )
                        .await
                }
            };
            if timed {
                inner
                    .metrics
                    .claim_duration
                    .record(claim_started.elapsed().as_secs_f64(), &[]);
            }
            match claimed {
                Ok(batch) if !batch.is_empty() => {
                    progressed = true;
                    inner.metrics.claim_steps.record(batch.len() as u64, &[]);
                    let claim_ms = timed.then(|| millis_since(claim_started));
                    // The claim returned each step's inputs in the same statement.
                    for Claim { step, inputs } in &batch.claims {
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            tasks.entry(step.task_id)
                        {
                            slot.insert(task_info(&engine, step, inputs).await);
                        }
                    }
                    if bus.has_subscribers() {
                        publish_claimed(&engine, &batch, &tasks, claim_ms, now);
                    }
                    for Claim { step, inputs } in batch.claims {
                        if per_task.get(&step.task_id).copied().unwrap_or(0)
                            < config.max_concurrent_steps_per_task
                        {
                            spawn_attempt(&engine, step, inputs, &tx, &mut per_task, &tasks).await;
                        } else {
                            held.push_back((step, inputs));
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "claiming steps failed"),
            }
        }
        drop(gate);
        let gauges = &inner.metrics.gauges;
        gauges
            .running
            .store(inner.running.len() as u64, Ordering::Relaxed);
        gauges.held.store(held.len() as u64, Ordering::Relaxed);
        gauges
            .unrecorded
            .store(unrecorded.finished.len() as u64, Ordering::Relaxed);
        let mut drain_deadline = None;
        if draining {
            let deadline = inner
                .drain_deadline
                .lock()
                .expect("drain lock")
                .unwrap_or(now);
            if inner.running.is_empty() {
                break;
            }
            if inner.clock.now() >= deadline {
                // The grace is over: stop the attempts still running and give their claims back.
                let ids: Vec<StepId> = inner.running.iter().map(|e| e.key().0).collect();
                for entry in inner.running.iter() {
                    entry.value().1.cancel();
                }
                release_claims(&inner, &ids).await;
                break;
            }
            drain_deadline = Some(deadline);
        }
        if progressed {
            was_idle = false;
            tokio::task::yield_now().await;
            continue;
        }
        let idle = inner.running.is_empty() && held.is_empty();
        if idle && !was_idle {
            bus.publish(Event::new(
                workflow::NO_VIABLE_STEPS,
                now,
                Payload::Workflow(WorkflowPayload {
                    owner: inner.owner.as_str().into(),
                    step_count: 0,
                    task_ids: Vec::new(),
                    duration_ms: None,
                }),
            ));
        }
        was_idle = idle;
        let mut wake_at = saturating_add(now, config.poll_interval);
        while known_due
            .peek()
            .is_some_and(|std::cmp::Reverse(at)| *at <= now)
        {
            known_due.pop();
        }
        if let Some(std::cmp::Reverse(at)) = known_due.peek() {
            wake_at = wake_at.min(*at);
        }
        if let Some(at) = unrecorded.retry_at {
            wake_at = wake_at.min(at);
        }
        if let Some(at) = drain_deadline {
            wake_at = wake_at.min(at);
        }
        if inner.switches_active.load(Ordering::Relaxed) {
            // A pause or limit may be hiding ready work: look again when it may have changed.
            wake_at = wake_at.min(next_switch_refresh);
        }
        if idle {
            // Nothing of ours is running: ask the database what comes next, which also covers
            // backoffs and leases of other processes.
            if let Ok(Some(due)) = inner.store.next_attempt_due(now).await {
                wake_at = wake_at.min(due);
            }
            if let Ok(Some(expiry)) = inner.store.next_lease_expiry().await {
                let at = lease_wake(expiry, now, last_upkeep, next_upkeep);
                if at <= now {
                    // Expired since the last upkeep: reclaim it now rather than wake every
                    // millisecond until the next upkeep.
                    next_upkeep = now;
                    continue;
                }
                wake_at = wake_at.min(at);
            }
        } else {
            // A finished attempt wakes us; our own backoffs are known from what we recorded, and
            // upkeep covers leases. No queries on the hand-off path.
            wake_at = wake_at.min(next_upkeep);
        }
        epoch += 1;
        inner.idle.send_replace(IdleReport {
            epoch,
            idle,
            wake_at: Some(wake_at),
        });
        tokio::select! {
            received = rx.recv() => if let Some(f) = received { finished.push(f) },
            () = inner.wake.notified() => {}
            () = inner.clock.sleep_until(wake_at) => {}
            () = inner.shutdown.cancelled() => break,
        }
        inner.idle.send_replace(IdleReport {
            epoch,
            idle: false,
            wake_at: None,
        });
    }
    for entry in inner.running.iter() {
        entry.value().1.cancel();
    }
    inner.metrics.gauges.running.store(0, Ordering::Relaxed);
    inner.metrics.gauges.held.store(0, Ordering::Relaxed);
}

/// Gives back this engine's claims on `steps` without using up their attempts (a drain).
async fn release_claims(inner: &Inner, steps: &[StepId]) {
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

/// When an idle coordinator should next look at the earliest lease, which expires at `expiry`:
/// just after it expires (`reclaim_expired` takes leases that expired strictly before its
/// "now"); at once (`now`) when it has become reclaimable since the last upkeep; otherwise at the
/// next upkeep, so a lease the last upkeep could not reclaim is no reason to wake any sooner.
fn lease_wake(
    expiry: DateTime<Utc>,
    now: DateTime<Utc>,
    last_upkeep: Option<DateTime<Utc>>,
    next_upkeep: DateTime<Utc>,
) -> DateTime<Utc> {
    let reclaimable = saturating_add(expiry, Duration::from_millis(1));
    if reclaimable > now {
        reclaimable
    } else if last_upkeep.is_none_or(|at| at < reclaimable) {
        now
    } else {
        next_upkeep.max(saturating_add(now, Duration::from_millis(1)))
    }
}

/// Publishes a claim's events: `workflow.viable_steps_discovered`, `task.start_requested` for
/// tasks the claim started, then per step `step.retry_requested` (retries) and
/// `step.execution_requested`.
fn publish_claimed(
    engine: &Engine,
    batch: &ClaimBatch,
    tasks: &HashMap<TaskId, TaskInfo>,
    claim_ms: Option<f64>,
    now: DateTime<Utc>,
) {
    let bus = &engine.inner.bus;
    let task_ids = distinct_tasks(batch.steps().map(|s| s.task_id));
    bus.publish(Event::new(
        workflow::VIABLE_STEPS_DISCOVERED,
        now,
        Payload::Workflow(WorkflowPayload {
            owner: engine.inner.owner.as_str().into(),
            step_count: batch.len(),
            task_ids,
            duration_ms: claim_ms,
        }),
    ));
    for task_id in &batch.started_tasks {
        if let Some(info) = tasks.get(task_id) {
            TaskEvent::new(
                *task_id,
                &info.labels,
                Some(TaskState::Pending),
                TaskState::InProgress,
            )
            .publish(bus, now);
        }
    }
    for step in batch.steps() {
        let Some(info) = tasks.get(&step.task_id) else {
            continue;
        };
        let who = identity(step, &info.labels);
        if step.retried {
            StepEvent::transition(&who, step.attempt, StepState::Error, StepState::Pending)
                .publish(bus, now);
        }
        StepEvent::transition(
            &who,
            step.attempt,
            StepState::Pending,
            StepState::InProgress,
        )
        .publish(bus, now);
    }
}

async fn task_info(engine: &Engine, step: &ClaimedStep, inputs: &StepInputs) -> TaskInfo {
    let names = match engine.known(step.named_task_id).await {
        Ok(known) => known.names,
        Err(_) => TemplateNames {
            namespace: "".into(),
            name: "".into(),
            version: "".into(),
        },
    };
    let span = tracing::info_span!(
        "task",
        task_id = %step.task_id,
        namespace = %names.namespace,
        template = %names.name,
        version = %names.version,
        correlation_id = %inputs.correlation_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(parent) = &inputs.trace_parent {
        trace_context::set_parent(&span, parent);
    }
    trace_context::record_ids(&span);
    TaskInfo {
        named_task_id: step.named_task_id,
        labels: names.labels(&inputs.correlation_id),
        created_at: inputs.task_created_at,
        span,
    }
}

/// Extends the leases of running attempts and fails expired ones (any owner's).
/// Lease upkeep: renews the leases of the attempts running here and of the steps claimed but
/// held back by the per-task limit, and reclaims expired leases. An attempt whose claim is gone
/// (reclaimed, or finished by an operator) or whose lease lapsed while renewal failed (the
/// database unreachable for a whole lease since `last_renewed`) is cancelled here, so its
/// outcome is never recorded; returns the held steps whose claims are gone in the same way
/// (never to be started).
async fn upkeep(
    engine: &Engine,
    tasks: &mut HashMap<TaskId, TaskInfo>,
    held: &[StepId],
    last_renewed: &mut DateTime<Utc>,
    now: DateTime<Utc>,
) -> std::collections::HashSet<StepId> {
    let inner = &engine.inner;
    let running: Vec<(StepId, u32)> = inner.running.iter().map(|e| *e.key()).collect();
    let ids: Vec<StepId> = running
        .iter()
        .map(|(id, _)| *id)
        .chain(held.iter().copied())
        .collect();
    let mut lost = std::collections::HashSet::new();
    if ids.is_empty() {
        *last_renewed = now;
    } else {
        match inner
            .store
            .extend_leases(&inner.owner, &ids, inner.config.lease, now)
            .await
        {
            Ok(kept) => {
                *last_renewed = now;
                inner.metrics.leases_renewed.add(kept.len() as u64, &[]);
                let kept: std::collections::HashSet<StepId> = kept.into_iter().collect();
                lost.extend(ids.iter().filter(|id| !kept.contains(id)).copied());
            }
            Err(err) => {
                tracing::warn!(error = %err, "extending leases failed");
                if now >= saturating_add(*last_renewed, inner.config.lease) {
                    lost.extend(ids.iter().copied());
                }
            }
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
            after_record(engine, &report, &HashMap::new(), tasks, now).await;
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "reclaiming expired leases failed"),
    }
    lost.retain(|id| held.contains(id));
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_lease_wakes_the_coordinator_once_not_every_millisecond() {
        let t = |secs: i64| DateTime::from_timestamp(1_000 + secs, 0).unwrap();
        let ms = Duration::from_millis(1);
        // Not expired yet: wake just after it expires.
        assert_eq!(
            lease_wake(t(5), t(1), Some(t(0)), t(10)),
            saturating_add(t(5), ms)
        );
        // Expired since the last upkeep: reclaim now.
        assert_eq!(lease_wake(t(5), t(6), Some(t(0)), t(10)), t(6));
        assert_eq!(lease_wake(t(5), t(6), None, t(10)), t(6));
        // The last upkeep already ran after it expired (and left it): the next upkeep, not now.
        assert_eq!(lease_wake(t(5), t(7), Some(t(6)), t(16)), t(16));
        assert!(lease_wake(t(5), t(7), Some(t(6)), t(7)) > t(7));
    }
}
