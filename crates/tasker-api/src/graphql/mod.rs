//! GraphQL beside REST: the same operations, permissions and error codes, at `/graphql` (POST
//! for every operation, GET for queries) and `/graphql/ws` (subscriptions and every other
//! operation over WebSocket, with the graphql-transport-ws and graphql-ws protocols).
//!
//! Every request passes one gate before it runs ([`Gate::admit`]): its size, alias and batch
//! limits, then each root field of the operation it selects is looked up in
//! `tasker_auth::Operation::TABLE` and authorized for the caller, exactly as the REST guard
//! does for a route. Depth and complexity limits are the schema's own; the time limit wraps
//! the execution.

mod gate;
mod loaders;
mod mutation;
mod query;
mod subscription;
mod types;

use std::sync::Arc;
use std::time::Duration;
use tasker_domain::ConfigError;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{BatchRequest, BatchResponse, Data, Executor, Schema};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tasker_auth::{Principal, Profile};

use crate::error::{ApiError, ErrorCode};
use crate::state::Shared;

pub(crate) use gate::Gate;

/// The schema: queries, mutations and subscriptions.
pub(crate) type TaskerSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// The `[graphql]` section of `tasker.toml`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlSettings {
    /// Serve GraphQL at `/graphql` and `/graphql/ws` under the API's prefix.
    pub enabled: bool,
    /// Serve the GraphiQL page to browsers at `GET /graphql`; when absent, on in development
    /// and test, off in production. The page loads GraphiQL from a public CDN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphiql: Option<bool>,
    /// Answer introspection (`__schema`, `__type`); when absent, on in development and test,
    /// off in production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection: Option<bool>,
    /// Deepest selection nesting allowed.
    pub max_depth: usize,
    /// Highest complexity allowed (each field counts one; a list of tasks or events counts
    /// its requested size times its selection).
    pub max_complexity: usize,
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    /// Most aliased fields in one document.
    pub max_aliases: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
    /// Seconds a query or mutation may run before it is answered with a `timeout` error
    /// (subscriptions are not timed).
    #[cfg_attr(feature = "schema", schemars(extend("x-unit" = "seconds")))]
    pub timeout: f64,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            graphiql: None,
            introspection: None,
            max_depth: 12,
            max_complexity: 2_000,
            max_query_bytes: 32 * 1024,
            max_aliases: 30,
            max_batch: 10,
            timeout: 30.0,
        }
    }
}

impl GraphqlSettings {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timeout()?;
        for (key, value, least) in [
            ("max_depth", self.max_depth, 2),
            ("max_complexity", self.max_complexity, 10),
            ("max_query_bytes", self.max_query_bytes, 64),
            ("max_batch", self.max_batch, 1),
        ] {
            if value < least {
                return Err(ConfigError::new(
                    format!("graphql.{key}"),
                    format!("graphql.{key} must be at least {least}, got {value}"),
                ));
            }
        }
        Ok(())
    }

    /// The time limit; errors name the key.
    pub fn timeout(&self) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                ConfigError::new(
                    "graphql.timeout",
                    format!(
                        "graphql.timeout must be between 0 and 3600 seconds, got {}",
                        self.timeout
                    ),
                )
            })
    }

    /// The settings with the profile's defaults filled in.
    pub fn for_profile(mut self, profile: Profile) -> Self {
        let open = profile != Profile::Production;
        self.graphiql.get_or_insert(open);
        self.introspection.get_or_insert(open);
        self
    }
}

/// What the GraphQL handlers share.
pub(crate) struct Graphql {
    pub(crate) schema: TaskerSchema,
    pub(crate) gate: Gate,
    pub(crate) graphiql: bool,
    pub(crate) shared: Arc<Shared>,
}

/// Builds the schema with the settings' limits.
pub(crate) fn schema(shared: Option<Arc<Shared>>, settings: &GraphqlSettings) -> TaskerSchema {
    let mut builder = Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .limit_depth(settings.max_depth)
    .limit_complexity(settings.max_complexity)
    .limit_recursive_depth(settings.max_depth.max(32));
    if let Some(shared) = shared {
        builder = builder.data(shared);
    }
    builder.finish()
}

/// The schema in SDL, as committed under `docs/`.
pub fn sdl() -> String {
    schema(None, &GraphqlSettings::default()).sdl()
}

/// Checks a GraphQL document against the schema without running it: `Ok` when it parses and
/// validates, else every error's message.
pub async fn validate_document(document: &str) -> Result<(), Vec<String>> {
    const VALID: &str = "the document is valid";
    let schema = Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .extension(gate::StopAfterValidation(VALID))
    .finish();
    let response = schema.execute(async_graphql::Request::new(document)).await;
    let errors: Vec<String> = response
        .errors
        .into_iter()
        .map(|e| e.message)
        .filter(|m| m != VALID)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The routes, relative to the API's mount point.
pub(crate) fn router(shared: Arc<Shared>, settings: &GraphqlSettings) -> Router {
    let settings = settings.clone();
    let graphql = Arc::new(Graphql {
        schema: schema(Some(shared.clone()), &settings),
        gate: Gate::new(shared.clone(), &settings),
        graphiql: settings.graphiql.unwrap_or(false),
        shared,
    });
    Router::new()
        .route("/graphql", axum::routing::post(post).get(get))
        .route("/graphql/ws", axum::routing::get(websocket))
        .with_state(graphql)
}

/// Authenticates an HTTP request the way the REST guard does.
async fn principal(graphql: &Graphql, headers: &HeaderMap) -> Result<Principal, ApiError> {
    match graphql
        .shared
        .access
        .authenticate(headers, chrono::Utc::now())
        .await
    {
        Ok(principal) => Ok(principal),
        Err(err) if err.is_unavailable() => Err(ApiError::unavailable(
            "credentials cannot be checked right now",
        )),
        Err(_) => Err(ApiError::unauthorized()),
    }
}

fn json(response: &impl Serialize) -> Response {
    let body = serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `POST /graphql`: one operation, or a batch of them, as JSON.
async fn post(
    State(graphql): State<Arc<Graphql>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json")
        && !content_type.starts_with("application/graphql-response+json")
    {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the GraphQL request as application/json",
        ));
    }
    let principal = principal(&graphql, &headers).await?;
    let batch: BatchRequest = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(format!(
            "the body is not a GraphQL request (`query`, `operationName`, `variables`): {err}"
        ))
    })?;
    let correlation = crate::correlation::current();
    Ok(match batch {
        BatchRequest::Single(request) => json(
            &graphql
                .gate
                .run(&graphql.schema, principal, correlation, request, false)
                .await,
        ),
        BatchRequest::Batch(requests) => {
            if requests.len() > graphql.gate.max_batch() {
                return Err(ApiError::bad_request(format!(
                    "a batch holds at most {} operations (graphql.max_batch), got {}",
                    graphql.gate.max_batch(),
                    requests.len()
                )));
            }
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(
                    graphql
                        .gate
                        .run(
                            &graphql.schema,
                            principal.clone(),
                            correlation.clone(),
                            request,
                            false,
                        )
                        .await,
                );
            }
            json(&BatchResponse::Batch(responses))
        }
    })
}

