//! `/health/live` and `/health/ready`, never authenticated, for probes; and `/health/status`,
//! the detailed report an operator or a dashboard reads.

use std::sync::Arc;

use chrono::Utc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::Json;
use crate::state::Shared;
use crate::views::{
    CacheView, HealthCheck, HealthStatusView, HealthView, PoolView, StatusCounts, ThresholdsView,
};

/// The probes alone.
pub(crate) fn probes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// The probes and the status report.
pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    probes().routes(routes!(status))
}

/// The cache key of the status report's counts.
const STATUS_KEY: &str = "health:status";

/// The process is up and serving. Touches nothing else.
#[utoipa::path(
    get, path = "/health/live", tag = "health", security(()),
    responses((status = 200, description = "Alive", body = HealthView))
)]
pub(crate) async fn live() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".into(),
        checks: Vec::new(),
    })
}

/// Ready for traffic: the database answers, its schema is at this build's migration, and the
/// coordinator (when this process runs one) is alive.
#[utoipa::path(
    get, path = "/health/ready", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = HealthView),
        (status = 503, description = "Not ready; the failing checks say why", body = HealthView),
    )
)]
pub(crate) async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let checks = shared_checks(&shared).await;
    let ok = checks.iter().all(|c| c.ok);
    let view = HealthView {
        status: if ok { "ok" } else { "unavailable" }.into(),
        checks,
    };
    (status_code(ok), Json(view)).into_response()
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn shared_checks(shared: &Shared) -> Vec<HealthCheck> {
    let coordinator = shared
        .expects_coordinator
        .then(|| shared.engine.is_coordinating());
    readiness_checks(shared.engine.store(), coordinator, &shared.cache).await
}

/// What readiness needs: the database answers at this build's schema, the coordinator (when
/// the process runs one: `coordinator` says whether it is alive) is running, and a shared cache
/// (when one is configured) answers. `/health/ready`, `/health/status` and `tasker health
/// --local` all run these.
pub async fn readiness_checks(
    store: &tasker_persistence::Store,
    coordinator: Option<bool>,
    cache: &crate::Cache,
) -> Vec<HealthCheck> {
    let mut checks = Vec::new();
    let database = store.ping().await;
    checks.push(HealthCheck {
        name: "database".into(),
        ok: database.is_ok(),
        detail: match &database {
            Ok(()) => "reachable".into(),
            Err(err) => format!("unreachable: {err}"),
        },
    });
    if database.is_ok() {
        let schema = store.schema_status().await;
        checks.push(HealthCheck {
            name: "schema".into(),
            ok: schema.as_ref().is_ok_and(|s| s.is_current()),
            detail: match &schema {
                Ok(s) if s.is_current() => "current".into(),
                Ok(s) => format!("pending migrations: {}", s.pending.join(", ")),
                Err(err) => format!("unreadable: {err}"),
            },
        });
    }
    if let Some(alive) = coordinator {
        checks.push(HealthCheck {
            name: "coordinator".into(),
            ok: alive,
            detail: if alive { "running" } else { "stopped" }.into(),
        });
    }
    checks.extend(cache_check(cache).await);
    checks
}

/// Whether a shared cache answers; `None` for an in-process cache, which always does.
pub async fn cache_check(cache: &crate::Cache) -> Option<HealthCheck> {
    if !cache.is_shared() {
        return None;
    }
    let reached = cache.check().await;
    Some(HealthCheck {
        name: "cache".into(),
        ok: reached.is_ok(),
        detail: match reached {
            Ok(()) => format!("{} reachable", cache.kind()),
            Err(err) => format!("{} unreachable: {err}", cache.kind()),
        },
    })
}

/// The detailed report: the readiness checks, tasks and steps by state, the backlog, retry
/// statistics, the connection pool and the cache, with a healthy/unhealthy verdict.
///
/// Unhealthy when a readiness check fails, when the pool's utilisation reaches
/// `health.max_pool_utilisation`, or when more claims than `health.max_expired_claims` are
/// past their lease (work held by processes that stopped renewing). The counts are reused
/// for `cache.ttl`; the checks and the pool are read on every request.
#[utoipa::path(
    get, path = "/health/status", tag = "health",
    responses(
        (status = 200, description = "Healthy", body = HealthStatusView),
        (status = 503, description = "Unhealthy; `reasons` says why", body = HealthStatusView),
    )
)]
pub(crate) async fn status(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let view = status_report(&shared).await?;
    let healthy = view.reasons.is_empty();
    Ok((status_code(healthy), Json(view)).into_response())
}

/// The status report: checks, counts (cached for `cache.ttl`), pool, cache and the verdict
/// (REST and GraphQL).
pub(crate) async fn status_report(shared: &Shared) -> Result<HealthStatusView, ApiError> {
    let checks = shared_checks(shared).await;
    let database_up = checks.iter().any(|c| c.name == "database" && c.ok);
    let counts = if database_up {
        let store = shared.engine.store().clone();
        let now = shared.engine.now();
        let (counts, cached) = shared
            .cache
            .get_or_compute(STATUS_KEY, shared.cache_ttl, || async move {
                let health = store.health_counts(now).await?;
                let backlog = store.backlog(now).await?;
                Ok::<_, tasker_persistence::StoreError>(StatusCounts::new(health, backlog, now))
            })
            .await?;
        Some((counts, cached))
    } else {
        None
    };
    let pool = shared.engine.store().pool_status().map(PoolView::from);
    let thresholds = ThresholdsView::from(&shared.health);
    let mut reasons: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if let Some(pool) = &pool
        && pool.utilisation >= thresholds.max_pool_utilisation
    {
        reasons.push(format!(
            "pool: {} of {} connections in use ({:.0}%), at or above the {:.0}% threshold",
            pool.in_use,
            pool.max,
            pool.utilisation * 100.0,
            thresholds.max_pool_utilisation * 100.0
        ));
    }
    if let Some((counts, _)) = &counts
        && counts.backlog.expired_claims > thresholds.max_expired_claims
    {
        reasons.push(format!(
            "claims: {} past their lease, above the threshold of {}",
            counts.backlog.expired_claims, thresholds.max_expired_claims
        ));
    }
    let healthy = reasons.is_empty();
    let counters = shared.cache.counters();
    let view = HealthStatusView {
        status: if healthy { "healthy" } else { "unhealthy" }.into(),
        reasons,
        checks,
        cached: counts.as_ref().is_some_and(|(_, cached)| *cached),
        counts: counts.map(|(counts, _)| counts),
        pool,
        cache: CacheView {
            kind: shared.cache.kind().into(),
            shared: shared.cache.is_shared(),
            hits: counters.hits,
            misses: counters.misses,
            errors: counters.errors,
        },
        thresholds,
        checked_at: Utc::now(),
    };
    Ok(view)
}
