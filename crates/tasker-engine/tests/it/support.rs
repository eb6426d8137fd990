//! Shared helpers of the engine suite: templates, configurations and engines on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tasker_domain::{BackoffPolicy, TaskRequest};
use tasker_engine::{Engine, EngineConfig, ManualClock, Registry, StepHandler};
use tasker_persistence::Store;
use tasker_template::TaskTemplate;

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub(crate) fn config() -> EngineConfig {
    EngineConfig {
        backoff: BackoffPolicy {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(8),
            jitter: 0.0,
        },
        lease: Duration::from_secs(30),
        ..Default::default()
    }
}

pub(crate) fn engine_with(store: &Store, clock: &ManualClock, registry: Arc<Registry>) -> Engine {
    engine_configured(store, clock, registry, config())
}

/// [`engine_with`] with `config` instead of [`config`].
pub(crate) fn engine_configured(
    store: &Store,
    clock: &ManualClock,
    registry: Arc<Registry>,
    config: EngineConfig,
) -> Engine {
    Engine::builder(store.clone())
        .config(config)
        .clock(Arc::new(clock.clone()))
        .registry(registry)
        .random(|| 0.5)
        .build()
        .unwrap()
}

/// The built-in handlers and `handler` as `class`.
pub(crate) fn registry_with(class: &str, handler: Arc<dyn StepHandler>) -> Arc<Registry> {
    registry_of([(class, handler)])
}

/// The built-in handlers and each of `handlers` under its class.
pub(crate) fn registry_of<'a>(
    handlers: impl IntoIterator<Item = (&'a str, Arc<dyn StepHandler>)>,
) -> Arc<Registry> {
    let registry = Arc::new(Registry::with_builtins());
    for (class, handler) in handlers {
        registry.register_step_handler(class, handler).unwrap();
    }
    registry
}

pub(crate) fn engine(store: &Store, clock: &ManualClock) -> Engine {
    engine_with(store, clock, Arc::new(Registry::with_builtins()))
}

pub(crate) fn template(yaml: &str) -> TaskTemplate {
    TaskTemplate::from_yaml_str(yaml, Some("test.yaml")).unwrap()
}

pub(crate) fn request(template: &TaskTemplate) -> TaskRequest {
    TaskRequest::new(template.name.clone()).namespace(template.namespace_name.clone())
}

pub(crate) use tasker_engine::testing::{drain, drive, step_log, wait_for};
