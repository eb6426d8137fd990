//! `/analytics`: per-template performance and step bottlenecks over a time window, computed by
//! the database (the store's `performance` and `bottlenecks` reports).
//!
//! Each handler parses its query into a [`AnalyticsScope`] and calls one function,
//! [`performance_view`] or [`bottlenecks_view`], that computes the response from the store: the
//! place to put a cache in front of the database.

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tasker_persistence::{
    AnalyticsScope, Bottlenecks, MAX_ANALYTICS_LIMIT, MAX_ANALYTICS_WINDOW, Performance, Store,
    TemplatePerformance,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ReadErrors};
use crate::extract::{Json, Query};
use crate::schemas;
use crate::state::Shared;

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(performance))
        .routes(routes!(bottlenecks))
}

/// The window when a request names none.
pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(1);

/// The list length of a bottleneck report when a request names none.
pub const DEFAULT_LIMIT: u32 = 10;

/// Performance parameters: a window (at most two of `since`, `until`, `window`) and filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PerformanceQuery {
    /// The window's start, included (RFC 3339). Default: `until` minus `window`.
    pub since: Option<DateTime<Utc>>,
    /// The window's end, excluded (RFC 3339). Default: `since` plus `window` when `since` is
    /// given, else now.
    pub until: Option<DateTime<Utc>>,
    /// The window's length: a number and a unit, `s`, `m`, `h` or `d` (`15m`, `1h`, `7d`).
    /// Default `1h`; at most 30 days.
    #[param(value_type = Option<schemas::WindowText>, inline)]
    pub window: Option<String>,
    /// Only templates of this namespace.
    pub namespace: Option<String>,
    /// Only templates of this name.
    pub name: Option<String>,
    /// Only this template version.
    #[param(value_type = Option<schemas::Semver>, inline)]
    pub version: Option<String>,
}

/// Bottleneck parameters: the window and filters of [`PerformanceQuery`] and a list length.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BottlenecksQuery {
    /// The window's start, included (RFC 3339). Default: `until` minus `window`.
    pub since: Option<DateTime<Utc>>,
    /// The window's end, excluded (RFC 3339). Default: `since` plus `window` when `since` is
    /// given, else now.
    pub until: Option<DateTime<Utc>>,
    /// The window's length: a number and a unit, `s`, `m`, `h` or `d` (`15m`, `1h`, `7d`).
    /// Default `1h`; at most 30 days.
    #[param(value_type = Option<schemas::WindowText>, inline)]
    pub window: Option<String>,
    /// Only templates of this namespace.
    pub namespace: Option<String>,
    /// Only templates of this name.
    pub name: Option<String>,
    /// Only this template version.
    #[param(value_type = Option<schemas::Semver>, inline)]
    pub version: Option<String>,
    /// Entries per list (default 10, at most 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The window and filters a report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScopeView {
    /// The window's start, included.
    pub since: DateTime<Utc>,
    /// The window's end, excluded.
    pub until: DateTime<Utc>,
    /// The window's length in seconds.
    pub window_seconds: f64,
    /// The namespace filter, if any.
    pub namespace: Option<String>,
    /// The name filter, if any.
    pub name: Option<String>,
    /// The version filter, if any.
    pub version: Option<String>,
}

impl From<&AnalyticsScope> for ScopeView {
    fn from(scope: &AnalyticsScope) -> Self {
        Self {
            since: scope.since,
            until: scope.until,
            window_seconds: scope.minutes() * 60.0,
            namespace: scope.namespace.clone(),
            name: scope.name.clone(),
            version: scope.version.clone(),
        }
    }
}

/// Task counts and rates over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskCountsView {
    /// Tasks created in the window.
    pub created: u64,
    /// Tasks that finished in the window as `complete`.
    pub completed: u64,
    /// Tasks that finished in the window as `error`.
    pub failed: u64,
    /// Tasks that finished in the window as `cancelled`.
    pub cancelled: u64,
    /// Tasks that finished in the window as `resolved_manually`.
    pub resolved_manually: u64,
    /// Tasks that finished in the window, in any final state.
    pub finished: u64,
    /// `completed` per minute of the window.
    pub throughput_per_minute: f64,
    /// `completed / finished`; `null` when nothing finished.
    pub completion_rate: Option<f64>,
    /// `failed / finished`; `null` when nothing finished.
    pub error_rate: Option<f64>,
}

