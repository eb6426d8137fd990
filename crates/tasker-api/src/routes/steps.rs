//! `/tasks/{task_id}/workflow_steps`: list, show, update, cancel, resolve, retry.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use serde_json::Value;
use tasker_auth::Principal;
use tasker_domain::{StepId, StepState, TaskId};
use tasker_engine::{ActionRefusal, EngineError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::tasks::operator;
use crate::error::{ApiError, ErrorCode, ReadErrors, WriteErrors};
use crate::extract::{Json, Path, optional_json};
use crate::state::Shared;
use crate::views::{ActionBody, ResolveStepBody, StepView, UpdateStepBody, step_views};

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list_steps))
        .routes(routes!(show_step, update_step, replace_step, delete_step))
        .routes(routes!(cancel_step))
        .routes(routes!(resolve_step))
        .routes(routes!(retry_step))
}

/// The step views of a task.
async fn views(shared: &Shared, task_id: TaskId) -> Result<Vec<StepView>, ApiError> {
    let store = shared.engine.store();
    let task = store.task(task_id).await?;
    let template = store.find_template_by_id(task.named_task_id).await?;
    let graph = template.template.graph();
    Ok(step_views(store.steps(task_id).await?, Some(&graph)))
}

/// One step of a task; 404 when the step is not the task's.
async fn view(shared: &Shared, task_id: Uuid, step_id: Uuid) -> Result<StepView, ApiError> {
    views(shared, TaskId(task_id))
        .await?
        .into_iter()
        .find(|s| s.step_id == step_id)
        .ok_or_else(|| ApiError::not_found(format!("task {task_id} has no step {step_id}")))
}

/// The step, checked to belong to the task.
pub(crate) async fn owned_step(
    shared: &Shared,
    task_id: Uuid,
    step_id: Uuid,
) -> Result<StepId, ApiError> {
    let step = shared.engine.store().step(StepId(step_id)).await?;
    if step.task_id.as_uuid() != task_id {
        return Err(ApiError::not_found(format!(
            "task {task_id} has no step {step_id}"
        )));
    }
    Ok(step.step_id)
}

/// Lists a task's steps in template order.
#[utoipa::path(
    get, path = "/tasks/{task_id}/workflow_steps", tag = "steps",
    params(("task_id" = Uuid, Path, description = "The task")),
    responses(
        (status = 200, description = "The steps", body = Vec<StepView>, links(
            ("show_step" = (operation_id = "show_step", parameters(("task_id" = "$request.path.task_id"), ("step_id" = "$response.body#/0/step_id")))),
            ("update_step" = (operation_id = "update_step", parameters(("task_id" = "$request.path.task_id"), ("step_id" = "$response.body#/0/step_id")))),
            ("cancel_step" = (operation_id = "cancel_step", parameters(("task_id" = "$request.path.task_id"), ("step_id" = "$response.body#/0/step_id")))),
            ("resolve_step" = (operation_id = "resolve_step", parameters(("task_id" = "$request.path.task_id"), ("step_id" = "$response.body#/0/step_id")))),
            ("retry_step" = (operation_id = "retry_step", parameters(("task_id" = "$request.path.task_id"), ("step_id" = "$response.body#/0/step_id"))))
        )),
        ReadErrors,
    )
)]
pub(crate) async fn list_steps(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
) -> Result<Json<Vec<StepView>>, ApiError> {
    Ok(Json(views(&shared, TaskId(task_id)).await?))
}

/// Shows one step: its parents and children, attempts, last error and results.
#[utoipa::path(
    get, path = "/tasks/{task_id}/workflow_steps/{step_id}", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    responses(
        (status = 200, description = "The step", body = StepView),
        ReadErrors,
    )
)]
pub(crate) async fn show_step(
    State(shared): State<Arc<Shared>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<StepView>, ApiError> {
    Ok(Json(view(&shared, task_id, step_id).await?))
}

pub(crate) async fn update(
    shared: &Shared,
    task_id: Uuid,
    step_id: Uuid,
    body: UpdateStepBody,
) -> Result<Json<StepView>, ApiError> {
    if !(1..=100).contains(&body.retry_limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("retry_limit must be 1 to 100, got {}", body.retry_limit),
        ));
    }
    let step = owned_step(shared, task_id, step_id).await?;
    // Only a pending step's limit changes (no attempt has been judged against it yet). Refused
    // here for the state it is in; a state changed meanwhile is the store's `conflict`.
    let current = shared.engine.store().step(step).await?;
    if current.state != StepState::Pending {
        return Err(EngineError::ActionRefused(Box::new(ActionRefusal {
            entity: "step",
            id: step.to_string(),
            name: Some(current.name),
            state: current.state.as_str(),
            action: "update",
            allowed: vec![StepState::Pending.as_str()],
            rule: "only a step that is pending can have its retry_limit changed".into(),
        }))
        .into());
    }
    shared
        .engine
        .store()
        .update_step_retry_limit(step, body.retry_limit, Utc::now())
        .await?;
    Ok(Json(view(shared, task_id, step_id).await?))
}

