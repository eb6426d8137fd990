//! `tasker serve`'s metrics: one OpenTelemetry meter provider whose reader is the Prometheus
//! exporter. The engine, the event subscriber and the HTTP middleware create their instruments
//! on its meter through the `opentelemetry` API; `/metrics` renders the exporter's registry as
//! Prometheus text. The SDK and the exporter are linked here only (ARCHITECTURE.md, rule 2).

use std::sync::Arc;

use anyhow::Context as _;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Registry, TextEncoder};
use serde::{Deserialize, Serialize};
use tasker_api::{EndpointAuth, MetricsExporter};
use tasker_auth::Profile;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsSettings {
    /// Serve `GET /metrics` (Prometheus text) beside `/health/*`.
    pub enabled: bool,
    /// `none` or `api`; when absent, `none` in the development profile and `api` in production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<EndpointAuth>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            auth: None,
        }
    }
}

impl MetricsSettings {
    /// Who may read `/metrics` under `profile`.
    pub(crate) fn auth(&self, profile: Profile) -> EndpointAuth {
        self.auth.unwrap_or(EndpointAuth::default_for(profile))
    }
}

/// The meter provider and the registry its Prometheus reader fills.
pub(crate) struct Telemetry {
    provider: SdkMeterProvider,
    registry: Registry,
}

impl Telemetry {
    /// A provider with the Prometheus exporter as its only reader. Names follow Prometheus:
    /// dots become underscores, `s` units add `_seconds`, counters end in `_total`. No
    /// `target_info` family and no `otel_scope_*` labels: one process, one scope.
    #[cfg(test)]
    pub(crate) fn new() -> anyhow::Result<Self> {
        Self::with_otlp(None)
    }

    /// [`new`](Self::new), with the OTLP exporter as a second reader when traces and metrics
    /// are exported (the same instruments reach `/metrics` and the collector).
    pub(crate) fn with_otlp(otlp: Option<crate::telemetry::OtlpMetrics>) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .context("the Prometheus exporter")?;
        let mut provider = SdkMeterProvider::builder().with_reader(exporter);
        if let Some((otlp, resource)) = otlp {
            provider = provider
                .with_periodic_exporter(otlp)
                .with_resource(resource);
        }
        let provider = provider.build();
        Ok(Self { provider, registry })
    }

    /// The meter every instrument of this process is created on.
    pub(crate) fn meter(&self) -> Meter {
        self.provider.meter("tasker")
    }

    /// Flushes the OTLP reader (if any) and stops the provider. Call it after the tokio
    /// runtime has ended: the reader's thread makes blocking HTTP calls.
    pub(crate) fn shutdown(&self) {
        // A provider with only the pull-based Prometheus reader has nothing to flush.
        let _ = self.provider.shutdown();
    }

    /// What `/metrics` serves.
    pub(crate) fn exporter(&self) -> Arc<dyn MetricsExporter> {
        Arc::new(PrometheusText(self.registry.clone()))
    }
}

struct PrometheusText(Registry);

impl MetricsExporter for PrometheusText {
    fn render(&self) -> Result<String, String> {
        TextEncoder::new()
            .encode_to_string(&self.0.gather())
            .map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_follows_the_profile_unless_set() {
        let default = MetricsSettings::default();
        assert_eq!(default.auth(Profile::Development), EndpointAuth::None);
        assert_eq!(default.auth(Profile::Production), EndpointAuth::Api);
        let open = MetricsSettings {
            auth: Some(EndpointAuth::None),
            ..default
        };
        assert_eq!(open.auth(Profile::Production), EndpointAuth::None);
    }

    #[test]
    fn instruments_render_with_prometheus_names() {
        let telemetry = Telemetry::new().unwrap();
        let meter = telemetry.meter();
        meter.u64_counter("tasker.demo.things").build().add(2, &[]);
        meter
            .f64_histogram("tasker.demo.duration")
            .with_unit("s")
            .build()
            .record(0.5, &[]);
        let text = telemetry.exporter().render().unwrap();
        assert!(text.contains("tasker_demo_things_total 2"), "{text}");
        assert!(
            text.contains("tasker_demo_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            !text.contains("target_info") && !text.contains("otel_scope"),
            "{text}"
        );
    }
}
