//! `/runtime/switches`: pause and resume a namespace or template, and cap a namespace's running
//! step attempts across every process. Each change is logged with who made it and why; every
//! process honours it within `engine.switch_refresh` (this one at once).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tasker_auth::Principal;
use tasker_persistence::{RuntimeSwitch, SwitchChange, SwitchKind, SwitchTarget};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorCode, ReadErrors, WriteErrors};
use crate::extract::{Json, Path};
use crate::routes::tasks::operator;
use crate::state::Shared;

/// How many changes the listing returns.
const RECENT_CHANGES: u64 = 50;
/// Longest namespace, name, version or reason accepted.
const MAX_TEXT: usize = 1000;

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list_switches))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(limit_namespace))
}

/// A switch in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwitchView {
    /// `pause` or `limit`.
    pub kind: String,
    /// `namespace`, `namespace/name` or `namespace/name@version`.
    pub target: String,
    /// The namespace.
    pub namespace: String,
    /// The template, when the switch is for one.
    pub name: Option<String>,
    /// The template version, when the switch is for one.
    pub version: Option<String>,
    /// A limit's cap on running step attempts (across every process).
    pub max_running: Option<u32>,
    /// Why it was set.
    pub reason: String,
    /// Who set it.
    pub set_by: String,
    /// When.
    pub set_at: DateTime<Utc>,
}

/// One audited change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwitchChangeView {
    /// Increasing id.
    pub change_id: i64,
    /// `pause`, `resume`, `limit` or `unlimit`.
    pub action: String,
    /// `pause` or `limit`.
    pub kind: String,
    /// `namespace`, `namespace/name` or `namespace/name@version`.
    pub target: String,
    /// The cap a `limit` set.
    pub max_running: Option<u32>,
    /// Why.
    pub reason: String,
    /// Who.
    pub changed_by: String,
    /// When.
    pub changed_at: DateTime<Utc>,
}

/// The switches in force and the latest changes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwitchesView {
    /// Every switch in force.
    pub switches: Vec<SwitchView>,
    /// The latest 50 changes, newest first.
    pub recent_changes: Vec<SwitchChangeView>,
}

/// What to pause or resume, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// The namespace.
    #[schema(min_length = 1, max_length = 1000, pattern = "^[^\\u0000]+$")]
    pub namespace: String,
    /// One template of the namespace (every version unless `version` is given); absent: the
    /// whole namespace.
    #[serde(default)]
    pub template: Option<TemplateRef>,
    /// Why (required: it is logged).
    #[schema(min_length = 1, max_length = 1000, pattern = "^[^\\u0000]+$")]
    pub reason: String,
}

/// A template, and optionally one version of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// The template's name.
    #[schema(min_length = 1, max_length = 1000, pattern = "^[^\\u0000]+$")]
    pub name: String,
    /// One version of the template.
    #[serde(default)]
    #[schema(
        pattern = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
    )]
    pub version: Option<String>,
}

/// A namespace's cap on running step attempts, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// Most step attempts of the namespace in progress at once across every process (at least
    /// 1); `null` removes the cap.
    #[schema(minimum = 1, maximum = 2147483647)]
    pub max_running: Option<u32>,
    /// Why (required: it is logged).
    #[schema(min_length = 1, max_length = 1000, pattern = "^[^\\u0000]+$")]
    pub reason: String,
}

fn kind(kind: SwitchKind) -> String {
    match kind {
        SwitchKind::Pause => "pause".into(),
        SwitchKind::Limit => "limit".into(),
    }
}

impl From<RuntimeSwitch> for SwitchView {
    fn from(s: RuntimeSwitch) -> Self {
        Self {
            kind: kind(s.kind),
            target: s.target.key(),
            namespace: s.target.namespace,
            name: s.target.name,
            version: s.target.version,
            max_running: s.max_running,
            reason: s.reason,
            set_by: s.set_by,
            set_at: s.set_at,
        }
    }
}

impl From<SwitchChange> for SwitchChangeView {
    fn from(c: SwitchChange) -> Self {
        Self {
            change_id: c.change_id,
            action: c.action,
            kind: kind(c.kind),
            target: c.target.key(),
            max_running: c.max_running,
            reason: c.reason,
            changed_by: c.changed_by,
            changed_at: c.changed_at,
        }
    }
}

