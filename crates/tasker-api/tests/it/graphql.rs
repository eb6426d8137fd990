//! GraphQL over real HTTP and WebSocket, on SQLite and PostgreSQL: every query and mutation,
//! a denial per root field, the guardrails, subscriptions in commit order, per-event
//! namespace policies, and the statement bound of the loaders.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tasker_api::GraphqlSettings;
use tasker_auth::{
    AccessControl, AuthorizationContext, AuthorizationCoordinator, Decision, Operation, Permission,
    Principal, Resource,
};
use tasker_domain::TaskRequest;
use tasker_persistence::testing::{TestDatabase, counting, on_each_database};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::support::{DOOMED, Server, header_access, open_access, serve_api, serve_store};

fn open_graphql() -> GraphqlSettings {
    GraphqlSettings {
        introspection: Some(true),
        ..GraphqlSettings::default()
    }
}

impl Server {
    /// Posts one GraphQL operation; the JSON response.
    async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(query, variables, &[]).await
    }

    async fn gql_as(&self, query: &str, variables: Value, headers: &[(&str, &str)]) -> Value {
        let reply = self
            .call(
                reqwest::Method::POST,
                "/graphql",
                Some(json!({"query": query, "variables": variables})),
                headers,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    /// Posts an operation that must succeed; its `data`.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let body = self.gql(query, variables).await;
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }
}

/// The first error's `extensions.code`.
fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

const CREATE: &str = "mutation($input: CreateTaskInput!) { createTask(input: $input) { id state namespace name version correlationId } }";

async fn create(server: &Server, name: &str, context: Value) -> String {
    let data = server
        .data(
            CREATE,
            json!({"input": {"namespace": "shop", "name": name, "context": context}}),
        )
        .await;
    data["createTask"]["id"].as_str().unwrap().to_owned()
}

async fn drive(server: &Server, id: &str) {
    server.drive(id.parse().unwrap()).await;
}

