//! The coordinator: claim ready steps in batches, run them concurrently under limits, record
//! outcomes in batches (group commit), and sleep until the next wake-up: a new task, a finished
//! attempt, the next backoff expiry, lease upkeep, or the poll fallback for other processes.
//!
//! Its state is one [`Coordinator`]; a pass calls its methods in turn: recording
//! (`record.rs`), upkeep (`upkeep.rs`), starting held steps and claiming (here, with attempts
//! started in `attempt.rs`), and sleeping. The decisions that need no database are in
//! `decide.rs`.

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

use crate::engine::{Engine, IdleReport, Inner};

mod attempt;
mod decide;
mod record;
mod upkeep;

pub(crate) use decide::claim_room;
use decide::{
    ClaimNeed, DrainStep, DueTimes, IdleState, Schedule, Unrecorded, Wake, WakeInputs, admit,
    drain_step, wake_at,
};

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

/// The coordinator's state: one per running coordinator, owned by its loop.
pub(crate) struct Coordinator {
    engine: Engine,
    /// Finished attempts report here.
    tx: mpsc::UnboundedSender<Finished>,
    rx: mpsc::UnboundedReceiver<Finished>,
    /// Attempts running here, per task (for `engine.max_concurrent_steps_per_task`).
    per_task: HashMap<TaskId, usize>,
    /// Claimed steps held back by the per-task limit, in claim order.
    held: VecDeque<(ClaimedStep, StepInputs)>,
    /// Finished attempts received, not yet recorded.
    finished: Vec<Finished>,
    /// What the events of the tasks with attempts here need.
    tasks: HashMap<TaskId, TaskInfo>,
    /// When upkeep and the switch refresh are due.
    schedule: Schedule,
    idle: IdleState,
    /// Next-attempt times of the failures this engine recorded.
    known_due: DueTimes,
    /// Outcomes a failed commit could not record, kept to try again.
    unrecorded: Unrecorded<Finished>,
    /// Whether a claim of its own is worth a transaction.
    claim_need: ClaimNeed,
    /// Slots this pass took (`Inner::reserve_slots`) for its claims, and those of the claims
    /// made at creation it took over: given back once the pass has published what runs and
    /// what is held.
    reserved: usize,
}

/// What one pass did.
#[derive(Default)]
struct Pass {
    progressed: bool,
    /// Steps claimed in the same transaction that recorded outcomes (one commit per hand-off),
    /// with how many that claim asked for (as many as it took when it left steps the outcomes
    /// readied, so that another claim is wanted).
    claimed_with_record: Option<(ClaimBatch, usize)>,
    /// Steps claimed on a connection of their own while the outcomes were recorded.
    claimed_alongside: Option<Alongside>,
}

/// A claim made while a batch of outcomes was recorded (PostgreSQL): what it took, how many
/// it asked for, and how long it took.
struct Alongside {
    claimed: Result<ClaimBatch, tasker_persistence::StoreError>,
    asked: usize,
    seconds: f64,
}

/// A claim's steps; none after a failure, which is logged.
fn claimed_or_logged(claimed: Result<ClaimBatch, tasker_persistence::StoreError>) -> ClaimBatch {
    claimed.unwrap_or_else(|err| {
        tracing::error!(error = %err, "claiming steps failed");
        ClaimBatch::default()
    })
}

/// How a sleep ended.
enum Woke {
    /// By a finished attempt, a wake-up or the clock: run a pass.
    Pass,
    /// A lease expired since the last upkeep: run a pass with upkeep, without sleeping.
    Upkeep,
    /// The engine shut down.
    Shutdown,
}

async fn coordinate(inner: Arc<Inner>) {
    Coordinator::new(inner).run().await;
}