fn text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > MAX_TEXT || value.contains('\0') {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("{field} must be at most {MAX_TEXT} characters with no NUL character"),
        ));
    }
    Ok(())
}

fn target(body: &PauseBody) -> Result<SwitchTarget, ApiError> {
    text("namespace", &body.namespace)?;
    text("reason", &body.reason)?;
    match &body.template {
        None => Ok(SwitchTarget::namespace(body.namespace.clone())),
        Some(TemplateRef { name, version }) => {
            text("name", name)?;
            if let Some(version) = version {
                semver::Version::parse(version).map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidBody,
                        format!("version `{version}` is not a semantic version: {e}"),
                    )
                })?;
            }
            Ok(SwitchTarget::template(
                body.namespace.clone(),
                name.clone(),
                version.clone(),
            ))
        }
    }
}

/// Lists the runtime switches in force and the latest changes.
#[utoipa::path(
    get, path = "/runtime/switches", tag = "runtime",
    responses(
        (status = 200, description = "Switches and recent changes", body = SwitchesView),
        ReadErrors,
    )
)]
pub(crate) async fn list_switches(
    State(shared): State<Arc<Shared>>,
) -> Result<Json<SwitchesView>, ApiError> {
    let switches = shared.engine.runtime_switches().await?;
    let changes = shared.engine.runtime_switch_changes(RECENT_CHANGES).await?;
    Ok(Json(SwitchesView {
        switches: switches.into_iter().map(SwitchView::from).collect(),
        recent_changes: changes.into_iter().map(SwitchChangeView::from).collect(),
    }))
}

/// Pauses a namespace or template: no process claims its ready steps until it is resumed;
/// running attempts finish, and tasks can still be created (they wait).
#[utoipa::path(
    post, path = "/runtime/switches/pause", tag = "runtime",
    request_body = PauseBody,
    responses(
        (status = 200, description = "The change logged", body = SwitchChangeView),
        WriteErrors,
    )
)]
pub(crate) async fn pause(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Json(body): Json<PauseBody>,
) -> Result<Json<SwitchChangeView>, ApiError> {
    let target = target(&body)?;
    let change = shared
        .engine
        .pause(&target, &operator(principal.as_deref(), Some(body.reason)))
        .await?;
    Ok(Json(change.into()))
}

/// Resumes a paused namespace or template (the same target that was paused).
#[utoipa::path(
    post, path = "/runtime/switches/resume", tag = "runtime",
    request_body = PauseBody,
    responses(
        (status = 200, description = "The change logged", body = SwitchChangeView),
        WriteErrors,
    )
)]
pub(crate) async fn resume(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Json(body): Json<PauseBody>,
) -> Result<Json<SwitchChangeView>, ApiError> {
    let target = target(&body)?;
    let change = shared
        .engine
        .resume(&target, &operator(principal.as_deref(), Some(body.reason)))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} is not paused", target.key())))?;
    Ok(Json(change.into()))
}

/// Sets or removes a namespace's cap on step attempts running at once across every process.
#[utoipa::path(
    put, path = "/runtime/switches/limits/{namespace}", tag = "runtime",
    params(("namespace" = String, Path, description = "The namespace", min_length = 1, max_length = 1000, pattern = "^[^\\u0000]+$")),
    request_body = LimitBody,
    responses(
        (status = 200, description = "The change logged", body = SwitchChangeView),
        WriteErrors,
    )
)]
pub(crate) async fn limit_namespace(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path(namespace): Path<String>,
    Json(body): Json<LimitBody>,
) -> Result<Json<SwitchChangeView>, ApiError> {
    text("namespace", &namespace)?;
    text("reason", &body.reason)?;
    if body.max_running == Some(0) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "max_running must be at least 1 (to stop the namespace, pause it)",
        ));
    }
    if body.max_running.is_some_and(|n| n > i32::MAX as u32) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("max_running must be at most {}", i32::MAX),
        ));
    }
    let max_running = body.max_running;
    let change = shared
        .engine
        .limit_namespace(
            &namespace,
            max_running,
            &operator(principal.as_deref(), Some(body.reason)),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("namespace {namespace} has no limit")))?;
    Ok(Json(change.into()))
}
