//! The coordinator: claim ready steps in batches, run them concurrently under limits, record
//! outcomes in batches (group commit), and sleep until the next wake-up: a new task, a finished
//! attempt, the next backoff expiry, lease upkeep, or the poll fallback for other processes.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures::FutureExt;
use serde_json::Value;
use tasker_domain::codes;
use tasker_domain::duration::{MAX_STEP_TIMEOUT, saturating_add};
use tasker_domain::{
    StepError, StepErrorKind, StepId, StepState, TaskId, TaskRequest, TaskState, TemplateId,
};
use tasker_events::names::{observability, workflow};
use tasker_events::{
    Category, Event, EventBus, EventStream, Interest, Payload, SwitchAction, TaskLabels,
    WorkflowPayload,
};
use tasker_persistence::{
    Claim, ClaimBatch, ClaimFilter, ClaimedStep, CreateTaskOptions, CreatedTask, NamespaceLimit,
    RecordReport, RegisteredTemplate, RuntimeSwitch, StepFailure, StepInputs, StepOutcome, Store,
    SwitchChange, SwitchKind, SwitchTarget, TaskRecord,
};
use tasker_state_machine::{TransitionOutcome, step as step_machine, task as task_machine};
use tasker_template::TaskTemplate;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::config::EngineConfig;
use crate::creator::Creator;
use crate::emit::{
    BusSink, StepEvent, StepIdentity, TaskEvent, TemplateNames, distinct_tasks, labels_of,
};
use crate::error::EngineError;
use crate::hooks::HookRuns;
use crate::metrics::EngineMetrics;
use crate::operator::{
    CreateOptions, Operator, refuse_step, refuse_step_of_finished_task, refuse_task,
};
use crate::registry::{RegisteredTask, Registry};
use crate::trace_context;
use tasker_handler::{Clock, StepContext, StepEvents, StepHandler, SystemClock, TaskHooks};

/// The most tasks [`Engine::create_tasks`] writes in one transaction.
pub const BULK_BATCH: usize = 64;

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Store,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    owner: String,
    random: Box<dyn FnMut() -> f64 + Send>,
    bus: Option<EventBus>,
    namespaces: Option<Vec<String>>,
    meter: Option<opentelemetry::metrics::Meter>,
}

impl EngineBuilder {
    /// Claim only steps of tasks in these namespaces (on top of the rule that an engine claims
    /// only steps of templates whose handler classes are all registered in its registry).
    pub fn namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.namespaces = Some(namespaces.into_iter().map(Into::into).collect());
        self
    }

    /// The event bus to publish on (a new one by default). Share one bus between engines and
    /// servers to see all their events in one place.
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The meter the coordinator's instruments are created on (by default the global meter
    /// provider's `tasker` meter, which records nothing until a provider is installed).
    pub fn meter(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
        self
    }

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
        self.config.validate().map_err(EngineError::InvalidConfig)?;
        let (idle, _) = watch::channel(IdleReport::default());
        let meter = self
            .meter
            .unwrap_or_else(|| opentelemetry::global::meter("tasker"));
        let metrics = EngineMetrics::new(&meter, &self.store);
        let engine = Engine {
            inner: Arc::new(Inner {
                metrics,
                creator: Creator::new(self.store.clone()),
                store: self.store,
                registry: self.registry,
                config: self.config,
                clock: self.clock,
                owner: self.owner,
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                drain: CancellationToken::new(),
                drain_deadline: Mutex::new(None),
                bus: self.bus.unwrap_or_default(),
                gate: tokio::sync::Mutex::new(()),
                idle,
                unrecorded: watch::channel(0).0,
                templates: DashMap::new(),
                stored: DashMap::new(),
                running: DashMap::new(),
                random: Mutex::new(self.random),
                coordinator: Mutex::new(None),
                namespaces: self.namespaces,
                claim_filter: Mutex::new(ClaimFilter::default()),
                switches_active: AtomicBool::new(false),
                hook_runs: Arc::new(HookRuns::default()),
                restarts: std::sync::atomic::AtomicU64::new(0),
                revoked: DashMap::new(),
            }),
        };
        // Templates already in the given registry declare custom events too.
        for (namespace, name, version) in engine.inner.registry.list(None) {
            if let Some(registered) =
                engine
                    .inner
                    .registry
                    .resolve(&namespace, &name, Some(&version))
            {
                engine.register_custom_events(&registered.template)?;
            }
        }
        Ok(engine)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct IdleReport {
    epoch: u64,
    idle: bool,
    /// When the coordinator, asleep between passes, wakes by itself.
    wake_at: Option<DateTime<Utc>>,
}

/// A template as the coordinator needs it.
#[derive(Clone)]
struct Known {
    template: Arc<TaskTemplate>,
    hooks: Option<Arc<dyn TaskHooks>>,
    names: TemplateNames,
}

