//! Templates and handlers: registration (versions immutable), validation with lines, listing,
//! showing with the graph; and the API mounted by a custom server beside its own route.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tasker_persistence::testing::{TestDatabase, on_each_database};

use crate::support::{Server, open_access, serve};

const SHIPPING: &str = "name: ship\nnamespace_name: logistics\nversion: 2.0.0\nstep_templates:\n  - name: label\n    handler_class: tasker::noop\n  - name: pickup\n    handler_class: tasker::noop\n    depends_on_step: label\n";

async fn send(server: &Server, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let response = server
        .client
        .post(format!("{}{path}", server.base))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn templates_register_once_per_version_and_validate_with_lines() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        let (status, body) = send(&server, "/templates", "application/yaml", SHIPPING).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["graph"]["edges"], serde_json::json!([["label", "pickup"]]));
        let (status, _) = send(&server, "/templates", "application/yaml", SHIPPING).await;
        assert_eq!(status, StatusCode::OK, "the same content again is not an error");
        let changed = SHIPPING.replace("tasker::noop\n  - name: pickup", "tasker::echo\n  - name: pickup");
        let (status, body) = send(&server, "/templates", "application/yaml", &changed).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "template_version_exists");

        let unknown = SHIPPING.replace("version: 2.0.0", "version: 2.1.0").replace("tasker::noop\n  - name: pickup", "acme::Label\n  - name: pickup");
        let (status, body) = send(&server, "/templates", "application/yaml", &unknown).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_handler")));

        let broken = "name: bad\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n    retry_limt: 3\n";
        let (status, body) = send(&server, "/templates/validate", "application/yaml", broken).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["valid"], false);
        assert_eq!(body["errors"][0]["line"], 5, "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("retry_limt"));
        let (status, body) = send(&server, "/templates", "application/yaml", broken).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_template")));
        assert_eq!(body["error"]["details"][0]["line"], 5);
        let (status, body) = send(&server, "/templates/validate", "application/json", &serde_json::to_string(&serde_json::json!({
            "name": "j", "step_templates": [{"name": "a", "handler_class": "acme::Nope"}]
        })).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((body["valid"].clone(), body["unknown_handlers"].clone()), (Value::Bool(false), serde_json::json!(["acme::Nope"])));
        let (status, _) = send(&server, "/templates", "image/png", SHIPPING).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let listed = server.get("/templates").await;
        let names: Vec<String> = listed.body.as_array().unwrap().iter().map(|t| format!("{}/{}@{}", t["namespace"].as_str().unwrap(), t["name"].as_str().unwrap(), t["version"].as_str().unwrap())).collect();
        assert_eq!(names, ["logistics/ship@2.0.0", "shop/doomed@1.0.0", "shop/order@1.0.0"]);
        let shown = server.get("/templates/shop/order").await;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(shown.body["versions"], serde_json::json!(["1.0.0"]));
        assert!(shown.body["graph"]["dot"].as_str().unwrap().contains("digraph"));
        assert_eq!(server.get("/templates/shop/none").await.status, StatusCode::NOT_FOUND);
        assert_eq!(server.get("/templates/shop/order?version=9.9.9").await.status, StatusCode::NOT_FOUND);
        assert_eq!(server.get("/templates/shop/order?version=bad").await.status, StatusCode::BAD_REQUEST);

        // A template registered over HTTP runs.
        let created = server.post("/tasks", serde_json::json!({"namespace": "logistics", "name": "ship"})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

        let handlers = server.get("/handlers").await;
        let namespaces: Vec<&str> = handlers.body.as_array().unwrap().iter().map(|n| n["namespace"].as_str().unwrap()).collect();
        assert_eq!(namespaces, ["logistics", "shop"]);
        let one = server.get("/handlers/shop/order").await;
        assert_eq!(one.body["step_handlers"], serde_json::json!(["tasker::echo", "tasker::noop"]));
        assert_eq!(server.get("/handlers/shop").await.body["handlers"].as_array().unwrap().len(), 2);
        assert_eq!(server.get("/handlers/nowhere").await.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn a_custom_server_mounts_the_api_under_a_prefix_beside_its_own_route() {
    let db = TestDatabase::sqlite().await;
    let engine = tasker_engine::Engine::builder(db.store.clone())
        .build()
        .unwrap();
    let api = tasker_api::Api::new(engine, open_access());
    let app = axum::Router::new()
        .nest("/internal/tasker", api.router())
        .route("/hello", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let hello = client.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello");
    let tasks = client
        .get(format!("{base}/internal/tasker/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.status(), StatusCode::OK);
    let live = client
        .get(format!("{base}/internal/tasker/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let spec: Value = client
        .get(format!("{base}/internal/tasker/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let docs = client
        .request(Method::GET, format!("{base}/internal/tasker/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

/// The committed OpenAPI document is the one the code produces (`cargo xtask codegen` writes
/// it; see `generated.rs`).
#[test]
fn the_committed_openapi_document_is_current() {
    let current = format!("{}\n", tasker_api::Api::openapi().to_pretty_json().unwrap());
    crate::generated::committed("docs/openapi.json", &current);
}
