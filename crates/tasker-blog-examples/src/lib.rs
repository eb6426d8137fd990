//! The five Tasker blog example workflows as fixtures: their YAML templates, step handlers,
//! plain-struct models with validation, and mock services with call logs and failure simulation.
//!
//! Who depends on it: `tasker-server` (to run the examples by name) and tests across the
//! workspace, which use these workflows as their shared domain.
//!
//! Architecture Invariant: no persistence types in its public API; models are plain structs.

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