/// `GET /graphql`: a query in the query string, or the GraphiQL page for a browser.
async fn get(
    State(graphql): State<Arc<Graphql>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if query.as_deref().unwrap_or("").is_empty() {
        if wants_html && graphql.graphiql {
            return Ok(Html(graphiql_page()).into_response());
        }
        return Err(ApiError::bad_request(
            "GET /graphql takes a `query` parameter (and optionally `operationName` and `variables`)",
        ));
    }
    let principal = principal(&graphql, &headers).await?;
    let request = async_graphql::http::parse_query_string(query.as_deref().unwrap_or(""))
        .map_err(|err| ApiError::bad_request(format!("the query string: {err}")))?;
    let correlation = crate::correlation::current();
    Ok(json(
        &graphql
            .gate
            .run(&graphql.schema, principal, correlation, request, true)
            .await,
    ))
}

/// The GraphiQL page, pointed at this endpoint and its WebSocket.
fn graphiql_page() -> String {
    r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tasker GraphQL</title>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3.8.3/graphiql.min.css">
  <style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script crossorigin src="https://unpkg.com/react@18.3.1/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3.8.3/graphiql.min.js"></script>
  <script>
    const url = new URL('graphql', window.location.href.replace(/graphql\/?$/, ''));
    const ws = url.href.replace(/^http/, 'ws') + '/ws';
    const fetcher = GraphiQL.createFetcher({ url: url.href, subscriptionUrl: ws });
    ReactDOM.createRoot(document.getElementById('graphiql'))
      .render(React.createElement(GraphiQL, { fetcher, shouldPersistHeaders: false }));
  </script>
</body>
</html>
"#
    .to_owned()
}

/// One WebSocket connection's executor: the gate, with the principal the connection's init
/// message authenticated.
#[derive(Clone)]
struct Connection {
    graphql: Arc<Graphql>,
    principal: Arc<std::sync::OnceLock<Principal>>,
}

impl Executor for Connection {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        match self.principal.get() {
            Some(principal) => {
                self.graphql
                    .gate
                    .run(
                        &self.graphql.schema,
                        principal.clone(),
                        String::new(),
                        request,
                        false,
                    )
                    .await
            }
            None => gate::refusal(ErrorCode::Unauthorized, "valid credentials are required"),
        }
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        match self.principal.get() {
            Some(principal) => self.graphql.gate.stream(
                self.graphql.schema.clone(),
                principal.clone(),
                request,
                session_data,
            ),
            None => Box::pin(futures::stream::once(async {
                gate::refusal(ErrorCode::Unauthorized, "valid credentials are required")
            })),
        }
    }
}

/// The credentials of a connection-init payload as the headers an HTTP request would carry:
/// each string entry is a header (`{"Authorization": "Bearer …"}`, `{"X-API-Key": "…"}`), and
/// `{"token": "…"}` and `{"apiKey": "…"}` are short for those two.
fn init_headers(payload: &serde_json::Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(entries) = payload.as_object() else {
        return headers;
    };
    for (key, value) in entries {
        let Some(value) = value.as_str() else {
            continue;
        };
        let (name, value) = match key.as_str() {
            "token" => ("authorization".to_owned(), format!("Bearer {value}")),
            "apiKey" => ("x-api-key".to_owned(), value.to_owned()),
            other => (other.to_ascii_lowercase(), value.to_owned()),
        };
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// `GET /graphql/ws`: the WebSocket upgrade. The connection-init payload carries the token.
async fn websocket(
    State(graphql): State<Arc<Graphql>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let slot = Arc::new(std::sync::OnceLock::new());
            let access = graphql.shared.access.clone();
            let executor = Connection {
                graphql,
                principal: slot.clone(),
            };
            GraphQLWebSocket::new(socket, executor, protocol)
                .on_connection_init(move |payload| async move {
                    let headers = init_headers(&payload);
                    match access.authenticate(&headers, chrono::Utc::now()).await {
                        Ok(principal) => {
                            slot.set(principal).ok();
                            Ok(Data::default())
                        }
                        Err(err) if err.is_unavailable() => Err(async_graphql::Error::new(
                            "credentials cannot be checked right now",
                        )),
                        Err(_) => Err(async_graphql::Error::new(
                            "valid credentials are required in the connection_init payload",
                        )),
                    }
                })
                .serve()
                .await;
        })
}
