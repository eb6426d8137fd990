//! Tasker's REST API as an axum [`Router`]: tasks, steps, templates and handlers, operator
//! actions, live event streams (Server-Sent Events), health probes, analytics over a time
//! window, and the OpenAPI document with Swagger UI; and GraphQL beside it at `/graphql`,
//! with the same operations, permissions and error codes, and subscriptions over WebSocket. [`Api::router`] returns routes relative
//! to wherever the caller mounts them, so a custom server nests the API under any prefix beside
//! its own routes.
//!
//! ```no_run
//! # async fn example(engine: tasker_engine::Engine, access: tasker_auth::AccessControl) {
//! let api = tasker_api::Api::new(engine, access);
//! let app = axum::Router::new()
//!     .nest("/v1", api.router())
//!     .route("/hello", axum::routing::get(|| async { "hello" }));
//! # let _ = app;
//! # }
//! ```
//!
//! Who depends on it: `tasker-server` (`tasker serve`) and custom servers built from parts.
//!
//! Architecture Invariants:
//! - The only library crate that knows HTTP status codes: every error becomes a status in one
//!   place (`error.rs`) and every error body is the same envelope.
//! - Every route is guarded by one middleware that looks the route up in the permission table
//!   of `tasker-auth`; a route missing from the table is refused, never served unguarded.
//! - Names no database driver: storage errors arrive as the store's error type.

mod cache;
mod correlation;
mod error;
mod extract;
mod graphql;
mod guard;
mod keys;
mod metrics;
mod openapi;
mod routes;
mod schemas;
mod session;
mod state;
mod ui;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tasker_auth::AccessControl;
use tasker_engine::Engine;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use cache::{Cache, CacheBackend, CacheCounters, CacheError, CacheSettings, MemoryCache};
pub use correlation::{CorrelationId, HEADER as CORRELATION_HEADER};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorEnvelope};
pub use graphql::{GraphqlSettings, sdl as graphql_sdl, validate_document as validate_graphql};
pub use keys::{DatabaseApiKeys, DatabaseRevocations};
pub use metrics::{
    EndpointAuth, HTTP_INSTRUMENTS, MetricsExporter, PROMETHEUS_CONTENT_TYPE, UNMATCHED_ROUTE,
    track_requests,
};
pub use routes::analytics::{
    BottlenecksQuery, BottlenecksView, DEFAULT_LIMIT as DEFAULT_ANALYTICS_LIMIT,
    DEFAULT_WINDOW as DEFAULT_ANALYTICS_WINDOW, ErrorHotSpotView, PerformanceQuery,
    PerformanceView, RetriedStepView, ScopeView, StepTimingView, TaskCountsView,
    TemplatePerformanceView, bottlenecks_view, performance_view,
};
pub use routes::health::{cache_check, readiness_checks};
pub use routes::switches::{
    LimitBody, PauseBody, SwitchChangeView, SwitchView, SwitchesView, TemplateRef,
};
pub use routes::tasks::IDEMPOTENCY_KEY;
pub use session::{COOKIE as SESSION_COOKIE, CSRF_HEADER};
pub use state::{ApiSettings, HealthSettings};
pub use views::{
    ActionBody, BacklogView, CacheView, CreateTaskBody, EventFilter, GraphView, HandlerNamespace,
    HandlerView, HealthCheck, HealthStatusView, HealthView, HistoryView, ListTasksQuery, PoolView,
    ResolveStepBody, RetryView, ShowTaskQuery, ShowTemplateQuery, StatusCounts, StepView, TaskPage,
    TaskView, TemplateProblem, TemplateSummary, TemplateView, ThresholdsView, TransitionView,
    UpdateStepBody, UpdateTaskBody, ValidationView,
};

use crate::state::Shared;

