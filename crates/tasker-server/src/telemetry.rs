//! OTLP export (HTTP/protobuf) of traces and metrics from `tasker serve`, `tasker worker` and
//! `tasker run`. Off unless `[telemetry] enabled = true` or an `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variable is set; `OTEL_SDK_DISABLED=true` turns it off
//! again. The standard `OTEL_*` variables win over the file: the endpoints, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and `OTEL_EXPORTER_OTLP_HEADERS`
//! are read by the SDK itself whenever the file leaves them to it.
//!
//! The SDK and the exporters are linked here only; the libraries create `tracing` spans and use
//! the `opentelemetry` API. This module installs the W3C trace-context propagator globally, so
//! an incoming `traceparent` is honoured, a task stores the trace context it was created under,
//! and `tasker::http` sends the attempt's `traceparent`.
//!
//! The batch span processor and the periodic metric reader run on their own threads with the
//! blocking HTTP client; [`Otel::shutdown`] flushes both and runs after the tokio runtime has
//! ended, so the last spans of a run are not lost.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use serde::{Deserialize, Serialize};

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TelemetrySettings {
    /// Export traces (and metrics) over OTLP/HTTP. Also on when an OTLP endpoint variable is set.
    pub enabled: bool,
    /// The collector's base URL (`/v1/traces` and `/v1/metrics` are appended); the OTLP
    /// endpoint variables win; default `http://localhost:4318`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource; `OTEL_SERVICE_NAME` wins; default `tasker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The share of new traces recorded, 0.0 to 1.0 (parent-based: a caller's sampled
    /// `traceparent` is always followed); `OTEL_TRACES_SAMPLER` wins; default 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// Export the metrics `/metrics` shows over OTLP too.
    pub metrics: bool,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: None,
            metrics: true,
        }
    }
}

/// The OTLP metric exporter with the resource its provider should carry.
pub(crate) type OtlpMetrics = (MetricExporter, Resource);

/// What to build, decided from the settings and the environment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Full URL of the traces endpoint, or `None` when an `OTEL_*` variable names it (the
    /// exporter reads it).
    pub traces_endpoint: Option<String>,
    /// Full URL of the metrics endpoint, or `None` when an `OTEL_*` variable names it; absent
    /// entirely when metrics are not exported.
    pub metrics_endpoint: Option<Option<String>>,
    /// `service.name`, or `None` when the environment names it.
    pub service_name: Option<String>,
    /// The ratio of a parent-based trace-id-ratio sampler, or `None` when the SDK chooses
    /// (`OTEL_TRACES_SAMPLER`, else always on).
    pub sample_ratio: Option<f64>,
}

const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// Decides whether and how to export; `env` reads an environment variable (injectable for
/// tests). A bad setting is an error naming it.
pub(crate) fn plan(
    settings: &TelemetrySettings,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Plan>> {
    let set = |name: &str| env(name).is_some_and(|value| !value.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let any_endpoint_var =
        set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if !settings.enabled && !any_endpoint_var {
        return Ok(None);
    }
    let base = match &settings.otlp_endpoint {
        Some(url) => {
            let url = url.trim().trim_end_matches('/');
            let valid = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
            if !valid {
                anyhow::bail!(
                    "telemetry.otlp_endpoint must be an http:// or https:// URL, got `{url}`"
                );
            }
            url.to_owned()
        }
        None => DEFAULT_ENDPOINT.to_owned(),
    };
    let endpoint = |signal_var: &str, path: &str| {
        (!set(signal_var) && !set("OTEL_EXPORTER_OTLP_ENDPOINT")).then(|| format!("{base}{path}"))
    };
    let sample_ratio = match settings.sample_ratio {
        Some(ratio) if !(0.0..=1.0).contains(&ratio) => {
            anyhow::bail!("telemetry.sample_ratio must be between 0.0 and 1.0, got {ratio}")
        }
        _ if set("OTEL_TRACES_SAMPLER") => None,
        ratio => ratio,
    };
    let named_by_env = set("OTEL_SERVICE_NAME")
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|pair| pair.trim_start().starts_with("service.name="))
        });
    let service_name = (!named_by_env).then(|| {
        settings
            .service_name
            .clone()
            .unwrap_or_else(|| "tasker".to_owned())
    });
    Ok(Some(Plan {
        traces_endpoint: endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces"),
        metrics_endpoint: settings
            .metrics
            .then(|| endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics")),
        service_name,
        sample_ratio,
    }))
}

/// The exporters of this process, when export is on.
pub(crate) struct Otel {
    tracer_provider: SdkTracerProvider,
    metric_exporter: Option<MetricExporter>,
    meter_provider: Option<SdkMeterProvider>,
    resource: Resource,
}

