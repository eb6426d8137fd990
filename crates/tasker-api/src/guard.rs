//! The one guard in front of every route: it finds the route's operation in the permission
//! table (`tasker_auth::Operation::TABLE`), authenticates the request and asks the authorizer.
//! A route the table does not know is refused, so a route can never be added unguarded.

use std::sync::Arc;

use axum::extract::{MatchedPath, NestedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tasker_auth::{AuthorizationContext, Operation};

use crate::error::ApiError;
use crate::session;
use crate::state::Shared;

/// The operation a request performs: its matched route, relative to wherever the API is
/// mounted (the matched path without the prefix the router is nested under), looked up in the
/// table.
pub(crate) fn operation_of(request: &Request) -> Option<Operation> {
    let matched = request.extensions().get::<MatchedPath>()?.as_str();
    let relative = request
        .extensions()
        .get::<NestedPath>()
        .and_then(|nested| matched.strip_prefix(nested.as_str()))
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(matched);
    Operation::for_rest(request.method(), relative)
}

/// The middleware.
pub(crate) async fn guard(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(operation) = operation_of(&request) else {
        return ApiError::forbidden("this route is not in the permission table").into_response();
    };
    if operation.permission().is_none() {
        return next.run(request).await;
    }
    let now = chrono::Utc::now();
    let method = request.method().clone();
    let principal = match session_principal(&shared, &method, request.headers()).await {
        Some(Ok(principal)) => principal,
        Some(Err(refused)) => return refused.into_response(),
        None => match shared.access.authenticate(request.headers(), now).await {
            Ok(principal) => principal,
            Err(err) if err.is_unavailable() => {
                return ApiError::unavailable("credentials cannot be checked right now")
                    .into_response();
            }
            Err(_) => return ApiError::unauthorized().into_response(),
        },
    };
    let mut context = AuthorizationContext::new().operation(operation);
    if let Some(id) = resource_id(request.uri().path()) {
        context = context.resource_id(id);
    }
    let decision = shared
        .access
        .authorize(&principal, operation, context)
        .await;
    if !decision.is_allowed() {
        let permission = operation
            .permission()
            .map(|p| p.to_string())
            .unwrap_or_default();
        return ApiError::forbidden(format!("this needs the `{permission}` permission"))
            .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The principal of the dashboard session the request's cookie names, when the request
/// carries the cookie and no credentials of its own: `None` when it does not, an error when
/// the session is unknown or expired (401) or a change lacks the CSRF token or comes from
/// another site (403).
async fn session_principal(
    shared: &Shared,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
) -> Option<Result<tasker_auth::Principal, ApiError>> {
    if !shared.settings.ui || session::has_credentials(headers) {
        return None;
    }
    let id = session::cookie_id(headers)?;
    let now = shared.engine.clock_handle().now();
    let Some(record) = session::find(shared, &id, now).await else {
        return Some(Err(ApiError::unauthorized()));
    };
    Some(session::check_change(&record, method, headers).map(|()| record.principal()))
}

/// The first id-like path segment after `tasks`, `templates`, `handlers` or `api_keys`.
fn resource_id(path: &str) -> Option<String> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    while let Some(segment) = segments.next() {
        if matches!(segment, "tasks" | "templates" | "handlers" | "api_keys") {
            return segments.next().map(str::to_owned);
        }
    }
    None
}