impl Coordinator {
    fn new(inner: Arc<Inner>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let now = inner.clock.now();
        let schedule = Schedule::new(now, inner.config.lease, inner.config.switch_refresh);
        // Continues a restarted coordinator's count, so waiters compare against later reports.
        let epoch = inner.idle.borrow().epoch;
        Self {
            schedule,
            idle: IdleState::new(epoch),
            engine: Engine { inner },
            tx,
            rx,
            per_task: HashMap::new(),
            held: VecDeque::new(),
            finished: Vec::new(),
            tasks: HashMap::new(),
            known_due: DueTimes::default(),
            unrecorded: Unrecorded::default(),
            claim_need: ClaimNeed::default(),
            reserved: 0,
        }
    }

    fn inner(&self) -> &Inner {
        &self.engine.inner
    }

    /// The loop: a pass records what finished (and claims in the same transaction), runs
    /// upkeep when due, starts held steps with room, and claims; a pass that did nothing
    /// sleeps until the next wake-up.
    async fn run(&mut self) {
        self.engine.refresh_claim_filter().await;
        // Creation may claim for this coordinator once its claim filter is known.
        self.engine.accept_claims_at_creation(true);
        let inner = self.engine.inner.clone();
        while !inner.shutdown.is_cancelled() {
            let draining = inner.drain.is_cancelled();
            if draining {
                self.give_back_held().await;
            }
            let gate = inner.gate.lock().await;
            let mut pass = Pass::default();
            self.record(&mut pass).await;
            let now = inner.clock.now();
            self.upkeep_if_due(now).await;
            self.start_held(&mut pass).await;
            if !draining {
                self.claim(&mut pass, now).await;
            }
            drop(gate);
            self.publish_gauges();
            inner.release_slots(std::mem::take(&mut self.reserved));
            let drain_deadline = if draining {
                match self.drain_step(now).await {
                    Some(deadline) => Some(deadline),
                    None => break,
                }
            } else {
                None
            };
            if pass.progressed {
                self.idle.busy();
                tokio::task::yield_now().await;
                continue;
            }
            match self.sleep(now, drain_deadline).await {
                Woke::Pass => {}
                Woke::Upkeep => self.schedule.upkeep_now(now),
                Woke::Shutdown => break,
            }
        }
        self.stop();
    }

    /// Records what finished (up to `engine.record_batch_size`, with kept outcomes whose retry
    /// is due) in one transaction that also claims what there is room for; outcomes the
    /// database could not take are kept to try again with backoff.
    async fn record(&mut self, pass: &mut Pass) {
        let retried = self.unrecorded.take_due(self.inner().clock.now());
        let retrying = !retried.is_empty();
        self.finished.extend(retried);
        let batch_size = self.inner().config.record_batch_size;
        while self.finished.len() < batch_size {
            match self.rx.try_recv() {
                Ok(finished) => self.finished.push(finished),
                Err(_) => break,
            }
        }
        if self.finished.is_empty() {
            return;
        }
        pass.progressed = true;
        let batch = std::mem::take(&mut self.finished);
        let recorded = self
            .record_batch(
                batch,
                &mut pass.claimed_with_record,
                &mut pass.claimed_alongside,
            )
            .await;
        self.known_due.extend(recorded.due);
        if recorded.kept.is_empty() {
            if retrying {
                self.unrecorded.recorded();
            }
        } else {
            let now = self.inner().clock.now();
            self.unrecorded.keep(recorded.kept, now);
        }
        self.inner()
            .unrecorded
            .send_replace(self.unrecorded.finished.len());
    }

    /// Starts the held steps whose task has room now.
    async fn start_held(&mut self, pass: &mut Pass) {
        let held = std::mem::take(&mut self.held);
        let started = self.admit(held, pass).await;
        self.held = started;
    }