impl Otel {
    /// Builds the exporters `plan` asks for and installs the W3C propagator. Nothing is sent
    /// until spans end; an unreachable collector costs failed exports (logged by the SDK), never
    /// the work.
    pub(crate) fn start(plan: &Plan) -> anyhow::Result<Self> {
        let mut resource = Resource::builder();
        if let Some(name) = &plan.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = resource.build();
        let mut spans = SpanExporter::builder().with_http();
        if let Some(url) = &plan.traces_endpoint {
            spans = spans.with_endpoint(url.clone());
        }
        let spans = spans.build().context("the OTLP span exporter")?;
        let mut builder = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone());
        if let Some(ratio) = plan.sample_ratio {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let metric_exporter = match &plan.metrics_endpoint {
            None => None,
            Some(url) => {
                let mut metrics = MetricExporter::builder().with_http();
                if let Some(url) = url {
                    metrics = metrics.with_endpoint(url.clone());
                }
                Some(metrics.build().context("the OTLP metric exporter")?)
            }
        };
        install_propagator();
        Ok(Self {
            tracer_provider: builder.build(),
            metric_exporter,
            meter_provider: None,
            resource,
        })
    }

    /// The tracer the logging subscriber's OpenTelemetry layer records spans with.
    pub(crate) fn tracer(&self) -> SdkTracer {
        self.tracer_provider.tracer("tasker")
    }

    /// The OTLP metric exporter and the resource, for a meter provider that has other readers
    /// too (`tasker serve`'s Prometheus `/metrics`). Taken once.
    pub(crate) fn take_metric_exporter(&mut self) -> Option<OtlpMetrics> {
        self.metric_exporter
            .take()
            .map(|exporter| (exporter, self.resource.clone()))
    }

    /// Makes the OTLP metric exporter (unless taken) the reader of the global meter provider,
    /// which the engine's instruments use when no meter is given to it.
    pub(crate) fn install_global_meter_provider(&mut self) {
        if let Some(exporter) = self.metric_exporter.take() {
            let provider = SdkMeterProvider::builder()
                .with_periodic_exporter(exporter)
                .with_resource(self.resource.clone())
                .build();
            opentelemetry::global::set_meter_provider(provider.clone());
            self.meter_provider = Some(provider);
        }
    }

    /// Flushes and stops the exporters. Call it after the tokio runtime has ended: the
    /// exporters' threads make blocking HTTP calls. Failures are reported, not fatal.
    pub(crate) fn shutdown(self) {
        if let Err(err) = self.tracer_provider.shutdown() {
            eprintln!("warning: flushing traces failed: {err}");
        }
        if let Some(provider) = self.meter_provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: flushing metrics failed: {err}");
        }
    }
}

/// The W3C trace-context propagator, for every crate's `opentelemetry::global` use.
pub(crate) fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn off_by_default_and_on_by_setting_or_endpoint_variable() {
        let settings = TelemetrySettings::default();
        assert_eq!(plan(&settings, env(&[])).unwrap(), None);
        let by_env = plan(
            &settings,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            by_env.traces_endpoint, None,
            "the exporter reads the variable"
        );
        assert_eq!(by_env.service_name.as_deref(), Some("tasker"));
        let on = TelemetrySettings {
            enabled: true,
            otlp_endpoint: Some("http://otel:4318/".into()),
            service_name: Some("orders".into()),
            sample_ratio: Some(0.25),
            metrics: true,
        };
        let planned = plan(&on, env(&[])).unwrap().unwrap();
        assert_eq!(
            planned.traces_endpoint.as_deref(),
            Some("http://otel:4318/v1/traces")
        );
        assert_eq!(
            planned.metrics_endpoint,
            Some(Some("http://otel:4318/v1/metrics".into()))
        );
        assert_eq!(planned.service_name.as_deref(), Some("orders"));
        assert_eq!(planned.sample_ratio, Some(0.25));
        assert_eq!(
            plan(&on, env(&[("OTEL_SDK_DISABLED", "true")])).unwrap(),
            None
        );
    }

    #[test]
    fn the_standard_variables_win_over_the_file() {
        let on = TelemetrySettings {
            enabled: true,
            otlp_endpoint: Some("http://otel:4318".into()),
            service_name: Some("orders".into()),
            sample_ratio: Some(0.5),
            metrics: false,
        };
        let planned = plan(
            &on,
            env(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://elsewhere/v1/traces",
                ),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=x",
                ),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(planned.traces_endpoint, None);
        assert_eq!(planned.metrics_endpoint, None, "metrics export is off");
        assert_eq!(planned.service_name, None);
        assert_eq!(planned.sample_ratio, None);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let ratio = TelemetrySettings {
            enabled: true,
            sample_ratio: Some(1.5),
            ..Default::default()
        };
        assert_eq!(
            plan(&ratio, env(&[])).unwrap_err().to_string(),
            "telemetry.sample_ratio must be between 0.0 and 1.0, got 1.5"
        );
        let url = TelemetrySettings {
            enabled: true,
            otlp_endpoint: Some("collector:4318".into()),
            ..Default::default()
        };
        assert_eq!(
            plan(&url, env(&[])).unwrap_err().to_string(),
            "telemetry.otlp_endpoint must be an http:// or https:// URL, got `collector:4318`"
        );
    }
}