impl TaskCountsView {
    fn of(counts: [u64; 5], minutes: f64) -> Self {
        let [created, completed, failed, cancelled, resolved_manually] = counts;
        let finished = completed + failed + cancelled + resolved_manually;
        let rate = |n: u64| (finished > 0).then(|| n as f64 / finished as f64);
        Self {
            created,
            completed,
            failed,
            cancelled,
            resolved_manually,
            finished,
            throughput_per_minute: if minutes > 0.0 {
                completed as f64 / minutes
            } else {
                0.0
            },
            completion_rate: rate(completed),
            error_rate: rate(failed),
        }
    }
}

/// One template's performance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplatePerformanceView {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// Counts and rates.
    #[serde(flatten)]
    pub counts: TaskCountsView,
    /// Median task duration (created to finished) in milliseconds, over tasks that finished in
    /// the window as `complete` or `error`; `null` when there are none.
    pub duration_p50_ms: Option<f64>,
    /// 95th percentile (nearest rank).
    pub duration_p95_ms: Option<f64>,
    /// 99th percentile (nearest rank).
    pub duration_p99_ms: Option<f64>,
}

fn counts_of(t: &TemplatePerformance) -> [u64; 5] {
    [
        t.created,
        t.completed,
        t.failed,
        t.cancelled,
        t.resolved_manually,
    ]
}

/// Per-template performance over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerformanceView {
    /// The window and filters.
    pub scope: ScopeView,
    /// Every template in scope, summed (no percentiles: they do not add up).
    pub totals: TaskCountsView,
    /// Templates with a task created or finished in the window, by namespace, name, version.
    pub templates: Vec<TemplatePerformanceView>,
}

/// Attempt durations of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepTimingView {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// Attempts that ended (`complete` or `error`) in the window.
    pub attempts: u64,
    /// Mean attempt duration in milliseconds.
    pub mean_ms: f64,
    /// 95th percentile attempt duration in milliseconds (nearest rank).
    pub p95_ms: f64,
    /// Longest attempt in milliseconds.
    pub max_ms: f64,
}

/// Retries of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetriedStepView {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Of those, attempts after a step's first.
    pub retries: u64,
    /// Step instances with such a retry.
    pub steps_retried: u64,
    /// The highest attempt number seen.
    pub max_attempt: u32,
}

/// Failed attempts of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorHotSpotView {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Of those, attempts that ended in `error`.
    pub failed_attempts: u64,
    /// `failed_attempts / attempts`.
    pub error_rate: f64,
    /// The most common error's code (`null` when it had none).
    pub top_error_code: Option<String>,
    /// The most common error's message (at most 500 characters).
    pub top_error_message: Option<String>,
    /// Failed attempts with that code and message.
    pub top_error_count: u64,
}

/// Step bottlenecks over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BottlenecksView {
    /// The window and filters.
    pub scope: ScopeView,
    /// The most entries each list holds.
    pub limit: u32,
    /// Steps by 95th percentile attempt duration, slowest first.
    pub slowest_steps: Vec<StepTimingView>,
    /// Steps with retries, most first.
    pub most_retried_steps: Vec<RetriedStepView>,
    /// Steps with failed attempts, most first, with their most common error.
    pub error_hot_spots: Vec<ErrorHotSpotView>,
}

impl From<Performance> for PerformanceView {
    fn from(report: Performance) -> Self {
        let minutes = report.scope.minutes();
        let mut sums = [0u64; 5];
        for template in &report.templates {
            for (sum, n) in sums.iter_mut().zip(counts_of(template)) {
                *sum += n;
            }
        }
        Self {
            scope: ScopeView::from(&report.scope),
            totals: TaskCountsView::of(sums, minutes),
            templates: report
                .templates
                .iter()
                .map(|t| TemplatePerformanceView {
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    version: t.version.clone(),
                    counts: TaskCountsView::of(counts_of(t), minutes),
                    duration_p50_ms: t.duration_p50_ms,
                    duration_p95_ms: t.duration_p95_ms,
                    duration_p99_ms: t.duration_p99_ms,
                })
                .collect(),
        }
    }
}