impl Known {
    fn new(template: Arc<TaskTemplate>, hooks: Option<Arc<dyn TaskHooks>>) -> Self {
        let names = TemplateNames::of(&template);
        Self {
            template,
            hooks,
            names,
        }
    }
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    owner: String,
    wake: Notify,
    shutdown: CancellationToken,
    /// Cancelled when the engine drains: no more claims; running attempts finish until
    /// `drain_deadline`, then their claims are given back.
    drain: CancellationToken,
    drain_deadline: Mutex<Option<DateTime<Utc>>>,
    bus: EventBus,
    /// Held by the coordinator from a pass's transactions to their events, and by operator
    /// calls from their transaction to their events, so the events of one task are published
    /// in commit order.
    gate: tokio::sync::Mutex<()>,
    idle: watch::Sender<IdleReport>,
    /// How many finished attempts wait in memory to be recorded again after a failed commit.
    unrecorded: watch::Sender<usize>,
    /// By named task id.
    templates: DashMap<TemplateId, Known>,
    /// Catalogue rows by `namespace/name@version`.
    stored: DashMap<String, RegisteredTemplate>,
    /// Attempts running in this process, by step and attempt number: an attempt that outlived
    /// its claim (its handler ignoring its cancellation) never stands for the step's next one.
    running: DashMap<(StepId, u32), (TaskId, CancellationToken)>,
    random: Mutex<Box<dyn FnMut() -> f64 + Send>>,
    coordinator: Mutex<Option<JoinHandle<()>>>,
    /// The namespaces this engine claims from (`None`: all).
    namespaces: Option<Vec<String>>,
    /// Which tasks' steps this engine claims: those of templates whose handler classes are all
    /// registered here, in its namespaces. Refreshed from the catalogue at start, at upkeep and
    /// when a template is registered.
    claim_filter: Mutex<ClaimFilter>,
    /// Whether runtime switches were in force at the last read (then the coordinator wakes at
    /// every `engine.switch_refresh` to see them lifted).
    switches_active: AtomicBool,
    /// Group-commits concurrent task creations.
    creator: Creator,
    /// The coordinator's instruments.
    metrics: EngineMetrics,
    /// Finalization hooks running on tasks of their own.
    hook_runs: Arc<HookRuns>,
    /// How many times the coordinator panicked and was restarted.
    restarts: std::sync::atomic::AtomicU64,
    /// Steps an operator call cancelled: if this coordinator holds one back (claimed, not yet
    /// started), it never starts. Trimmed to the held steps at upkeep.
    revoked: DashMap<StepId, ()>,
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
            bus: None,
            namespaces: None,
            meter: None,
        }
    }

    /// Recomputes which templates' tasks this engine claims, from the catalogue and the
    /// runtime switches: those whose step handler classes are all registered here, in the
    /// configured namespaces, not paused, with the namespace limits in force.
    async fn refresh_claim_filter(&self) {
        let inner = &self.inner;
        let switches = match inner.store.runtime_switches().await {
            Ok(switches) => switches,
            Err(err) => {
                tracing::warn!(error = %err, "reading the runtime switches failed; the claim filter is unchanged");
                return;
            }
        };
        self.refresh_claim_filter_with(&switches).await;
    }

    async fn refresh_claim_filter_with(&self, switches: &[RuntimeSwitch]) {
        let inner = &self.inner;
        let catalogue = match inner.store.template_catalogue().await {
            Ok(catalogue) => catalogue,
            Err(err) => {
                tracing::warn!(error = %err, "reading the template catalogue failed; the claim filter is unchanged");
                return;
            }
        };
        let filter = claim_filter(
            &catalogue,
            |class| inner.registry.step_handler(class).is_some(),
            inner.namespaces.as_deref(),
            switches,
        );
        inner
            .switches_active
            .store(!switches.is_empty(), Ordering::Relaxed);
        *inner.claim_filter.lock().expect("claim filter lock") = filter;
    }

    /// Reads the runtime switches (every `engine.switch_refresh`, from the coordinator's loop):
    /// the claim filter is rebuilt while any are in force and once after the last is lifted,
    /// so without switches this costs one small query.
    async fn refresh_switches(&self) {
        let inner = &self.inner;
        let switches = match inner.store.runtime_switches().await {
            Ok(switches) => switches,
            Err(err) => {
                tracing::warn!(error = %err, "reading the runtime switches failed; the claim filter is unchanged");
                return;
            }
        };
        if !switches.is_empty() || inner.switches_active.load(Ordering::Relaxed) {
            self.refresh_claim_filter_with(&switches).await;
        }
    }

    fn current_claim_filter(&self) -> ClaimFilter {
        self.inner
            .claim_filter
            .lock()
            .expect("claim filter lock")
            .clone()
    }

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
        self.inner.templates.insert(
            stored.named_task_id,
            Known::new(registered.template.clone(), registered.hooks.clone()),
        );
        self.inner
            .stored
            .insert(registered.template.full_name(), stored);
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
    fn register_custom_events(&self, template: &TaskTemplate) -> Result<(), EngineError> {
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

    /// Creates a task from a registered template (the latest version when the request names
    /// none). Everything is validated before anything is stored.
    pub async fn create_task(&self, request: TaskRequest) -> Result<CreatedTask, EngineError> {
        self.create_task_with(request, &CreateOptions::default())
            .await
    }

    /// [`create_task`](Self::create_task) with a correlation id to store (instead of a new
    /// one) and an idempotency key: a second request with the same key for the same workflow
    /// fails with [`tasker_persistence::StoreError::DuplicateTask`], whose identity hash finds
    /// the first task.
    pub async fn create_task_with(
        &self,
        request: TaskRequest,
        options: &CreateOptions,
    ) -> Result<CreatedTask, EngineError> {
        let now = self.inner.clock.now();
        let span = creation_span(&request);
        async {
            let (template, prepared) = self.prepare_task(request, options, now).await?;
            // Validated above, before it joins a batch: a bad request fails alone.
            let created = self.inner.creator.create(prepared).await?;
            self.created(&template, &created, now);
            self.inner.wake.notify_one();
            Ok(created)
        }
        .instrument(span)
        .await
    }

    /// Creates many tasks at once (bulk submission): each request is validated on its own and
    /// gets its own result, in order; the valid ones are written in transactions of up to
    /// [`BULK_BATCH`] tasks. A bad request fails alone and stores nothing.
    pub async fn create_tasks(
        &self,
        requests: Vec<TaskRequest>,
    ) -> Vec<Result<CreatedTask, EngineError>> {
        let now = self.inner.clock.now();
        let mut results: Vec<Option<Result<CreatedTask, EngineError>>> =
            Vec::with_capacity(requests.len());
        let mut valid = Vec::with_capacity(requests.len());
        for (index, request) in requests.into_iter().enumerate() {
            // One creation span per task; its trace context is what the task stores (the
            // batched write afterwards is the request's, not any one task's).
            let span = creation_span(&request);
            match self
                .prepare_task(request, &CreateOptions::default(), now)
                .instrument(span)
                .await
            {
                Ok((template, prepared)) => {
                    valid.push((index, template, prepared));
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        while !valid.is_empty() {
            let rest = valid.split_off(valid.len().min(BULK_BATCH));
            let batch = std::mem::replace(&mut valid, rest);
            let (meta, prepared): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|(index, template, prepared)| ((index, template), prepared))
                .unzip();
            let written = self.inner.store.create_prepared(prepared).await;
            for ((index, template), result) in meta.into_iter().zip(written) {
                results[index] = Some(match result {
                    Ok(created) => {
                        self.created(&template, &created, now);
                        Ok(created)
                    }
                    Err(err) => Err(err.into()),
                });
            }
        }
        self.inner.wake.notify_one();
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::ShutDown)))
            .collect()
    }

    /// Resolves a request's template, runs its hooks and validates it into rows to write.
    async fn prepare_task(
        &self,
        mut request: TaskRequest,
        creation: &CreateOptions,
        now: DateTime<Utc>,
    ) -> Result<(Arc<TaskTemplate>, tasker_persistence::PreparedTask), EngineError> {
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
            crate::hooks::establish(hooks.as_ref(), &mut request, &*self.inner.clock)
                .await
                .map_err(|error| EngineError::RefusedByHooks {
                    template: registered.template.full_name(),
                    error: Box::new(error),
                })?;
        }
        check_json(
            &request.context,
            || "task context".to_owned(),
            || registered.template.full_name(),
            self.inner.config.max_context_bytes,
            "max_context_bytes",
        )?;
        let full_name = registered.template.full_name();
        let stored = match self.inner.stored.get(&full_name) {
            Some(stored) => stored.clone(),
            None => {
                let stored = self
                    .inner
                    .store
                    .register_template(&registered.template, now)
                    .await?;
                self.inner.stored.insert(full_name, stored.clone());
                stored
            }
        };
        let keyed;
        let identity: &dyn tasker_domain::IdentityStrategy = match &creation.idempotency_key {
            Some(key) => {
                keyed = tasker_domain::IdempotencyKey(key.clone());
                &keyed
            }
            None => &tasker_domain::DefaultIdentity,
        };
        let span = Span::current();
        let options = CreateTaskOptions {
            now,
            identity,
            correlation_id: creation.correlation_id.clone(),
            trace_parent: trace_context::traceparent(&span),
        };
        let prepared = Store::prepare_task(&stored, &request, &options)?;
        span.record(
            "task_id",
            tracing::field::display(prepared.created().task_id),
        );
        span.record("correlation_id", prepared.created().correlation_id.as_str());
        Ok((registered.template, prepared))
    }

    /// Publishes a new task's events: `task.initialize_requested`, one `observability.step.skip`
    /// per bypassed step, and the final event if it finished at creation.
    fn created(&self, template: &TaskTemplate, created: &CreatedTask, now: DateTime<Utc>) {
        let bus = &self.inner.bus;
        if !bus.has_subscribers() {
            return;
        }
        let labels = TemplateNames::of(template).labels(&created.correlation_id);
        TaskEvent::new(created.task_id, &labels, None, TaskState::Pending)
            .total_steps(created.steps.len())
            .publish(bus, now);
        for name in &created.skipped {
            let Some((_, step_id)) = created.steps.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let who = StepIdentity {
                task_id: created.task_id,
                step_id: *step_id,
                step_name: name.as_str().into(),
                labels: labels.clone(),
                retry_limit: template.step(name).map_or(0, |s| s.default_retry_limit),
            };
            StepEvent::new(
                observability::STEP_SKIP,
                &who,
                0,
                None,
                StepState::ResolvedManually,
            )
            .reason("bypassed")
            .publish(bus, now);
        }
        if created.state.is_finished() {
            TaskEvent::new(
                created.task_id,
                &labels,
                Some(TaskState::Pending),
                created.state,
            )
            .total_steps(created.steps.len())
            .duration_since(now, now)
            .publish(bus, now);
        }
    }

    /// Starts the coordinator in the background (idempotent).
    pub fn start(&self) {
        let mut slot = self.inner.coordinator.lock().expect("coordinator lock");
        if slot.as_ref().is_none_or(JoinHandle::is_finished)
            && !self.inner.shutdown.is_cancelled()
            && !self.inner.drain.is_cancelled()
        {
            *slot = Some(tokio::spawn(supervise(self.inner.clone())));
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

    /// Cancels a task and its unfinished steps; running handlers see their cancellation token.
    pub async fn cancel_task(&self, task_id: TaskId) -> Result<TaskState, EngineError> {
        self.cancel_task_as(task_id, &Operator::system()).await
    }

    /// [`cancel_task`](Self::cancel_task), recording who asked and why in the history.
    pub async fn cancel_task_as(
        &self,
        task_id: TaskId,
        operator: &Operator,
    ) -> Result<TaskState, EngineError> {
        let _gate = self.inner.gate.lock().await;
        let task = self.inner.store.task(task_id).await?;
        // Cancelling a cancelled task changes nothing and succeeds; a finished one stays so.
        if task.state != TaskState::Cancelled
            && !task_machine::allowed(task.state, TaskState::Cancelled)
        {
            let allowed: Vec<TaskState> = TaskState::ALL
                .into_iter()
                .filter(|s| task_machine::allowed(*s, TaskState::Cancelled))
                .collect();
            return Err(refuse_task(task_id, task.state, "cancel", &allowed));
        }
        let now = self.inner.clock.now();
        let (outcome, cancelled) = self
            .inner
            .store
            .transition_task_with_steps(
                task_id,
                task.state,
                TaskState::Cancelled,
                operator.metadata("cancel_requested"),
                now,
            )
            .await?;
        for changed in &cancelled {
            self.inner.revoked.insert(changed.step_id, ());
        }
        for entry in self.inner.running.iter() {
            if entry.value().0 == task_id {
                entry.value().1.cancel();
            }
        }
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            self.finalized(task_id, task.named_task_id, TaskState::Cancelled);
            let labels = labels_of(&task);
            let bus = &self.inner.bus;
            TaskEvent::new(task_id, &labels, Some(task.state), TaskState::Cancelled)
                .total_steps(task.total_steps as usize)
                .duration_since(task.created_at, now)
                .reason("cancel_requested")
                .publish(bus, now);
            self.publish_changed(task_id, &labels, &cancelled, "task_cancelled", now);
        }
        self.inner.wake.notify_one();
        Ok(TaskState::Cancelled)
    }

    /// Resolves a task in error by hand: it ends `resolved_manually` as it stands.
    pub async fn resolve_task(&self, task_id: TaskId) -> Result<(), EngineError> {
        self.resolve_task_as(task_id, &Operator::system()).await
    }

    /// [`resolve_task`](Self::resolve_task), recording who asked and why in the history.
    pub async fn resolve_task_as(
        &self,
        task_id: TaskId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        let _gate = self.inner.gate.lock().await;
        let task = self.inner.store.task(task_id).await?;
        if task.state != TaskState::Error {
            return Err(refuse_task(
                task_id,
                task.state,
                "resolve",
                &[TaskState::Error],
            ));
        }
        let now = self.inner.clock.now();
        let outcome = self
            .inner
            .store
            .transition_task(
                task_id,
                TaskState::Error,
                TaskState::ResolvedManually,
                operator.metadata("resolved_manually"),
                now,
            )
            .await?;
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            self.finalized(task_id, task.named_task_id, TaskState::ResolvedManually);
            TaskEvent::new(
                task_id,
                &labels_of(&task),
                Some(TaskState::Error),
                TaskState::ResolvedManually,
            )
            .total_steps(task.total_steps as usize)
            .duration_since(task.created_at, now)
            .reason("resolved_manually")
            .publish(&self.inner.bus, now);
        }
        Ok(())
    }

    /// Publishes the step events of steps an operator's task transition moved.
    fn publish_changed(
        &self,
        task_id: TaskId,
        labels: &TaskLabels,
        steps: &[tasker_persistence::ChangedStep],
        reason: &str,
        now: DateTime<Utc>,
    ) {
        for changed in steps {
            let who = StepIdentity {
                task_id,
                step_id: changed.step_id,
                step_name: changed.name.as_str().into(),
                labels: labels.clone(),
                retry_limit: changed.retry_limit,
            };
            // A reset step's event names the attempt it is reset for.
            let attempt = if changed.to_state == StepState::Pending {
                changed.attempts + 1
            } else {
                changed.attempts
            };
            StepEvent::transition(&who, attempt, changed.from_state, changed.to_state)
                .reason(reason)
                .publish(&self.inner.bus, now);
        }
    }

    /// Cancels one step; its dependants will not run, and the task ends in error once nothing
    /// else can progress.
    pub async fn cancel_step(&self, step_id: StepId) -> Result<(), EngineError> {
        self.cancel_step_as(step_id, &Operator::system()).await
    }

    /// [`cancel_step`](Self::cancel_step), recording who asked and why in the history.
    pub async fn cancel_step_as(
        &self,
        step_id: StepId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        self.operator_step_transition(
            step_id,
            StepState::Cancelled,
            None,
            ("cancel", "cancel_requested"),
            operator,
        )
        .await?;
        self.inner.revoked.insert(step_id, ());
        for entry in self.inner.running.iter() {
            if entry.key().0 == step_id {
                entry.value().1.cancel();
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Resolves a step by hand with `results`; it counts as done for its dependants. A task in
    /// error is reopened in the same transaction (its other failed steps stay as they are) and
    /// finishes at once if nothing is left to run.
    pub async fn resolve_step(&self, step_id: StepId, results: Value) -> Result<(), EngineError> {
        self.resolve_step_as(step_id, results, &Operator::system())
            .await
    }

    /// [`resolve_step`](Self::resolve_step), recording who asked and why in the history.
    pub async fn resolve_step_as(
        &self,
        step_id: StepId,
        results: Value,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        self.operator_step_transition(
            step_id,
            StepState::ResolvedManually,
            Some(results),
            ("resolve", "resolved_manually"),
            operator,
        )
        .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Sends one step in `error` back to `pending` for another attempt (its earlier attempts
    /// still count against its limit), reopening its task if the task ended in error.
    pub async fn retry_step_as(
        &self,
        step_id: StepId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        self.operator_step_transition(
            step_id,
            StepState::Pending,
            None,
            ("retry", "retry_requested"),
            operator,
        )
        .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// An operator's step transition with its events; returns the step's task as it was before.
    /// `action` is what the operator asked (`cancel`) and the reason the history records
    /// (`cancel_requested`). Asking for the state the step is in succeeds and changes nothing,
    /// except a retry: a step that is not in error has no failure to retry.
    async fn operator_step_transition(
        &self,
        step_id: StepId,
        to: StepState,
        results: Option<Value>,
        (action, reason): (&'static str, &str),
        operator: &Operator,
    ) -> Result<TaskRecord, EngineError> {
        let _gate = self.inner.gate.lock().await;
        let step = self.inner.store.step(step_id).await?;
        let task = self.inner.store.task(step.task_id).await?;
        if step.state != to || to == StepState::Pending {
            if task.state.is_finished() {
                return Err(refuse_step_of_finished_task(
                    task.task_id,
                    task.state,
                    action,
                ));
            }
            let allowed: Vec<StepState> = StepState::ALL
                .into_iter()
                .filter(|s| step_machine::allowed(*s, to))
                .collect();
            if !allowed.contains(&step.state) {
                return Err(refuse_step(
                    step_id, &step.name, step.state, action, &allowed,
                ));
            }
        }
        let now = self.inner.clock.now();
        let (outcome, report) = self
            .inner
            .store
            .transition_step(
                step_id,
                step.state,
                to,
                results,
                operator.metadata(reason),
                now,
            )
            .await?;
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            let who = StepIdentity {
                task_id: step.task_id,
                step_id,
                step_name: step.name.as_str().into(),
                labels: labels_of(&task),
                retry_limit: step.retry_limit,
            };
            StepEvent::transition(&who, step.attempts, step.state, to)
                .reason(reason)
                .publish(&self.inner.bus, now);
        }
        let mut from = task.state;
        if report.reopened.contains(&task.task_id) {
            TaskEvent::new(
                task.task_id,
                &labels_of(&task),
                Some(from),
                TaskState::Pending,
            )
            .reason("reopened_by_resolution")
            .publish(&self.inner.bus, now);
            from = TaskState::Pending;
        }
        for (task_id, state) in &report.finalized {
            self.finalized(*task_id, task.named_task_id, *state);
            TaskEvent::new(*task_id, &labels_of(&task), Some(from), *state)
                .total_steps(task.total_steps as usize)
                .duration_since(task.created_at, now)
                .publish(&self.inner.bus, now);
        }
        Ok(task)
    }

    /// Sends a task that ended in error back to work, resetting its exhausted steps.
    pub async fn retry_task(&self, task_id: TaskId) -> Result<(), EngineError> {
        self.retry_task_as(task_id, &Operator::system()).await
    }

    /// The runtime switches in force (pauses and namespace limits), from the database.
    pub async fn runtime_switches(&self) -> Result<Vec<RuntimeSwitch>, EngineError> {
        Ok(self.inner.store.runtime_switches().await?)
    }

    /// The latest `limit` runtime switch changes, newest first.
    pub async fn runtime_switch_changes(
        &self,
        limit: u64,
    ) -> Result<Vec<SwitchChange>, EngineError> {
        Ok(self.inner.store.runtime_switch_changes(limit).await?)
    }

    /// Pauses a namespace or template: no process claims its ready steps until it is resumed
    /// (each within `engine.switch_refresh`; this one at once). Running attempts finish, and
    /// tasks can still be created. Logged with `operator` and its note as the reason, and
    /// published as `runtime.switch_changed` once committed (so are the changes below).
    pub async fn pause(
        &self,
        target: &SwitchTarget,
        operator: &Operator,
    ) -> Result<SwitchChange, EngineError> {
        let change = self
            .inner
            .store
            .pause(
                target,
                operator.note.as_deref().unwrap_or(""),
                &operator.actor,
                self.inner.clock.now(),
            )
            .await?;
        self.switched(SwitchAction::Pause, Some(&change)).await;
        Ok(change)
    }

    /// Lifts a pause; `None` when `target` was not paused (then nothing is published).
    pub async fn resume(
        &self,
        target: &SwitchTarget,
        operator: &Operator,
    ) -> Result<Option<SwitchChange>, EngineError> {
        let change = self
            .inner
            .store
            .resume(
                target,
                operator.note.as_deref().unwrap_or(""),
                &operator.actor,
                self.inner.clock.now(),
            )
            .await?;
        self.switched(SwitchAction::Resume, change.as_ref()).await;
        Ok(change)
    }

    /// Caps `namespace`'s step attempts running at once across every process (`None` lifts the
    /// cap; then `None` comes back when there was none).
    pub async fn limit_namespace(
        &self,
        namespace: &str,
        max_running: Option<u32>,
        operator: &Operator,
    ) -> Result<Option<SwitchChange>, EngineError> {
        let change = self
            .inner
            .store
            .limit_namespace(
                namespace,
                max_running,
                operator.note.as_deref().unwrap_or(""),
                &operator.actor,
                self.inner.clock.now(),
            )
            .await?;
        let action = if max_running.is_some() {
            SwitchAction::Limit
        } else {
            SwitchAction::Unlimit
        };
        self.switched(action, change.as_ref()).await;
        Ok(change)
    }

    /// After a switch changed here (`change`, committed; `None`: nothing changed): this engine
    /// applies it at once, and subscribers hear of it.
    async fn switched(&self, action: SwitchAction, change: Option<&SwitchChange>) {
        self.refresh_claim_filter().await;
        self.inner.wake.notify_one();
        if let Some(change) = change {
            crate::emit::publish_switch_change(&self.inner.bus, action, change);
        }
    }

    /// [`retry_task`](Self::retry_task), recording who asked and why in the history.
    pub async fn retry_task_as(
        &self,
        task_id: TaskId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        let _gate = self.inner.gate.lock().await;
        let state = self.inner.store.task(task_id).await?.state;
        if state != TaskState::Error {
            return Err(refuse_task(task_id, state, "retry", &[TaskState::Error]));
        }
        let now = self.inner.clock.now();
        let (_, reset) = self
            .inner
            .store
            .transition_task_with_steps(
                task_id,
                TaskState::Error,
                TaskState::Pending,
                operator.metadata("retry_requested"),
                now,
            )
            .await?;
        let task = self.inner.store.task(task_id).await?;
        let labels = labels_of(&task);
        TaskEvent::new(task_id, &labels, Some(TaskState::Error), TaskState::Pending)
            .reason("retry_requested")
            .publish(&self.inner.bus, now);
        self.publish_changed(task_id, &labels, &reset, "task_retry", now);
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn known(&self, named_task_id: TemplateId) -> Result<Known, EngineError> {
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
            Some(registered) => Known::new(registered.template, registered.hooks),
            None => Known::new(stored.template.clone(), None),
        };
        // A template this process did not register itself (registered by another process, or
        // given in a prepared registry) still has its custom events.
        if let Err(err) = self.register_custom_events(&known.template) {
            tracing::warn!(error = %err, "registering a template's custom events failed");
        }
        self.inner.templates.insert(named_task_id, known.clone());
        Ok(known)
    }

    /// Starts the finalization hooks of a task that reached `state` on a task of their own,
    /// outside the event-order gate (its event is published by the caller, which knows its
    /// labels). Called before that event, so a waiter woken by it finds the run tracked.
    fn finalized(&self, task_id: TaskId, named_task_id: TemplateId, state: TaskState) {
        tracing::info!(%task_id, state = %state, "task finished");
        // Most templates have no hooks: when the cache already says so, nothing is spawned.
        if self
            .inner
            .templates
            .get(&named_task_id)
            .is_some_and(|known| known.hooks.is_none())
        {
            return;
        }
        let engine = self.clone();
        HookRuns::spawn(&self.inner.hook_runs, task_id, async move {
            let Ok(Known {
                hooks: Some(hooks), ..
            }) = engine.known(named_task_id).await
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

/// Checks one JSON value against its size limit and for NUL characters (which PostgreSQL cannot
/// store), so bad input fails before anything is written, the same on both databases.
fn check_json(
    value: &Value,
    what: impl Fn() -> String,
    owner: impl Fn() -> String,
    limit: usize,
    key: &'static str,
) -> Result<(), EngineError> {
    let size = crate::limits::json_size(value);
    if size > limit {
        return Err(EngineError::TooLarge {
            what: what(),
            owner: owner(),
            size,
            limit,
            key,
        });
    }
    match crate::limits::find_nul(value) {
        Some(path) => Err(EngineError::Unstorable {
            what: what(),
            owner: owner(),
            path,
        }),
        None => Ok(()),
    }
}

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
async fn supervise(inner: Arc<Inner>) {
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

/// Which catalogue templates' tasks an engine claims: those whose step handler classes are all
/// `registered`, in `namespaces` when given. No filter at all when that is every template.
fn claim_filter(
    catalogue: &[(TemplateId, TaskTemplate)],
    registered: impl Fn(&str) -> bool,
    namespaces: Option<&[String]>,
    switches: &[RuntimeSwitch],
) -> ClaimFilter {
    let mut paused_named_task_ids = Vec::new();
    let mut limits = Vec::new();
    for switch in switches {
        match switch.kind {
            SwitchKind::Pause => paused_named_task_ids.extend(
                catalogue
                    .iter()
                    .filter(|(_, t)| {
                        switch
                            .target
                            .covers(&t.namespace_name, &t.name, &t.version.to_string())
                    })
                    .map(|(id, _)| *id),
            ),
            SwitchKind::Limit => limits.push(NamespaceLimit {
                namespace: switch.target.namespace.clone(),
                max_running: switch.max_running.unwrap_or(0),
                named_task_ids: catalogue
                    .iter()
                    .filter(|(_, t)| t.namespace_name == switch.target.namespace)
                    .map(|(id, _)| *id)
                    .collect(),
            }),
        }
    }
    paused_named_task_ids.sort_unstable();
    paused_named_task_ids.dedup();
    let allowed: Vec<TemplateId> = catalogue
        .iter()
        .filter(|(_, template)| {
            namespaces.is_none_or(|ns| ns.contains(&template.namespace_name))
                && template
                    .step_templates
                    .iter()
                    .all(|step| registered(&step.handler_class))
        })
        .map(|(id, _)| *id)
        .collect();
    ClaimFilter {
        named_task_ids: (allowed.len() < catalogue.len() || namespaces.is_some())
            .then_some(allowed),
        paused_named_task_ids,
        limits,
    }
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

/// The span a task is created in: its trace context is stored with the task, so every attempt
/// of the task's steps joins this trace.
fn creation_span(request: &TaskRequest) -> Span {
    tracing::info_span!(
        "task.create",
        task_id = tracing::field::Empty,
        namespace = %request.namespace,
        template = %request.name,
        correlation_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    )
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

/// After a commit that recorded outcomes: publishes their events (`step.completed` /
/// `step.failed`, with `observability.step.backoff` or `observability.step.max_retries_reached`,
/// then the final event of each task the commit finalized), then runs the finalization hooks of
/// those tasks and forgets them. Attempts and tasks this engine does not know (a reclaimed lease
/// of another process) are looked up once and shared by both.
async fn after_record(
    engine: &Engine,
    report: &RecordReport,
    attempts: &HashMap<StepId, AttemptInfo>,
    tasks: &mut HashMap<TaskId, TaskInfo>,
    now: DateTime<Utc>,
) {
    let mut stored: HashMap<TaskId, TaskRecord> = HashMap::new();
    // Hooks first (they run on tasks of their own), so a waiter woken by a final event finds
    // them tracked.
    for (task_id, state) in &report.finalized {
        let named_task_id = match tasks.get(task_id) {
            Some(info) => Some(info.named_task_id),
            None => match engine.inner.store.task(*task_id).await {
                Ok(task) => {
                    let named_task_id = task.named_task_id;
                    stored.insert(*task_id, task);
                    Some(named_task_id)
                }
                Err(_) => None,
            },
        };
        if let Some(named_task_id) = named_task_id {
            engine.finalized(*task_id, named_task_id, *state);
        }
    }
    if engine.inner.bus.has_subscribers() {
        publish_report(engine, report, attempts, tasks, &mut stored, now).await;
    }
    for (task_id, _) in &report.finalized {
        tasks.remove(task_id);
    }
}

/// The events of [`after_record`]; tasks looked up land in `stored`.
async fn publish_report(
    engine: &Engine,
    report: &RecordReport,
    attempts: &HashMap<StepId, AttemptInfo>,
    tasks: &HashMap<TaskId, TaskInfo>,
    stored: &mut HashMap<TaskId, TaskRecord>,
    now: DateTime<Utc>,
) {
    let inner = &engine.inner;
    let bus = &inner.bus;
    let mut labels_for = async |task_id: TaskId| -> Option<(TaskLabels, DateTime<Utc>)> {
        if let Some(info) = tasks.get(&task_id) {
            return Some((info.labels.clone(), info.created_at));
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = stored.entry(task_id) {
            slot.insert(inner.store.task(task_id).await.ok()?);
        }
        stored
            .get(&task_id)
            .map(|task| (labels_of(task), task.created_at))
    };
    for recorded in &report.recorded {
        let looked_up;
        let info = match attempts.get(&recorded.step_id) {
            Some(info) => info,
            None => {
                let Ok(step) = inner.store.step(recorded.step_id).await else {
                    continue;
                };
                let Some((labels, _)) = labels_for(recorded.task_id).await else {
                    continue;
                };
                looked_up = AttemptInfo {
                    who: StepIdentity {
                        task_id: recorded.task_id,
                        step_id: recorded.step_id,
                        step_name: step.name.as_str().into(),
                        labels,
                        retry_limit: step.retry_limit,
                    },
                    attempt: recorded.attempts,
                    started: step.last_attempted_at,
                    error: step
                        .last_error
                        .and_then(|e| serde_json::from_value::<StepError>(e).ok()),
                };
                &looked_up
            }
        };
        let mut event = StepEvent::transition(
            &info.who,
            info.attempt,
            StepState::InProgress,
            recorded.state,
        );
        if let Some(started) = info.started {
            event = event.duration(started, now);
        }
        if recorded.state == StepState::Complete {
            event.publish(bus, now);
            continue;
        }
        event
            .error(info.error.clone())
            .next_attempt_at(recorded.next_attempt_at)
            .publish(bus, now);
        if recorded.next_attempt_at.is_some() {
            StepEvent::new(
                observability::STEP_BACKOFF,
                &info.who,
                info.attempt,
                None,
                recorded.state,
            )
            .next_attempt_at(recorded.next_attempt_at)
            .publish(bus, now);
        } else if recorded.state == StepState::Error
            && info
                .error
                .as_ref()
                .is_some_and(|e| e.kind == StepErrorKind::Retryable)
        {
            StepEvent::new(
                observability::STEP_MAX_RETRIES_REACHED,
                &info.who,
                info.attempt,
                None,
                recorded.state,
            )
            .error(info.error.clone())
            .publish(bus, now);
        }
    }
    for (task_id, state) in &report.finalized {
        if let Some((labels, created_at)) = labels_for(*task_id).await {
            TaskEvent::new(*task_id, &labels, Some(TaskState::InProgress), *state)
                .duration_since(created_at, now)
                .publish(bus, now);
        }
    }
}

async fn spawn_attempt(
    engine: &Engine,
    step: ClaimedStep,
    inputs: StepInputs,
    tx: &mpsc::UnboundedSender<Finished>,
    per_task: &mut HashMap<TaskId, usize>,
    tasks: &HashMap<TaskId, TaskInfo>,
) {
    let inner = &engine.inner;
    if inner.revoked.remove(&step.step_id).is_some() {
        // Cancelled by an operator while it was held back: the store has the final word.
        tracing::debug!(task_id = %step.task_id, step = %step.name, "a cancelled step is not started");
        return;
    }
    let token = inner.shutdown.child_token();
    inner
        .running
        .insert((step.step_id, step.attempt), (step.task_id, token.clone()));
    inner
        .metrics
        .gauges
        .running
        .store(inner.running.len() as u64, Ordering::Relaxed);
    *per_task.entry(step.task_id).or_default() += 1;
    let tx = tx.clone();
    let started = inner.clock.now();
    let info = tasks.get(&step.task_id);
    let trace_parent = inputs.trace_parent.clone();
    let (handler, context, timeout) =
        match prepare(engine, &step, inputs, info, token.clone()).await {
            Ok(prepared) => prepared,
            Err(error) => {
                let _ = tx.send(Finished {
                    step,
                    started,
                    result: AttemptResult::Failed(error),
                });
                return;
            }
        };
    if let Some(info) = info
        && inner.bus.has_subscribers()
    {
        StepEvent::new(
            tasker_events::names::step::BEFORE_HANDLE,
            &identity(&step, &info.labels),
            step.attempt,
            None,
            StepState::InProgress,
        )
        .publish(&inner.bus, started);
    }
    let parent = info.map_or_else(Span::none, |info| info.span.clone());
    let span = tracing::info_span!(
        parent: &parent,
        "step_attempt",
        task_id = %step.task_id,
        step_id = %step.step_id,
        namespace = %context.namespace,
        template = %context.task_name,
        version = %context.version,
        step = %step.name,
        attempt = step.attempt,
        correlation_id = %context.correlation_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    // The attempt is a child of the task's creation, wherever that happened: the same trace
    // in every process.
    if let Some(parent) = &trace_parent {
        trace_context::set_parent(&span, parent);
    }
    trace_context::record_ids(&span);
    let clock = inner.clock.clone();
    // The deadline is fixed now, at claim time, so it does not depend on when the task starts.
    let deadline = saturating_add(inner.clock.now(), timeout);
    tokio::spawn(
        async move {
            let attempt = AssertUnwindSafe(handler.handle(context)).catch_unwind();
            let outcome = tokio::select! {
                outcome = attempt => Some(outcome),
                () = clock.sleep_until(deadline) => None,
            };
            let result = match outcome {
                _ if token.is_cancelled() => AttemptResult::Cancelled,
                Some(Ok(Ok(results))) => AttemptResult::Completed(results),
                Some(Ok(Err(error))) => AttemptResult::Failed(error),
                Some(Err(panic)) => {
                    let message = crate::hooks::panic_message(&*panic);
                    tracing::error!(%message, "step handler panicked");
                    AttemptResult::Failed(
                        StepError::retryable(format!("handler panicked: {message}"))
                            .with_code(codes::HANDLER_PANIC),
                    )
                }
                None => AttemptResult::Failed(
                    StepError::retryable(format!("attempt timed out after {timeout:?}"))
                        .with_code(codes::TIMEOUT),
                ),
            };
            let _ = tx.send(Finished {
                step,
                started,
                result,
            });
        }
        .instrument(span),
    );
}

async fn prepare(
    engine: &Engine,
    step: &ClaimedStep,
    inputs: StepInputs,
    info: Option<&TaskInfo>,
    token: CancellationToken,
) -> Result<(Arc<dyn StepHandler>, StepContext, Duration), StepError> {
    let known = engine.known(step.named_task_id).await.map_err(|e| {
        StepError::retryable(format!("loading the task template failed: {e}"))
            .with_code(codes::TEMPLATE_UNAVAILABLE)
    })?;
    let template = &known.template;
    let step_template = template.step(&step.name).ok_or_else(|| {
        StepError::permanent(
            format!(
                "template {} has no step `{}`",
                template.full_name(),
                step.name
            ),
            codes::STEP_NOT_IN_TEMPLATE,
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
            .with_code(codes::HANDLER_NOT_FOUND)
        })?;
    let labels = info.map_or_else(
        || known.names.labels(&inputs.correlation_id),
        |info| info.labels.clone(),
    );
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
        events: StepEvents::new(Arc::new(BusSink {
            bus: engine.inner.bus.clone(),
            clock: engine.inner.clock.clone(),
            task_id: step.task_id,
            step_id: step.step_id,
            step_name: step.name.as_str().into(),
            labels,
        })),
    };
    // Capped again here: a template stored before the cap existed (or written to the catalogue
    // by another tool) must not make the deadline overflow.
    let timeout = step_template
        .timeout
        .unwrap_or(engine.inner.config.default_step_timeout)
        .min(MAX_STEP_TIMEOUT);
    Ok((handler, context, timeout))
}

/// What a pass's recording left: the next-attempt times of the failures it recorded, and the
/// finished attempts it could not record, kept to try again.
#[derive(Default)]
struct Recorded {
    due: Vec<DateTime<Utc>>,
    kept: Vec<Finished>,
}

/// Finished attempts whose outcomes a failed commit could not record. They stay in memory (and
/// in `running`, so their leases are still extended) and are recorded again with backoff until
/// the database takes them or refuses them because their claim is gone.
#[derive(Default)]
struct Unrecorded {
    finished: Vec<Finished>,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
}

/// The first wait before recording kept outcomes again; it doubles per failure.
const RECORD_RETRY_BASE: Duration = Duration::from_millis(100);
/// The longest wait before recording kept outcomes again.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

impl Unrecorded {
    /// Keeps `finished` after a failed attempt to record them at `now`.
    fn keep(&mut self, finished: Vec<Finished>, now: DateTime<Utc>) {
        self.failures = self.failures.saturating_add(1);
        let delay = RECORD_RETRY_BASE
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(RECORD_RETRY_MAX);
        self.retry_at = Some(saturating_add(now, delay));
        self.finished.extend(finished);
    }

    /// The kept outcomes, when their retry is due at `now`.
    fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Finished> {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            std::mem::take(&mut self.finished)
        } else {
            Vec::new()
        }
    }

    /// After a commit that recorded kept outcomes: the backoff starts over.
    fn recorded(&mut self) {
        if self.finished.is_empty() {
            self.failures = 0;
        }
    }
}

/// An attempt no longer runs here: forget it in the running set and its task's count.
fn release(inner: &Inner, per_task: &mut HashMap<TaskId, usize>, step: &ClaimedStep) {
    inner.running.remove(&(step.step_id, step.attempt));
    // Before the recorded outcome's events are published, so a scrape that follows them sees it.
    inner
        .metrics
        .gauges
        .running
        .store(inner.running.len() as u64, Ordering::Relaxed);
    if let Some(count) = per_task.get_mut(&step.task_id) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            per_task.remove(&step.task_id);
        }
    }
}

/// An outcome back as the attempt's end, to be recorded again.
fn unrecorded(step: ClaimedStep, started: DateTime<Utc>, outcome: StepOutcome) -> Finished {
    let result = match outcome {
        StepOutcome::Success { results, .. } => AttemptResult::Completed(results),
        StepOutcome::Failure(failure) => AttemptResult::Failed(failure.error),
    };
    Finished {
        step,
        started,
        result,
    }
}

/// Records a batch of finished attempts and, in the same transaction, claims what there is room
/// for (into `claimed`). When the batch's commit fails, each outcome is recorded on its own, so
/// one the database refuses fails only its own step (permanently, `UNSTORABLE_RESULT`) and the
/// others are recorded; outcomes that still cannot be recorded (the database is unavailable)
/// come back in [`Recorded::kept`].
async fn record(
    engine: &Engine,
    batch: Vec<Finished>,
    per_task: &mut HashMap<TaskId, usize>,
    tasks: &mut HashMap<TaskId, TaskInfo>,
    held: usize,
    claimed: &mut Option<ClaimBatch>,
) -> Recorded {
    let inner = &engine.inner;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut steps = Vec::with_capacity(batch.len());
    let listened = inner.bus.has_subscribers();
    let mut attempts = HashMap::with_capacity(if listened { batch.len() } else { 0 });
    for Finished {
        step,
        started,
        result,
    } in batch
    {
        // Results the database cannot hold fail their own step, permanently, before the batch
        // is written, so they never cost the other outcomes of the group commit theirs.
        let result = match result {
            AttemptResult::Completed(results) => {
                match crate::limits::unstorable_results(&results, inner.config.max_result_bytes) {
                    Some(error) => AttemptResult::Failed(error),
                    None => AttemptResult::Completed(results),
                }
            }
            other => other,
        };
        let error = match result {
            AttemptResult::Completed(results) => {
                outcomes.push(StepOutcome::Success {
                    step_id: step.step_id,
                    attempt: step.attempt,
                    results,
                });
                None
            }
            AttemptResult::Failed(error) => {
                let error = crate::limits::storable_error(error);
                let sample = (inner.random.lock().expect("random lock"))();
                let retry_delay =
                    inner
                        .config
                        .backoff
                        .delay_for(step.attempt, error.retry_after, sample);
                tracing::info!(task_id = %step.task_id, step = %step.name, attempt = step.attempt, error = %error, "step attempt failed");
                outcomes.push(StepOutcome::Failure(StepFailure {
                    step_id: step.step_id,
                    attempt: step.attempt,
                    error: error.clone(),
                    retry_delay,
                }));
                Some(error)
            }
            // Cancelled with its task or step: the store already holds the final word.
            AttemptResult::Cancelled => {
                release(inner, per_task, &step);
                continue;
            }
        };
        if listened && let Some(info) = tasks.get(&step.task_id) {
            attempts.insert(
                step.step_id,
                AttemptInfo {
                    who: identity(&step, &info.labels),
                    attempt: step.attempt,
                    started: Some(started),
                    error,
                },
            );
        }
        steps.push((step, started));
    }
    if outcomes.is_empty() {
        return Recorded::default();
    }
    let commit_started = std::time::Instant::now();
    let config = &inner.config;
    // The attempts of this batch still count as running until they are recorded.
    let busy = inner.running.len().saturating_sub(steps.len()) + held;
    let room = if inner.drain.is_cancelled() {
        0
    } else {
        (config.max_concurrent_steps)
            .saturating_sub(busy)
            .min(config.claim_batch_size)
    };
    let (report, kept) = match inner
        .store
        .record_outcomes_and_claim_where(
            &inner.owner,
            &outcomes,
            inner.clock.now(),
            room,
            config.lease,
            &engine.current_claim_filter(),
        )
        .await
    {
        Ok((report, batch)) => {
            inner
                .metrics
                .record_duration
                .record(commit_started.elapsed().as_secs_f64(), &[]);
            for (step, _) in &steps {
                release(inner, per_task, step);
            }
            *claimed = (room > 0).then_some(batch);
            (report, Vec::new())
        }
        Err(err) => {
            tracing::warn!(error = %err, outcomes = outcomes.len(), "recording a batch of outcomes failed; recording them one by one");
            record_one_by_one(engine, steps, outcomes, per_task, &mut attempts).await
        }
    };
    if !report.rejected.is_empty() {
        tracing::warn!(
            steps = report.rejected.len(),
            "outcomes refused: the claims no longer held"
        );
    }
    if report.recorded.is_empty() && report.finalized.is_empty() {
        return Recorded {
            due: Vec::new(),
            kept,
        };
    }
    let now = inner.clock.now();
    if listened {
        let task_ids = distinct_tasks(report.recorded.iter().map(|r| r.task_id));
        inner.bus.publish(Event::new(
            workflow::STEPS_EXECUTION_COMPLETED,
            now,
            Payload::Workflow(WorkflowPayload {
                owner: inner.owner.as_str().into(),
                step_count: report.recorded.len(),
                task_ids,
                duration_ms: Some(millis_since(commit_started)),
            }),
        ));
    }
    after_record(engine, &report, &attempts, tasks, now).await;
    Recorded {
        due: report
            .recorded
            .iter()
            .filter_map(|r| r.next_attempt_at)
            .collect(),
        kept,
    }
}

/// After a failed batch: records each outcome in a transaction of its own. An outcome the
/// database refuses for what it holds (not for being unavailable) is replaced by a permanent
/// `UNSTORABLE_RESULT` failure of its step; what cannot be recorded at all is returned, kept.
async fn record_one_by_one(
    engine: &Engine,
    steps: Vec<(ClaimedStep, DateTime<Utc>)>,
    outcomes: Vec<StepOutcome>,
    per_task: &mut HashMap<TaskId, usize>,
    attempts: &mut HashMap<StepId, AttemptInfo>,
) -> (RecordReport, Vec<Finished>) {
    let inner = &engine.inner;
    let mut report = RecordReport::default();
    let mut kept = Vec::new();
    for ((step, started), outcome) in steps.into_iter().zip(outcomes) {
        let now = inner.clock.now();
        let refused = match inner
            .store
            .record_outcomes(&inner.owner, std::slice::from_ref(&outcome), now)
            .await
        {
            Ok(one) => {
                release(inner, per_task, &step);
                merge_reports(&mut report, one);
                continue;
            }
            Err(err) if err.is_transient() => {
                tracing::warn!(error = %err, step_id = %step.step_id, "recording an outcome failed; keeping it to try again");
                kept.push(unrecorded(step, started, outcome));
                continue;
            }
            Err(err) => err,
        };
        let error = crate::limits::storable_error(StepError::permanent(
            format!("the database refused to record the attempt's outcome: {refused}"),
            codes::UNSTORABLE_RESULT,
        ));
        tracing::warn!(error = %refused, step_id = %step.step_id, "the database refused an outcome; failing its step");
        let failure = StepOutcome::Failure(StepFailure {
            step_id: step.step_id,
            attempt: step.attempt,
            error: error.clone(),
            retry_delay: Duration::ZERO,
        });
        match inner
            .store
            .record_outcomes(&inner.owner, std::slice::from_ref(&failure), now)
            .await
        {
            Ok(one) => {
                release(inner, per_task, &step);
                merge_reports(&mut report, one);
                if let Some(info) = attempts.get_mut(&step.step_id) {
                    info.error = Some(error);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, step_id = %step.step_id, "recording an outcome failed; keeping it to try again");
                kept.push(unrecorded(step, started, outcome));
            }
        }
    }
    (report, kept)
}

fn merge_reports(into: &mut RecordReport, from: RecordReport) {
    into.recorded.extend(from.recorded);
    into.rejected.extend(from.rejected);
    into.newly_ready.extend(from.newly_ready);
    into.finalized.extend(from.finalized);
    into.reopened.extend(from.reopened);
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

    #[test]
    fn an_engine_claims_only_templates_it_has_every_handler_for_in_its_namespaces() {
        let parse = |yaml: &str| TaskTemplate::from_yaml_str(yaml, None).unwrap();
        let catalogue = vec![
            (
                TemplateId(1),
                parse("name: a\nstep_templates:\n  - name: s\n    handler_class: here\n"),
            ),
            (
                TemplateId(2),
                parse(
                    "name: b\nstep_templates:\n  - name: s\n    handler_class: here\n  - name: t\n    handler_class: elsewhere\n",
                ),
            ),
            (
                TemplateId(3),
                parse(
                    "name: c\nnamespace_name: ops\nstep_templates:\n  - name: s\n    handler_class: here\n",
                ),
            ),
        ];
        let here = |class: &str| class == "here";
        assert_eq!(
            claim_filter(&catalogue, here, None, &[]).named_task_ids,
            Some(vec![TemplateId(1), TemplateId(3)])
        );
        let ops = ["ops".to_owned()];
        assert_eq!(
            claim_filter(&catalogue, here, Some(&ops), &[]).named_task_ids,
            Some(vec![TemplateId(3)])
        );
        assert_eq!(
            claim_filter(&catalogue, |_| true, None, &[]),
            ClaimFilter::default()
        );
    }
}
