//! The engine facade: [`Engine`] and its shared state. Its builder is in `builder.rs`, task
//! creation in `create.rs`, operator calls in `operate.rs`, the claim filter in
//! `claim_filter.rs`, the template cache in `templates.rs`; the coordinator loop is
//! `crate::coordinator`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tasker_domain::duration::saturating_add;
use tasker_domain::{StepId, TaskId, TaskRequest, TaskState, TemplateId};
use tasker_events::{Category, EventBus, EventStream, Interest, Payload};
use tasker_persistence::{ClaimFilter, Store, TaskRecord};
use tasker_template::TaskTemplate;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;
use crate::creator::Creator;
use crate::error::EngineError;
use crate::hooks::HookRuns;
use crate::metrics::EngineMetrics;
use crate::registry::{RegisteredTask, Registry};
use tasker_handler::Clock;

mod builder;
mod claim_filter;
mod create;
mod eager;
mod operate;
mod templates;

pub use builder::EngineBuilder;
use create::check_json;
pub(crate) use eager::CreatedClaims;
pub(crate) use templates::{CachedTemplate, TemplateCache};

/// The most tasks [`Engine::create_tasks`] writes in one transaction.
pub const BULK_BATCH: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IdleReport {
    pub(crate) epoch: u64,
    pub(crate) idle: bool,
    /// When the coordinator, asleep between passes, wakes by itself.
    pub(crate) wake_at: Option<DateTime<Utc>>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) owner: String,
    pub(crate) wake: Notify,
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the engine drains: no more claims; running attempts finish until
    /// `drain_deadline`, then their claims are given back.
    pub(crate) drain: CancellationToken,
    pub(crate) drain_deadline: Mutex<Option<DateTime<Utc>>>,
    pub(crate) bus: EventBus,
    /// Held by the coordinator from a pass's transactions to their events, and by operator
    /// calls from their transaction to their events, so the events of one task are published
    /// in commit order.
    pub(crate) gate: tokio::sync::Mutex<()>,
    pub(crate) idle: watch::Sender<IdleReport>,
    /// How many finished attempts wait in memory to be recorded again after a failed commit.
    pub(crate) unrecorded: watch::Sender<usize>,
    /// The catalogue templates this engine has met, by id and by name.
    pub(crate) templates: TemplateCache,
    /// Attempts running in this process, by step and attempt number: an attempt that outlived
    /// its claim (its handler ignoring its cancellation) never stands for the step's next one.
    pub(crate) running: DashMap<(StepId, u32), (TaskId, CancellationToken)>,
    pub(crate) random: Mutex<Box<dyn FnMut() -> f64 + Send>>,
    pub(crate) coordinator: Mutex<Option<JoinHandle<()>>>,
    /// The namespaces this engine claims from (`None`: all).
    pub(crate) namespaces: Option<Vec<String>>,
    /// Which tasks' steps this engine claims: those of templates whose handler classes are all
    /// registered here, in its namespaces. Refreshed from the catalogue at start, at upkeep and
    /// when a template is registered.
    pub(crate) claim_filter: Mutex<ClaimFilter>,
    /// Whether runtime switches were in force at the last read (then the coordinator wakes at
    /// every `engine.switch_refresh` to see them lifted).
    pub(crate) switches_active: AtomicBool,
    /// Group-commits concurrent task creations.
    pub(crate) creator: Creator,
    /// The coordinator's instruments.
    pub(crate) metrics: EngineMetrics,
    /// Finalization hooks running on tasks of their own.
    pub(crate) hook_runs: Arc<HookRuns>,
    /// How many times the coordinator panicked and was restarted.
    pub(crate) restarts: std::sync::atomic::AtomicU64,
    /// Steps an operator call cancelled: if this coordinator holds one back (claimed, not yet
    /// started), it never starts. Trimmed to the held steps at upkeep.
    pub(crate) revoked: DashMap<StepId, ()>,
    /// Root steps claimed as their tasks were created here, for the coordinator to start.
    pub(crate) created_claims: Mutex<CreatedClaims>,
    /// Wakes the coordinator for `created_claims` alone: no claim of its own is wanted.
    pub(crate) created_wake: Notify,
    /// Slots of `engine.max_concurrent_steps` taken by steps claimed and not yet running or
    /// held by the coordinator: its claims in flight, and claims made at creation.
    pub(crate) reserved: AtomicUsize,
}

impl Inner {
    /// Takes up to `wanted` free slots of `engine.max_concurrent_steps` (all of them or none
    /// when `all`), `busy` being the attempts running and the claims held back; returns how
    /// many it took, which count as busy until given back with [`Inner::release_slots`].
    pub(crate) fn reserve_slots(&self, busy: usize, wanted: usize, all: bool) -> usize {
        let mut reserved = self.reserved.load(Ordering::Acquire);
        loop {
            let take = crate::coordinator::claim_room(
                self.config.max_concurrent_steps,
                wanted,
                busy.saturating_add(reserved),
                false,
            );
            if take == 0 || (all && take < wanted) {
                return 0;
            }
            match self.reserved.compare_exchange(
                reserved,
                reserved + take,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return take,
                Err(now) => reserved = now,
            }
        }
    }

