//! The five Tasker blog example workflows as fixtures: their YAML templates, step handlers,
//! plain-struct models with validation, and mock services with call logs and failure simulation.
//!
//! Who depends on it: `tasker-server` (to run the examples by name) and tests across the
//! workspace, which use these workflows as their shared domain.
//!
//! Entry points: [`register`] puts every post's handlers, hooks and templates on an engine;
//! [`BlogServices`] holds the mock outside services those handlers call (fresh per engine, so
//! tests run in parallel); [`SAMPLES`] maps run names such as `blog_examples/process_order` to
//! the sample contexts shipped in `samples/`.
//!
//! Architecture Invariants:
//! - No persistence types in its public API; models are plain structs.
//! - No network calls: every outside service is an in-memory mock behind a trait.
//! - No global state: mocks belong to a [`BlogServices`] value.

use std::sync::Arc;

use serde_json::Value;
use tasker_domain::{StepError, TaskRequest};
use tasker_engine::{Clock, Engine, EngineError, StepContext, StepHandler, SystemClock, TaskHooks};
use tasker_template::TaskTemplate;

pub mod mock;
pub mod money;
pub mod post_01_ecommerce_reliability;
pub mod post_02_data_pipeline_resilience;
pub mod post_03_microservices_coordination;
pub mod post_04_team_scaling;
pub mod post_05_production_observability;

/// One embedded task template: where it lives in this crate and its YAML text.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedTemplate {
    /// Path relative to this crate's `templates/` directory.
    pub path: &'static str,
    /// The template's YAML source.
    pub yaml: &'static str,
}

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(EmbeddedTemplate { path: $path, yaml: include_str!(concat!("../templates/", $path)) }),*]
    };
}

/// Every template shipped in this crate: the five blog posts and the engine test shapes.
pub const TEMPLATES: &[EmbeddedTemplate] = embedded![
    "post_01_ecommerce_reliability/order_processing.yaml",
    "post_02_data_pipeline_resilience/customer_analytics.yaml",
    "post_03_microservices_coordination/user_registration.yaml",
    "post_04_team_scaling/payments_process_refund.yaml",
    "post_04_team_scaling/customer_success_process_refund.yaml",
    "post_05_production_observability/monitored_checkout.yaml",
    "engine_shapes/linear.yaml",
    "engine_shapes/diamond.yaml",
    "engine_shapes/parallel_merge.yaml",
    "engine_shapes/tree.yaml",
    "engine_shapes/mixed.yaml",
    "engine_shapes/dummy_task.yaml",
];

/// The mock outside services of every post. Each value is independent: build one per engine.
#[derive(Clone)]
pub struct BlogServices {
    /// Post 01: catalogue, payment, inventory, email.
    pub post_01: post_01_ecommerce_reliability::Services,
    /// Post 02: data warehouse and dashboard.
    pub post_02: post_02_data_pipeline_resilience::Services,
    /// Post 03: user, billing, preferences and notification services.
    pub post_03: post_03_microservices_coordination::Services,
    /// Post 04: the payments team's and the customer success team's systems.
    pub post_04: post_04_team_scaling::Services,
    /// Post 05: ids and timestamps only (its steps are in-memory).
    pub post_05: post_05_production_observability::Services,
}

impl BlogServices {
    /// Fresh mocks that timestamp calls and results with `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            post_01: post_01_ecommerce_reliability::Services::new(clock.clone()),
            post_02: post_02_data_pipeline_resilience::Services::new(clock.clone()),
            post_03: post_03_microservices_coordination::Services::new(clock.clone()),
            post_04: post_04_team_scaling::Services::new(clock.clone()),
            post_05: post_05_production_observability::Services::new(clock),
        }
    }
}

impl BlogServices {
    /// The mock registered under `service_key` (the services' own names: `payment`,
    /// `inventory`, `email`, `data_warehouse`, `dashboard`, `user_service`, `billing_service`,
    /// `preferences_service`, `notification_service`, `payment_gateway`, `customer_service`,
    /// `tasker_api`).
    pub fn mock(&self, service_key: &str) -> Option<&mock::MockService> {
        self.all().into_iter().find(|m| m.name() == service_key)
    }

    /// Makes each `(service_key, method)` fail on every call with the blog's canned message for
    /// that service (`Database connection timeout`, `Slack API rate limit exceeded`, ...).
    /// Returns the keys that name no mock.
    pub fn configure_failures<'a>(&self, failures: &[(&'a str, &str)]) -> Vec<&'a str> {
        let mut unknown = Vec::new();
        for &(service_key, method) in failures {
            match self.mock(service_key) {
                Some(mock) => mock.fail_always(method, canned_failure(service_key, method)),
                None => unknown.push(service_key),
            }
        }
        unknown
    }

    /// Forgets every mock's calls, stubs and simulated failures.
    pub fn reset_all(&self) {
        for mock in self.all() {
            mock.reset();
        }
    }

    fn all(&self) -> Vec<&mock::MockService> {
        vec![
            &**self.post_01.payment,
            &**self.post_01.inventory,
            &**self.post_01.email,
            &**self.post_02.warehouse,
            &**self.post_02.dashboard,
            &**self.post_03.users,
            &**self.post_03.billing,
            &**self.post_03.preferences,
            &**self.post_03.notifications,
            &**self.post_04.gateway,
            &**self.post_04.customer_service,
            &**self.post_04.tasker_api,
        ]
    }
}

