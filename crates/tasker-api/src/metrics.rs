//! HTTP request metrics (a middleware) and the `/metrics` route. This crate links no
//! OpenTelemetry SDK or exporter: instruments go through the `opentelemetry` API, and the
//! exposition text comes from a [`MetricsExporter`] the process supplies (`tasker serve` builds
//! it from the Prometheus exporter).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use serde::{Deserialize, Serialize};
use tasker_events::{Appears, InstrumentKind, InstrumentSpec, InstrumentUnit, SECONDS_BOUNDARIES};

use crate::error::{ApiError, ErrorCode};
use crate::state::Shared;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for the event subscribers (whose counters it reports) to handle the
/// events already published, so a scrape after a task finished counts it.
const SETTLE: Duration = Duration::from_millis(500);

/// The route label of a request that matched no route: never the raw path, whose values are
/// unbounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Renders every instrument as Prometheus text. Implemented by the process that owns the meter
/// provider and its exporter; the API only serves what it renders.
pub trait MetricsExporter: Send + Sync + 'static {
    /// The text exposition format, version 0.0.4; an error is reported as a 500.
    fn render(&self) -> Result<String, String>;
}

/// Who may read an endpoint served at the root beside the probes (`/metrics`,
/// `/health/status`): the settings `metrics.auth` and `health.status_auth`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointAuth {
    /// Anyone who can reach the port (the usual Prometheus setup: the scraper on a private
    /// network, the port not exposed).
    None,
    /// The API's authenticators and the endpoint's permission (`tasker.metrics:index`,
    /// `tasker.health_status:index`), as for any route.
    Api,
}

impl EndpointAuth {
    /// The default when a setting leaves it out: `none` in development, `api` in production.
    pub fn default_for(profile: tasker_auth::Profile) -> Self {
        match profile {
            tasker_auth::Profile::Production => EndpointAuth::Api,
            _ => EndpointAuth::None,
        }
    }
}

const LABELS: &[&str] = &["method", "route", "status"];

const REQUESTS: InstrumentSpec = InstrumentSpec {
    name: "tasker.http.requests",
    kind: InstrumentKind::Counter,
    unit: InstrumentUnit::Count("requests"),
    labels: LABELS,
    description: "HTTP requests answered, by method, route template and status",
    notes: "`route` is the matched route template (`/v1/tasks/{task_id}`), never the raw path; `unmatched` when no route matched. Methods outside the standard set are `_OTHER`.",
    appears: Appears::OnFirst("request"),
    boundaries: &[],
};

const DURATION: InstrumentSpec = InstrumentSpec {
    name: "tasker.http.request.duration",
    kind: InstrumentKind::Histogram,
    unit: InstrumentUnit::Seconds,
    labels: LABELS,
    description: "HTTP request duration until the response head (event streams: until the stream opens)",
    notes: "",
    appears: Appears::OnFirst("request"),
    boundaries: SECONDS_BOUNDARIES,
};

/// The instruments of [`track_requests`], each created from its entry here.
pub const HTTP_INSTRUMENTS: &[InstrumentSpec] = &[REQUESTS, DURATION];

/// Counts and times requests by method, matched route template and status.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

impl HttpMetrics {
    fn new(meter: &Meter) -> Self {
        Self {
            requests: REQUESTS.u64_counter(meter),
            duration: DURATION.f64_histogram(meter),
        }
    }
}

/// `router` with every request counted and timed on `meter` (`tasker.http.requests`,
/// `tasker.http.request.duration`), labelled with the method, the matched route template
/// (`/v1/tasks/{task_id}`, never the raw path; `unmatched` when no route matched) and the
/// status. Apply it to the whole application, after nesting, so templates carry their prefix.
pub fn track_requests(router: Router, meter: &Meter) -> Router {
    router.layer(middleware::from_fn_with_state(
        HttpMetrics::new(meter),
        track,
    ))
}

async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        // A nested router's fallback matches a catch-all of axum's own.
        .filter(|path| !path.contains("__private__axum"))
        .unwrap_or(UNMATCHED_ROUTE)
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let attributes = [
        KeyValue::new("method", method),
        KeyValue::new("route", route),
        KeyValue::new("status", i64::from(response.status().as_u16())),
    ];
    metrics.requests.add(1, &attributes);
    metrics
        .duration
        .record(started.elapsed().as_secs_f64(), &attributes);
    response
}

/// The standard methods by name; anything else as `_OTHER`, so a client cannot mint labels.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

/// `GET /metrics`: waits briefly for the event subscribers, reads the claimable backlog, then
/// renders.
pub(crate) async fn serve(shared: Arc<Shared>, exporter: Arc<dyn MetricsExporter>) -> Response {
    let engine = &shared.engine;
    if tokio::time::timeout(SETTLE, engine.events().settled())
        .await
        .is_err()
    {
        tracing::debug!("metrics: event subscribers still busy; counters may lag");
    }
    if let Err(err) = engine.observe_backlog().await {
        tracing::warn!(error = %err, "metrics: the backlog could not be read");
    }
    match exporter.render() {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response(),
        Err(err) => ApiError::new(
            ErrorCode::Internal,
            format!("the metrics could not be rendered: {err}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }
}