    /// Gives back slots [`Inner::reserve_slots`] took.
    pub(crate) fn release_slots(&self, slots: usize) {
        if slots > 0 {
            self.reserved.fetch_sub(slots, Ordering::AcqRel);
        }
    }
}

/// The orchestration engine. Cheap to clone; clones share one coordinator.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// The handler registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The current time on the engine's clock (a manual clock in tests).
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The engine's clock, for parts that must keep the same time (a cache's expiry).
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// This engine's claim owner id.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How many finished attempts wait in memory to be recorded again because the commit that
    /// should have recorded them failed (a database outage); they are retried with backoff until
    /// recorded or until their claim is gone. For health checks and tests.
    pub fn unrecorded_outcomes(&self) -> watch::Receiver<usize> {
        self.inner.unrecorded.subscribe()
    }

    /// The event bus the engine publishes on.
    pub fn events(&self) -> &EventBus {
        &self.inner.bus
    }

    /// Every event from now on, in order, in a stream holding up to 65,536 unread events.
    pub fn subscribe(&self) -> EventStream {
        self.inner.bus.stream(vec![Interest::all()], 65_536)
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
        self.check_template_limits(&template)?;
        let registered = self.inner.registry.register_template(template, replace)?;
        let stored = self
            .inner
            .store
            .register_template(&registered.template, self.inner.clock.now())
            .await?;
        self.register_custom_events(&registered.template)?;
        self.inner.templates.stored(stored, &registered);
        self.refresh_claim_filter().await;
        Ok(registered)
    }

    /// Checks a template against `engine.max_steps_per_template` and
    /// `engine.max_handler_config_bytes`, and that its handler configs can be stored.
    fn check_template_limits(&self, template: &TaskTemplate) -> Result<(), EngineError> {
        let config = &self.inner.config;
        let steps = template.step_templates.len();
        if steps > config.max_steps_per_template {
            return Err(EngineError::TooManySteps {
                template: template.full_name(),
                steps,
                limit: config.max_steps_per_template,
            });
        }
        for step in &template.step_templates {
            check_json(
                &step.handler_config,
                || format!("handler_config of step `{}`", step.name),
                || template.full_name(),
                config.max_handler_config_bytes,
                "max_handler_config_bytes",
            )?;
        }
        Ok(())
    }

    /// Registers the custom events a template declares (top level and per step) on the bus.
    pub(crate) fn register_custom_events(
        &self,
        template: &TaskTemplate,
    ) -> Result<(), EngineError> {
        for (event, fired_by) in template.declared_custom_events() {
            self.inner
                .bus
                .register_custom(&event.name, event.description.as_deref(), &fired_by)
                .map_err(|err| EngineError::InvalidCustomEvent {
                    template: template.full_name(),
                    message: err.to_string(),
                })?;
        }
        Ok(())
    }

    /// Starts the coordinator in the background (idempotent).
    pub fn start(&self) {
        let mut slot = self.inner.coordinator.lock().expect("coordinator lock");
        if slot.as_ref().is_none_or(JoinHandle::is_finished)
            && !self.inner.shutdown.is_cancelled()
            && !self.inner.drain.is_cancelled()
        {
            *slot = Some(tokio::spawn(crate::coordinator::supervise(
                self.inner.clone(),
            )));
        }
    }

    /// How many times this engine's coordinator panicked and was restarted.
    pub fn coordinator_restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// Whether this engine's coordinator is running (started, not shut down, not dead).
    pub fn is_coordinating(&self) -> bool {
        self.inner
            .coordinator
            .lock()
            .expect("coordinator lock")
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
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

    /// Drains, then stops: claims nothing more, lets the attempts running here finish for up to
    /// `engine.shutdown_grace` (on the engine's clock, from this call) and records their
    /// outcomes, then gives back the claims still held without using up their attempts (the
    /// steps are ready again at once, for any engine, with their attempt counts unchanged), and
    /// waits for the coordinator to stop. For a graceful shutdown (SIGTERM). The drain starts
    /// when this is called; the future returned finishes when it is done.
    pub fn drain(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        {
            let mut deadline = self.inner.drain_deadline.lock().expect("drain lock");
            if deadline.is_none() {
                *deadline = Some(saturating_add(
                    self.inner.clock.now(),
                    self.inner.config.shutdown_grace,
                ));
            }
        }
        self.inner.drain.cancel();
        self.inner.wake.notify_one();
        let inner = self.inner.clone();
        async move {
            let handle = inner.coordinator.lock().expect("coordinator lock").take();
            if let Some(handle) = handle {
                handle.await.ok();
            }
            // Finished tasks' annotations are stored before the process exits (each hook call
            // is bounded by `HOOK_TIMEOUT`).
            inner.hook_runs.settled().await;
            inner.shutdown.cancel();
        }
    }

    /// Waits until `task_id` is final and returns it.
    pub async fn wait_for_task(&self, task_id: TaskId) -> Result<TaskRecord, EngineError> {
        let mut events = self
            .inner
            .bus
            .stream(vec![Interest::Category(Category::Task)], 1024);
        loop {
            let task = self.inner.store.task(task_id).await?;
            if !matches!(task.state, TaskState::Pending | TaskState::InProgress) {
                self.inner.hook_runs.settled_for(task_id).await;
                return Ok(task);
            }
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) if event.task_id() == Some(task_id)
                            && matches!(&event.payload, Payload::Task(p) if p.state.is_finished()) => break,
                        Some(_) => {}
                        None => return Err(EngineError::ShutDown),
                    },
                    () = self.inner.clock.sleep(self.inner.config.poll_interval) => break,
                    () = self.inner.shutdown.cancelled() => return Err(EngineError::ShutDown),
                }
            }
        }
    }

    /// Creates a task, starts the coordinator if needed, and waits for the task to finish.
    pub async fn run_task(&self, request: TaskRequest) -> Result<TaskRecord, EngineError> {
        let created = self.create_task(request).await?;
        self.start();
        self.wait_for_task(created.task_id).await
    }

    /// Reads the claimable frontier from the database (steps ready now, steps in backoff) into
    /// the `tasker.steps.ready` and `tasker.steps.in_backoff` gauges. A metrics endpoint calls
    /// it before each scrape: one indexed query, on demand rather than on the hot path.
    pub async fn observe_backlog(&self) -> Result<(), EngineError> {
        let waited = self.inner.store.acquire_wait().await?;
        let backlog = self.inner.store.backlog(self.inner.clock.now()).await?;
        let gauges = &self.inner.metrics.gauges;
        gauges.acquire_wait_micros.store(
            u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        gauges.ready.store(backlog.ready, Ordering::Relaxed);
        gauges.in_backoff.store(backlog.waiting, Ordering::Relaxed);
        gauges.backlog_observed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// When the coordinator, idle between passes, will next wake by itself (a backoff or lease
    /// expiring, upkeep, or `poll_interval`); `None` while it works. For health checks and tests.
    pub fn next_wake_up(&self) -> Option<DateTime<Utc>> {
        self.inner.idle.borrow().wake_at
    }

    /// Waits until nothing runs here and nothing is claimable at the clock's current time, and
    /// the finalization hooks started here have finished.
    pub async fn wait_until_idle(&self) {
        let mut reports = self.inner.idle.subscribe();
        let asked_at = reports.borrow().epoch;
        self.inner.wake.notify_one();
        loop {
            {
                let report = *reports.borrow_and_update();
                if report.idle && report.epoch > asked_at {
                    break;
                }
            }
            if reports.changed().await.is_err() {
                break;
            }
        }
        self.inner.hook_runs.settled().await;
    }

    /// The template stored as `named_task_id`, from the cache or else the catalogue (then the
    /// one registered here under its name and version, with its hooks, when there is one).
    pub(crate) async fn known(
        &self,
        named_task_id: TemplateId,
    ) -> Result<Arc<CachedTemplate>, EngineError> {
        if let Some(known) = self.inner.templates.by_id(named_task_id) {
            return Ok(known);
        }
        let stored = self.inner.store.find_template_by_id(named_task_id).await?;
        let t = &stored.template;
        let registered = self
            .inner
            .registry
            .resolve(&t.namespace_name, &t.name, Some(&t.version));
        let known = self.inner.templates.learned(stored, registered.as_ref());
        // A template this process did not register itself (registered by another process, or
        // given in a prepared registry) still has its custom events.
        if let Err(err) = self.register_custom_events(&known.template) {
            tracing::warn!(error = %err, "registering a template's custom events failed");
        }
        Ok(known)
    }

    /// Starts the finalization hooks of a task that reached `state` on a task of their own,
    /// outside the event-order gate (its event is published by the caller, which knows its
    /// labels). Called before that event, so a waiter woken by it finds the run tracked.
    pub(crate) fn finalized(&self, task_id: TaskId, named_task_id: TemplateId, state: TaskState) {
        tracing::info!(%task_id, state = %state, "task finished");
        // Most templates have no hooks: when the cache already says so, nothing is spawned.
        if self.inner.templates.known_without_hooks(named_task_id) {
            return;
        }
        let engine = self.clone();
        HookRuns::spawn(&self.inner.hook_runs, task_id, async move {
            let Some(hooks) = engine
                .known(named_task_id)
                .await
                .ok()
                .and_then(|known| known.hooks.clone())
            else {
                return;
            };
            let clock = &*engine.inner.clock;
            for (kind, annotation) in
                crate::hooks::annotations(hooks.as_ref(), task_id, state, clock).await
            {
                if let Err(err) = engine
                    .inner
                    .store
                    .annotate_task(task_id, &kind, annotation, clock.now())
                    .await
                {
                    tracing::warn!(%task_id, error = %err, "storing an annotation failed");
                }
            }
        });
    }
}
