//! `X-Correlation-ID`: read from the request (at most 100 characters of `[A-Za-z0-9_-]`) or
//! generated, echoed on the response, put on the request's span, stored on tasks the request
//! creates, and written into every error body. The same middleware opens the request's span,
//! whose OpenTelemetry parent is the caller's W3C `traceparent` when one is sent.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;

/// The header's name.
pub const HEADER: &str = "x-correlation-id";

/// The longest correlation id accepted.
pub(crate) const MAX_LEN: usize = 100;

tokio::task_local! {
    static CURRENT: String;
}

/// The correlation id of the request being handled (empty outside one).
pub(crate) fn current() -> String {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// A request's correlation id, in its extensions for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

/// Whether `id` is an acceptable correlation id.
pub(crate) fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn generate() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The middleware.
pub(crate) async fn correlate(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(HEADER).map(|value| {
        value
            .to_str()
            .ok()
            .filter(|id| is_valid(id))
            .map(str::to_owned)
    });
    let (id, refused) = match given {
        None => (generate(), false),
        Some(Some(id)) => (id, false),
        Some(None) => (generate(), true),
    };
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        path = %request.uri().path(),
        correlation_id = %id,
        otel.kind = "server",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    // A caller's W3C trace context makes this request (and the tasks it creates) part of the
    // caller's trace; an unparsable header is ignored.
    tasker_engine::trace_context::set_parent_from(&span, |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    });
    tasker_engine::trace_context::record_ids(&span);
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let mut response = CURRENT
        .scope(
            id.clone(),
            async move {
                if refused {
                    ApiError::bad_request(format!(
                        "the {HEADER} header must be 1 to {MAX_LEN} characters of A-Z, a-z, 0-9, _ and -"
                    ))
                    .into_response()
                } else {
                    next.run(request).await
                }
            }
            .instrument(span),
        )
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_and_length_only() {
        assert!(is_valid("order-17_A"));
        assert!(is_valid(&"a".repeat(MAX_LEN)));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        assert!(!is_valid(""));
        assert!(!is_valid("has space"));
        assert!(!is_valid("semi;colon"));
        assert!(!is_valid("ünïcode"));
        assert!(is_valid(&generate()));
    }
}