impl From<Bottlenecks> for BottlenecksView {
    fn from(report: Bottlenecks) -> Self {
        Self {
            scope: ScopeView::from(&report.scope),
            limit: report.limit,
            slowest_steps: report
                .slowest_steps
                .into_iter()
                .map(|s| StepTimingView {
                    namespace: s.namespace,
                    name: s.name,
                    version: s.version,
                    step: s.step,
                    attempts: s.attempts,
                    mean_ms: s.mean_ms,
                    p95_ms: s.p95_ms,
                    max_ms: s.max_ms,
                })
                .collect(),
            most_retried_steps: report
                .most_retried_steps
                .into_iter()
                .map(|s| RetriedStepView {
                    namespace: s.namespace,
                    name: s.name,
                    version: s.version,
                    step: s.step,
                    attempts: s.attempts,
                    retries: s.retries,
                    steps_retried: s.steps_retried,
                    max_attempt: s.max_attempt,
                })
                .collect(),
            error_hot_spots: report
                .error_hot_spots
                .into_iter()
                .map(|s| ErrorHotSpotView {
                    error_rate: if s.attempts > 0 {
                        s.failed_attempts as f64 / s.attempts as f64
                    } else {
                        0.0
                    },
                    namespace: s.namespace,
                    name: s.name,
                    version: s.version,
                    step: s.step,
                    attempts: s.attempts,
                    failed_attempts: s.failed_attempts,
                    top_error_code: s.top_error_code,
                    top_error_message: s.top_error_message,
                    top_error_count: s.top_error_count,
                })
                .collect(),
        }
    }
}

/// Parses `window` (`15m`, `1h`, `7d`, or any length `humantime` reads, like `1h 30m`).
fn parse_window(text: &str) -> Result<TimeDelta, ApiError> {
    let invalid = |why: &str| {
        ApiError::bad_request(format!(
            "`window` must be a length like `15m`, `1h` or `7d` of at most 30 days, got `{text}`: {why}"
        ))
    };
    let duration = humantime::parse_duration(text).map_err(|e| invalid(&e.to_string()))?;
    let window = TimeDelta::from_std(duration).map_err(|_| invalid("too long"))?;
    if window <= TimeDelta::zero() {
        return Err(invalid("it is empty"));
    }
    if window > MAX_ANALYTICS_WINDOW {
        return Err(invalid("too long"));
    }
    Ok(window)
}

