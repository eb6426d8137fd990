//! Building an [`Engine`].

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tasker_events::EventBus;
use tasker_persistence::{ClaimFilter, Store};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;
use crate::creator::Creator;
use crate::error::EngineError;
use crate::hooks::HookRuns;
use crate::metrics::EngineMetrics;
use crate::registry::Registry;
use tasker_handler::{Clock, SystemClock};

use super::{CreatedClaims, Engine, IdleReport, Inner, TemplateCache};

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
                templates: TemplateCache::default(),
                running: DashMap::new(),
                random: Mutex::new(self.random),
                coordinator: Mutex::new(None),
                namespaces: self.namespaces,
                claim_filter: Mutex::new(ClaimFilter::default()),
                switches_active: AtomicBool::new(false),
                hook_runs: Arc::new(HookRuns::default()),
                restarts: std::sync::atomic::AtomicU64::new(0),
                revoked: DashMap::new(),
                created_claims: Mutex::new(CreatedClaims::default()),
                created_wake: Notify::new(),
                reserved: AtomicUsize::new(0),
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
}