#[tokio::test]
async fn every_query_and_mutation_answers_over_http() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve_api(db, open_access(), |api| api.graphql(open_graphql())).await;

        // createTask, idempotent with a key.
        let input = json!({"input": {"namespace": "shop", "name": "order", "context": {"order_id": 1}, "idempotencyKey": "k-1", "tags": ["a"]}});
        let first = server.data(CREATE, input.clone()).await;
        let again = server.data(CREATE, input).await;
        let id = first["createTask"]["id"].as_str().unwrap().to_owned();
        assert_eq!(again["createTask"]["id"], first["createTask"]["id"]);
        assert_eq!(first["createTask"]["state"], "PENDING");
        let bad = server
            .gql(CREATE, json!({"input": {"namespace": "shop", "name": "order", "context": {}}}))
            .await;
        assert_eq!(code(&bad), "invalid_context", "{bad}");

        // updateStep and cancelStep on a task not yet run.
        let fresh = create(&server, "doomed", json!({})).await;
        let notify = server
            .data("query($id: UUID!) { step(taskId: $id, name: \"broken\") { id } }", json!({"id": fresh}))
            .await["step"]["id"]
            .clone();
        let vars = json!({"t": fresh, "s": notify});
        let limited = server
            .data("mutation($t: UUID!, $s: UUID!) { updateStep(taskId: $t, stepId: $s, retryLimit: 5) { retryLimit } }", vars.clone())
            .await;
        assert_eq!(limited["updateStep"]["retryLimit"], 5);
        let too_many = server
            .gql("mutation($t: UUID!, $s: UUID!) { updateStep(taskId: $t, stepId: $s, retryLimit: 500) { retryLimit } }", vars.clone())
            .await;
        assert_eq!(code(&too_many), "invalid_body");
        let negative = server
            .gql("mutation($t: UUID!, $s: UUID!) { updateStep(taskId: $t, stepId: $s, retryLimit: -5) { retryLimit } }", vars.clone())
            .await;
        assert_eq!(code(&negative), "invalid_body");
        let cancelled = server
            .data("mutation($t: UUID!, $s: UUID!) { cancelStep(taskId: $t, stepId: $s) { state } }", vars)
            .await;
        assert_eq!(cancelled["cancelStep"]["state"], "CANCELLED");
        // Cancelled before the engine ever runs: no race with the coordinator.
        let cancelled = server
            .data(
                "mutation($id: UUID!) { cancelTask(id: $id, reason: \"enough\") { state } }",
                json!({"id": fresh}),
            )
            .await;
        assert_eq!(cancelled["cancelTask"]["state"], "CANCELLED");
        let refused = server
            .gql("mutation($id: UUID!) { retryTask(id: $id) { state } }", json!({"id": fresh}))
            .await;
        assert_eq!(code(&refused), "invalid_transition", "{refused}");
        assert_eq!(refused["errors"][0]["extensions"]["status"], 409);
        assert_eq!(refused["errors"][0]["extensions"]["classification"], "BAD_REQUEST");
        assert_eq!(refused["errors"][0]["extensions"]["details"]["state"], "cancelled");

        // task with its steps, relations, history, annotations and graph.
        drive(&server, &id).await;
        let task = server
            .data(
                "query($id: UUID!) { task(id: $id) { id state tags totalSteps doneSteps completedAt
                   steps { name state attempts parents { name } children { name } results lastError { code } transitions { toState } }
                   transitions { toState stepName } annotations { kind } graph { nodes edges mermaid } } }",
                json!({"id": id}),
            )
            .await;
        let task = &task["task"];
        assert_eq!(task["state"], "COMPLETE");
        assert_eq!(task["doneSteps"], 4);
        assert_eq!(task["tags"], json!(["a"]));
        let steps = task["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["validate", "charge", "reserve", "notify"]);
        assert_eq!(steps[0]["children"], json!([{"name": "charge"}, {"name": "reserve"}]));
        assert_eq!(steps[3]["parents"], json!([{"name": "charge"}, {"name": "reserve"}]));
        assert!(steps.iter().all(|s| s["state"] == "COMPLETE" && s["lastError"].is_null()));
        assert_eq!(steps[0]["transitions"].as_array().unwrap().last().unwrap()["toState"], "complete");
        assert!(task["transitions"].as_array().unwrap().iter().any(|t| t["stepName"] == "notify"));
        assert_eq!(task["graph"]["nodes"].as_array().unwrap().len(), 4);

        // tasks as a connection, with filters and cursors.
        let second = create(&server, "order", json!({"order_id": 2})).await;
        let page = server
            .data(
                "{ tasks(filter: {namespace: \"shop\", name: \"order\"}, first: 1) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(page["tasks"]["totalCount"], 2);
        assert_eq!(page["tasks"]["pageInfo"]["hasNextPage"], true);
        assert_eq!(page["tasks"]["edges"][0]["node"]["id"], second.as_str());
        let next = server
            .data(
                "query($after: String) { tasks(filter: {namespace: \"shop\", name: \"order\"}, first: 1, after: $after) { edges { node { id } } } }",
                json!({"after": page["tasks"]["pageInfo"]["endCursor"]}),
            )
            .await;
        assert_eq!(next["tasks"]["edges"][0]["node"]["id"], id.as_str());
        // Finished first: a task completing between the count and the page would make them
        // disagree.
        drive(&server, &second).await;
        let complete = server
            .data("{ tasks(filter: {state: COMPLETE}) { totalCount edges { node { state } } } }", json!({}))
            .await;
        let edges = complete["tasks"]["edges"].as_array().unwrap();
        assert!(!edges.is_empty() && edges.iter().all(|e| e["node"]["state"] == "COMPLETE"));
        assert_eq!(complete["tasks"]["totalCount"], edges.len());
        let bad_cursor = server.gql("{ tasks(after: \"nope\") { totalCount } }", json!({})).await;
        assert_eq!(code(&bad_cursor), "bad_request");

        // step and steps.
        let step = server
            .data(
                "query($t: UUID!) { step(taskId: $t, name: \"charge\") { id name state } steps(taskId: $t) { name } }",
                json!({"t": id}),
            )
            .await;
        assert_eq!(step["step"]["state"], "COMPLETE");
        assert_eq!(step["steps"].as_array().unwrap().len(), 4);
        let by_id = server
            .data(
                "query($t: UUID!, $s: UUID!) { step(taskId: $t, id: $s) { name } }",
                json!({"t": id, "s": step["step"]["id"]}),
            )
            .await;
        assert_eq!(by_id["step"]["name"], "charge");
        let missing = server
            .gql(
                "query($t: UUID!) { step(taskId: $t, name: \"nope\") { name } }",
                json!({"t": id}),
            )
            .await;
        assert_eq!(code(&missing), "not_found");

        // templates, handlers, validation, annotation types, health, analytics.
        let catalog = server
            .data(
                "{ templates { namespace name version steps } template(namespace: \"shop\", name: \"order\") { version versions graph { nodes } }
                   handlers { namespace handlers { name versions stepHandlers } } annotationTypes
                   healthStatus { status reasons checks { name ok } counts { tasks } }
                   analyticsPerformance(window: \"1h\") analyticsBottlenecks(limit: 3) }",
                json!({}),
            )
            .await;
        assert!(catalog["templates"].as_array().unwrap().iter().any(|t| t["name"] == "order" && t["steps"] == 4));
        assert_eq!(catalog["template"]["version"], "1.0.0");
        assert_eq!(catalog["handlers"][0]["namespace"], "shop");
        assert_eq!(catalog["annotationTypes"], json!([]));
        assert_eq!(catalog["healthStatus"]["status"], "healthy");
        assert!(catalog["healthStatus"]["counts"]["tasks"]["complete"].as_u64() >= Some(1));
        assert!(catalog["analyticsPerformance"]["templates"].is_array(), "{catalog}");
        assert!(catalog["analyticsBottlenecks"].is_object());
        let valid = server
            .data(
                "query($t: String!) { validateTemplate(template: $t) { valid fullName errors { line message } } }",
                json!({"t": DOOMED}),
            )
            .await;
        assert_eq!(valid["validateTemplate"]["valid"], true);
        let invalid = server
            .data("{ validateTemplate(template: \"name: [\") { valid errors { message } } }", json!({}))
            .await;
        assert_eq!(invalid["validateTemplate"]["valid"], false);

        // updateTask.
        let updated = server
            .data(
                "mutation($id: UUID!) { updateTask(id: $id, input: {reason: \"audit\", tags: [\"x\", \"y\"]}) { reason tags } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(updated["updateTask"], json!({"reason": "audit", "tags": ["x", "y"]}));

        // A task in error: retry, then cancel; a refused retry carries REST's 409 code.
        let doomed = create(&server, "doomed", json!({})).await;
        drive(&server, &doomed).await;
        let failed = server
            .data(
                "query($id: UUID!) { task(id: $id) { state } step(taskId: $id, name: \"broken\") { state lastError { code kind message } } }",
                json!({"id": doomed}),
            )
            .await;
        assert_eq!(failed["task"]["state"], "ERROR");
        assert_eq!(failed["step"]["lastError"]["code"], "PLANNED_FAILURE");
        assert_eq!(failed["step"]["lastError"]["kind"], "permanent");
        // The running coordinator may fail the retried step again at once, so the retry is
        // judged by the attempts it allowed, once the task is final again.
        server
            .data(
                "mutation($id: UUID!) { retryTask(id: $id, reason: \"again\") { id } }",
                json!({"id": doomed}),
            )
            .await;
        drive(&server, &doomed).await;
        let again = server
            .data(
                "query($id: UUID!) { step(taskId: $id, name: \"broken\") { transitions { toState } } }",
                json!({"id": doomed}),
            )
            .await;
        let runs = again["step"]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["toState"] == "in_progress")
            .count();
        assert!(runs >= 2, "the retry ran the step again: {again}");

        // Step actions: retry and resolve a failed step, then resolve a task.
        let doomed = create(&server, "doomed", json!({})).await;
        drive(&server, &doomed).await;
        let broken = server
            .data("query($id: UUID!) { step(taskId: $id, name: \"broken\") { id } }", json!({"id": doomed}))
            .await["step"]["id"]
            .clone();
        let vars = json!({"t": doomed, "s": broken});
        let retried = server
            .data("mutation($t: UUID!, $s: UUID!) { retryStep(taskId: $t, stepId: $s, reason: \"flaky\") { state attempts } }", vars.clone())
            .await;
        assert!(retried["retryStep"]["attempts"].is_u64(), "{retried}");
        drive(&server, &doomed).await;
        let after = server
            .data("query($t: UUID!) { step(taskId: $t, name: \"broken\") { transitions { toState } } }", json!({"t": doomed}))
            .await;
        let runs = after["step"]["transitions"].as_array().unwrap().iter().filter(|t| t["toState"] == "in_progress").count();
        assert!(runs >= 2, "the retry ran the step again: {after}");
        let resolved = server
            .data("mutation($t: UUID!, $s: UUID!) { resolveStep(taskId: $t, stepId: $s, results: {ok: true}, reason: \"by hand\") { state results } }", vars.clone())
            .await;
        assert_eq!(resolved["resolveStep"], json!({"state": "RESOLVED_MANUALLY", "results": {"ok": true}}));
        let doomed = create(&server, "doomed", json!({})).await;
        drive(&server, &doomed).await;
        let resolved = server
            .data("mutation($id: UUID!) { resolveTask(id: $id, reason: \"done elsewhere\") { state } }", json!({"id": doomed}))
            .await;
        assert_eq!(resolved["resolveTask"]["state"], "RESOLVED_MANUALLY");

        // registerTemplate: new, the same again, and other content under the same version.
        let template = DOOMED.replace("name: doomed", "name: doomed_too");
        let registered = server
            .data("mutation($t: String!) { registerTemplate(template: $t) { name version graph { nodes } } }", json!({"t": template}))
            .await;
        assert_eq!(registered["registerTemplate"]["name"], "doomed_too");
        server
            .data("mutation($t: String!) { registerTemplate(template: $t) { name } }", json!({"t": template}))
            .await;
        let changed = template.replace("times: 1000", "times: 1");
        let conflict = server
            .gql("mutation($t: String!) { registerTemplate(template: $t) { name } }", json!({"t": changed}))
            .await;
        assert_eq!(code(&conflict), "template_version_exists");
        let broken = server
            .gql("mutation { registerTemplate(template: \"name: [\") { name } }", json!({}))
            .await;
        assert_eq!(code(&broken), "invalid_template");

        // Unknown ids are REST's 404 code.
        let missing = server
            .gql("query($id: UUID!) { task(id: $id) { id } }", json!({"id": uuid::Uuid::now_v7()}))
            .await;
        assert_eq!(code(&missing), "not_found");
        assert_eq!(missing["errors"][0]["extensions"]["status"], 404);

        // GET runs queries, never mutations.
        let url = format!("{}/graphql?query={}", server.base, urlencode("{ templates { name } }"));
        let got: Value = server.client.get(&url).send().await.unwrap().json().await.unwrap();
        assert!(got["data"]["templates"].is_array(), "{got}");
        let url = format!(
            "{}/graphql?query={}",
            server.base,
            urlencode("mutation { cancelTask(id: \"00000000-0000-0000-0000-000000000000\") { id } }")
        );
        let got: Value = server.client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(code(&got), "method_not_allowed");
    })
    .await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The root fields of the schema, by root type.
fn root_fields() -> Vec<(&'static str, String)> {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    let document = async_graphql::parser::parse_schema(tasker_api::graphql_sdl()).unwrap();
    let mut fields = Vec::new();
    for definition in document.definitions {
        if let TypeSystemDefinition::Type(ty) = definition {
            let root = match ty.node.name.node.as_str() {
                "QueryRoot" => "query",
                "MutationRoot" => "mutation",
                "SubscriptionRoot" => "subscription",
                _ => continue,
            };
            if let TypeKind::Object(object) = &ty.node.kind {
                for field in &object.fields {
                    fields.push((root, field.node.name.node.to_string()));
                }
            }
        }
    }
    fields
}

#[test]
fn the_schemas_root_fields_are_exactly_the_permission_tables() {
    let served: BTreeSet<String> = root_fields().into_iter().map(|(_, f)| f).collect();
    let table: BTreeSet<String> = Operation::TABLE
        .iter()
        .flat_map(|spec| spec.graphql.iter().map(|f| (*f).to_owned()))
        .collect();
    assert_eq!(served, table);
    assert!(served.len() >= 20, "{served:?}");
}

fn every_permission_but(wanted: Permission) -> String {
    Resource::ALL
        .iter()
        .flat_map(|r| {
            r.actions()
                .iter()
                .map(move |a| Permission::new(*r, *a).unwrap())
        })
        .filter(|p| *p != wanted)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn each_root_field_is_denied_without_its_permission() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve_api(db, header_access(), |api| api.graphql(open_graphql())).await;
        let anonymous = server
            .call(
                reqwest::Method::POST,
                "/graphql",
                Some(json!({"query": "{ templates { name } }"})),
                &[],
            )
            .await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        for (root, field) in root_fields() {
            let permission = Operation::for_graphql_field(&field)
                .unwrap()
                .permission()
                .unwrap();
            let query = format!("{root} {{ {field} {{ __typename }} }}");
            let others = every_permission_but(permission);
            let denied = server
                .gql_as(&query, json!({}), &[("x-test-grants", &others)])
                .await;
            assert_eq!(code(&denied), "forbidden", "{field}: {denied}");
            let message = denied["errors"][0]["message"].as_str().unwrap();
            assert!(
                message.contains(&field) && message.contains(&permission.to_string()),
                "{message}"
            );
            // With exactly its permission the gate lets it through (the document itself may
            // still be invalid: it selects `__typename` on scalars and leaves out arguments).
            let allowed = server
                .gql_as(
                    &query,
                    json!({}),
                    &[("x-test-grants", &permission.to_string())],
                )
                .await;
            assert_ne!(
                allowed["errors"][0]["extensions"]["code"], "forbidden",
                "{field}: {allowed}"
            );
        }
        // A document mixing an allowed and a denied field is refused as a whole.
        let mixed = server
            .gql_as(
                "{ templates { name } annotationTypes }",
                json!({}),
                &[("x-test-grants", "tasker.template:index")],
            )
            .await;
        assert_eq!(code(&mixed), "forbidden");
        assert!(mixed["data"].is_null());
    })
    .await;
}

