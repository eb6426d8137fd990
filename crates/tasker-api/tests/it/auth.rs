//! Every route against the permission table: without credentials 401, without its permission
//! 403, with exactly its permission neither. Probes are never authenticated.

use reqwest::{Method, StatusCode};
use tasker_api::Api;
use tasker_auth::{Operation, Permission, Resource};
use tasker_persistence::testing::{TestDatabase, on_each_database};

use crate::support::{header_access, serve};

/// The routes the API serves, as `(method, path template)` from its OpenAPI document.
fn served_routes() -> Vec<(Method, String)> {
    let spec = serde_json::to_value(Api::openapi()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    routes
}

fn concrete(path: &str) -> String {
    path.replace("{task_id}", &uuid::Uuid::now_v7().to_string())
        .replace("{step_id}", &uuid::Uuid::now_v7().to_string())
        .replace("{namespace}", "shop")
        .replace("{name}", "order")
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

#[test]
fn every_served_route_is_in_the_permission_table() {
    let routes = served_routes();
    assert!(routes.len() >= 25, "{routes:?}");
    for (method, path) in routes {
        assert!(
            Operation::for_rest(&method, &path).is_some(),
            "{method} {path} is served but not in Operation::TABLE"
        );
    }
}

#[tokio::test]
async fn each_route_answers_401_and_403_by_the_table() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, header_access()).await;
        for (method, template) in served_routes() {
            let operation = Operation::for_rest(&method, &template).unwrap();
            let path = concrete(&template);
            let Some(permission) = operation.permission() else {
                let reply = server.call(method.clone(), &path, None, &[]).await;
                assert_ne!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {template}"
                );
                continue;
            };
            let anonymous = server.call(method.clone(), &path, None, &[]).await;
            assert_eq!(
                anonymous.status,
                StatusCode::UNAUTHORIZED,
                "{method} {template}"
            );
            assert_eq!(anonymous.code(), "unauthorized");
            assert_eq!(anonymous.headers["www-authenticate"], "Bearer");

            let others = every_permission_but(permission);
            let refused = server
                .call(method.clone(), &path, None, &[("x-test-grants", &others)])
                .await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {template}");
            assert!(
                refused.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&permission.to_string())
            );

            // Only the status: an event stream's body never ends.
            let granted = permission.to_string();
            let allowed = server
                .client
                .request(method.clone(), format!("{}{path}", server.base))
                .header("x-test-grants", &granted)
                .send()
                .await
                .unwrap()
                .status();
            assert!(
                !matches!(allowed, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{method} {template} with {granted}: {allowed}"
            );
        }
        for probe in ["/health/live", "/health/ready"] {
            assert_eq!(server.get(probe).await.status, StatusCode::OK, "{probe}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_real_jwt_is_accepted_and_its_subject_is_the_actor() {
    use std::sync::Arc;
    use std::time::Duration;
    use tasker_auth::jwt::{KeySet, SigningKey, StaticKeySet, TokenRequest, VerificationKey};
    use tasker_auth::{
        AccessControl, Authorizer, JwtAlgorithm, JwtAuthenticator, JwtPolicy, PermissionPolicy,
    };

    const SECRET: &[u8] = b"an-api-test-secret-of-32-bytes!!";
    let keys = KeySet::new(vec![VerificationKey::hmac(SECRET, "test").unwrap()]);
    let authenticator = JwtAuthenticator::new(
        JwtPolicy::new(vec![JwtAlgorithm::HS256]),
        vec![Arc::new(StaticKeySet::new(keys))],
    );
    let access = AccessControl::new(
        Arc::new(authenticator),
        Authorizer::new(PermissionPolicy::new(Default::default(), false)),
    );
    let mut request = TokenRequest::new("carol", Duration::from_secs(600));
    request.permissions = vec!["tasker.task:*".parse().unwrap()];
    let token = SigningKey::hmac(SECRET, JwtAlgorithm::HS256)
        .unwrap()
        .mint(&request, chrono::Utc::now())
        .unwrap();
    let bearer = format!("Bearer {token}");
    let server = serve(TestDatabase::sqlite().await, access).await;
    let created = server
        .call(
            Method::POST,
            "/tasks",
            Some(serde_json::json!({"namespace": "shop", "name": "order", "context": {"order_id": 1}})),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["initiator"], "carol");
    let forged = format!("{bearer}x");
    let refused = server
        .call(Method::GET, "/tasks", None, &[("authorization", &forged)])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let steps = server
        .call(
            Method::GET,
            &format!(
                "/tasks/{}/workflow_steps",
                created.body["task_id"].as_str().unwrap()
            ),
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(
        steps.status,
        StatusCode::FORBIDDEN,
        "tasker.task:* does not cover steps"
    );
}