    /// Starts the steps of `queue` that `decide::admit` lets start; returns those held back.
    async fn admit(
        &mut self,
        queue: impl IntoIterator<Item = (ClaimedStep, StepInputs)>,
        pass: &mut Pass,
    ) -> VecDeque<(ClaimedStep, StepInputs)> {
        let inner = self.engine.inner.clone();
        let admission = admit(
            queue,
            |(step, _)| (step.task_id, step.step_id),
            &self.per_task,
            inner.config.max_concurrent_steps_per_task,
            |step_id| inner.revoked.remove(&step_id).is_some(),
        );
        for (step, _) in &admission.revoked {
            // Cancelled by an operator while it was held back: the store has the final word.
            tracing::debug!(task_id = %step.task_id, step = %step.name, "a cancelled step is not started");
            pass.progressed = true;
        }
        for (step, inputs) in admission.start {
            self.spawn_attempt(step, inputs).await;
            pass.progressed = true;
        }
        admission.held
    }

    /// Claims up to the room left (or takes the batch claimed with the record), takes over the
    /// claims made at creation, publishes the claims' events, and starts what the per-task
    /// limit lets start, holding back the rest.
    async fn claim(&mut self, pass: &mut Pass, now: DateTime<Utc>) {
        let inner = self.engine.inner.clone();
        let config = &inner.config;
        // Claims made at creation are this engine's already: no claim of its own for them.
        let created = self.engine.take_created_claims();
        self.reserved += created.len();
        // A batch claimed in the record's own transaction has no claim time of its own.
        let piggybacked = pass.claimed_with_record.take();
        let alongside = pass.claimed_alongside.take();
        let room = if piggybacked.is_none() && self.claim_need.wanted() {
            self.reserve_room(inner.running.len())
        } else {
            0
        };
        if piggybacked.is_none() && room == 0 && created.is_empty() && alongside.is_none() {
            return;
        }
        let claim_started = std::time::Instant::now();
        // Room is taken only for a claim of its own, which is timed.
        let timed = room > 0;
        let claim_made = piggybacked.is_some() || timed;
        let asked = piggybacked.as_ref().map_or(room, |(_, asked)| *asked);
        let claimed = match piggybacked {
            Some((batch, _)) => Ok(batch),
            None if room > 0 => {
                inner
                    .store
                    .claim_ready_steps_where(
                        &inner.owner,
                        room,
                        config.lease,
                        now,
                        &self.engine.current_claim_filter(),
                    )
                    .await
            }
            None => Ok(ClaimBatch::default()),
        };
        if timed {
            inner
                .metrics
                .claim_duration
                .record(claim_started.elapsed().as_secs_f64(), &[]);
        }
        if claim_made {
            match &claimed {
                Ok(batch) => self.claim_need.claimed(batch.len(), asked),
                Err(_) => self.claim_need.maybe_ready(),
            }
        }
        let mut batch = claimed_or_logged(claimed);
        if let Some(Alongside {
            claimed,
            asked,
            seconds,
        }) = alongside
        {
            inner.metrics.claim_duration.record(seconds, &[]);
            // It took all it asked for, or failed: more may be ready.
            if !claimed.as_ref().is_ok_and(|more| more.len() < asked) {
                self.claim_need.maybe_ready();
            }
            batch.absorb(claimed_or_logged(claimed));
        }
        batch.absorb(created);
        if batch.is_empty() {
            return;
        }
        pass.progressed = true;
        // Steps claimed at creation count among the steps this pass claimed.
        inner.metrics.claim_steps.record(batch.len() as u64, &[]);
        let claim_ms = timed.then(|| millis_since(claim_started));
        self.know_tasks(&batch).await;
        if inner.bus.has_subscribers() {
            self.publish_claimed(&batch, claim_ms, now);
        }
        let claims = batch
            .claims
            .into_iter()
            .map(|Claim { step, inputs }| (step, inputs));
        let held = self.admit(claims, pass).await;
        self.held.extend(held);
    }

