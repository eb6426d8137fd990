//! `tasker::http`, Tasker's API step handler: one HTTP call described by a step's
//! `handler_config`, its response classified the way the Rails engine classifies it, with a
//! handler's own [`ResponseClassifier`] consulted first and `Retry-After` honoured.
//!
//! `handler_config`: `url` (required), `method` (default `GET`), `headers` (object), `query`
//! (object), `body` (JSON), `timeout` (seconds or `"30s"`, default 30 s), `success_codes` (list,
//! default 200–226). Every call carries `x-correlation-id`, `idempotency-key` and, when traces
//! are exported, the W3C `traceparent` of its `http.client` span, a child of the attempt's
//! (unless `headers` sets one).
//!
//! The process's [`HttpPolicy`] bounds every call: by default only public addresses are reached
//! (loopback, private and link-local ones are refused, after redirects too), at most
//! [`DEFAULT_MAX_RESPONSE_BYTES`] of a body are read, and errors, spans and logs show a URL's
//! scheme, host, port and path, never its credentials or query string.
//!
//! Who depends on it: `tasker-engine` (behind its default `http` feature, which registers the
//! handler as `tasker::http`), and applications that wrap or reconfigure the handler.
//!
//! API boundary: applications depend on this crate directly.
//!
//! Architecture Invariant: depends only on `tasker-domain` and `tasker-handler` among Tasker's
//! crates; this is the one library crate that links an HTTP client, so a handler crate that
//! makes no HTTP calls never compiles reqwest.

mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::codes;
use tasker_domain::{StepError, TimeoutValue, parse_retry_after};
use tasker_handler::{StepContext, StepHandler};
use tracing::Instrument as _;

use policy::{AddressRefused, CheckedResolver, check_literal, redirect_policy};
pub use policy::{
    DEFAULT_MAX_REDIRECTS, DEFAULT_MAX_RESPONSE_BYTES, HttpPolicy, is_public, redact,
};

/// A response as classifiers see it. Header names are lower-case.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// The body: parsed JSON when it is JSON, else a string.
    pub body: Value,
}

impl HttpResponse {
    /// The results a successful call stores.
    pub fn to_results(&self) -> Value {
        json!({"status": self.status, "headers": self.headers, "body": self.body})
    }
}

/// Classifies a response before the default rules: `Some` decides, `None` defers. Lets a handler
/// treat, say, 409 Conflict as idempotent success.
pub trait ResponseClassifier: Send + Sync + 'static {
    /// The handler's own verdict, if it has one.
    fn classify(
        &self,
        step: &StepContext,
        response: &HttpResponse,
    ) -> Option<Result<Value, StepError>>;
}

/// The HTTP step handler.
#[derive(Clone)]
pub struct HttpHandler {
    client: reqwest::Client,
    policy: Arc<HttpPolicy>,
    classifier: Option<Arc<dyn ResponseClassifier>>,
}

impl Default for HttpHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpHandler {
    /// A handler with the default classification and the default [`HttpPolicy`] (public
    /// addresses only).
    pub fn new() -> Self {
        Self::with_policy(HttpPolicy::default())
    }

    /// A handler whose calls follow `policy`.
    pub fn with_policy(policy: HttpPolicy) -> Self {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: Arc::clone(&policy),
            }))
            .redirect(redirect_policy(Arc::clone(&policy)))
            .build()
            // The builder fails only when TLS cannot be initialised, which the default
            // rustls backend never does; fall back to a plain client rather than panic.
            .unwrap_or_default();
        Self {
            client,
            policy,
            classifier: None,
        }
    }

    /// The policy this handler's calls follow.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Runs `classifier` before the default classification.
    pub fn with_classifier(mut self, classifier: Arc<dyn ResponseClassifier>) -> Self {
        self.classifier = Some(classifier);
        self
    }
}

/// The trace-context headers of the current span (the outbound call's) through the global
/// text-map propagator: `traceparent` (and `tracestate` when set) when the span is recorded by
/// OpenTelemetry, nothing when tracing export is off.
fn trace_headers() -> Vec<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    struct Headers(Vec<(String, String)>);
    impl opentelemetry::propagation::Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut headers = Headers(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut headers);
    });
    headers.0
}

fn invalid(message: impl Into<String>) -> StepError {
    StepError::permanent(message, codes::INVALID_CONFIG)
}

fn refused(refusal: &AddressRefused) -> StepError {
    StepError::permanent(refusal.to_string(), codes::HTTP_ADDRESS_REFUSED)
}