/// The window and filters of a request at `now`; a 400 names the parameter at fault.
fn scope_of(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    window: Option<&str>,
    filters: (Option<String>, Option<String>, Option<String>),
    now: DateTime<Utc>,
) -> Result<AnalyticsScope, ApiError> {
    let window = window.map(parse_window).transpose()?;
    let shift = |at: DateTime<Utc>, by: TimeDelta, param: &str| {
        at.checked_add_signed(by).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{param}` with `window` leaves the supported time range"
            ))
        })
    };
    let (since, until) = match (since, until, window) {
        (Some(_), Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give at most two of `since`, `until` and `window`",
            ));
        }
        (Some(since), Some(until), None) => (since, until),
        (Some(since), None, window) => (
            since,
            shift(since, window.unwrap_or(DEFAULT_WINDOW), "since")?,
        ),
        (None, until, window) => {
            let until = until.unwrap_or(now);
            let since = until
                .checked_sub_signed(window.unwrap_or(DEFAULT_WINDOW))
                .ok_or_else(|| {
                    ApiError::bad_request("`until` with `window` leaves the supported time range")
                })?;
            (since, until)
        }
    };
    if since >= until {
        return Err(ApiError::bad_request(format!(
            "`since` ({}) must be before `until` ({})",
            since.to_rfc3339(),
            until.to_rfc3339()
        )));
    }
    if until - since > MAX_ANALYTICS_WINDOW {
        return Err(ApiError::bad_request(
            "`since` and `until` may be at most 30 days apart",
        ));
    }
    let (namespace, name, version) = filters;
    if let Some(v) = &version {
        semver::Version::parse(v)
            .map_err(|err| ApiError::bad_request(format!("`version` `{v}`: {err}")))?;
    }
    Ok(AnalyticsScope {
        since,
        until,
        namespace,
        name,
        version,
    })
}

/// The performance report for `scope`, from the store: the one call a cache would wrap.
pub async fn performance_view(
    store: &Store,
    scope: &AnalyticsScope,
) -> Result<PerformanceView, ApiError> {
    Ok(store.performance(scope).await?.into())
}

/// The bottleneck report for `scope` and `limit`, from the store: the one call a cache would
/// wrap.
pub async fn bottlenecks_view(
    store: &Store,
    scope: &AnalyticsScope,
    limit: u32,
) -> Result<BottlenecksView, ApiError> {
    Ok(store.bottlenecks(scope, limit).await?.into())
}

/// Per-template task counts, throughput, completion and error rates, and duration percentiles
/// over a window (default: the last hour).
#[utoipa::path(
    get, path = "/analytics/performance", tag = "analytics",
    operation_id = "analytics_performance",
    params(PerformanceQuery),
    responses(
        (status = 200, description = "Performance per template", body = PerformanceView),
        ReadErrors,
    )
)]
pub(crate) async fn performance(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<PerformanceQuery>,
) -> Result<Json<PerformanceView>, ApiError> {
    Ok(Json(performance_report(&shared, query).await?))
}

/// The performance report for `query`, from the cache when it is fresh (REST and GraphQL).
pub(crate) async fn performance_report(
    shared: &Shared,
    query: PerformanceQuery,
) -> Result<PerformanceView, ApiError> {
    // Keyed by the parameters as given: a relative window is reused for the TTL like any
    // cached report.
    let key = format!("analytics:performance:{}", cache_key(&query));
    let scope = scope_of(
        query.since,
        query.until,
        query.window.as_deref(),
        (query.namespace, query.name, query.version),
        shared.engine.now(),
    )?;
    let (view, _) = shared
        .cache
        .get_or_compute(&key, shared.cache_ttl, || {
            performance_view(shared.engine.store(), &scope)
        })
        .await?;
    Ok(view)
}

/// The parameters as one stable string.
fn cache_key(query: &impl Serialize) -> String {
    serde_json::to_string(query).unwrap_or_default()
}

/// The slowest steps, the most retried steps and the steps with the most failed attempts over a
/// window (default: the last hour), each list at most `limit` long.
#[utoipa::path(
    get, path = "/analytics/bottlenecks", tag = "analytics",
    operation_id = "analytics_bottlenecks",
    params(BottlenecksQuery),
    responses(
        (status = 200, description = "Step bottlenecks", body = BottlenecksView),
        ReadErrors,
    )
)]
pub(crate) async fn bottlenecks(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BottlenecksQuery>,
) -> Result<Json<BottlenecksView>, ApiError> {
    Ok(Json(bottlenecks_report(&shared, query).await?))
}

/// The bottlenecks report for `query`, from the cache when it is fresh (REST and GraphQL).
pub(crate) async fn bottlenecks_report(
    shared: &Shared,
    query: BottlenecksQuery,
) -> Result<BottlenecksView, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_ANALYTICS_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_ANALYTICS_LIMIT}, got {limit}"
        )));
    }
    // Keyed by the parameters as given: a relative window is reused for the TTL like any
    // cached report.
    let key = format!("analytics:bottlenecks:{}", cache_key(&query));
    let scope = scope_of(
        query.since,
        query.until,
        query.window.as_deref(),
        (query.namespace, query.name, query.version),
        shared.engine.now(),
    )?;
    let (view, _) = shared
        .cache
        .get_or_compute(&key, shared.cache_ttl, || {
            bottlenecks_view(shared.engine.store(), &scope, limit)
        })
        .await?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn filters() -> (Option<String>, Option<String>, Option<String>) {
        (None, None, None)
    }

    #[test]
    fn windows_default_to_the_last_hour_and_combine() {
        let now = t("2026-01-01T12:00:00Z");
        let scope = scope_of(None, None, None, filters(), now).unwrap();
        assert_eq!((scope.since, scope.until), (t("2026-01-01T11:00:00Z"), now));
        let scope = scope_of(None, None, Some("15m"), filters(), now).unwrap();
        assert_eq!(scope.since, t("2026-01-01T11:45:00Z"));
        let since = t("2026-01-01T00:00:00Z");
        let scope = scope_of(Some(since), None, Some("2h"), filters(), now).unwrap();
        assert_eq!(scope.until, t("2026-01-01T02:00:00Z"));
        let scope = scope_of(Some(since), Some(now), None, filters(), now).unwrap();
        assert_eq!((scope.since, scope.until), (since, now));
        let scope = scope_of(None, Some(since), Some("7d"), filters(), now).unwrap();
        assert_eq!(scope.since, t("2025-12-25T00:00:00Z"));
    }

    #[test]
    fn bad_windows_name_the_parameter() {
        let now = t("2026-01-01T12:00:00Z");
        let message = |r: Result<AnalyticsScope, ApiError>| {
            let err = r.unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
            format!("{err:?}")
        };
        assert!(message(scope_of(None, None, Some("soon"), filters(), now)).contains("`window`"));
        assert!(message(scope_of(None, None, Some("31d"), filters(), now)).contains("`window`"));
        assert!(message(scope_of(None, None, Some("0s"), filters(), now)).contains("`window`"));
        assert!(message(scope_of(Some(now), Some(now), None, filters(), now)).contains("`since`"));
        assert!(
            message(scope_of(Some(now), Some(now), Some("1h"), filters(), now))
                .contains("at most two")
        );
        let far = t("2025-01-01T00:00:00Z");
        assert!(message(scope_of(Some(far), Some(now), None, filters(), now)).contains("30 days"));
        let version = (None, None, Some("1.x".to_owned()));
        assert!(message(scope_of(None, None, None, version, now)).contains("`version`"));
    }
}
