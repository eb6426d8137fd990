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

/// The attack cases for API keys, against keys stored in a real database: a wrong key, an
/// expired one and a revoked one are refused for that reason; the live one is accepted and its
/// use recorded. "Now" is a fixed time, moved by hand.
#[tokio::test]
async fn database_api_keys_refuse_wrong_expired_and_revoked_keys() {
    use std::sync::Arc;

    use chrono::{TimeZone as _, Utc};
    use tasker_api::DatabaseApiKeys;
    use tasker_auth::{ApiKey, ApiKeyAuthenticator, AuthError, Authenticator, Rejection};
    use tasker_persistence::NewApiKey;

    on_each_database(|db| async move {
        let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap();
        let minutes = |m: i64| t0 + chrono::Duration::minutes(m);
        let store = db.store.clone();
        let create = |name: &'static str, expires_at| {
            let store = store.clone();
            async move {
                let key = ApiKey::generate().unwrap();
                let record = store
                    .create_api_key(
                        &NewApiKey {
                            name: name.to_owned(),
                            key_hash: key.hash().to_hex(),
                            key_prefix: key.display_prefix().to_owned(),
                            permissions: vec!["tasker.task:index".to_owned()],
                            expires_at,
                        },
                        t0,
                    )
                    .await
                    .unwrap();
                (key, record.api_key_id)
            }
        };
        let (live, live_id) = create("live", None).await;
        let (expiring, expiring_id) = create("expiring", Some(minutes(60))).await;
        let (revoked, revoked_id) = create("revoked", None).await;
        store.revoke_api_key(revoked_id, minutes(10)).await.unwrap();
        let authenticator =
            ApiKeyAuthenticator::new(vec![Arc::new(DatabaseApiKeys::new(store.clone()))]);
        let headers = |key: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("x-api-key", key.parse().unwrap());
            headers
        };
        let rejection = |key: String, now| {
            let authenticator = &authenticator;
            async move {
                match authenticator.authenticate(&headers(&key), now).await {
                    Err(AuthError::Rejected(rejection)) => rejection,
                    other => panic!("expected a rejection, got {other:?}"),
                }
            }
        };

        let principal = authenticator
            .authenticate(&headers(live.expose()), minutes(30))
            .await
            .unwrap();
        assert_eq!(principal.subject, "live");
        let stored = store.list_api_keys().await.unwrap();
        let used = stored.iter().find(|k| k.api_key_id == live_id).unwrap();
        assert_eq!(used.last_used_at, Some(minutes(30)), "the use is recorded");

        let wrong = ApiKey::generate().unwrap();
        assert_eq!(
            rejection(wrong.expose().to_owned(), minutes(30)).await,
            Rejection::UnknownApiKey
        );
        // The stored hash is not a key, nor is the key with one character changed.
        assert_eq!(
            rejection(live.hash().to_hex(), minutes(30)).await,
            Rejection::UnknownApiKey
        );
        let mut altered = live.expose().to_owned();
        let last = if altered.ends_with('0') { "1" } else { "0" };
        altered.replace_range(altered.len() - 1.., last);
        assert_eq!(
            rejection(altered, minutes(30)).await,
            Rejection::UnknownApiKey
        );
        // Good before its expiry, refused after.
        assert!(
            authenticator
                .authenticate(&headers(expiring.expose()), minutes(59))
                .await
                .is_ok()
        );
        assert_eq!(
            rejection(expiring.expose().to_owned(), minutes(61)).await,
            Rejection::ApiKeyExpired {
                key_id: expiring_id.to_string(),
                expired_at: minutes(60)
            }
        );
        assert_eq!(
            rejection(revoked.expose().to_owned(), minutes(30)).await,
            Rejection::ApiKeyRevoked {
                key_id: revoked_id.to_string(),
                revoked_at: minutes(10)
            }
        );
        let stored = store.list_api_keys().await.unwrap();
        let revoked_record = stored.iter().find(|k| k.api_key_id == revoked_id).unwrap();
        assert_eq!(
            revoked_record.last_used_at, None,
            "a refused key is not marked used"
        );
    })
    .await;
}
