//! One server, its credentials, and what its answers mean: JSON on success, the error envelope
//! (or a plain description of whatever came instead) on failure.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tasker_api::ErrorEnvelope;
use tasker_auth::Secret;

use crate::settings::ClientSettings;

/// A running server's API.
pub(crate) struct Api {
    http: reqwest::Client,
    /// The server as the user named it, for messages.
    server: String,
    /// `<server>/v1`, without a trailing slash.
    base: Url,
    token: Option<Secret>,
    api_key: Option<Secret>,
    correlation_id: Option<String>,
}

/// A server's answer that is not a success.
#[derive(Debug)]
pub(crate) struct Failure {
    code: String,
    message: String,
    details: Value,
    correlation_id: Option<String>,
    hint: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.details.is_null() {
            write!(f, "\n  details: {}", self.details)?;
        }
        if let Some(id) = &self.correlation_id {
            write!(f, "\n  correlation id: {id}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// The message of `err` with every cause, as `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

impl Api {
    /// The API of `server` (`http://host:port`, with or without `/v1`).
    pub(crate) fn new(
        server: &str,
        settings: &ClientSettings,
        correlation_id: Option<String>,
    ) -> anyhow::Result<Self> {
        let trimmed = server.trim().trim_end_matches('/');
        let mut base = Url::parse(trimmed).map_err(|e| {
            anyhow::anyhow!(
                "server URL `{server}` is not a URL ({e}); expected something like {}",
                crate::settings::DEFAULT_SERVER
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            anyhow::bail!(
                "server URL `{server}` must be http:// or https:// with a host, like {}",
                crate::settings::DEFAULT_SERVER
            );
        }
        if !base.path().ends_with("/v1") {
            let path = format!("{}/v1", base.path().trim_end_matches('/'));
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("tasker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            server: trimmed.to_owned(),
            base,
            token: settings.token.clone(),
            api_key: settings.api_key.clone(),
            correlation_id,
        })
    }

    #[cfg(test)]
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// A request to `path` (under `/v1`) with the credentials and correlation id.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_with_query(method, path, &[])
    }

    /// A request to `path` with query parameters.
    pub(crate) fn request_with_query(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key.expose());
        }
        if let Some(id) = &self.correlation_id {
            request = request.header(tasker_api::CORRELATION_HEADER, id);
        }
        request
    }

    /// Sends `request`; a refused connection names the server, and an answer that is not a
    /// success becomes a [`Failure`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        self.send_accepting(request, &[]).await
    }

    /// [`Api::send`], taking the statuses in `also` as answers too (a 503 that carries a
    /// report, say).
    pub(crate) async fn send_accepting(
        &self,
        request: RequestBuilder,
        also: &[StatusCode],
    ) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|err| {
            if err.is_connect() || err.is_timeout() {
                anyhow::anyhow!(
                    "cannot reach the server at {}: {}",
                    self.server,
                    chain(&err)
                )
            } else {
                anyhow::anyhow!("request to {} failed: {}", self.server, chain(&err))
            }
        })?;
        if response.status().is_success() || also.contains(&response.status()) {
            return Ok(response);
        }
        Err(self.failure(response).await.into())
    }

    async fn failure(&self, response: Response) -> Failure {
        let status = response.status();
        let header_id = response
            .headers()
            .get(tasker_api::CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.unwrap_or_default();
        let hint = match status {
            StatusCode::UNAUTHORIZED => Some(format!(
                "the server at {} requires credentials (401 Unauthorized){}",
                self.server,
                if self.token.is_none() && self.api_key.is_none() {
                    ": none were sent; set TASKER_TOKEN (a JWT) or TASKER_API_KEY, or client.token / client.api_key in tasker.toml"
                } else {
                    ": the token or API key sent was refused (expired, revoked or not signed by a key the server trusts)"
                }
            )),
            StatusCode::FORBIDDEN => Some(format!(
                "the server at {} refused this operation to these credentials (403 Forbidden): they lack the permission",
                self.server
            )),
            _ => None,
        };
        match serde_json::from_slice::<ErrorEnvelope>(&body) {
            Ok(ErrorEnvelope { error }) => Failure {
                code: error.code,
                message: error.message,
                details: error.details,
                correlation_id: Some(error.correlation_id)
                    .filter(|id| !id.is_empty())
                    .or(header_id),
                hint,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                let shown: String = text.chars().take(300).collect();
                Failure {
                    code: format!("http_{}", status.as_u16()),
                    message: if shown.is_empty() {
                        format!("the server at {} answered {status}", self.server)
                    } else {
                        format!(
                            "the server at {} answered {status} with a body that is not a Tasker error: {shown}{}",
                            self.server,
                            if text.chars().count() > 300 {
                                "..."
                            } else {
                                ""
                            }
                        )
                    },
                    details: Value::Null,
                    correlation_id: header_id,
                    hint,
                }
            }
        }
    }

    /// Sends `request` and reads the answer as JSON: the status and the document.
    pub(crate) async fn json(
        &self,
        request: RequestBuilder,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.send(request).await?;
        let status = response.status();
        let url = response.url().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer of {url} failed: {}", chain(&e)))?;
        let value = serde_json::from_slice(&body).map_err(|e| {
            let text = String::from_utf8_lossy(&body);
            let shown: String = text.chars().take(200).collect();
            anyhow::anyhow!("{url} answered {status} with a body that is not JSON ({e}): {shown}")
        })?;
        Ok((status, value))
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.json(self.request(Method::GET, path)).await?.1)
    }

    /// `POST path` with an optional JSON body.
    pub(crate) async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut request = self.request(Method::POST, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(self.json(request).await?.1)
    }
}

/// Reads `value` as `T`; a document of another shape is an error naming what was expected.
pub(crate) fn parse<T: DeserializeOwned>(value: &Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(value.clone())
        .map_err(|e| anyhow::anyhow!("the server's answer is not {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(server: &str) -> anyhow::Result<Api> {
        Api::new(server, &ClientSettings::default(), None)
    }

    #[test]
    fn server_urls_gain_v1_once_and_bad_ones_are_named() {
        assert_eq!(
            api("http://127.0.0.1:8080").unwrap().url("/tasks"),
            "http://127.0.0.1:8080/v1/tasks"
        );
        assert_eq!(
            api("https://tasker.example/v1/").unwrap().url("/tasks"),
            "https://tasker.example/v1/tasks"
        );
        assert_eq!(
            api("http://proxy/tasker").unwrap().url("/tasks/x"),
            "http://proxy/tasker/v1/tasks/x"
        );
        let err = api("localhost:8080").err().unwrap().to_string();
        assert!(err.contains("`localhost:8080`"), "{err}");
        let err = api("not a url").err().unwrap().to_string();
        assert!(
            err.starts_with("server URL `not a url` is not a URL"),
            "{err}"
        );
    }

    #[test]
    fn failures_show_code_message_details_and_correlation_id() {
        let failure = Failure {
            code: "invalid_transition".into(),
            message: "task is complete".into(),
            details: serde_json::json!({"from": "complete"}),
            correlation_id: Some("abc".into()),
            hint: None,
        };
        assert_eq!(
            failure.to_string(),
            "invalid_transition: task is complete\n  details: {\"from\":\"complete\"}\n  correlation id: abc"
        );
    }
}
