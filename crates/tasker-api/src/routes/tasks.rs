//! `/tasks`: create, list, show, update, cancel, retry, resolve, history.

use std::str::FromStr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_auth::Principal;
use tasker_domain::{TaskId, TaskRequest, TaskState};
use tasker_engine::{CreateOptions, Operator};
use tasker_persistence::{StoreError, TaskFilter, TaskRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::correlation::CorrelationId;
use crate::error::{ApiError, ErrorCode, ReadErrors, WriteErrors};
use crate::extract::{Json, Path, Query, optional_json};
use crate::state::Shared;
use crate::views::{
    ActionBody, CreateTaskBody, CreateTaskHeaders, GraphView, HistoryView, ListTasksQuery,
    ShowTaskQuery, TaskPage, TaskView, TransitionView, UpdateTaskBody, step_views,
};

/// The header that makes creation idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(show_task, update_task, replace_task, delete_task))
        .routes(routes!(cancel_task))
        .routes(routes!(retry_task))
        .routes(routes!(resolve_task))
        .routes(routes!(task_history))
        .routes(routes!(task_diagram))
}

pub(crate) fn operator(principal: Option<&Principal>, note: Option<String>) -> Operator {
    Operator::new(
        principal.map_or_else(|| "anonymous".to_owned(), |p| p.subject.clone()),
        note,
    )
}

/// Creates a task.
#[utoipa::path(
    post, path = "/tasks", tag = "tasks",
    request_body = CreateTaskBody,
    params(
        CreateTaskHeaders,
    ),
    responses(
        (status = 201, description = "Created", body = TaskView, links(
            ("show_task" = (operation_id = "show_task", parameters(("task_id" = "$response.body#/task_id")))),
            ("list_steps" = (operation_id = "list_steps", parameters(("task_id" = "$response.body#/task_id")))),
            ("task_history" = (operation_id = "task_history", parameters(("task_id" = "$response.body#/task_id")))),
            ("task_diagram" = (operation_id = "task_diagram", parameters(("task_id" = "$response.body#/task_id")))),
            ("update_task" = (operation_id = "update_task", parameters(("task_id" = "$response.body#/task_id")))),
            ("cancel_task" = (operation_id = "cancel_task", parameters(("task_id" = "$response.body#/task_id")))),
            ("retry_task" = (operation_id = "retry_task", parameters(("task_id" = "$response.body#/task_id")))),
            ("resolve_task" = (operation_id = "resolve_task", parameters(("task_id" = "$response.body#/task_id"))))
        )),
        (status = 200, description = "An existing task with the same idempotency key", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn create_task(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    correlation: Option<Extension<CorrelationId>>,
    headers: HeaderMap,
    Json(body): Json<CreateTaskBody>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                    )
                })?;
            Some(key.to_owned())
        }
    };
    let (status, task) = create(
        &shared,
        principal.as_deref(),
        correlation.map(|c| c.0.0),
        idempotency_key,
        body,
    )
    .await?;
    Ok((status, Json(TaskView::from(task))).into_response())
}

/// Creates a task (REST and GraphQL): 201 with the new task, or 200 with the task an earlier
/// request with the same idempotency key created.
pub(crate) async fn create(
    shared: &Shared,
    principal: Option<&Principal>,
    correlation_id: Option<String>,
    idempotency_key: Option<String>,
    body: CreateTaskBody,
) -> Result<(StatusCode, TaskRecord), ApiError> {
    let mut request = TaskRequest::new(body.name);
    if let Some(namespace) = body.namespace {
        request = request.namespace(namespace);
    }
    if let Some(version) = body.version {
        let version = semver::Version::parse(&version).map_err(|err| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("version `{version}`: {err}"),
            )
        })?;
        request = request.version(version);
    }
    if let Some(context) = body.context {
        request = request.context(context);
    }
    request.initiator = body.initiator.unwrap_or_else(|| {
        principal
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |p| p.subject.clone())
    });
    if let Some(source) = body.source_system {
        request.source_system = source;
    }
    if let Some(reason) = body.reason {
        request.reason = reason;
    }
    request.tags = body.tags;
    request.bypass_steps = body.bypass_steps;
    let options = CreateOptions {
        correlation_id,
        idempotency_key,
    };
    // The new task is answered as created, not read back: one query fewer per request.
    match shared.engine.create_task_record(request, &options).await {
        Ok(task) => Ok((StatusCode::CREATED, task)),
        Err(tasker_engine::EngineError::Store(StoreError::DuplicateTask { identity_hash })) => {
            let task = shared
                .engine
                .store()
                .task_by_identity(&identity_hash)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::DuplicateTask,
                        "a task with this identity exists but could not be read back",
                    )
                })?;
            Ok((StatusCode::OK, task))
        }
        Err(err) => Err(err.into()),
    }
}

