//! The coordinator: claim ready steps in batches, run them concurrently under limits, record
//! outcomes in batches (group commit), and sleep until the next wake-up: a new task, a finished
//! attempt, the next backoff expiry, lease upkeep, or the poll fallback for other processes.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;
use tasker_domain::{StepError, StepId, StepState, TaskId, TaskRequest, TaskState, TaskTemplate};
use tasker_persistence::{
    ClaimBatch, ClaimedStep, CreateTaskOptions, CreatedTask, RecordReport, RegisteredTemplate,
    StepFailure, StepInputs, StepOutcome, Store, TaskRecord,
};
use tasker_state_machine::TransitionOutcome;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::creator::Creator;
use crate::error::EngineError;
use crate::handler::{StepContext, StepHandler, TaskHooks};
use crate::registry::{RegisteredTask, Registry};

/// What the engine did, for progress displays and tests. (The full event catalog is
/// `tasker-events`'.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A task was created.
    TaskCreated {
        /// The task.
        task_id: TaskId,
        /// Its step count.
        total_steps: usize,
    },
    /// A task's first step was claimed.
    TaskStarted {
        /// The task.
        task_id: TaskId,
    },
    /// An attempt began.
    StepStarted {
        /// The task.
        task_id: TaskId,
        /// The step.
        step_id: StepId,
        /// Its name.
        name: String,
        /// The attempt number.
        attempt: u32,
    },
    /// An attempt succeeded.
    StepCompleted {
        /// The task.
        task_id: TaskId,
        /// The step.
        step_id: StepId,
        /// Its name.
        name: String,
        /// The attempt number.
        attempt: u32,
    },
    /// An attempt failed.
    StepFailed {
        /// The task.
        task_id: TaskId,
        /// The step.
        step_id: StepId,
        /// Its name.
        name: String,
        /// The attempt number.
        attempt: u32,
        /// What went wrong.
        error: StepError,
        /// When it runs again; `None` when it will not.
        next_attempt_at: Option<DateTime<Utc>>,
    },
    /// A task reached a final state.
    TaskFinished {
        /// The task.
        task_id: TaskId,
        /// Its final state.
        state: TaskState,
    },
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Store,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    owner: String,
    random: Box<dyn FnMut() -> f64 + Send>,
}

