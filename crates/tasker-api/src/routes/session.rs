//! `/session`: the dashboard's sign-in (a token or API key exchanged for a session cookie),
//! who is signed in with which permissions, and sign-out. These routes authenticate their own
//! credentials (the permission table lists them without a permission) and stay out of the
//! OpenAPI document: they serve the browser, whose other calls use the cookie.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tasker_auth::Principal;

use crate::error::ApiError;
use crate::extract::{Json, optional_json};
use crate::session;
use crate::state::Shared;

pub(crate) fn router() -> axum::Router<Arc<Shared>> {
    axum::Router::new().route("/session", get(show_session).post(sign_in).delete(sign_out))
}

/// A sign-in: exactly one of a token (JWT) or an API key. Absent both, the request's own
/// `Authorization` or `X-API-Key` header is used.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
}

/// Who is signed in.
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    subject: String,
    /// How the credentials were checked: `open`, `jwt`, `api_key` or `custom`.
    method: String,
    roles: Vec<String>,
    /// Every permission held, through grants and roles.
    permissions: Vec<String>,
    /// Send it in `X-CSRF-Token` with every change made under the session; absent when the
    /// request was not made under a session.
    csrf_token: Option<String>,
    /// When the session ends.
    expires_at: Option<DateTime<Utc>>,
}

fn view(
    shared: &Shared,
    principal: &Principal,
    session: Option<&session::SessionRecord>,
) -> SessionView {
    let method = match &principal.method {
        tasker_auth::AuthMethod::Open => "open",
        tasker_auth::AuthMethod::Jwt => "jwt",
        tasker_auth::AuthMethod::ApiKey { .. } => "api_key",
        _ => "custom",
    };
    SessionView {
        subject: principal.subject.clone(),
        method: method.to_owned(),
        roles: principal.roles.clone(),
        permissions: session::held_permissions(shared, principal),
        csrf_token: session.map(|s| s.csrf_token.clone()),
        expires_at: session.map(|s| s.expires_at),
    }
}

fn now(shared: &Shared) -> DateTime<Utc> {
    shared.engine.clock_handle().now()
}

async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Principal, ApiError> {
    match shared.access.authenticate(headers, Utc::now()).await {
        Ok(principal) => Ok(principal),
        Err(err) if err.is_unavailable() => Err(ApiError::unavailable(
            "credentials cannot be checked right now",
        )),
        Err(_) => Err(ApiError::unauthorized()),
    }
}

fn sessions_enabled(shared: &Shared) -> Result<(), ApiError> {
    if shared.settings.ui {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "dashboard sessions are off (`api.ui = false`)",
        ))
    }
}

/// `POST /session`: checks the credentials and starts a session (201, the cookie set).
async fn sign_in(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    sessions_enabled(&shared)?;
    // Another site must not sign the browser in (to an account of its choosing).
    if session::is_cross_site(&headers) {
        return Err(ApiError::forbidden(
            "a cross-site request cannot start a dashboard session",
        ));
    }
    let body: SignInBody = optional_json(&headers, &body)?;
    let mut credentials = HeaderMap::new();
    match (body.token, body.api_key) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `token` or `api_key`, not both",
            ));
        }
        (Some(token), None) => {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| ApiError::unauthorized())?;
            credentials.insert(header::AUTHORIZATION, value);
        }
        (None, Some(key)) => {
            let value = HeaderValue::from_str(key.trim()).map_err(|_| ApiError::unauthorized())?;
            credentials.insert(tasker_auth::API_KEY_HEADER, value);
        }
        (None, None) => credentials = headers.clone(),
    }
    let principal = authenticate(&shared, &credentials).await?;
    let now = now(&shared);
    let started = session::create(&shared, &principal, now).await?;
    let cookie = session::set_cookie(&shared, &headers, &started, now);
    let body = view(&shared, &principal, Some(&started.record));
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(no_store(response))
}

/// The session the request's cookie names, when it carries the cookie and no credentials of
/// its own (401 when the session is unknown or over).
async fn cookie_session(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Option<(String, session::SessionRecord)>, ApiError> {
    match session::cookie_id(headers) {
        Some(id) if !session::has_credentials(headers) => {
            let record = session::find(shared, &id, now(shared))
                .await
                .ok_or_else(ApiError::unauthorized)?;
            Ok(Some((id, record)))
        }
        _ => Ok(None),
    }
}

/// Session answers are never cached (they carry the CSRF token).
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /session`: the signed-in principal and its permissions (under a session, with its
/// CSRF token); with a bearer token or an API key, that principal.
async fn show_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    sessions_enabled(&shared)?;
    let (principal, record) = match cookie_session(&shared, &headers).await? {
        Some((_, record)) => (record.principal(), Some(record)),
        None => (authenticate(&shared, &headers).await?, None),
    };
    let body = view(&shared, &principal, record.as_ref());
    Ok(no_store(Json(body).into_response()))
}

/// `DELETE /session`: ends the session (deleted from the cache, the cookie cleared). Under a
/// session it needs the CSRF token like every change.
async fn sign_out(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    sessions_enabled(&shared)?;
    match cookie_session(&shared, &headers).await? {
        Some((id, record)) => {
            session::check_change(&record, &Method::DELETE, &headers)?;
            session::revoke(&shared, &id).await?;
            tracing::info!(
                target: tasker_auth::AUDIT_TARGET,
                subject = %record.subject,
                "dashboard session ended"
            );
        }
        None => {
            authenticate(&shared, &headers).await?;
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie(&shared, &headers));
    Ok(response)
}