/// A cursor names the last task of a page: its creation time in microseconds and its id
/// (`1764500000000000_0123…`). Clients treat it as opaque; [`schemas::CURSOR_PATTERN`]
/// describes it so that every string of that shape decodes.
pub(crate) fn encode_cursor(at: DateTime<Utc>, id: TaskId) -> String {
    format!("{}_{}", at.timestamp_micros(), id.as_uuid().simple())
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, TaskId), ApiError> {
    let invalid = || ApiError::bad_request("`cursor` is not a cursor this server issued");
    let (micros, id) = cursor.split_once('_').ok_or_else(invalid)?;
    let digits = micros.strip_prefix('-').unwrap_or(micros);
    let well_formed = (1..=16).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && id.len() == 32
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(invalid());
    }
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = Uuid::try_parse(id).map_err(|_| invalid())?;
    Ok((at, TaskId::from(id)))
}

fn parse_state(state: &str) -> Result<TaskState, ApiError> {
    TaskState::from_str(state).map_err(|_| {
        let states: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::bad_request(format!(
            "`state` must be one of {}, got `{state}`",
            states.join(", ")
        ))
    })
}

fn parse_annotation(filter: &str) -> Result<(String, String, Value), ApiError> {
    let invalid = || {
        ApiError::bad_request(format!(
            "`annotation` must look like `type:key=value`, got `{filter}`"
        ))
    };
    let (kind, rest) = filter.split_once(':').ok_or_else(invalid)?;
    let (key, value) = rest.split_once('=').ok_or_else(invalid)?;
    if kind.is_empty() || key.is_empty() {
        return Err(invalid());
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((kind.to_owned(), key.to_owned(), value))
}

/// Lists tasks, newest first by default, one page at a time. Pages are cut by a keyset cursor,
/// so tasks created while a client pages never repeat or shift a row.
#[utoipa::path(
    get, path = "/tasks", tag = "tasks",
    params(ListTasksQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        ReadErrors,
    )
)]
pub(crate) async fn list_tasks(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListTasksQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let (filter, limit) = filter_of(&shared, query)?;
    let page = shared.engine.store().list_tasks(&filter).await?;
    let next_cursor = if page.items.len() as u64 == limit {
        page.items
            .last()
            .map(|task| encode_cursor(task.created_at, task.task_id))
    } else {
        None
    };
    Ok(Json(TaskPage {
        items: page.items.into_iter().map(TaskView::from).collect(),
        total: page.total,
        limit,
        next_cursor,
    }))
}

/// The store's filter for a listing and the page size it uses (REST and GraphQL).
pub(crate) fn filter_of(
    shared: &Shared,
    query: ListTasksQuery,
) -> Result<(TaskFilter, u64), ApiError> {
    let oldest_first = match query.sort.as_deref() {
        None | Some("-created_at") => false,
        Some("created_at") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`sort` must be `created_at` or `-created_at`, got `{other}`"
            )));
        }
    };
    let limit = query
        .limit
        .map_or(25, u64::from)
        .clamp(1, shared.settings.max_page_size);
    let filter = TaskFilter {
        namespace: query.namespace,
        name: query.name,
        version: query.version,
        state: query.state.as_deref().map(parse_state).transpose()?,
        correlation_id: query
            .correlation_id
            .map(|id| {
                if crate::correlation::is_valid(&id) {
                    Ok(id)
                } else {
                    Err(ApiError::bad_request(
                        "`correlation_id` must be 1 to 100 characters of [A-Za-z0-9_-]",
                    ))
                }
            })
            .transpose()?,
        annotation: query
            .annotation
            .as_deref()
            .map(parse_annotation)
            .transpose()?,
        created_after: query.created_after,
        created_before: query.created_before,
        completed_after: query.completed_after,
        completed_before: query.completed_before,
        oldest_first,
        after: query.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: Some(limit),
        offset: None,
    };
    Ok((filter, limit))
}

