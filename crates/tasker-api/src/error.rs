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
    /// A stable machine-readable code, e.g. `not_found` or `invalid_transition`
    /// (docs/reference/api-errors.md lists them).
    // Declared as `ErrorCode` in the document but read as a string, so that a client built
    // before a code was added still reads the error; `ErrorCode` parses it.
    #[schema(value_type = ErrorCode, example = "invalid_transition")]
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Structured details: JSON paths of invalid context values, template lines, the refused
    /// transition. `null` when there are none.
    pub details: Value,
    /// The request's correlation id (also in the `X-Correlation-ID` response header).
    pub correlation_id: String,
}

/// Every `error.code` the API answers with, REST and GraphQL alike (GraphQL puts it in
/// `extensions.code`). Each has the HTTP status it is sent with and a one-line meaning;
/// docs/reference/api-errors.md lists them. On the wire a code is its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: malformed JSON, id, query parameter or header.
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: the credentials lack the permission.
    Forbidden,
    /// 404: no such task, step, handler, API key or route.
    NotFound,
    /// 404: no such template.
    TemplateNotFound,
    /// 405: the route does not take that method.
    MethodNotAllowed,
    /// 408: the request took longer than the configured timeout.
    Timeout,
    /// 409: the task's or step's state refuses the action.
    InvalidTransition,
    /// 409: another writer changed the row between read and write.
    Conflict,
    /// 409: a template or handler of that name is already registered.
    AlreadyRegistered,
    /// 409: a template version exists with different content.
    TemplateVersionExists,
    /// 409: the task in error has no failed step to retry.
    NothingToRetry,
    /// 409: a task with this identity already exists.
    DuplicateTask,
    /// 413: a body, context, result or query over its size limit.
    PayloadTooLarge,
    /// 415: the body's content type is not accepted.
    UnsupportedMediaType,
    /// 422: the body is JSON of the wrong shape or with invalid values.
    InvalidBody,
    /// 422: the template does not parse or validate.
    InvalidTemplate,
    /// 422: a step names a handler class that is not registered.
    UnknownHandler,
    /// 422: task hooks or the custom-event registry refused the request.
    Refused,
    /// 422: the template has more steps than the server accepts.
    TooManySteps,
    /// 422: a value the database cannot store (a NUL character).
    UnstorableValue,
    /// 422: the task's context does not match the template's schema.
    InvalidContext,
    /// 422: a step to bypass is not in the template.
    InvalidBypass,
    /// 400: a GraphQL query nests deeper than `graphql.max_depth`.
    TooDeep,
    /// 400: a GraphQL query is more complex than `graphql.max_complexity`.
    TooComplex,
    /// 400: a GraphQL document has more aliases than `graphql.max_aliases`.
    TooManyAliases,
    /// 500: the server failed; its log has the details.
    Internal,
    /// 503: the database (or the engine) is unavailable.
    Unavailable,
}