impl EngineBuilder {
    /// Engine settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock (a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The registry (one with the built-in handlers by default).
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = registry;
        self
    }

    /// The claim owner id (default: host name, process id and a random suffix).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The random source for backoff jitter: samples in `[0, 1)`.
    pub fn random(mut self, random: impl FnMut() -> f64 + Send + 'static) -> Self {
        self.random = Box::new(random);
        self
    }

    /// The engine; its coordinator starts with [`Engine::start`].
    pub fn build(self) -> Result<Engine, EngineError> {
        self.config.validate().map_err(|message| {
            EngineError::InvalidTemplate(tasker_domain::TemplateErrors(vec![
                tasker_domain::TemplateError::new(tasker_domain::TemplateErrorKind::Syntax {
                    message,
                }),
            ]))
        })?;
        let (events, _) = broadcast::channel(4096);
        let (idle, _) = watch::channel(IdleReport::default());
        Ok(Engine {
            inner: Arc::new(Inner {
                creator: Creator::new(self.store.clone()),
                store: self.store,
                registry: self.registry,
                config: self.config,
                clock: self.clock,
                owner: self.owner,
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                events,
                idle,
                templates: DashMap::new(),
                stored: DashMap::new(),
                running: DashMap::new(),
                random: Mutex::new(self.random),
                coordinator: Mutex::new(None),
            }),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct IdleReport {
    epoch: u64,
    idle: bool,
}

/// A template as the coordinator needs it.
#[derive(Clone)]
struct Known {
    template: Arc<TaskTemplate>,
    hooks: Option<Arc<dyn TaskHooks>>,
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    owner: String,
    wake: Notify,
    shutdown: CancellationToken,
    events: broadcast::Sender<EngineEvent>,
    idle: watch::Sender<IdleReport>,
    /// By named task id.
    templates: DashMap<i64, Known>,
    /// Catalogue rows by `namespace/name@version`.
    stored: DashMap<String, RegisteredTemplate>,
    /// Attempts running in this process.
    running: DashMap<StepId, (TaskId, CancellationToken)>,
    random: Mutex<Box<dyn FnMut() -> f64 + Send>>,
    coordinator: Mutex<Option<JoinHandle<()>>>,
    /// Group-commits concurrent task creations.
    creator: Creator,
}

/// The orchestration engine. Cheap to clone; clones share one coordinator.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn unit_random() -> f64 {
    // 53 random bits from a v4 UUID (the OS generator) as a float in [0, 1).
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

impl Engine {
    /// Starts building an engine on `store`.
    pub fn builder(store: Store) -> EngineBuilder {
        EngineBuilder {
            store,
            config: EngineConfig::default(),
            clock: Arc::new(SystemClock),
            registry: Arc::new(Registry::with_builtins()),
            owner: default_owner(),
            random: Box::new(unit_random),
        }
    }

    /// The handler registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// This engine's claim owner id.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Registers `template` (after applying the configured environment's overrides) in the
    /// registry and the catalogue. The same namespace/name/version twice fails unless `replace`.
    pub async fn register_template(
        &self,
        template: TaskTemplate,
        replace: bool,
    ) -> Result<RegisteredTask, EngineError> {
        let template = match &self.inner.config.environment {
            Some(environment) => template.for_environment(environment)?,
            None => template,
        };
        let registered = self.inner.registry.register_template(template, replace)?;
        let stored = self
            .inner
            .store
            .register_template(&registered.template, self.inner.clock.now())
            .await?;
        self.inner.templates.insert(
            stored.named_task_id,
            Known {
                template: registered.template.clone(),
                hooks: registered.hooks.clone(),
            },
        );
        self.inner
            .stored
            .insert(registered.template.full_name(), stored);
        Ok(registered)
    }

    /// Creates a task from a registered template (the latest version when the request names
    /// none). Everything is validated before anything is stored.
    pub async fn create_task(&self, mut request: TaskRequest) -> Result<CreatedTask, EngineError> {
        let registered = self
            .inner
            .registry
            .resolve(&request.namespace, &request.name, request.version.as_ref())
            .ok_or_else(|| EngineError::UnknownTemplate {
                namespace: request.namespace.clone(),
                name: request.name.clone(),
                version: request.version.clone(),
            })?;
        if let Some(hooks) = &registered.hooks {
            hooks
                .establish_step_dependencies_and_defaults(&mut request)
                .await
                .map_err(|error| EngineError::RefusedByHooks {
                    template: registered.template.full_name(),
                    error: Box::new(error),
                })?;
        }
        let full_name = registered.template.full_name();
        let stored = match self.inner.stored.get(&full_name) {
            Some(stored) => stored.clone(),
            None => {
                let stored = self
                    .inner
                    .store
                    .register_template(&registered.template, self.inner.clock.now())
                    .await?;
                self.inner.stored.insert(full_name, stored.clone());
                stored
            }
        };
        let options = CreateTaskOptions {
            now: self.inner.clock.now(),
            identity: &tasker_domain::DefaultIdentity,
            correlation_id: None,
        };
        // Validated here, before it joins a batch: a bad request fails alone.
        let prepared = Store::prepare_task(&stored, &request, &options)?;
        let created = self.inner.creator.create(prepared).await?;
        self.emit(EngineEvent::TaskCreated {
            task_id: created.task_id,
            total_steps: created.steps.len(),
        });
        if created.state.is_finished() {
            self.emit(EngineEvent::TaskFinished {
                task_id: created.task_id,
                state: created.state,
            });
        }
        self.inner.wake.notify_one();
        Ok(created)
    }

    /// Starts the coordinator in the background (idempotent).
    pub fn start(&self) {
        let mut slot = self.inner.coordinator.lock().expect("coordinator lock");
        if slot.as_ref().is_none_or(JoinHandle::is_finished) && !self.inner.shutdown.is_cancelled()
        {
            *slot = Some(tokio::spawn(coordinate(self.inner.clone())));
        }
    }

    /// Stops claiming, cancels running handlers (their claims lapse and are retried by whoever
    /// runs next), and waits for the coordinator to stop.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let handle = self
            .inner
            .coordinator
            .lock()
            .expect("coordinator lock")
            .take();
        if let Some(handle) = handle {
            handle.await.ok();
        }
    }

    /// Waits until `task_id` is final and returns it.
    pub async fn wait_for_task(&self, task_id: TaskId) -> Result<TaskRecord, EngineError> {
        let mut events = self.subscribe();
        loop {
            let task = self.inner.store.task(task_id).await?;
            if !matches!(task.state, TaskState::Pending | TaskState::InProgress) {
                return Ok(task);
            }
            tokio::select! {
                event = events.recv() => match event {
                    Ok(EngineEvent::TaskFinished { task_id: id, .. }) if id == task_id => {}
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Err(EngineError::ShutDown),
                },
                () = self.inner.clock.sleep(self.inner.config.poll_interval) => {}
            }
        }
    }

    /// Creates a task, starts the coordinator if needed, and waits for the task to finish.
    pub async fn run_task(&self, request: TaskRequest) -> Result<TaskRecord, EngineError> {
        let created = self.create_task(request).await?;
        self.start();
        self.wait_for_task(created.task_id).await
    }

    /// Waits until nothing runs here and nothing is claimable at the clock's current time.
    pub async fn wait_until_idle(&self) {
        let mut reports = self.inner.idle.subscribe();
        let asked_at = reports.borrow().epoch;
        self.inner.wake.notify_one();
        loop {
            {
                let report = *reports.borrow_and_update();
                if report.idle && report.epoch > asked_at {
                    return;
                }
            }
            if reports.changed().await.is_err() {
                return;
            }
        }
    }

    /// Cancels a task and its unfinished steps; running handlers see their cancellation token.
    pub async fn cancel_task(&self, task_id: TaskId) -> Result<TaskState, EngineError> {
        let task = self.inner.store.task(task_id).await?;
        let outcome = self
            .inner
            .store
            .transition_task(
                task_id,
                task.state,
                TaskState::Cancelled,
                serde_json::json!({"reason": "cancel_requested"}),
                self.inner.clock.now(),
            )
            .await?;
        for entry in self.inner.running.iter() {
            if entry.value().0 == task_id {
                entry.value().1.cancel();
            }
        }
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            self.emit(EngineEvent::TaskFinished {
                task_id,
                state: TaskState::Cancelled,
            });
        }
        self.inner.wake.notify_one();
        Ok(TaskState::Cancelled)
    }

    /// Cancels one step; its dependants will not run, and the task ends in error once nothing
    /// else can progress.
    pub async fn cancel_step(&self, step_id: StepId) -> Result<(), EngineError> {
        let step = self.inner.store.step(step_id).await?;
        let (_, report) = self
            .inner
            .store
            .transition_step(
                step_id,
                step.state,
                StepState::Cancelled,
                None,
                serde_json::json!({"reason": "cancel_requested"}),
                self.inner.clock.now(),
            )
            .await?;
        if let Some(entry) = self.inner.running.get(&step_id) {
            entry.value().1.cancel();
        }
        self.after_report(&report, &HashMap::new()).await;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Resolves a step by hand with `results`; it counts as done for its dependants. A task in
    /// error is reopened (its other failed steps stay as they are) and finishes at once if
    /// nothing is left to run.
    pub async fn resolve_step(&self, step_id: StepId, results: Value) -> Result<(), EngineError> {
        let step = self.inner.store.step(step_id).await?;
        let now = self.inner.clock.now();
        let (_, report) = self
            .inner
            .store
            .transition_step(
                step_id,
                step.state,
                StepState::ResolvedManually,
                Some(results),
                serde_json::json!({"reason": "resolved_manually"}),
                now,
            )
            .await?;
        self.after_report(&report, &HashMap::new()).await;
        let task = self.inner.store.task(step.task_id).await?;
        if task.state == TaskState::Error {
            let state = self.inner.store.reopen_task(task.task_id, now).await?;
            if state.is_finished() {
                self.finalized(task.task_id, state).await;
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Sends a task that ended in error back to work, resetting its exhausted steps.
    pub async fn retry_task(&self, task_id: TaskId) -> Result<(), EngineError> {
        self.inner
            .store
            .transition_task(
                task_id,
                TaskState::Error,
                TaskState::Pending,
                serde_json::json!({"reason": "retry_requested"}),
                self.inner.clock.now(),
            )
            .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    fn emit(&self, event: EngineEvent) {
        // No receivers is fine: events are for whoever listens.
        let _ = self.inner.events.send(event);
    }

    async fn known(&self, named_task_id: i64) -> Result<Known, EngineError> {
        if let Some(known) = self.inner.templates.get(&named_task_id) {
            return Ok(known.clone());
        }
        let stored = self.inner.store.find_template_by_id(named_task_id).await?;
        let t = &stored.template;
        let known = match self
            .inner
            .registry
            .resolve(&t.namespace_name, &t.name, Some(&t.version))
        {
            Some(registered) => Known {
                template: registered.template,
                hooks: registered.hooks,
            },
            None => Known {
                template: stored.template.clone(),
                hooks: None,
            },
        };
        self.inner.templates.insert(named_task_id, known.clone());
        Ok(known)
    }

    /// Publishes events for a report and runs finalization hooks.
    async fn after_report(
        &self,
        report: &RecordReport,
        names: &HashMap<StepId, (String, u32, Option<StepError>)>,
    ) {
        for recorded in &report.recorded {
            let Some((name, attempt, error)) = names.get(&recorded.step_id) else {
                continue;
            };
            let event = match (recorded.state, error) {
                (StepState::Complete, _) => EngineEvent::StepCompleted {
                    task_id: recorded.task_id,
                    step_id: recorded.step_id,
                    name: name.clone(),
                    attempt: *attempt,
                },
                (_, error) => EngineEvent::StepFailed {
                    task_id: recorded.task_id,
                    step_id: recorded.step_id,
                    name: name.clone(),
                    attempt: *attempt,
                    error: error
                        .clone()
                        .unwrap_or_else(|| StepError::retryable("attempt failed")),
                    next_attempt_at: recorded.next_attempt_at,
                },
            };
            self.emit(event);
        }
        for (task_id, state) in &report.finalized {
            self.finalized(*task_id, *state).await;
        }
    }

    async fn finalized(&self, task_id: TaskId, state: TaskState) {
        if let Ok(task) = self.inner.store.task(task_id).await
            && let Ok(Known {
                hooks: Some(hooks), ..
            }) = self.known(task.named_task_id).await
        {
            for (kind, annotation) in hooks.update_annotations(task_id, state).await {
                if let Err(err) = self
                    .inner
                    .store
                    .annotate_task(task_id, &kind, annotation, self.inner.clock.now())
                    .await
                {
                    tracing::warn!(%task_id, error = %err, "storing an annotation failed");
                }
            }
        }
        tracing::info!(%task_id, state = %state, "task finished");
        self.emit(EngineEvent::TaskFinished { task_id, state });
    }
}

/// An attempt's end, sent from its task to the coordinator.
struct Finished {
    step: ClaimedStep,
    result: AttemptResult,
}

enum AttemptResult {
    Completed(Value),
    Failed(StepError),
    Cancelled,
}

async fn coordinate(inner: Arc<Inner>) {
    let engine = Engine {
        inner: inner.clone(),
    };
    let config = &inner.config;
    let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
    let mut per_task: HashMap<TaskId, usize> = HashMap::new();
    let mut held: VecDeque<(ClaimedStep, StepInputs)> = VecDeque::new();
    let mut finished: Vec<Finished> = Vec::new();
    let mut task_spans: HashMap<TaskId, Span> = HashMap::new();
    let mut next_upkeep = inner.clock.now();
    let mut epoch = 0u64;
    // Next-attempt times of the failures this engine recorded.
    let mut known_due: std::collections::BinaryHeap<std::cmp::Reverse<DateTime<Utc>>> =
        Default::default();
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let mut progressed = false;
        // Steps claimed in the same transaction that recorded outcomes (one commit per hand-off).
        let mut claimed_with_record = None;
        while finished.len() < config.record_batch_size {
            match rx.try_recv() {
                Ok(f) => finished.push(f),
                Err(_) => break,
            }
        }
        if !finished.is_empty() {
            progressed = true;
            let batch = std::mem::take(&mut finished);
            known_due.extend(
                record(
                    &engine,
                    batch,
                    &mut per_task,
                    &mut task_spans,
                    held.len(),
                    &mut claimed_with_record,
                )
                .await
                .into_iter()
                .map(std::cmp::Reverse),
            );
        }
        let now = inner.clock.now();
        if now >= next_upkeep {
            upkeep(&engine, now).await;
            next_upkeep = now + config.lease / 3;
        }
        // Start held steps whose task has room now.
        let mut still_held = VecDeque::new();
        while let Some((step, inputs)) = held.pop_front() {
            if per_task.get(&step.task_id).copied().unwrap_or(0)
                < config.max_concurrent_steps_per_task
            {
                spawn_attempt(&engine, step, inputs, &tx, &mut per_task, &task_spans).await;
                progressed = true;
            } else {
                still_held.push_back((step, inputs));
            }
        }
        held = still_held;
        let capacity = config
            .max_concurrent_steps
            .saturating_sub(inner.running.len() + held.len());
        if capacity > 0 || claimed_with_record.is_some() {
            let limit = capacity.min(config.claim_batch_size);
            let claimed = match claimed_with_record.take() {
                Some(batch) => Ok(batch),
                None => {
                    inner
                        .store
                        .claim_ready_steps(&inner.owner, limit, config.lease, now)
                        .await
                }
            };
            match claimed {
                Ok(batch) if !batch.steps.is_empty() => {
                    progressed = true;
                    for task_id in &batch.started_tasks {
                        engine.emit(EngineEvent::TaskStarted { task_id: *task_id });
                    }
                    // The claim returned each step's inputs in the same statement.
                    for (step, inputs) in batch.steps.into_iter().zip(batch.inputs) {
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            task_spans.entry(step.task_id)
                        {
                            slot.insert(task_span(&engine, &step, &inputs).await);
                        }
                        if per_task.get(&step.task_id).copied().unwrap_or(0)
                            < config.max_concurrent_steps_per_task
                        {
                            spawn_attempt(&engine, step, inputs, &tx, &mut per_task, &task_spans)
                                .await;
                        } else {
                            held.push_back((step, inputs));
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "claiming steps failed"),
            }
        }
        if progressed {
            tokio::task::yield_now().await;
            continue;
        }
        let idle = inner.running.is_empty() && held.is_empty();
        epoch += 1;
        inner.idle.send_replace(IdleReport { epoch, idle });
        let mut wake_at = now + config.poll_interval;
        while known_due
            .peek()
            .is_some_and(|std::cmp::Reverse(at)| *at <= now)
        {
            known_due.pop();
        }
        if let Some(std::cmp::Reverse(at)) = known_due.peek() {
            wake_at = wake_at.min(*at);
        }
        if idle {
            // Nothing of ours is running: ask the database what comes next, which also covers
            // backoffs and leases of other processes.
            if let Ok(Some(due)) = inner.store.next_attempt_due(now).await {
                wake_at = wake_at.min(due);
            }
            if let Ok(Some(expiry)) = inner.store.next_lease_expiry().await {
                wake_at = wake_at.min(expiry.max(now) + Duration::from_millis(1));
            }
        } else {
            // A finished attempt wakes us; our own backoffs are known from what we recorded, and
            // upkeep covers leases. No queries on the hand-off path.
            wake_at = wake_at.min(next_upkeep);
        }
        tokio::select! {
            received = rx.recv() => if let Some(f) = received { finished.push(f) },
            () = inner.wake.notified() => {}
            () = inner.clock.sleep_until(wake_at) => {}
            () = inner.shutdown.cancelled() => break,
        }
        inner.idle.send_replace(IdleReport { epoch, idle: false });
    }
    for entry in inner.running.iter() {
        entry.value().1.cancel();
    }
}

async fn task_span(engine: &Engine, step: &ClaimedStep, inputs: &StepInputs) -> Span {
    let (namespace, name, version) = match engine.known(step.named_task_id).await {
        Ok(known) => (
            known.template.namespace_name.clone(),
            known.template.name.clone(),
            known.template.version.to_string(),
        ),
        Err(_) => (String::new(), String::new(), String::new()),
    };
    tracing::info_span!(
        "task",
        task_id = %step.task_id,
        namespace = %namespace,
        name = %name,
        version = %version,
        correlation_id = %inputs.correlation_id,
    )
}

/// Extends the leases of running attempts and fails expired ones (any owner's).
async fn upkeep(engine: &Engine, now: DateTime<Utc>) {
    let inner = &engine.inner;
    let ids: Vec<StepId> = inner.running.iter().map(|e| *e.key()).collect();
    if !ids.is_empty()
        && let Err(err) = inner
            .store
            .extend_leases(&inner.owner, &ids, inner.config.lease, now)
            .await
    {
        tracing::warn!(error = %err, "extending leases failed");
    }
    match inner.store.reclaim_expired(now).await {
        Ok(report) if !report.recorded.is_empty() => {
            tracing::warn!(
                steps = report.recorded.len(),
                "reclaimed attempts whose lease expired"
            );
            engine.after_report(&report, &HashMap::new()).await;
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "reclaiming expired leases failed"),
    }
}

async fn spawn_attempt(
    engine: &Engine,
    step: ClaimedStep,
    inputs: StepInputs,
    tx: &mpsc::UnboundedSender<Finished>,
    per_task: &mut HashMap<TaskId, usize>,
    task_spans: &HashMap<TaskId, Span>,
) {
    let inner = &engine.inner;
    let token = inner.shutdown.child_token();
    inner
        .running
        .insert(step.step_id, (step.task_id, token.clone()));
    *per_task.entry(step.task_id).or_default() += 1;
    engine.emit(EngineEvent::StepStarted {
        task_id: step.task_id,
        step_id: step.step_id,
        name: step.name.clone(),
        attempt: step.attempt,
    });
    let tx = tx.clone();
    let (handler, context, timeout) = match prepare(engine, &step, inputs, token.clone()).await {
        Ok(prepared) => prepared,
        Err(error) => {
            let _ = tx.send(Finished {
                step,
                result: AttemptResult::Failed(error),
            });
            return;
        }
    };
    let parent = task_spans
        .get(&step.task_id)
        .cloned()
        .unwrap_or_else(Span::none);
    let span = tracing::info_span!(
        parent: &parent,
        "step_attempt",
        task_id = %step.task_id,
        step_id = %step.step_id,
        namespace = %context.namespace,
        name = %context.task_name,
        version = %context.version,
        step = %step.name,
        attempt = step.attempt,
        correlation_id = %context.correlation_id,
    );
    let clock = inner.clock.clone();
    // The deadline is fixed now, at claim time, so it does not depend on when the task starts.
    let deadline = timeout.map(|limit| inner.clock.now() + limit);
    tokio::spawn(
        async move {
            let attempt = AssertUnwindSafe(handler.handle(context)).catch_unwind();
            let outcome = match deadline {
                Some(deadline) => tokio::select! {
                    outcome = attempt => Some(outcome),
                    () = clock.sleep_until(deadline) => None,
                },
                None => Some(attempt.await),
            };
            let result = match outcome {
                _ if token.is_cancelled() => AttemptResult::Cancelled,
                Some(Ok(Ok(results))) => AttemptResult::Completed(results),
                Some(Ok(Err(error))) => AttemptResult::Failed(error),
                Some(Err(panic)) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(%message, "step handler panicked");
                    AttemptResult::Failed(
                        StepError::retryable(format!("handler panicked: {message}"))
                            .with_code("HANDLER_PANIC"),
                    )
                }
                None => AttemptResult::Failed(
                    StepError::retryable(format!(
                        "attempt timed out after {:?}",
                        timeout.unwrap_or_default()
                    ))
                    .with_code("TIMEOUT"),
                ),
            };
            let _ = tx.send(Finished { step, result });
        }
        .instrument(span),
    );
}

async fn prepare(
    engine: &Engine,
    step: &ClaimedStep,
    inputs: StepInputs,
    token: CancellationToken,
) -> Result<(Arc<dyn StepHandler>, StepContext, Option<Duration>), StepError> {
    let known = engine.known(step.named_task_id).await.map_err(|e| {
        StepError::retryable(format!("loading the task template failed: {e}"))
            .with_code("TEMPLATE_UNAVAILABLE")
    })?;
    let template = &known.template;
    let step_template = template.step(&step.name).ok_or_else(|| {
        StepError::permanent(
            format!(
                "template {} has no step `{}`",
                template.full_name(),
                step.name
            ),
            "STEP_NOT_IN_TEMPLATE",
        )
    })?;
    let handler = engine
        .inner
        .registry
        .step_handler(&step_template.handler_class)
        .ok_or_else(|| {
            StepError::retryable(format!(
                "no step handler is registered as `{}` in this process",
                step_template.handler_class
            ))
            .with_code("HANDLER_NOT_FOUND")
        })?;
    let context = StepContext {
        task_id: step.task_id,
        step_id: step.step_id,
        step_name: step.name.clone(),
        namespace: template.namespace_name.clone(),
        task_name: template.name.clone(),
        version: template.version.clone(),
        task_context: Arc::new(inputs.task_context),
        config: step_template.handler_config.clone(),
        inputs: inputs.inputs,
        parent_results: inputs.parent_results,
        attempt: step.attempt,
        retry_limit: step.retry_limit,
        idempotency_key: step.step_id.to_string(),
        correlation_id: inputs.correlation_id,
        cancellation: token,
    };
    Ok((
        handler,
        context,
        step_template
            .timeout
            .or(engine.inner.config.default_step_timeout),
    ))
}

/// Records a batch of finished attempts and, in the same transaction, claims what there is room
/// for (into `claimed`); returns the next-attempt times of the failures.
async fn record(
    engine: &Engine,
    batch: Vec<Finished>,
    per_task: &mut HashMap<TaskId, usize>,
    task_spans: &mut HashMap<TaskId, Span>,
    held: usize,
    claimed: &mut Option<ClaimBatch>,
) -> Vec<DateTime<Utc>> {
    let inner = &engine.inner;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut names = HashMap::with_capacity(batch.len());
    for Finished { step, result } in batch {
        inner.running.remove(&step.step_id);
        if let Some(count) = per_task.get_mut(&step.task_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_task.remove(&step.task_id);
            }
        }
        match result {
            AttemptResult::Completed(results) => {
                names.insert(step.step_id, (step.name.clone(), step.attempt, None));
                outcomes.push(StepOutcome::Success {
                    step_id: step.step_id,
                    attempt: step.attempt,
                    results,
                });
            }
            AttemptResult::Failed(error) => {
                let sample = (inner.random.lock().expect("random lock"))();
                let retry_delay =
                    inner
                        .config
                        .backoff
                        .delay_for(step.attempt, error.retry_after, sample);
                tracing::info!(task_id = %step.task_id, step = %step.name, attempt = step.attempt, error = %error, "step attempt failed");
                names.insert(
                    step.step_id,
                    (step.name.clone(), step.attempt, Some(error.clone())),
                );
                outcomes.push(StepOutcome::Failure(StepFailure {
                    step_id: step.step_id,
                    attempt: step.attempt,
                    error,
                    retry_delay,
                }));
            }
            // Cancelled with its task or step: the store already holds the final word.
            AttemptResult::Cancelled => {}
        }
    }
    if outcomes.is_empty() {
        return Vec::new();
    }
    let config = &inner.config;
    let room = (config.max_concurrent_steps)
        .saturating_sub(inner.running.len() + held)
        .min(config.claim_batch_size);
    match inner
        .store
        .record_outcomes_and_claim(
            &inner.owner,
            outcomes,
            inner.clock.now(),
            room,
            config.lease,
        )
        .await
    {
        Ok((report, batch)) => {
            *claimed = (room > 0).then_some(batch);
            if !report.rejected.is_empty() {
                tracing::warn!(
                    steps = report.rejected.len(),
                    "outcomes refused: the claims no longer held"
                );
            }
            for (task_id, _) in &report.finalized {
                task_spans.remove(task_id);
            }
            engine.after_report(&report, &names).await;
            report
                .recorded
                .iter()
                .filter_map(|r| r.next_attempt_at)
                .collect()
        }
        // The claims lapse and the attempts run again after the lease: at-least-once.
        Err(err) => {
            tracing::error!(error = %err, "recording outcomes failed");
            Vec::new()
        }
    }
}