    /// Takes free slots for a claim of its own, up to `engine.claim_batch_size`, and keeps
    /// them until the pass ends: `running` attempts and the held claims are busy, and so are
    /// the slots reserved elsewhere (claims made at creation on their way here).
    fn reserve_room(&mut self, running: usize) -> usize {
        let inner = self.engine.inner.clone();
        let room = inner.reserve_slots(
            running + self.held.len(),
            inner.config.claim_batch_size,
            false,
        );
        self.reserved += room;
        room
    }

    /// What the events and spans of the tasks of `batch`'s claims need, for those not known
    /// yet (a claim returns each step's inputs in the same statement).
    async fn know_tasks(&mut self, batch: &ClaimBatch) {
        for Claim { step, inputs } in &batch.claims {
            if !self.tasks.contains_key(&step.task_id) {
                let info = self.task_info(step, inputs).await;
                self.tasks.insert(step.task_id, info);
            }
        }
    }

    /// Draining: the claims held back and never started, and those made at creation, are
    /// given back at once; creation claims no more.
    async fn give_back_held(&mut self) {
        self.engine.accept_claims_at_creation(false);
        let created = self.engine.take_created_claims();
        self.reserved += created.len();
        if !created.started_tasks.is_empty() && self.engine.inner.bus.has_subscribers() {
            // Their tasks were started by their creation's write; their steps go back.
            self.know_tasks(&created).await;
            self.publish_started(&created.started_tasks, self.engine.inner.clock.now());
        }
        if self.held.is_empty() && created.is_empty() {
            return;
        }
        let ids: Vec<StepId> = self
            .held
            .drain(..)
            .map(|(step, _)| step.step_id)
            .chain(created.steps().map(|step| step.step_id))
            .collect();
        self.release_claims(&ids).await;
    }

    /// Draining, after a pass: `None` to stop (nothing runs, or the grace is over and what ran
    /// was cancelled and its claims given back), else the deadline to wake at.
    async fn drain_step(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let inner = self.engine.inner.clone();
        let deadline = inner
            .drain_deadline
            .lock()
            .expect("drain lock")
            .unwrap_or(now);
        match drain_step(inner.running.len(), inner.clock.now(), deadline) {
            DrainStep::Done => None,
            DrainStep::GraceOver => {
                // The grace is over: stop the attempts still running and give their claims back.
                let ids: Vec<StepId> = inner.running.iter().map(|e| e.key().0).collect();
                for entry in inner.running.iter() {
                    entry.value().1.cancel();
                }
                self.release_claims(&ids).await;
                None
            }
            DrainStep::Wait(deadline) => Some(deadline),
        }
    }

    fn publish_gauges(&self) {
        let inner = self.inner();
        let gauges = &inner.metrics.gauges;
        gauges
            .running
            .store(inner.running.len() as u64, Ordering::Relaxed);
        gauges.held.store(self.held.len() as u64, Ordering::Relaxed);
        gauges
            .unrecorded
            .store(self.unrecorded.finished.len() as u64, Ordering::Relaxed);
    }