/// Shows a task, with its steps, readiness analysis and graph on request.
#[utoipa::path(
    get, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task"), ShowTaskQuery),
    responses(
        (status = 200, description = "The task", body = TaskView),
        ReadErrors,
    )
)]
pub(crate) async fn show_task(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
    Query(query): Query<ShowTaskQuery>,
) -> Result<Json<TaskView>, ApiError> {
    let (mut steps, mut analysis, mut graph) = (false, false, false);
    for part in query
        .include
        .as_deref()
        .into_iter()
        .flat_map(|s| s.split(','))
    {
        match part {
            "steps" => steps = true,
            "analysis" => analysis = true,
            "graph" => graph = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "`include` takes steps, analysis and graph, got `{other}`"
                )));
            }
        }
    }
    let store = shared.engine.store();
    let task_id = TaskId(task_id);
    let task = store.task(task_id).await?;
    let template = if steps || graph {
        Some(store.find_template_by_id(task.named_task_id).await?)
    } else {
        None
    };
    let dependency_graph = template.as_ref().map(|t| t.template.graph());
    let mut view = TaskView::from(task);
    if steps {
        view.steps = Some(step_views(
            store.steps(task_id).await?,
            dependency_graph.as_ref(),
        ));
    }
    if analysis {
        let now = Utc::now();
        let context = store.task_execution_context(task_id, now).await?;
        let readiness = store.step_readiness(task_id, now).await?;
        view.analysis = Some(serde_json::json!({
            "execution_context": context,
            "step_readiness": readiness,
        }));
    }
    if graph {
        view.graph = dependency_graph.as_ref().map(GraphView::from);
    }
    Ok(Json(view))
}

pub(crate) async fn update(
    shared: &Shared,
    task_id: Uuid,
    body: UpdateTaskBody,
) -> Result<Json<TaskView>, ApiError> {
    if let Some(tags) = &body.tags
        && tags.len() > 100
    {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "a task has at most 100 tags",
        ));
    }
    let task = shared
        .engine
        .store()
        .update_task(
            TaskId(task_id),
            body.reason.as_deref(),
            body.tags.as_deref(),
            Utc::now(),
        )
        .await?;
    Ok(Json(TaskView::from(task)))
}

/// Changes a task's reason and tags.
#[utoipa::path(
    patch, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    request_body = UpdateTaskBody,
    responses(
        (status = 200, description = "The task as changed", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn update_task(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
    Json(body): Json<UpdateTaskBody>,
) -> Result<Json<TaskView>, ApiError> {
    update(&shared, task_id, body).await
}

/// Changes a task's reason and tags (the same as `PATCH`).
#[utoipa::path(
    put, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    request_body = UpdateTaskBody,
    responses(
        (status = 200, description = "The task as changed", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn replace_task(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
    Json(body): Json<UpdateTaskBody>,
) -> Result<Json<TaskView>, ApiError> {
    update(&shared, task_id, body).await
}

async fn cancel(
    shared: &Shared,
    principal: Option<&Principal>,
    task_id: Uuid,
    body: ActionBody,
) -> Result<Json<TaskView>, ApiError> {
    let task_id = TaskId(task_id);
    shared
        .engine
        .cancel_task_as(task_id, &operator(principal, body.reason))
        .await?;
    Ok(Json(TaskView::from(
        shared.engine.store().task(task_id).await?,
    )))
}

/// Cancels a task (the same as `POST /tasks/{task_id}/cancel`).
#[utoipa::path(
    delete, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The cancelled task", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn delete_task(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path(task_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let body = optional_json(&headers, &body)?;
    cancel(&shared, principal.as_deref(), task_id, body).await
}

/// Cancels a task and its unfinished steps; running handlers see their cancellation token.
#[utoipa::path(
    post, path = "/tasks/{task_id}/cancel", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The cancelled task", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn cancel_task(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path(task_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let body = optional_json(&headers, &body)?;
    cancel(&shared, principal.as_deref(), task_id, body).await
}

/// Sends a task that ended in error back to work, resetting its exhausted steps.
#[utoipa::path(
    post, path = "/tasks/{task_id}/retry", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The task, pending again", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn retry_task(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path(task_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let body: ActionBody = optional_json(&headers, &body)?;
    let task_id = TaskId(task_id);
    shared
        .engine
        .retry_task_as(task_id, &operator(principal.as_deref(), body.reason))
        .await?;
    Ok(Json(TaskView::from(
        shared.engine.store().task(task_id).await?,
    )))
}

/// Resolves a task in error by hand: it ends `resolved_manually` as it stands.
#[utoipa::path(
    post, path = "/tasks/{task_id}/resolve", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    request_body(content = Option<ActionBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The resolved task", body = TaskView),
        WriteErrors,
    )
)]
pub(crate) async fn resolve_task(
    State(shared): State<Arc<Shared>>,
    principal: Option<Extension<Principal>>,
    Path(task_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let body: ActionBody = optional_json(&headers, &body)?;
    let task_id = TaskId(task_id);
    shared
        .engine
        .resolve_task_as(task_id, &operator(principal.as_deref(), body.reason))
        .await?;
    Ok(Json(TaskView::from(
        shared.engine.store().task(task_id).await?,
    )))
}

/// Reads a task's whole history: its transitions and its steps', oldest first.
pub(crate) async fn history(shared: &Shared, task_id: TaskId) -> Result<HistoryView, ApiError> {
    let store = shared.engine.store();
    let mut transitions: Vec<TransitionView> = store
        .task_transitions(task_id)
        .await?
        .into_iter()
        .map(|t| TransitionView::of(t, None))
        .collect();
    let names: std::collections::HashMap<_, _> = store
        .steps(task_id)
        .await?
        .into_iter()
        .map(|step| (step.step_id, step.name))
        .collect();
    for (step_id, transition) in store.step_transitions_of_task(task_id).await? {
        let name = names.get(&step_id).map_or("", String::as_str);
        transitions.push(TransitionView::of(
            transition,
            Some((step_id.as_uuid(), name)),
        ));
    }
    transitions.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(a.step_id.is_some().cmp(&b.step_id.is_some()))
            .then(a.sort_key.cmp(&b.sort_key))
    });
    Ok(HistoryView {
        task_id: task_id.as_uuid(),
        transitions,
    })
}