/// The API, built from parts.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
    access: AccessControl,
    settings: ApiSettings,
    health: HealthSettings,
    cache: Cache,
    cache_ttl: std::time::Duration,
    expects_coordinator: bool,
    graphql: GraphqlSettings,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("settings", &self.settings)
            .field("health", &self.health)
            .field("cache", &self.cache)
            .field("expects_coordinator", &self.expects_coordinator)
            .field("graphql", &self.graphql)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// An API over `engine` (and its store), guarded by `access`, with default settings and
    /// an in-process cache on the engine's clock.
    pub fn new(engine: Engine, access: AccessControl) -> Self {
        let cache = Cache::new(std::sync::Arc::new(MemoryCache::with_clock(
            10_000,
            engine.clock_handle(),
        )));
        Self {
            engine,
            access,
            settings: ApiSettings::default(),
            health: HealthSettings::default(),
            cache,
            cache_ttl: std::time::Duration::from_secs(15),
            expects_coordinator: false,
            graphql: GraphqlSettings::default(),
        }
    }

    /// Replaces the `[graphql]` settings (checked by the caller with
    /// [`GraphqlSettings::validate`], with the profile's defaults filled in by
    /// [`GraphqlSettings::for_profile`]; left unset, GraphiQL and introspection are off).
    pub fn graphql(mut self, settings: GraphqlSettings) -> Self {
        self.graphql = settings;
        self
    }

    /// Replaces the `[health]` settings (checked by the caller with
    /// [`HealthSettings::validate`]).
    pub fn health(mut self, health: HealthSettings) -> Self {
        self.health = health;
        self
    }

    /// Replaces the cache, whose computed reports are reused for `ttl` (from
    /// [`CacheSettings::build`], or a backend of the caller's own).
    pub fn cache(mut self, cache: Cache, ttl: std::time::Duration) -> Self {
        self.cache = cache;
        self.cache_ttl = ttl;
        self
    }

    /// Replaces the settings (checked by [`Api::router`]'s caller with
    /// [`ApiSettings::validate`]; invalid values fall back to safe bounds).
    pub fn settings(mut self, settings: ApiSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Whether the readiness probe requires this process's coordinator to be running (true
    /// when the process serves the API and runs the engine together).
    pub fn expects_coordinator(mut self, expects: bool) -> Self {
        self.expects_coordinator = expects;
        self
    }

    /// The OpenAPI document of every route, relative to the mount point.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        let (_, spec) = Self::routes().split_for_parts();
        spec
    }

    fn routes() -> OpenApiRouter<Arc<Shared>> {
        OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
            .merge(routes::tasks::router())
            .merge(routes::steps::router())
            .merge(routes::templates::router())
            .merge(routes::events::router())
            .merge(routes::switches::router())
            .merge(routes::health::router())
            .merge(routes::analytics::router())
    }

    fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            engine: self.engine.clone(),
            access: self.access.clone(),
            settings: self.settings.clone(),
            health: self.health.clone(),
            cache: self.cache.clone(),
            cache_ttl: self.cache_ttl,
            expects_coordinator: self.expects_coordinator,
        })
    }

    /// The two probes alone (`/health/live`, `/health/ready`), never authenticated: for a
    /// server that also answers them outside the API's prefix, where orchestrators look.
    pub fn probes(&self) -> Router {
        let (routes, _) = OpenApiRouter::new()
            .merge(routes::health::probes())
            .split_for_parts();
        routes.with_state(self.shared())
    }

    /// `GET /health/status`, for the root of a server beside the probes. With
    /// [`EndpointAuth::Api`] the request passes the same guard as every API route and needs
    /// `tasker.health_status:index`; with [`EndpointAuth::None`] anyone who reaches the port
    /// reads it. Under the API's prefix the report always needs the permission.
    pub fn status(&self, auth: EndpointAuth) -> Router {
        let shared = self.shared();
        let mut router =
            Router::new().route("/health/status", axum::routing::get(routes::health::status));
        if auth == EndpointAuth::Api {
            router =
                router.route_layer(middleware::from_fn_with_state(shared.clone(), guard::guard));
        }
        router
            .with_state(shared)
            .layer(middleware::from_fn(envelope))
            .layer(middleware::from_fn(correlation::correlate))
    }

    /// `GET /metrics`, for the root of a server beside the probes: the text `exporter` renders
    /// (after the event subscribers have caught up, for at most half a second, and the
    /// `tasker.steps.ready` / `tasker.steps.in_backoff` gauges have been read from the
    /// database). With [`EndpointAuth::Api`] the request passes the same guard as every API
    /// route and needs `tasker.metrics:index`.
    pub fn metrics(&self, exporter: Arc<dyn MetricsExporter>, auth: EndpointAuth) -> Router {
        let shared = self.shared();
        let handler = {
            let shared = shared.clone();
            move || metrics::serve(shared.clone(), exporter.clone())
        };
        let mut router = Router::new().route("/metrics", axum::routing::get(handler));
        if auth == EndpointAuth::Api {
            router = router.route_layer(middleware::from_fn_with_state(shared, guard::guard));
        }
        router
            .layer(middleware::from_fn(envelope))
            .layer(middleware::from_fn(correlation::correlate))
    }

    /// The web dashboard at `/ui` (docs/dashboard.md), for the root of a server whose API is
    /// mounted at `api_prefix` (`/v1` under `tasker serve`); an empty router when
    /// `api.ui = false`. Its files are embedded in the binary; it signs in through the API's
    /// `/session` route and then calls the API with the session cookie.
    pub fn ui(&self, api_prefix: &str) -> Router {
        if self.settings.ui {
            ui::router(api_prefix)
        } else {
            Router::new()
        }
    }

    /// The router: every route, the OpenAPI document at `/openapi.json`, and Swagger UI at
    /// `/docs` when enabled.
    pub fn router(&self) -> Router {
        let shared = self.shared();
        let (routes, spec) = Self::routes().split_for_parts();
        let timeout = self
            .settings
            .request_timeout()
            .unwrap_or(std::time::Duration::from_secs(30));
        let mut router = routes
            .merge(routes::session::router())
            .route_layer(middleware::from_fn_with_state(shared.clone(), guard::guard))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                time_limit(timeout, request, next)
            }))
            .with_state(shared)
            .route(
                "/openapi.json",
                axum::routing::get({
                    let spec = spec.clone();
                    move || {
                        let spec = spec.clone();
                        async move { axum::Json(spec) }
                    }
                }),
            );
        if self.graphql.enabled {
            router = router.merge(graphql::router(self.shared(), &self.graphql));
        }
        if self.settings.swagger_ui {
            router = router
                .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/docs/openapi.json", spec));
        }
        router = router
            .fallback(|| async { ApiError::not_found("no such route") })
            .method_not_allowed_fallback(|| async {
                ApiError::new(
                    ErrorCode::MethodNotAllowed,
                    "this route does not take that method",
                )
            })
            .layer(DefaultBodyLimit::max(self.settings.body_limit.max(1024)));
        if self.settings.compression {
            router = router.layer(CompressionLayer::new());
        }
        if let Some(cors) = cors(&self.settings.cors_origins) {
            router = router.layer(cors);
        }
        router
            .layer(middleware::from_fn(envelope))
            .layer(middleware::from_fn(correlation::correlate))
    }
}

/// Answers 408 in the envelope when a request takes longer than `limit`. Event streams are
/// not cut: their response starts at once and the stream itself is not timed.
async fn time_limit(limit: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!("the request took longer than {} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Puts any error response that is not already JSON (a framework's plain-text rejection, a
/// layer's bare status) into the envelope, so clients see one error shape.
async fn envelope(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidBody,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    // The status stays as the framework or layer chose it (a 502 is `internal`, a 429
    // `bad_request`).
    let mut rebuilt = ApiError::new(code, message)
        .with_status(status)
        .into_response();
    for name in [header::ALLOW, header::VARY] {
        if let Some(value) = response.headers().get(&name) {
            rebuilt.headers_mut().insert(name, value.clone());
        }
    }
    rebuilt
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(tower_http::cors::Any)
            .allow_headers(tower_http::cors::Any)
            .expose_headers([header::HeaderName::from_static(correlation::HEADER)]),
    )
}