    /// After a pass that did nothing: publishes `workflow.no_viable_steps` when the engine just
    /// became idle, reports when it wakes by itself (`Engine::next_wake_up`,
    /// `Engine::wait_until_idle`), and sleeps until then or until something happens.
    async fn sleep(&mut self, now: DateTime<Utc>, drain_deadline: Option<DateTime<Utc>>) -> Woke {
        let inner = self.engine.inner.clone();
        let (idle, became_idle) = self.idle.settle(inner.running.len(), self.held.len());
        if became_idle {
            inner.bus.publish(Event::new(
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
        let (mut next_attempt_due, mut next_lease_expiry) = (None, None);
        if idle {
            // Nothing of ours is running: ask the database what comes next, which also covers
            // backoffs and leases of other processes. (When busy, a finished attempt wakes us,
            // our own backoffs are known from what we recorded, and upkeep covers leases: no
            // queries on the hand-off path.)
            if let Ok((due, expiry)) = inner.store.next_wake_times(now).await {
                (next_attempt_due, next_lease_expiry) = (due, expiry);
            }
        }
        let wake = wake_at(&WakeInputs {
            now,
            poll_interval: inner.config.poll_interval,
            known_due: self.known_due.next_after(now),
            record_retry: self.unrecorded.retry_at,
            drain_deadline,
            switch_refresh: inner
                .switches_active
                .load(Ordering::Relaxed)
                .then_some(self.schedule.next_switch_refresh),
            idle,
            next_attempt_due,
            next_lease_expiry,
            schedule: self.schedule,
        });
        let wake_at = match wake {
            Wake::At(at) => at,
            // Expired since the last upkeep: reclaim it now rather than wake every millisecond
            // until the next upkeep.
            Wake::UpkeepNow => return Woke::Upkeep,
        };
        let epoch = self.idle.next_epoch();
        inner.idle.send_replace(IdleReport {
            epoch,
            idle,
            wake_at: Some(wake_at),
        });
        let woke = tokio::select! {
            received = self.rx.recv() => {
                if let Some(finished) = received {
                    self.finished.push(finished);
                }
                Woke::Pass
            }
            () = inner.wake.notified() => {
                self.claim_need.maybe_ready();
                Woke::Pass
            }
            // Claims made at creation: taken over by the pass, no claim of its own wanted.
            () = inner.created_wake.notified() => Woke::Pass,
            () = inner.clock.sleep_until(wake_at) => {
                self.claim_need.maybe_ready();
                Woke::Pass
            }
            () = inner.shutdown.cancelled() => Woke::Shutdown,
        };
        if !matches!(woke, Woke::Shutdown) {
            inner.idle.send_replace(IdleReport {
                epoch,
                idle: false,
                wake_at: None,
            });
        }
        woke
    }

    /// The loop ended: the attempts still running here are cancelled, and creation claims no
    /// more for this coordinator.
    fn stop(&self) {
        self.engine.accept_claims_at_creation(false);
        let inner = self.inner();
        for entry in inner.running.iter() {
            entry.value().1.cancel();
        }
        inner.metrics.gauges.running.store(0, Ordering::Relaxed);
        inner.metrics.gauges.held.store(0, Ordering::Relaxed);
    }

    /// Publishes a claim's events: `workflow.viable_steps_discovered`, `task.start_requested` for
    /// tasks the claim started, then per step `step.retry_requested` (retries) and
    /// `step.execution_requested`.
    fn publish_claimed(&self, batch: &ClaimBatch, claim_ms: Option<f64>, now: DateTime<Utc>) {
        let engine = &self.engine;
        let tasks = &self.tasks;
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
        self.publish_started(&batch.started_tasks, now);
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

    /// Publishes `task.start_requested` for each of `started`, tasks a claim started.
    fn publish_started(&self, started: &[TaskId], now: DateTime<Utc>) {
        for task_id in started {
            if let Some(info) = self.tasks.get(task_id) {
                TaskEvent::new(
                    *task_id,
                    &info.labels,
                    Some(TaskState::Pending),
                    TaskState::InProgress,
                )
                .publish(&self.engine.inner.bus, now);
            }
        }
    }

    /// What the events and spans of a task's attempts need, built when a claim brings the task.
    async fn task_info(&self, step: &ClaimedStep, inputs: &StepInputs) -> TaskInfo {
        let names = match self.engine.known(step.named_task_id).await {
            Ok(known) => known.names.clone(),
            Err(_) => TemplateNames::default(),
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
}

/// A coordinator that ends mid-pass (a panic) gives back the slots the pass reserved, and
/// creation claims no more until a restarted coordinator has read its claim filter.
impl Drop for Coordinator {
    fn drop(&mut self) {
        self.engine
            .inner
            .release_slots(std::mem::take(&mut self.reserved));
        self.engine.accept_claims_at_creation(false);
    }
}