/// The error message the blog's `configure_failures` uses for a service and method.
fn canned_failure(service_key: &str, method: &str) -> &'static str {
    match (service_key, method) {
        ("data_warehouse", m) if m.starts_with("transform") => {
            "Out of memory during transformation"
        }
        ("data_warehouse", _) => "Database connection timeout",
        ("dashboard", "send_notifications") => "Slack API rate limit exceeded",
        ("dashboard", _) => "Dashboard API authentication failed",
        ("payment", _) => "Payment gateway timeout",
        ("payment_gateway", _) => "Payment gateway unavailable",
        ("email", _) => "SMTP server unavailable",
        ("inventory", _) => "Inventory service unavailable",
        _ => "Service unavailable",
    }
}

impl Default for BlogServices {
    /// Fresh mocks on the wall clock.
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

/// Handlers and hooks one post contributes.
pub(crate) struct Registration {
    pub(crate) handlers: Vec<(&'static str, Arc<dyn StepHandler>)>,
    pub(crate) hooks: Vec<(&'static str, Arc<dyn TaskHooks>)>,
}

/// Registers every post's step handlers and task hooks (calling `services`) and every embedded
/// template, the engine test shapes included, on `engine`.
pub async fn register(engine: &Engine, services: &BlogServices) -> Result<(), EngineError> {
    let registrations = [
        post_01_ecommerce_reliability::registration(&services.post_01),
        post_02_data_pipeline_resilience::registration(&services.post_02),
        post_03_microservices_coordination::registration(&services.post_03),
        post_04_team_scaling::registration(&services.post_04),
        post_05_production_observability::registration(&services.post_05),
    ];
    for registration in registrations {
        for (class, handler) in registration.handlers {
            engine.registry().register_step_handler(class, handler)?;
        }
        for (class, hooks) in registration.hooks {
            engine.registry().register_task_hooks(class, hooks);
        }
    }
    for embedded in TEMPLATES {
        let template = TaskTemplate::from_yaml_str(embedded.yaml, Some(embedded.path))?;
        engine.register_template(template, false).await?;
    }
    Ok(())
}

/// Registers everything on `engine` with fresh mock services on the wall clock, and returns
/// them so the caller can inspect their call logs.
pub async fn register_with_default_services(engine: &Engine) -> Result<BlogServices, EngineError> {
    let services = BlogServices::default();
    register(engine, &services).await?;
    Ok(services)
}

/// A runnable example: a template and the sample context shipped for it.
#[derive(Debug, Clone, Copy)]
pub struct SampleRun {
    /// `namespace/name`, as `tasker run` takes it.
    pub run_name: &'static str,
    /// The template's namespace.
    pub namespace: &'static str,
    /// The template's name.
    pub name: &'static str,
    /// The template's version.
    pub version: &'static str,
    /// Path of the sample context, relative to this crate's `samples/` directory.
    pub path: &'static str,
    /// The sample context as JSON text.
    pub context_json: &'static str,
}

impl SampleRun {
    /// The sample context.
    pub fn context(&self) -> Value {
        serde_json::from_str(self.context_json).expect("shipped samples are valid JSON")
    }

    /// A request for this template at its version with the sample context.
    pub fn request(&self) -> TaskRequest {
        TaskRequest::new(self.name)
            .namespace(self.namespace)
            .version(self.version.parse().expect("shipped versions are semver"))
            .context(self.context())
    }
}

macro_rules! samples {
    ($(($ns:literal, $name:literal, $version:literal, $path:literal)),* $(,)?) => {
        &[$(SampleRun {
            run_name: concat!($ns, "/", $name),
            namespace: $ns,
            name: $name,
            version: $version,
            path: $path,
            context_json: include_str!(concat!("../samples/", $path)),
        }),*]
    };
}

/// Every runnable example with its sample context, by run name.
pub const SAMPLES: &[SampleRun] = samples![
    (
        "blog_examples",
        "process_order",
        "1.0.0",
        "post_01_process_order.json"
    ),
    (
        "blog_examples",
        "customer_analytics",
        "1.0.0",
        "post_02_customer_analytics.json"
    ),
    (
        "blog_examples",
        "user_registration",
        "1.0.0",
        "post_03_user_registration.json"
    ),
    (
        "payments",
        "process_refund",
        "2.1.0",
        "post_04_payments_process_refund.json"
    ),
    (
        "customer_success",
        "process_refund",
        "1.3.0",
        "post_04_customer_success_process_refund.json"
    ),
    (
        "blog_examples",
        "monitored_checkout",
        "1.0.0",
        "post_05_monitored_checkout.json"
    ),
];

/// The sample for `run_name` (`blog_examples/process_order`, `payments/process_refund`, ...).
pub fn sample(run_name: &str) -> Option<&'static SampleRun> {
    SAMPLES.iter().find(|s| s.run_name == run_name)
}

/// The results of `name`, one of the step's parents; permanent `MISSING_<NAME>` when absent
/// (a template edit dropped the dependency).
pub(crate) fn parent<'a>(step: &'a StepContext, name: &str) -> Result<&'a Value, StepError> {
    step.parent_results
        .get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            permanent(
                format!("results of `{name}` are missing: the step must depend on it"),
                format!("MISSING_{}", name.to_ascii_uppercase()),
            )
        })
}

/// A failure retrying cannot fix.
pub(crate) fn permanent(message: impl Into<String>, code: impl Into<String>) -> StepError {
    StepError::permanent(message, code)
}