impl ErrorCode {
    /// Every code, in the order the reference lists them.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::TemplateNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Timeout,
        ErrorCode::InvalidTransition,
        ErrorCode::Conflict,
        ErrorCode::AlreadyRegistered,
        ErrorCode::TemplateVersionExists,
        ErrorCode::NothingToRetry,
        ErrorCode::DuplicateTask,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidTemplate,
        ErrorCode::UnknownHandler,
        ErrorCode::Refused,
        ErrorCode::TooManySteps,
        ErrorCode::UnstorableValue,
        ErrorCode::InvalidContext,
        ErrorCode::InvalidBypass,
        ErrorCode::TooDeep,
        ErrorCode::TooComplex,
        ErrorCode::TooManyAliases,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    /// The code on the wire: `invalid_transition`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::Conflict => "conflict",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::TemplateVersionExists => "template_version_exists",
            ErrorCode::NothingToRetry => "nothing_to_retry",
            ErrorCode::DuplicateTask => "duplicate_task",
            ErrorCode::TemplateNotFound => "template_not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidTemplate => "invalid_template",
            ErrorCode::UnknownHandler => "unknown_handler",
            ErrorCode::Refused => "refused",
            ErrorCode::TooManySteps => "too_many_steps",
            ErrorCode::UnstorableValue => "unstorable_value",
            ErrorCode::InvalidContext => "invalid_context",
            ErrorCode::InvalidBypass => "invalid_bypass",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::TooComplex => "too_complex",
            ErrorCode::TooManyAliases => "too_many_aliases",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status REST answers with (GraphQL puts it in `extensions.status`).
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::TooDeep
            | ErrorCode::TooComplex
            | ErrorCode::TooManyAliases => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::TemplateNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::InvalidTransition
            | ErrorCode::Conflict
            | ErrorCode::AlreadyRegistered
            | ErrorCode::TemplateVersionExists
            | ErrorCode::NothingToRetry
            | ErrorCode::DuplicateTask => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::InvalidBody
            | ErrorCode::InvalidTemplate
            | ErrorCode::UnknownHandler
            | ErrorCode::Refused
            | ErrorCode::TooManySteps
            | ErrorCode::UnstorableValue
            | ErrorCode::InvalidContext
            | ErrorCode::InvalidBypass => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What it means, in one line.
    pub const fn meaning(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => {
                "The request is malformed: JSON syntax, an id, a query parameter or a header."
            }
            ErrorCode::Unauthorized => {
                "No valid credentials were sent (the response carries `WWW-Authenticate: Bearer`)."
            }
            ErrorCode::Forbidden => "The credentials lack the permission the operation needs.",
            ErrorCode::NotFound => "No such task, step, handler, API key or route.",
            ErrorCode::TemplateNotFound => "No template of that namespace, name and version.",
            ErrorCode::MethodNotAllowed => {
                "The route does not take that method (GraphQL: GET runs queries only)."
            }
            ErrorCode::Timeout => {
                "The request took longer than `api.request_timeout` (GraphQL: `graphql.timeout`)."
            }
            ErrorCode::InvalidTransition => {
                "The task's or step's state refuses the action; `details` names the states it needs."
            }
            ErrorCode::Conflict => {
                "Another writer changed the task or step between the read and the write: read it again."
            }
            ErrorCode::AlreadyRegistered => {
                "A template or handler of that name is already registered in this process."
            }
            ErrorCode::TemplateVersionExists => {
                "That template version is registered with different content; versions are immutable."
            }
            ErrorCode::NothingToRetry => {
                "The task is in error only because steps were cancelled: no failed step to retry."
            }
            ErrorCode::DuplicateTask => "A task with the same identity already exists.",
            ErrorCode::PayloadTooLarge => {
                "A body, context, result or GraphQL query is over its size limit; `details` names the setting."
            }
            ErrorCode::UnsupportedMediaType => {
                "The body's content type is not accepted (JSON; YAML or JSON for templates)."
            }
            ErrorCode::InvalidBody => {
                "The body is well-formed JSON with the wrong shape or an invalid value."
            }
            ErrorCode::InvalidTemplate => {
                "The template does not parse or validate; `details` holds each error's line and column."
            }
            ErrorCode::UnknownHandler => "A step names a handler class that is not registered.",
            ErrorCode::Refused => {
                "Task hooks refused the request, or a custom event is not declared."
            }
            ErrorCode::TooManySteps => {
                "The template has more steps than `engine.max_steps_per_template`."
            }
            ErrorCode::UnstorableValue => {
                "A value the database cannot store (a NUL character); `details.path` says where."
            }
            ErrorCode::InvalidContext => {
                "The context does not match the template's schema; `details` holds a JSON path per error."
            }
            ErrorCode::InvalidBypass => "A step named to bypass is not in the template.",
            ErrorCode::TooDeep => "A GraphQL query nests deeper than `graphql.max_depth`.",
            ErrorCode::TooComplex => {
                "A GraphQL query is more complex than `graphql.max_complexity`."
            }
            ErrorCode::TooManyAliases => {
                "A GraphQL document has more aliased fields than `graphql.max_aliases`."
            }
            ErrorCode::Internal => {
                "The server failed (misconfiguration, unreadable stored data); its log has the details."
            }
            ErrorCode::Unavailable => {
                "The database is unavailable, or the engine is shutting down; try again."
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: a status, a code and a message. Built from the engine's and store's errors
/// by [`From`], so handlers use `?`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    details: Value,
}

impl ApiError {
    /// An error with no details, answered with the code's status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// The same error answered with `status`: only for a framework's or a layer's bare status
    /// put into the envelope, which keeps the status it had.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 401: no valid credentials. Why is logged, never sent.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "valid credentials are required")
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 503: a dependency (the database) is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn error_code(&self) -> ErrorCode {
        self.code
    }

    /// The code as sent: `invalid_transition`.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
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
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.as_str().to_owned(),
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
                Self::new(ErrorCode::InvalidTemplate, message).with_details(Value::Array(details))
            }
            EngineError::UnknownHandler { .. } => Self::new(ErrorCode::UnknownHandler, message),
            EngineError::DuplicateTemplate(_) | EngineError::DuplicateHandler(_) => {
                Self::new(ErrorCode::AlreadyRegistered, message)
            }
            EngineError::UnknownTemplate { .. } => Self::new(ErrorCode::TemplateNotFound, message),
            EngineError::RefusedByHooks { .. } | EngineError::InvalidCustomEvent { .. } => {
                Self::new(ErrorCode::Refused, message)
            }
            EngineError::TaskNotFound(_) | EngineError::StepNotFound(_) => Self::not_found(message),
            EngineError::TooManySteps { steps, limit, .. } => {
                Self::new(ErrorCode::TooManySteps, message)
                    .with_details(json!({"steps": steps, "limit": limit}))
            }
            EngineError::TooLarge {
                size, limit, key, ..
            } => Self::new(ErrorCode::PayloadTooLarge, message).with_details(
                json!({"size": size, "limit": limit, "setting": format!("engine.{key}")}),
            ),
            EngineError::Unstorable { path, .. } => {
                Self::new(ErrorCode::UnstorableValue, message).with_details(json!({"path": path}))
            }
            EngineError::InvalidConfig(_) => {
                tracing::error!(error = %message, "engine configuration");
                Self::new(
                    ErrorCode::Internal,
                    "the server is misconfigured; the server log has the details",
                )
            }
            EngineError::ActionRefused(refusal) => Self::new(ErrorCode::InvalidTransition, message)
                .with_details(json!({
                    "entity": refusal.entity, "id": refusal.id, "state": refusal.state,
                    "action": refusal.action, "allowed_states": refusal.allowed,
                })),
            EngineError::Store(err) => err.into(),
            EngineError::Relay(_) | EngineError::ShutDown => Self::unavailable(message),
            // A variant added to the engine after this mapping: internal until it is mapped.
            _ => {
                tracing::error!(error = %message, "an engine error without an API mapping");
                Self::new(
                    ErrorCode::Internal,
                    "the request failed inside the server; the server log has the details",
                )
            }
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
                        ErrorCode::Internal,
                        "the database refused a statement; the server log has the details",
                    )
                }
            }
            StoreError::TaskNotFound(_)
            | StoreError::StepNotFound(_)
            | StoreError::ApiKeyNotFound(_) => Self::not_found(message),
            StoreError::TemplateNotFound { .. } => Self::new(ErrorCode::TemplateNotFound, message),
            StoreError::InvalidTransition(transition) => {
                let details = serde_json::to_value(transition).unwrap_or(Value::Null);
                Self::new(ErrorCode::InvalidTransition, message).with_details(details)
            }
            StoreError::Conflict {
                entity,
                id,
                expected,
                actual,
            } => Self::new(ErrorCode::Conflict, message).with_details(json!({
                "entity": entity, "id": id, "expected": expected, "actual": actual,
            })),
            StoreError::InvalidContext(errors) => {
                let details = errors
                    .iter()
                    .map(|e| json!({"path": e.path, "message": e.message}))
                    .collect();
                Self::new(ErrorCode::InvalidContext, message).with_details(Value::Array(details))
            }
            StoreError::InvalidBypass { step, .. } => {
                Self::new(ErrorCode::InvalidBypass, message).with_details(json!({"step": step}))
            }
            StoreError::NothingToRetry { .. } => Self::new(ErrorCode::NothingToRetry, message),
            StoreError::DuplicateTask { .. } => Self::new(ErrorCode::DuplicateTask, message),
            StoreError::Malformed { .. } => {
                tracing::error!(error = %message, "stored data is malformed");
                Self::new(
                    ErrorCode::Internal,
                    "stored data could not be read; the server log has the details",
                )
            }
            // A variant added to the store after this mapping: internal until it is mapped.
            _ => {
                tracing::error!(error = %message, "a store error without an API mapping");
                Self::new(
                    ErrorCode::Internal,
                    "the request failed inside the server; the server log has the details",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON (Content-Type: application/json)",
            ),
            JsonRejection::JsonDataError(err) => Self::new(ErrorCode::InvalidBody, err.body_text()),
            JsonRejection::JsonSyntaxError(err) => Self::bad_request(err.body_text()),
            JsonRejection::BytesRejection(err) => {
                if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Self::new(
                        ErrorCode::PayloadTooLarge,
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