/// Changes a pending step's attempt limit.
#[utoipa::path(
    patch, path = "/tasks/{task_id}/workflow_steps/{step_id}", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    request_body = UpdateStepBody,
    responses(
        (status = 200, description = "The step as changed", body = StepView),
        WriteErrors,
    )
)]
pub(crate) async fn update_step(
    State(shared): State<Arc<Shared>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<UpdateStepBody>,
) -> Result<Json<StepView>, ApiError> {
    update(&shared, task_id, step_id, body).await
}

/// Changes a pending step's attempt limit (the same as `PATCH`).
#[utoipa::path(
    put, path = "/tasks/{task_id}/workflow_steps/{step_id}", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    request_body = UpdateStepBody,
    responses(
        (status = 200, description = "The step as changed", body = StepView),
        WriteErrors,
    )
)]
pub(crate) async fn replace_step(
    State(shared): State<Arc<Shared>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<UpdateStepBody>,
) -> Result<Json<StepView>, ApiError> {
    update(&shared, task_id, step_id, body).await
}

async fn cancel(
    shared: &Shared,
    principal: Option<&Principal>,
    task_id: Uuid,
    step_id: Uuid,
    body: ActionBody,
) -> Result<Json<StepView>, ApiError> {
    let step = owned_step(shared, task_id, step_id).await?;
    shared
        .engine
        .cancel_step_as(step, &operator(principal, body.reason))
        .await?;
    Ok(Json(view(shared, task_id, step_id).await?))
}

/// Cancels a step (the same as `POST .../cancel`).
#[utoipa::path(
    delete, path = "/tasks/{task_id}/workflow_steps/{step_id}", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The cancelled step", body = StepView),
        WriteErrors,
    )
)]
pub(crate) async fn delete_step(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<StepView>, ApiError> {
    let body = optional_json(&headers, &body)?;
    cancel(&shared, principal.as_deref(), task_id, step_id, body).await
}

/// Cancels a step: its dependants will not run, and the task ends in error once nothing else
/// can progress.
#[utoipa::path(
    post, path = "/tasks/{task_id}/workflow_steps/{step_id}/cancel", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The cancelled step", body = StepView),
        WriteErrors,
    )
)]
pub(crate) async fn cancel_step(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<StepView>, ApiError> {
    let body = optional_json(&headers, &body)?;
    cancel(&shared, principal.as_deref(), task_id, step_id, body).await
}

/// Resolves a step by hand with results; it counts as done for its dependants, and a task in
/// error is reopened.
#[utoipa::path(
    post, path = "/tasks/{task_id}/workflow_steps/{step_id}/resolve", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    request_body(content = Option<ResolveStepBody>, description = "Results and why"),
    responses(
        (status = 200, description = "The resolved step", body = StepView),
        WriteErrors,
    )
)]
pub(crate) async fn resolve_step(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<StepView>, ApiError> {
    let body: ResolveStepBody = optional_json(&headers, &body)?;
    let step = owned_step(&shared, task_id, step_id).await?;
    shared
        .engine
        .resolve_step_as(
            step,
            body.results.unwrap_or(Value::Object(Default::default())),
            &operator(principal.as_deref(), body.reason),
        )
        .await?;
    Ok(Json(view(&shared, task_id, step_id).await?))
}

/// Gives a step in error one more attempt, reopening its task if it ended in error.
#[utoipa::path(
    post, path = "/tasks/{task_id}/workflow_steps/{step_id}/retry", tag = "steps",
    params(
        ("task_id" = Uuid, Path, description = "The task"),
        ("step_id" = Uuid, Path, description = "The step"),
    ),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The step, pending again", body = StepView),
        WriteErrors,
    )
)]
pub(crate) async fn retry_step(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path((task_id, step_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<StepView>, ApiError> {
    let body: ActionBody = optional_json(&headers, &body)?;
    let step = owned_step(&shared, task_id, step_id).await?;
    shared
        .engine
        .retry_step_as(step, &operator(principal.as_deref(), body.reason))
        .await?;
    Ok(Json(view(&shared, task_id, step_id).await?))
}