#[tokio::test]
async fn guardrails_refuse_with_clear_errors() {
    let db = TestDatabase::sqlite().await;
    let settings = GraphqlSettings {
        max_depth: 6,
        max_complexity: 200,
        max_query_bytes: 2_000,
        max_aliases: 3,
        max_batch: 2,
        introspection: Some(false),
        ..GraphqlSettings::default()
    };
    let server = serve_api(db, open_access(), |api| api.graphql(settings)).await;
    let long = format!("{{ templates {{ name }} }} # {}", "x".repeat(2_000));
    assert_eq!(
        code(&server.gql(&long, json!({})).await),
        "payload_too_large"
    );
    let aliases = "{ a: templates { name } b: templates { name } c: templates { name } d: templates { name } }";
    let body = server.gql(aliases, json!({})).await;
    assert_eq!(code(&body), "too_many_aliases");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("graphql.max_aliases")
    );
    let deep =
        "{ tasks { edges { node { steps { parents { parents { parents { name } } } } } } } }";
    let body = server.gql(deep, json!({})).await;
    assert_eq!(code(&body), "too_deep");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("graphql.max_depth"),
        "{body}"
    );
    let complex = "{ tasks(first: 100) { edges { node { id name state } } } }";
    let body = server.gql(complex, json!({})).await;
    assert_eq!(code(&body), "too_complex");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("graphql.max_complexity"),
        "{body}"
    );
    let introspection = server
        .gql("{ __schema { types { name } } }", json!({}))
        .await;
    assert_eq!(code(&introspection), "forbidden");
    assert!(
        introspection["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("introspection")
    );
    // __typename is not introspection.
    assert_eq!(
        server.data("{ __typename }", json!({})).await["__typename"],
        "QueryRoot"
    );
    let batch = json!([{"query": "{ __typename }"}, {"query": "{ __typename }"}, {"query": "{ __typename }"}]);
    let reply = server
        .call(reqwest::Method::POST, "/graphql", Some(batch), &[])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("graphql.max_batch")
    );
    let batch = json!([{"query": "{ __typename }"}, {"query": "{ templates { name } }"}]);
    let reply = server
        .call(reqwest::Method::POST, "/graphql", Some(batch), &[])
        .await;
    assert_eq!(reply.body.as_array().unwrap().len(), 2);
    let subscription = server
        .gql("subscription { events { name } }", json!({}))
        .await;
    assert_eq!(code(&subscription), "bad_request");
    let not_json = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "text/plain")
        .body("{ __typename }")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let garbage = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json")
        .body("{\"nope\": 1}")
        .send()
        .await
        .unwrap();
    let garbage: Value = garbage.json().await.unwrap();
    assert_eq!(code(&garbage), "bad_request", "{garbage}");
    let reply = server
        .call(
            reqwest::Method::POST,
            "/graphql",
            Some(json!("not a request")),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_operation_past_the_time_limit_is_answered_with_timeout() {
    on_each_database(|db: TestDatabase| async move {
        // Another connection holds the write lock, so the mutation waits until the limit.
        let session = db.session().await;
        let lock = match db.backend {
            tasker_persistence::testing::Backend::Sqlite => "BEGIN IMMEDIATE",
            tasker_persistence::testing::Backend::Postgres => {
                "BEGIN; LOCK TABLE tasker_tasks IN ACCESS EXCLUSIVE MODE"
            }
        };
        let settings = GraphqlSettings {
            timeout: 0.2,
            ..GraphqlSettings::default()
        };
        let server = serve_api(db, open_access(), |api| api.graphql(settings)).await;
        let id = create(&server, "order", json!({"order_id": 1})).await;
        session.execute(lock).await.unwrap();
        let body = server
            .gql(
                "mutation($id: UUID!) { updateTask(id: $id, input: {reason: \"late\"}) { reason } }",
                json!({"id": id}),
            )
            .await;
        session.execute("ROLLBACK").await.unwrap();
        assert_eq!(code(&body), "timeout", "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("graphql.timeout"));
    })
    .await;
}

#[tokio::test]
async fn graphiql_and_introspection_follow_the_settings() {
    let db = TestDatabase::sqlite().await;
    let server = serve_api(db, open_access(), |api| {
        api.graphql(GraphqlSettings::default().for_profile(tasker_auth::Profile::Development))
    })
    .await;
    let page = server
        .client
        .get(format!("{}/graphql", server.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("GraphiQL"));
    let types = server
        .data("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(types["__schema"]["queryType"]["name"], "QueryRoot");
    let db = TestDatabase::sqlite().await;
    let production = serve_api(db, open_access(), |api| {
        api.graphql(GraphqlSettings::default().for_profile(tasker_auth::Profile::Production))
    })
    .await;
    let page = production
        .client
        .get(format!("{}/graphql", production.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let refused = production
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(code(&refused), "forbidden");
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, protocol: &str, payload: Value) -> Socket {
    let url = format!("{}/graphql/ws", server.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": payload}),
    )
    .await;
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next JSON message (pings answered, keep-alives skipped); `None` when the socket closes.
async fn receive(socket: &mut Socket) -> Option<Value> {
    while let Some(message) = socket.next().await {
        match message.ok()? {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                match value["type"].as_str() {
                    Some("ka") | Some("pong") => continue,
                    Some("ping") => {
                        send(socket, json!({"type": "pong"})).await;
                        continue;
                    }
                    _ => return Some(value),
                }
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
    None
}

/// Reads a subscription's events until its `complete`; each event's data field.
async fn collect(socket: &mut Socket, data: &str, field: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let message = receive(socket).await.expect("the subscription completes");
        match message["type"].as_str().unwrap() {
            "complete" => return events,
            t if t == data => {
                assert!(message["payload"]["errors"].is_null(), "{message}");
                events.push(message["payload"]["data"][field].clone());
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
}

fn assert_dag_order(events: &[Value]) {
    let completed: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "step.completed")
        .map(|e| e["stepName"].as_str().unwrap())
        .collect();
    assert_eq!(completed.len(), 4, "{events:?}");
    assert_eq!(completed[0], "validate");
    assert_eq!(completed[3], "notify");
    assert_eq!(
        events.last().unwrap()["name"],
        "task.completed",
        "{events:?}"
    );
    let at: Vec<&str> = events
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
}

#[tokio::test]
async fn subscriptions_deliver_a_tasks_events_in_order_then_end_on_both_protocols() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve_api(db, open_access(), |api| api.graphql(open_graphql())).await;
        let subscription = "subscription($id: UUID!) { taskEvents(taskId: $id) { name stepName state timestamp taskId } }";

        // Both subscriptions are registered before the engine runs either task.
        let first = create(&server, "order", json!({"order_id": 7})).await;
        let second = create(&server, "order", json!({"order_id": 8})).await;
        // graphql-transport-ws, on a task.
        let mut socket = connect(&server, "graphql-transport-ws", json!({})).await;
        assert_eq!(receive(&mut socket).await.unwrap()["type"], "connection_ack");
        send(&mut socket, json!({"id": "1", "type": "subscribe", "payload": {"query": subscription, "variables": {"id": first}}})).await;
        // A query over the same socket answers once and completes, so the subscription is
        // known to be registered before the task runs.
        send(&mut socket, json!({"id": "2", "type": "subscribe", "payload": {"query": "{ __typename }"}})).await;
        let answer = receive(&mut socket).await.unwrap();
        assert_eq!((answer["id"].as_str(), answer["type"].as_str()), (Some("2"), Some("next")), "{answer}");
        assert_eq!(receive(&mut socket).await.unwrap()["type"], "complete");
        // graphql-ws (subscriptions-transport-ws), on a step.
        let mut legacy = connect(&server, "graphql-ws", json!({})).await;
        assert_eq!(receive(&mut legacy).await.unwrap()["type"], "connection_ack");
        send(&mut legacy, json!({"id": "1", "type": "start", "payload": {"query": "subscription($id: UUID!) { stepEvents(taskId: $id, step: \"charge\") { name stepName } }", "variables": {"id": second}}})).await;
        send(&mut legacy, json!({"id": "2", "type": "start", "payload": {"query": "{ __typename }"}})).await;
        let answer = receive(&mut legacy).await.unwrap();
        assert_eq!((answer["id"].as_str(), answer["type"].as_str()), (Some("2"), Some("data")), "{answer}");
        assert_eq!(receive(&mut legacy).await.unwrap()["type"], "complete");

        drive(&server, &first).await;
        drive(&server, &second).await;
        let events = collect(&mut socket, "next", "taskEvents").await;
        assert!(events.iter().all(|e| e["taskId"] == first.as_str()));
        assert_dag_order(&events);
        let events = collect(&mut legacy, "data", "stepEvents").await;
        assert!(events.iter().filter(|e| e["name"] != "task.completed").all(|e| e["stepName"] == "charge"), "{events:?}");
        assert!(events.iter().any(|e| e["name"] == "step.completed"));
        assert_eq!(events.last().unwrap()["name"], "task.completed");
        let id = second;

        // A finished task's subscription ends at once.
        let mut socket = connect(&server, "graphql-transport-ws", json!({})).await;
        receive(&mut socket).await.unwrap();
        send(&mut socket, json!({"id": "3", "type": "subscribe", "payload": {"query": subscription, "variables": {"id": id}}})).await;
        assert!(collect(&mut socket, "next", "taskEvents").await.is_empty());
    })
    .await;
}

/// Allows every namespace but `secret`.
struct NoSecrets;

#[async_trait::async_trait]
impl AuthorizationCoordinator for NoSecrets {
    async fn authorize(
        &self,
        _principal: &Principal,
        _permission: Permission,
        context: &AuthorizationContext,
    ) -> Decision {
        if context.namespace.as_deref() == Some("secret") {
            Decision::deny("the secret namespace is off limits")
        } else {
            Decision::allow("not secret")
        }
    }
}

#[tokio::test]
async fn websocket_credentials_and_namespace_policies_are_checked() {
    on_each_database(|db: TestDatabase| async move {
        let access: AccessControl = header_access().with_coordinator(Arc::new(NoSecrets));
        let server = serve_api(db, access, |api| api.graphql(open_graphql())).await;
        let secret = tasker_template::TaskTemplate::from_yaml_str(
            &DOOMED.replace("namespace_name: shop", "namespace_name: secret"),
            None,
        )
        .unwrap();
        server.engine.register_template(secret, false).await.unwrap();

        // No credentials in the init payload: the connection is refused.
        let mut socket = connect(&server, "graphql-transport-ws", json!({})).await;
        let refused = receive(&mut socket).await;
        assert!(refused.is_none() || refused.as_ref().unwrap()["type"] == "connection_error", "{refused:?}");

        // With credentials (the payload's entries are the headers an HTTP request would
        // carry): events of `secret` never arrive, `shop`'s do.
        let grants = "tasker.event_stream:subscribe";
        let shop = server
            .engine
            .create_task(TaskRequest::new("doomed").namespace("shop"))
            .await
            .unwrap()
            .task_id;
        let hidden = server
            .engine
            .create_task(TaskRequest::new("doomed").namespace("secret"))
            .await
            .unwrap()
            .task_id;
        let mut socket = connect(&server, "graphql-transport-ws", json!({"x-test-grants": grants})).await;
        assert_eq!(receive(&mut socket).await.unwrap()["type"], "connection_ack");
        send(&mut socket, json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { events(filter: {category: \"task\"}) { name taskId namespace } }"}})).await;
        send(&mut socket, json!({"id": "0", "type": "subscribe", "payload": {"query": "{ __typename }"}})).await;
        let answer = receive(&mut socket).await.unwrap();
        assert_eq!(answer["id"], "0", "{answer}");
        receive(&mut socket).await.unwrap();
        let denied = json!({"id": "2", "type": "subscribe", "payload": {"query": "subscription($id: UUID!) { taskEvents(taskId: $id) { name } }", "variables": {"id": hidden.to_string()}}});
        send(&mut socket, denied).await;
        let answer = receive(&mut socket).await.unwrap();
        assert_eq!(answer["id"], "2", "{answer}");
        assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "forbidden", "{answer}");
        server.drive(hidden).await;
        server.drive(shop).await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let message = receive(&mut socket).await.unwrap();
            if message["id"] != "1" {
                assert_eq!(message["type"], "complete", "{message}");
                continue;
            }
            seen.push(message["payload"]["data"]["events"].clone());
        }
        assert!(seen.iter().all(|e| e["namespace"] == "shop"), "{seen:?}");
        assert!(seen.iter().all(|e| e["taskId"] == shop.to_string()), "{seen:?}");
    })
    .await;
}

#[tokio::test]
async fn a_hundred_tasks_with_steps_and_errors_take_a_fixed_number_of_statements() {
    on_each_database(|db: TestDatabase| async move {
        let (store, counter) = counting(&db.store);
        let url = db.url.clone();
        let server = serve_store(store, url, Some(db), open_access(), |api| {
            api.graphql(open_graphql())
        })
        .await;
        let query = "query($n: Int) { tasks(first: $n) { totalCount edges { node { id state steps { name state parents { name } lastError { code message } } } } } }";
        let mut counts = Vec::new();
        let mut created = 0;
        for target in [10, 100] {
            while created < target {
                let name = if created % 2 == 0 { "order" } else { "doomed" };
                let mut request = TaskRequest::new(name).namespace("shop");
                if name == "order" {
                    request = request.context(json!({"order_id": created}));
                }
                server.engine.create_task(request).await.unwrap();
                created += 1;
            }
            counter.store(0, Ordering::SeqCst);
            let data = server.data(query, json!({"n": target})).await;
            counts.push(counter.load(Ordering::SeqCst));
            let edges = data["tasks"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), target);
            assert!(edges.iter().all(|e| !e["node"]["steps"].as_array().unwrap().is_empty()));
        }
        assert_eq!(counts[0], counts[1], "statements for 10 and 100 tasks: {counts:?}");
        assert!(counts[1] <= 8, "{counts:?}");
    })
    .await;
}

/// The committed SDL is the schema the code builds (`cargo xtask codegen` writes it; see
/// `generated.rs`).
#[test]
fn the_committed_graphql_schema_is_current() {
    let current = format!(
        "# Generated by `cargo xtask codegen` from tasker-api's GraphQL schema; do not edit.\n\n{}",
        tasker_api::graphql_sdl()
    );
    crate::generated::committed("docs/schema.graphql", &current);
}

/// Every ```graphql block of a Markdown text.
fn graphql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```graphql") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// docs/graphql.md's examples are valid against the schema (`cargo xtask validate-docs` runs
/// this test).
#[tokio::test]
async fn graphql_docs_examples_validate_against_the_schema() {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let markdown =
        std::fs::read_to_string(std::path::Path::new(&manifest_dir).join("../../docs/graphql.md"))
            .unwrap();
    let blocks = graphql_blocks(&markdown);
    assert!(blocks.len() >= 7, "{} examples", blocks.len());
    for block in &blocks {
        if let Err(errors) = tasker_api::validate_graphql(block).await {
            panic!("docs/graphql.md example does not validate: {errors:?}\n{block}");
        }
    }
    let broken = tasker_api::validate_graphql("{ task(id: \"x\") { nope } }")
        .await
        .unwrap_err();
    assert!(broken.iter().any(|e| e.contains("nope")), "{broken:?}");
    let unparsable = tasker_api::validate_graphql("{ task(").await;
    assert_eq!(unparsable.unwrap_err().len(), 1);
}
