//! axum's extractors with their rejections turned into the error envelope.

use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};

/// A JSON object body; malformed JSON is 400, the wrong content type 415, well-formed JSON of
/// the wrong shape (an array or a scalar included) 422, too large 413.
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<Value>::from_request(request, state).await?;
        object(value).map(Json)
    }
}

/// `value` as a `T`, which the API's bodies all write as a JSON object. serde would also read
/// a struct from an array of its fields, which no client means.
fn object<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body must be a JSON object, got {}", kind(&value)),
        ));
    }
    if let Some(at) = nul_at(&value, String::new()) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "invalid body: text may not contain the NUL character (\\u0000), found at `{at}`"
            ),
        ));
    }
    serde_json::from_value(value)
        .map_err(|err| ApiError::new(ErrorCode::InvalidBody, format!("invalid body: {err}")))
}

/// Where the first string or key holding a NUL character is (`tags[1]`, `context.a`): stored
/// text may not hold one on PostgreSQL, so it is refused at the edge on both databases.
fn nul_at(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let at = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(at)
            } else {
                nul_at(item, at)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_holding_a_nul_is_refused_naming_where() {
        let refused = |value: Value| format!("{:?}", object::<Value>(value).unwrap_err());
        let message = refused(json!({"reason": "ok", "tags": ["a", "b\u{0}c"]}));
        assert!(message.contains("found at `tags[1]`"), "{message}");
        let message = refused(json!({"context": {"deep": {"k\u{0}": 1}}}));
        assert!(message.contains("found at `context.deep.k"), "{message}");
        assert_eq!(
            object::<Value>(json!({"tags": ["\u{dc}", "x"]})).unwrap(),
            json!({"tags": ["\u{dc}", "x"]})
        );
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string; anything unparsable or unknown is 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub(crate) T);

/// Path parameters; an id that is not a UUID is 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub(crate) T);

/// An optional JSON object body: no body or `null` means `T::default()`.
pub(crate) fn optional_json<T: DeserializeOwned + Default>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence == "application/json" || essence.ends_with("+json")
        });
    if !json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Null) => Ok(T::default()),
        Ok(value) => object(value),
        Err(err) => Err(ApiError::bad_request(format!("malformed JSON body: {err}"))),
    }
}