/// A transport error as attempts show it: its source chain without the URL (which may hold
/// credentials or a query string), prefixed by the redacted URL.
fn transport_error(err: reqwest::Error, shown_url: &str) -> StepError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = source {
        if let Some(refusal) = current.downcast_ref::<AddressRefused>() {
            return refused(refusal);
        }
        source = current.source();
    }
    let code = if err.is_timeout() {
        codes::TIMEOUT
    } else {
        codes::HTTP_TRANSPORT
    };
    let err = err.without_url();
    let mut message = format!("request to {shown_url} failed: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(current) = source {
        message.push_str(&format!(": {current}"));
        source = current.source();
    }
    StepError::retryable(message).with_code(code)
}

/// Reads at most `limit` bytes of `response`'s body.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, StepError> {
    let too_large = || {
        StepError::permanent(
            format!(
                "the response body is larger than http_handler.max_response_bytes ({limit} bytes)"
            ),
            codes::HTTP_BODY_TOO_LARGE,
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        StepError::retryable(format!("reading the response failed: {}", e.without_url()))
            .with_code(codes::HTTP_TRANSPORT)
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The default classification: success codes succeed; 429 and 503 retry after `Retry-After`;
/// 400, 401, 403, 404 and 422 are permanent; anything else is retried with backoff.
pub fn classify(
    response: &HttpResponse,
    success: &dyn Fn(u16) -> bool,
) -> Result<Value, StepError> {
    let status = response.status;
    if success(status) {
        return Ok(response.to_results());
    }
    let code = format!("{}{status}", codes::HTTP_STATUS_PREFIX);
    let context = json!({"response_status": status, "response_body": response.body});
    let message = format!("HTTP {status}");
    match status {
        429 | 503 => {
            let mut error = StepError::retryable(message)
                .with_code(code)
                .with_context(context);
            if let Some(value) = response.headers.get("retry-after")
                && let Ok(delay) = parse_retry_after(value, chrono::Utc::now())
            {
                error = error.with_retry_after(delay.max(Duration::from_secs(1)));
            }
            Err(error)
        }
        400 | 401 | 403 | 404 | 422 => {
            Err(StepError::permanent(message, code).with_context(context))
        }
        _ => Err(StepError::retryable(message)
            .with_code(code)
            .with_context(context)),
    }
}

#[async_trait::async_trait]
impl StepHandler for HttpHandler {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let config = &step.config;
        let url = config
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("tasker::http needs handler_config.url"))?;
        // The URL is not repeated in the error: it may carry credentials or a query string.
        let mut url = reqwest::Url::parse(url)
            .map_err(|e| invalid(format!("handler_config.url is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "handler_config.url must use http or https, not `{}`",
                url.scheme()
            )));
        }
        check_literal(&self.policy, &url).map_err(|refusal| refused(&refusal))?;
        if let Some(query) = config.get("query").and_then(Value::as_object) {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(
                    key,
                    &value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                );
            }
        }
        let method = config
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
            invalid(format!(
                "handler_config.method `{method}` is not an HTTP method"
            ))
        })?;
        let timeout = match config.get("timeout") {
            None => Duration::from_secs(30),
            Some(value) => serde_json::from_value::<TimeoutValue>(value.clone())
                .ok()
                .and_then(|t| t.to_duration().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "handler_config.timeout `{value}` is not a positive duration"
                    ))
                })?,
        };
        let success_codes: Option<Vec<u16>> = match config.get("success_codes") {
            None => None,
            Some(value) => Some(serde_json::from_value(value.clone()).map_err(|_| {
                invalid("handler_config.success_codes must be a list of status codes")
            })?),
        };
        let method_name = method.to_string();
        let shown_url = redact(&url);
        let url_host = url.host_str().unwrap_or_default().to_owned();
        let url_path = url.path().to_owned();
        let mut request = self
            .client
            .request(method, url)
            .timeout(timeout)
            .header("x-correlation-id", &step.correlation_id)
            .header("idempotency-key", &step.idempotency_key);
        if let Some(headers) = config.get("headers").and_then(Value::as_object) {
            for (name, value) in headers {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                let header =
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        invalid(format!(
                            "handler_config.headers: `{name}` is not a header name"
                        ))
                    })?;
                // The value is never shown: it is often a credential.
                let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    invalid(format!(
                        "handler_config.headers: the value of `{name}` is not a valid header value"
                    ))
                })?;
                request = request.header(header, value);
            }
        }
        // The call is a client span of its own, a child of the attempt's: host and path only,
        // never the query string or credentials.
        let span = tracing::info_span!(
            "http.client",
            otel.kind = "client",
            http.request.method = %method_name,
            server.address = url_host.as_str(),
            url.path = url_path.as_str(),
            http.response.status_code = tracing::field::Empty,
        );
        // The W3C trace context of that span, unless the template sets the header.
        let configured = |name: &str| {
            config
                .get("headers")
                .and_then(Value::as_object)
                .is_some_and(|headers| headers.keys().any(|k| k.eq_ignore_ascii_case(name)))
        };
        for (name, value) in span.in_scope(trace_headers) {
            if !configured(&name) {
                request = request.header(name, value);
            }
        }
        if let Some(body) = config.get("body") {
            request = request.json(body);
        }
        let sent = tokio::select! {
            sent = request.send().instrument(span.clone()) => sent,
            () = step.cancellation.cancelled() => return Err(StepError::retryable("cancelled").with_code(codes::CANCELLED)),
        };
        if let Ok(response) = &sent {
            span.record("http.response.status_code", response.status().as_u16());
        }
        let response = sent.map_err(|e| transport_error(e, &shown_url))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))
            })
            .collect();
        let bytes = read_body(response, self.policy.max_response_bytes)
            .instrument(span)
            .await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let response = HttpResponse {
            status,
            headers,
            body,
        };
        if let Some(verdict) = self
            .classifier
            .as_ref()
            .and_then(|c| c.classify(&step, &response))
        {
            return verdict;
        }
        let success = |s: u16| {
            success_codes
                .as_ref()
                .map_or((200..=226).contains(&s), |codes| codes.contains(&s))
        };
        classify(&response, &success)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Tracing's per-callsite interest is process-wide: a test that makes a call with no
    /// subscriber while another has its own can leave the `http.client` callsite disabled for
    /// both. The tests of this module take turns.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn context(config: Value, attempt: u32) -> StepContext {
        let (mut context, _) = StepContext::standalone(config);
        context.attempt = attempt;
        context.idempotency_key = "k".into();
        context
    }

    /// Serves one canned response on a loopback port and returns the URL and the request text.
    async fn serve_once(
        status: u16,
        headers: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let n = socket.read(&mut request).await.unwrap();
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (url, handle)
    }

    /// A handler that may reach the loopback servers of these tests.
    fn local() -> HttpHandler {
        HttpHandler::with_policy(HttpPolicy::allowing_private_networks())
    }

    async fn call(
        status: u16,
        headers: &'static str,
        body: &'static str,
        extra: Value,
    ) -> (Result<Value, StepError>, String) {
        let (url, server) = serve_once(status, headers, body).await;
        let mut config = json!({"url": url});
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        let result = local().handle(context(config, 1)).await;
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn success_returns_status_headers_and_parsed_body() {
        let _serial = SERIAL.lock().await;
        let (result, request) = call(
            201,
            "content-type: application/json\r\n",
            r#"{"id":1}"#,
            json!({"method": "post", "body": {"a": 1}, "headers": {"x-team": "qa"}}),
        )
        .await;
        let results = result.unwrap();
        assert_eq!(
            (results["status"].clone(), results["body"].clone()),
            (json!(201), json!({"id": 1}))
        );
        assert!(request.starts_with("POST /api HTTP/1.1"), "{request}");
        assert!(
            request.contains("x-team: qa") && request.contains("idempotency-key: k"),
            "{request}"
        );
        assert!(request.ends_with(r#"{"a":1}"#), "{request}");
    }

    #[tokio::test]
    async fn responses_are_classified_like_the_rails_engine() {
        let _serial = SERIAL.lock().await;
        let (result, _) = call(429, "retry-after: 7\r\n", "slow down", json!({})).await;
        let err = result.unwrap_err();
        assert_eq!(
            (
                err.is_permanent(),
                err.retry_after,
                err.error_code.as_deref()
            ),
            (false, Some(Duration::from_secs(7)), Some("HTTP_429"))
        );
        let (result, _) = call(
            503,
            "retry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
            "",
            json!({}),
        )
        .await;
        assert_eq!(
            result.unwrap_err().retry_after,
            Some(Duration::from_secs(1)),
            "a past date retries after the minimum"
        );
        for status in [400, 401, 403, 404, 422] {
            let (result, _) = call(status, "", "no", json!({})).await;
            let err = result.unwrap_err();
            assert!(err.is_permanent(), "{status}");
            assert_eq!(err.error_code, Some(format!("HTTP_{status}")));
        }
        for status in [500, 502, 402, 409] {
            let (result, _) = call(status, "", "", json!({})).await;
            let err = result.unwrap_err();
            assert_eq!(
                (err.is_permanent(), err.retry_after),
                (false, None),
                "{status}"
            );
        }
        let (result, _) = call(409, "", "", json!({"success_codes": [200, 409]})).await;
        assert_eq!(result.unwrap()["status"], 409);
    }

    struct ConflictIsSuccess;

    impl ResponseClassifier for ConflictIsSuccess {
        fn classify(
            &self,
            _: &StepContext,
            response: &HttpResponse,
        ) -> Option<Result<Value, StepError>> {
            (response.status == 409).then(|| Ok(json!({"already_exists": true})))
        }
    }

    #[tokio::test]
    async fn a_handler_classifies_before_the_defaults() {
        let _serial = SERIAL.lock().await;
        let (url, server) = serve_once(409, "", "exists").await;
        let handler = local().with_classifier(Arc::new(ConflictIsSuccess));
        let result = handler.handle(context(json!({"url": url}), 1)).await;
        server.await.unwrap();
        assert_eq!(result.unwrap(), json!({"already_exists": true}));
    }

    #[tokio::test]
    async fn bad_config_and_transport_errors() {
        let _serial = SERIAL.lock().await;
        let err = HttpHandler::new()
            .handle(context(json!({}), 1))
            .await
            .unwrap_err();
        assert_eq!(
            (err.is_permanent(), err.message.as_str()),
            (true, "tasker::http needs handler_config.url")
        );
        let err = HttpHandler::new()
            .handle(context(json!({"url": "not a url"}), 1))
            .await
            .unwrap_err();
        assert!(err.message.contains("is not a URL"), "{err}");
        let err = HttpHandler::new()
            .handle(context(json!({"url": "http://x", "timeout": "soon"}), 1))
            .await
            .unwrap_err();
        assert!(err.message.contains("timeout"), "{err}");
        // A port nobody listens on: a retryable transport failure.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = local()
            .handle(context(json!({"url": url}), 1))
            .await
            .unwrap_err();
        assert_eq!(
            (err.is_permanent(), err.error_code.as_deref()),
            (false, Some(codes::HTTP_TRANSPORT))
        );
    }

    #[tokio::test]
    async fn the_call_is_a_client_span_under_the_attempt_and_sends_its_traceparent() {
        let _serial = SERIAL.lock().await;
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        use tracing::Instrument as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _guard = tracing::subscriber::set_default(subscriber);
        // Callsite interest is cached process-wide: a callsite another test
        // thread registered while this subscriber was being set may be cached
        // as unwanted. Recompute it.
        tracing::callsite::rebuild_interest_cache();

        let (url, server) = serve_once(200, "", "").await;
        let url = format!("{url}?token=secret");
        let span = tracing::info_span!("step_attempt");
        let result = local()
            .handle(context(json!({"url": url}), 1))
            .instrument(span.clone())
            .await;
        assert!(result.is_ok(), "{result:?}");
        drop(span);
        let request = server.await.unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let attempt = spans.iter().find(|s| s.name == "step_attempt").unwrap();
        let client = spans.iter().find(|s| s.name == "http.client").unwrap();
        assert_eq!(client.parent_span_id, attempt.span_context.span_id());
        assert_eq!(
            client.span_context.trace_id(),
            attempt.span_context.trace_id()
        );
        assert_eq!(client.span_kind, opentelemetry::trace::SpanKind::Client);
        let attribute = |key: &str| {
            client
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attribute("http.request.method").as_deref(), Some("GET"));
        assert_eq!(attribute("url.path").as_deref(), Some("/api"));
        assert_eq!(
            attribute("http.response.status_code").as_deref(),
            Some("200")
        );
        assert!(
            !client
                .attributes
                .iter()
                .any(|kv| kv.value.to_string().contains('?')),
            "no query string in {:?}",
            client.attributes
        );
        let expected = format!(
            "traceparent: 00-{}-{}-01",
            client.span_context.trace_id(),
            client.span_context.span_id()
        );
        assert!(
            request.to_ascii_lowercase().contains(&expected),
            "{expected} not in {request}"
        );
    }

    #[tokio::test]
    async fn the_default_policy_refuses_loopback_by_literal_and_by_name() {
        let _serial = SERIAL.lock().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://127.0.0.1:{port}/x"),
            format!("http://localhost:{port}/x"),
            format!("http://[::1]:{port}/x"),
        ] {
            let err = HttpHandler::new()
                .handle(context(json!({"url": url}), 1))
                .await
                .unwrap_err();
            assert_eq!(
                (err.is_permanent(), err.error_code.as_deref()),
                (true, Some(codes::HTTP_ADDRESS_REFUSED)),
                "{url}: {err}"
            );
            assert!(err.message.contains("allow_private_networks"), "{err}");
        }
        // Nothing connected: the refusal came before any connection.
        let accepted = tokio::time::timeout(Duration::ZERO, listener.accept()).await;
        assert!(accepted.is_err(), "no connection reached the listener");
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_refused() {
        let _serial = SERIAL.lock().await;
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_url = format!("http://{}/inside", target.local_addr().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let redirect = format!("location: {target_url}\r\n");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let _ = socket.read(&mut request).await.unwrap();
            let reply = format!(
                "HTTP/1.1 302 Found\r\ncontent-length: 0\r\nconnection: close\r\n{redirect}\r\n"
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
        });
        // `localhost` is exempt, the literal it redirects to is not.
        let handler = HttpHandler::with_policy(HttpPolicy {
            allowed_hosts: vec!["localhost".into()],
            ..HttpPolicy::default()
        });
        let err = handler
            .handle(context(
                json!({"url": format!("http://localhost:{port}/out")}),
                1,
            ))
            .await
            .unwrap_err();
        server.await.unwrap();
        assert_eq!(
            (err.is_permanent(), err.error_code.as_deref()),
            (true, Some(codes::HTTP_ADDRESS_REFUSED)),
            "{err}"
        );
        let accepted = tokio::time::timeout(Duration::ZERO, target.accept()).await;
        assert!(accepted.is_err(), "the redirect target was never called");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_fails_permanently() {
        let _serial = SERIAL.lock().await;
        let (url, server) = serve_once(200, "", "0123456789abcdef").await;
        let handler = HttpHandler::with_policy(HttpPolicy {
            max_response_bytes: 10,
            ..HttpPolicy::allowing_private_networks()
        });
        let err = handler
            .handle(context(json!({"url": url}), 1))
            .await
            .unwrap_err();
        server.await.unwrap();
        assert_eq!(
            (err.is_permanent(), err.error_code.as_deref()),
            (true, Some(codes::HTTP_BODY_TOO_LARGE)),
            "{err}"
        );
        let (url, server) = serve_once(200, "", "0123456789").await;
        let handler = HttpHandler::with_policy(HttpPolicy {
            max_response_bytes: 10,
            ..HttpPolicy::allowing_private_networks()
        });
        let results = handler.handle(context(json!({"url": url}), 1)).await;
        server.await.unwrap();
        assert_eq!(
            results.unwrap()["body"],
            json!("0123456789"),
            "exactly the cap is read"
        );
    }

    #[tokio::test]
    async fn errors_never_show_credentials_query_strings_or_header_values() {
        let _serial = SERIAL.lock().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://user:hunter2@127.0.0.1:{port}/path?token=s3cret");
        let err = local()
            .handle(context(json!({"url": url}), 1))
            .await
            .unwrap_err();
        assert_eq!(err.error_code.as_deref(), Some(codes::HTTP_TRANSPORT));
        assert!(
            err.message
                .starts_with(&format!("request to http://127.0.0.1:{port}/path failed: ")),
            "{err}"
        );
        assert!(
            !err.message.contains("hunter2") && !err.message.contains("s3cret"),
            "{err}"
        );
        let err = local()
            .handle(context(json!({"url": "not a url?token=s3cret"}), 1))
            .await
            .unwrap_err();
        assert!(!err.message.contains("s3cret"), "{err}");
        let err = local()
            .handle(context(
                json!({"url": url, "headers": {"authorization": "Bearer s3cret\n"}}),
                1,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (err.error_code.as_deref(), err.message.as_str()),
            (
                Some(codes::INVALID_CONFIG),
                "handler_config.headers: the value of `authorization` is not a valid header value"
            )
        );
        let err = local()
            .handle(context(json!({"url": "file:///etc/passwd"}), 1))
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "handler_config.url must use http or https, not `file`"
        );
    }

    #[tokio::test]
    async fn sends_no_traceparent_when_traces_are_not_recorded() {
        let _serial = SERIAL.lock().await;
        let (_, request) = call(200, "", "", json!({})).await;
        assert!(
            !request.to_ascii_lowercase().contains("traceparent"),
            "{request}"
        );
    }
}
