//! `/health/live` and `/health/ready`: never authenticated, for probes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::Json;
use crate::state::Shared;
use crate::views::{HealthCheck, HealthView};

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

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
    let store = shared.engine.store();
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
    if shared.expects_coordinator {
        let alive = shared.engine.is_coordinating();
        checks.push(HealthCheck {
            name: "coordinator".into(),
            ok: alive,
            detail: if alive { "running" } else { "stopped" }.into(),
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let view = HealthView {
        status: if ok { "ok" } else { "unavailable" }.into(),
        checks,
    };
    (status, Json(view)).into_response()
}
