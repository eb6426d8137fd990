//! The one error envelope, `{"error": {"code", "message", "details", "correlation_id"}}`, and
//! the one place where errors become HTTP statuses.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tasker_engine::EngineError;
use tasker_persistence::StoreError;
use utoipa::ToSchema;

use crate::correlation;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorBody,
}

/// What went wrong, for people and for programs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `not_found` or `invalid_transition`.
    #[schema(example = "invalid_transition")]
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Structured details: JSON paths of invalid context values, template lines, the refused
    /// transition. `null` when there are none.
    pub details: Value,
    /// The request's correlation id (also in the `X-Correlation-ID` response header).
    pub correlation_id: String,
}

/// An API error: a status, a code and a message. Built from the engine's and store's errors
/// by [`From`], so handlers use `?`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid credentials. Why is logged, never sent.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "valid credentials are required",
        )
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422: well-formed but invalid.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503: a dependency (the database) is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The structured details (`null` when there are none).
    pub fn details(&self) -> &Value {
        &self.details
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
                correlation_id: correlation::current(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let message = err.to_string();
        match err {
            EngineError::InvalidTemplate(errors) => {
                let details = errors
                    .errors()
                    .iter()
                    .map(|e| {
                        json!({
                            "file": e.file, "line": e.line, "column": e.column,
                            "step": e.step, "message": e.kind.to_string(),
                        })
                    })
                    .collect();
                Self::unprocessable("invalid_template", message).with_details(Value::Array(details))
            }
            EngineError::UnknownHandler { .. } => Self::unprocessable("unknown_handler", message),
            EngineError::DuplicateTemplate(_) | EngineError::DuplicateHandler(_) => {
                Self::new(StatusCode::CONFLICT, "already_registered", message)
            }
            EngineError::UnknownTemplate { .. } => {
                Self::new(StatusCode::NOT_FOUND, "template_not_found", message)
            }
            EngineError::RefusedByHooks { .. } | EngineError::InvalidCustomEvent { .. } => {
                Self::unprocessable("refused", message)
            }
            EngineError::TaskNotFound(_) | EngineError::StepNotFound(_) => Self::not_found(message),
            EngineError::TooManySteps { steps, limit, .. } => {
                Self::unprocessable("too_many_steps", message)
                    .with_details(json!({"steps": steps, "limit": limit}))
            }
            EngineError::TooLarge {
                size, limit, key, ..
            } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                .with_details(
                    json!({"size": size, "limit": limit, "setting": format!("engine.{key}")}),
                ),
            EngineError::Unstorable { path, .. } => {
                Self::unprocessable("unstorable_value", message).with_details(json!({"path": path}))
            }
            EngineError::InvalidConfig(_) => {
                tracing::error!(error = %message, "engine configuration");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server is misconfigured; the server log has the details",
                )
            }
            EngineError::ActionRefused(refusal) => {
                Self::new(StatusCode::CONFLICT, "invalid_transition", message).with_details(json!({
                    "entity": refusal.entity, "id": refusal.id, "state": refusal.state,
                    "action": refusal.action, "allowed_states": refusal.allowed,
                }))
            }
            EngineError::Store(err) => err.into(),
            EngineError::Relay(_) | EngineError::ShutDown => Self::unavailable(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        let unavailable = err.is_unavailable();
        match err {
            StoreError::Connect { .. } => Self::unavailable(message),
            StoreError::Database(db) => {
                if unavailable {
                    Self::unavailable("the database is unavailable")
                } else {
                    tracing::error!(error = %db, "database statement failed");
                    Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the database refused a statement; the server log has the details",
                    )
                }
            }
            StoreError::TaskNotFound(_)
            | StoreError::StepNotFound(_)
            | StoreError::ApiKeyNotFound(_) => Self::not_found(message),
            StoreError::TemplateNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "template_not_found", message)
            }
            StoreError::InvalidTransition(transition) => {
                let details = serde_json::to_value(transition).unwrap_or(Value::Null);
                Self::new(StatusCode::CONFLICT, "invalid_transition", message).with_details(details)
            }
            StoreError::Conflict {
                entity,
                id,
                expected,
                actual,
            } => Self::new(StatusCode::CONFLICT, "conflict", message).with_details(json!({
                "entity": entity, "id": id, "expected": expected, "actual": actual,
            })),
            StoreError::InvalidContext(errors) => {
                let details = errors
                    .iter()
                    .map(|e| json!({"path": e.path, "message": e.message}))
                    .collect();
                Self::unprocessable("invalid_context", message).with_details(Value::Array(details))
            }
            StoreError::InvalidBypass { step, .. } => {
                Self::unprocessable("invalid_bypass", message).with_details(json!({"step": step}))
            }
            StoreError::NothingToRetry { .. } => {
                Self::new(StatusCode::CONFLICT, "nothing_to_retry", message)
            }
            StoreError::DuplicateTask { .. } => {
                Self::new(StatusCode::CONFLICT, "duplicate_task", message)
            }
            StoreError::Malformed { .. } => {
                tracing::error!(error = %message, "stored data is malformed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "stored data could not be read; the server log has the details",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ),
            JsonRejection::JsonDataError(err) => {
                Self::unprocessable("invalid_body", err.body_text())
            }
            JsonRejection::JsonSyntaxError(err) => Self::bad_request(err.body_text()),
            JsonRejection::BytesRejection(err) => {
                if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Self::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the body is larger than the server accepts",
                    )
                } else {
                    Self::bad_request(err.body_text())
                }
            }
            other => Self::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

/// The error responses of a route that reads: in the OpenAPI document once, listed by each
/// route's `responses(...)`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a document of responses, never built
pub(crate) enum ReadErrors {
    /// Malformed id, query or header.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// No valid credentials.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// The credentials lack the route's permission.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// No such task, step, template or handler.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// The database is unavailable.
    #[response(status = 503)]
    Unavailable(ErrorEnvelope),
}

/// The error responses of a route that changes something.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a document of responses, never built
pub(crate) enum WriteErrors {
    /// Malformed JSON, id or header.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// No valid credentials.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// The credentials lack the route's permission.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// No such task, step or template.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// Refused in this state (`invalid_transition`), a lost race (`conflict`), or version exists.
    #[response(status = 409)]
    Conflict(ErrorEnvelope),
    /// The body is larger than the server accepts.
    #[response(status = 413)]
    TooLarge(ErrorEnvelope),
    /// The body is not JSON (or YAML, for templates).
    #[response(status = 415)]
    UnsupportedMediaType(ErrorEnvelope),
    /// Well-formed but invalid: `details` holds JSON paths or template lines.
    #[response(status = 422)]
    Invalid(ErrorEnvelope),
    /// The database is unavailable.
    #[response(status = 503)]
    Unavailable(ErrorEnvelope),
}