/// A task's history: its transitions and its steps', each with who acted and why.
#[utoipa::path(
    get, path = "/tasks/{task_id}/transitions", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    responses(
        (status = 200, description = "The history", body = HistoryView),
        ReadErrors,
    )
)]
pub(crate) async fn task_history(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
) -> Result<Json<HistoryView>, ApiError> {
    Ok(Json(history(&shared, TaskId(task_id)).await?))
}

/// A task's dependency graph, as JSON, Mermaid and DOT.
#[utoipa::path(
    get, path = "/tasks/{task_id}/diagram", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task")),
    responses(
        (status = 200, description = "The graph", body = GraphView),
        ReadErrors,
    )
)]
pub(crate) async fn task_diagram(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
) -> Result<Json<GraphView>, ApiError> {
    let store = shared.engine.store();
    let task = store.task(TaskId(task_id)).await?;
    let template = store.find_template_by_id(task.named_task_id).await?;
    Ok(Json(GraphView::from(&template.template.graph())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas;

    #[test]
    fn annotation_filters_parse_json_values_or_strings() {
        assert_eq!(
            parse_annotation("audit:priority=3").unwrap(),
            ("audit".into(), "priority".into(), serde_json::json!(3))
        );
        assert_eq!(
            parse_annotation("audit:owner=ops").unwrap().2,
            serde_json::json!("ops")
        );
        let pattern = regex::Regex::new(schemas::ANNOTATION_PATTERN).unwrap();
        for good in ["audit:priority=3", "a=x:b:c=d", "t:k="] {
            assert!(parse_annotation(good).is_ok(), "{good}");
            assert!(pattern.is_match(good), "{good}");
        }
        for bad in ["audit", "audit:owner", ":k=v", "t:=v"] {
            assert!(parse_annotation(bad).is_err(), "{bad}");
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_match_the_documented_pattern() {
        let pattern = regex::Regex::new(schemas::CURSOR_PATTERN).unwrap();
        let id = TaskId::from(Uuid::new_v4());
        for at in [
            DateTime::from_timestamp_micros(1_764_500_000_123_456).unwrap(),
            DateTime::from_timestamp_micros(-5).unwrap(),
        ] {
            let cursor = encode_cursor(at, id);
            assert!(pattern.is_match(&cursor), "{cursor}");
            assert_eq!(decode_cursor(&cursor).unwrap(), (at, id));
        }
        // The widest strings the pattern allows still decode.
        for edge in [
            "9999999999999999_ffffffffffffffffffffffffffffffff",
            "-9999999999999999_00000000000000000000000000000000",
        ] {
            assert!(pattern.is_match(edge));
            assert!(decode_cursor(edge).is_ok(), "{edge}");
        }
        let id = "0123456789abcdef0123456789abcdef";
        for bad in [
            String::new(),
            "zzz".into(),
            "12_".into(),
            format!("_{id}"),
            format!("+12_{id}"),
            format!("12_{}", id.to_uppercase()),
            format!("12345678901234567_{id}"),
            format!("12_{}", Uuid::nil().hyphenated()),
        ] {
            assert!(!pattern.is_match(&bad), "{bad}");
            assert!(decode_cursor(&bad).is_err(), "{bad}");
        }
    }
}
