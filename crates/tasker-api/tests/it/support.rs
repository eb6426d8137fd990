//! A server on a bound port over a test database, and a client for it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasker_api::Api;
use tasker_auth::{
    AccessControl, AuthError, AuthMethod, Authenticator, Authorizer, Grant, OpenAuthenticator,
    PermissionPolicy, Principal,
};
use tasker_domain::TaskId;
use tasker_engine::{Engine, ManualClock, Registry};
use tasker_persistence::TaskRecord;
use tasker_persistence::testing::TestDatabase;
use tasker_template::TaskTemplate;

/// A template with a fan-out, a schema and a skippable step.
pub(crate) const ORDER: &str = r#"
name: order
namespace_name: shop
version: 1.0.0
schema:
  type: object
  required: [order_id]
  properties:
    order_id: { type: integer }
step_templates:
  - name: validate
    handler_class: tasker::noop
  - name: charge
    handler_class: tasker::noop
    depends_on_step: validate
  - name: reserve
    handler_class: tasker::noop
    depends_on_step: validate
  - name: notify
    handler_class: tasker::echo
    depends_on_steps: [charge, reserve]
    skippable: true
"#;

/// A step that always fails permanently, so its task ends in error.
pub(crate) const DOOMED: &str = r#"
name: doomed
namespace_name: shop
version: 1.0.0
step_templates:
  - name: first
    handler_class: tasker::noop
  - name: broken
    handler_class: tasker::fail
    handler_config: { times: 1000, permanent: true }
    depends_on_step: first
"#;

/// Test credentials: `x-test-grants: tasker.task:index,tasker.task:show` is a principal with
/// those grants; no header is no credentials. A stand-in for JWT and API keys, which have their
/// own suites; one test below goes through a real JWT.
pub(crate) struct HeaderGrants;

#[async_trait::async_trait]
impl Authenticator for HeaderGrants {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        _now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let grants = headers
            .get("x-test-grants")
            .ok_or(AuthError::NoCredentials)?
            .to_str()
            .map_err(|_| AuthError::NoCredentials)?;
        let grants = grants
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| g.parse::<Grant>().expect("a test grant"))
            .collect::<Vec<_>>();
        Ok(Principal::new("tester", AuthMethod::Jwt).with_permissions(grants))
    }
}

pub(crate) fn open_access() -> AccessControl {
    AccessControl::new(
        Arc::new(OpenAuthenticator),
        Authorizer::new(PermissionPolicy::new(Default::default(), false)),
    )
}

pub(crate) fn header_access() -> AccessControl {
    AccessControl::new(
        Arc::new(HeaderGrants),
        Authorizer::new(PermissionPolicy::new(Default::default(), false)),
    )
}

/// A running server.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) engine: Engine,
    pub(crate) clock: ManualClock,
    /// The database's URL, for a replica.
    pub(crate) url: String,
    /// Kept so the database outlives the server (a replica borrows its first server's).
    _db: Option<TestDatabase>,
}

pub(crate) async fn serve(db: TestDatabase, access: AccessControl) -> Server {
    serve_with(db, access, tasker_api::ApiSettings::default()).await
}

pub(crate) async fn serve_with(
    db: TestDatabase,
    access: AccessControl,
    settings: tasker_api::ApiSettings,
) -> Server {
    serve_api(db, access, |api| api.settings(settings)).await
}

/// A server whose API `configure` finishes; `/health/status` is also served at the root,
/// without authentication.
pub(crate) async fn serve_api(
    db: TestDatabase,
    access: AccessControl,
    configure: impl FnOnce(Api) -> Api,
) -> Server {
    let store = db.store.clone();
    let url = db.url.clone();
    serve_store(store, url, Some(db), access, configure).await
}

pub(crate) async fn serve_store(
    store: tasker_persistence::Store,
    url: String,
    db: Option<TestDatabase>,
    access: AccessControl,
    configure: impl FnOnce(Api) -> Api,
) -> Server {
    let clock = ManualClock::new(Utc::now());
    let engine = Engine::builder(store)
        .clock(Arc::new(clock.clone()))
        .registry(Arc::new(Registry::with_builtins()))
        .random(|| 0.5)
        .build()
        .unwrap();
    for yaml in [ORDER, DOOMED] {
        engine
            .register_template(TaskTemplate::from_yaml_str(yaml, None).unwrap(), false)
            .await
            .unwrap();
    }
    let api = configure(Api::new(engine.clone(), access));
    let app = axum::Router::new()
        .nest("/v1", api.router())
        .merge(api.status(tasker_api::EndpointAuth::None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        client: reqwest::Client::new(),
        engine,
        clock,
        url,
        _db: db,
    }
}

/// A response: status, headers and JSON body (`Null` when empty or not JSON).
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// The error envelope's code; panics naming the body when it is not an envelope.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error envelope: {} {}", self.status, self.body))
    }
}

impl Server {
    /// Another server on the same database, with its own engine, pool and clock: a replica.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn replica(
        &self,
        access: AccessControl,
        configure: impl FnOnce(Api) -> Api,
    ) -> Server {
        // Leases on the callers' clocks, as on the first server's test database.
        let options = tasker_persistence::ConnectOptions {
            lease_clock: tasker_persistence::LeaseClock::Caller,
            ..Default::default()
        };
        let store = tasker_persistence::Store::connect(&self.url, &options)
            .await
            .expect("a second pool on the test database");
        serve_store(store, self.url.clone(), None, access, configure).await
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, &[]).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    /// Creates an `order` task and returns its id.
    pub(crate) async fn create_order(&self, order_id: i64) -> TaskId {
        let reply = self
            .post(
                "/tasks",
                json!({"namespace": "shop", "name": "order", "context": {"order_id": order_id}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["task_id"].as_str().unwrap().parse().unwrap()
    }

    /// Runs `task` to a final state on the manual clock.
    pub(crate) async fn drive(&self, task: TaskId) -> TaskRecord {
        tasker_engine::testing::drive(&self.engine, &self.clock, task).await
    }
}
