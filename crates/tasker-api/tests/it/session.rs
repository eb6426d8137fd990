//! Dashboard sessions: sign-in exchanges credentials for an `HttpOnly` cookie, the cookie
//! authenticates API calls, a change under it needs the session's CSRF token and must come
//! from the same site, sign-out revokes it, and bearer/API-key requests never look at it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;
use tasker_api::{ApiSettings, CSRF_HEADER, SESSION_COOKIE};
use tasker_auth::{AccessControl, AuthConfig, Profile};
use tasker_persistence::testing::{TestDatabase, on_each_database};

use crate::support::{Reply, Server, header_access, serve, serve_with};

const OPERATOR: &str = "tasker.task:index,tasker.task:show,tasker.task:create,tasker.task:cancel";

/// The cookie's `name=value` from a sign-in reply.
fn cookie_of(reply: &Reply) -> String {
    let set = reply.headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn sign_in(server: &Server, grants: &str) -> (String, String, Reply) {
    let reply = server
        .call(Method::POST, "/session", None, &[("x-test-grants", grants)])
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let cookie = cookie_of(&reply);
    let csrf = reply.body["csrf_token"].as_str().unwrap().to_owned();
    (cookie, csrf, reply)
}

/// A read with only the session cookie.
async fn get_as(server: &Server, path: &str, cookie: &str) -> Reply {
    server
        .call(Method::GET, path, None, &[("cookie", cookie)])
        .await
}

async fn create_task(server: &Server) -> String {
    let reply = server
        .call(
            Method::POST,
            "/tasks",
            Some(json!({"namespace": "shop", "name": "order", "context": {"order_id": 1}})),
            &[("x-test-grants", "tasker.task:create")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_cookie_is_strict_and_authenticates_reads() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, header_access()).await;
        let (cookie, csrf, reply) = sign_in(&server, OPERATOR).await;
        let set = reply.headers["set-cookie"].to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(
            !set.contains("Secure"),
            "plain HTTP without secure_cookies: {set}"
        );
        assert_eq!(reply.headers["cache-control"], "no-store");
        assert!(cookie.starts_with(&format!("{SESSION_COOKIE}=")));
        assert_eq!(csrf.len(), 64);
        let held: Vec<&str> = reply.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(held, OPERATOR.split(',').collect::<Vec<_>>());
        assert_eq!(reply.body["subject"], "tester");

        let listed = get_as(&server, "/tasks", &cookie).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        let shown = get_as(&server, "/session", &cookie).await;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(shown.body["csrf_token"], csrf.as_str());
        let forged = format!("{SESSION_COOKIE}={}", "0".repeat(64));
        let unknown = get_as(&server, "/tasks", &forged).await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unknown.code(), "unauthorized");
        // The session carries only the grants it was made with.
        let refused = get_as(&server, "/templates", &cookie).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn a_change_under_the_session_needs_the_csrf_token_and_the_same_site() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, header_access()).await;
        let (cookie, csrf, _) = sign_in(&server, OPERATOR).await;
        let task = create_task(&server).await;
        let cancel = format!("/tasks/{task}/cancel");
        let body = Some(json!({"reason": "customer asked"}));
        let forged = server
            .call(Method::POST, &cancel, body.clone(), &[("cookie", &cookie)])
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
        assert_eq!(forged.code(), "forbidden");
        assert!(
            forged.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("X-CSRF-Token")
        );
        let wrong = "f".repeat(64);
        let guessed = server
            .call(
                Method::POST,
                &cancel,
                body.clone(),
                &[("cookie", &cookie), (CSRF_HEADER, &wrong)],
            )
            .await;
        assert_eq!(guessed.status, StatusCode::FORBIDDEN);
        let cross_site = server
            .call(
                Method::POST,
                &cancel,
                body.clone(),
                &[
                    ("cookie", &cookie),
                    (CSRF_HEADER, &csrf),
                    ("origin", "http://evil.example"),
                ],
            )
            .await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        let still = get_as(&server, &format!("/tasks/{task}"), &cookie).await;
        assert_eq!(still.body["state"], "pending", "nothing changed");

        let done = server
            .call(
                Method::POST,
                &cancel,
                body,
                &[("cookie", &cookie), (CSRF_HEADER, &csrf)],
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        assert_eq!(done.body["state"], "cancelled");
        let history = get_as(&server, &format!("/tasks/{task}/transitions"), &cookie).await;
        let last = history.body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|t| t["step_id"].is_null())
            .unwrap()
            .clone();
        assert_eq!(last["to_state"], "cancelled");
        assert_eq!(last["actor"], "tester");
        assert_eq!(last["metadata"]["note"], "customer asked");
    })
    .await;
}

#[tokio::test]
async fn requests_with_their_own_credentials_ignore_the_cookie() {
    on_each_database(|db: TestDatabase| async move {
        let key = "tsk_session_test_key_0123456789abcdef";
        let server = serve(db, real_access(key)).await;
        let signed_in = server.post("/session", json!({"api_key": key})).await;
        assert_eq!(signed_in.status, StatusCode::CREATED);
        let cookie = cookie_of(&signed_in);
        let bearer = format!("Bearer {}", token(chrono::Utc::now().timestamp() + 600));
        let created = server
            .call(
                Method::POST,
                "/tasks",
                Some(json!({"namespace": "shop", "name": "order", "context": {"order_id": 1}})),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let task = created.body["task_id"].as_str().unwrap().to_owned();
        // A bearer token that may cancel, beside a cookie whose session may not, and no CSRF
        // token: the token decides and needs none.
        let reply = server
            .call(
                Method::POST,
                &format!("/tasks/{task}/cancel"),
                None,
                &[("cookie", &cookie), ("authorization", &bearer)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let with_key = server
            .call(Method::GET, "/tasks", None, &[("x-api-key", key)])
            .await;
        assert_eq!(with_key.status, StatusCode::OK);
        let plain = server.get("/tasks").await;
        assert_eq!(
            plain.status,
            StatusCode::UNAUTHORIZED,
            "no cookie, no credentials"
        );
    })
    .await;
}

#[tokio::test]
async fn signing_out_revokes_the_session_and_clears_the_cookie() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, header_access()).await;
        let (cookie, csrf, _) = sign_in(&server, OPERATOR).await;
        let forged = server
            .call(Method::DELETE, "/session", None, &[("cookie", &cookie)])
            .await;
        assert_eq!(
            forged.status,
            StatusCode::FORBIDDEN,
            "sign-out is a change too"
        );
        let out = server
            .call(
                Method::DELETE,
                "/session",
                None,
                &[("cookie", &cookie), (CSRF_HEADER, &csrf)],
            )
            .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        let cleared = out.headers["set-cookie"].to_str().unwrap();
        assert!(
            cleared.starts_with(&format!("{SESSION_COOKIE}=;")) && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        let after = get_as(&server, "/tasks", &cookie).await;
        assert_eq!(
            after.status,
            StatusCode::UNAUTHORIZED,
            "the session is gone server-side"
        );
        let again = get_as(&server, "/session", &cookie).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn a_session_expires_on_the_clock_and_is_secure_when_asked() {
    on_each_database(|db: TestDatabase| async move {
        let settings = ApiSettings {
            session_ttl: 60.0,
            secure_cookies: true,
            ..ApiSettings::default()
        };
        let server = serve_with(db, header_access(), settings).await;
        let (cookie, _, reply) = sign_in(&server, OPERATOR).await;
        let set = reply.headers["set-cookie"].to_str().unwrap();
        assert!(
            set.contains("Secure") && set.contains("Max-Age=60"),
            "{set}"
        );
        let fresh = get_as(&server, "/tasks", &cookie).await;
        assert_eq!(fresh.status, StatusCode::OK);
        server.clock.advance(Duration::from_secs(61));
        let stale = get_as(&server, "/tasks", &cookie).await;
        assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn behind_a_tls_proxy_the_cookie_is_secure() {
    on_each_database(|db: TestDatabase| async move {
        let server = serve(db, header_access()).await;
        let reply = server
            .call(
                Method::POST,
                "/session",
                None,
                &[("x-test-grants", OPERATOR), ("x-forwarded-proto", "https")],
            )
            .await;
        assert!(
            reply.headers["set-cookie"]
                .to_str()
                .unwrap()
                .contains("; Secure")
        );
    })
    .await;
}

#[tokio::test]
async fn sessions_are_off_with_the_dashboard() {
    on_each_database(|db: TestDatabase| async move {
        let settings = ApiSettings {
            ui: false,
            ..ApiSettings::default()
        };
        let server = serve_with(db, header_access(), settings).await;
        let reply = server
            .call(
                Method::POST,
                "/session",
                None,
                &[("x-test-grants", OPERATOR)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    })
    .await;
}

/// Real authenticators: a JWT signed with the configured secret and an API key from the
/// configuration, each given in the sign-in body.
fn real_access(key: &str) -> AccessControl {
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let config: AuthConfig = serde_json::from_value(json!({
        "authenticators": ["jwt", "api_key"],
        "jwt": {"algorithms": ["HS256"], "secret": SECRET},
        "api_keys": {"database": false, "keys": [
            {"name": "viewer", "hash": hash, "permissions": ["tasker.task:index"]}
        ]},
    }))
    .unwrap();
    config.build(Profile::Development, None).unwrap().access
}

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn token(exp: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp, "iat": chrono::Utc::now().timestamp() - 5,
                "permissions": ["tasker.task:index", "tasker.task:create", "tasker.task:cancel"]}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn sign_in_takes_a_token_or_an_api_key_and_refuses_bad_ones() {
    on_each_database(|db: TestDatabase| async move {
        let key = "tsk_session_test_key_0123456789abcdef";
        let server = serve(db, real_access(key)).await;
        let exp = chrono::Utc::now().timestamp() + 600;
        let with_token = server.post("/session", json!({"token": token(exp)})).await;
        assert_eq!(
            with_token.status,
            StatusCode::CREATED,
            "{}",
            with_token.body
        );
        assert_eq!(with_token.body["subject"], "alice");
        assert_eq!(with_token.body["method"], "jwt");
        let set = with_token.headers["set-cookie"].to_str().unwrap();
        let max_age: i64 = set
            .split("Max-Age=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            max_age <= 600 && max_age > 500,
            "capped by the token's exp: {set}"
        );
        let cookie = cookie_of(&with_token);
        let listed = get_as(&server, "/tasks", &cookie).await;
        assert_eq!(listed.status, StatusCode::OK);

        let with_key = server.post("/session", json!({"api_key": key})).await;
        assert_eq!(with_key.status, StatusCode::CREATED, "{}", with_key.body);
        assert_eq!(with_key.body["subject"], "viewer");
        assert_eq!(with_key.body["permissions"], json!(["tasker.task:index"]));

        for bad in [
            json!({"token": "not-a-token"}),
            json!({"api_key": "tsk_wrong"}),
            json!({"token": token(chrono::Utc::now().timestamp() - 3600)}),
            json!({}),
        ] {
            let refused = server.post("/session", bad.clone()).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{bad}");
            assert!(refused.headers.get("set-cookie").is_none());
        }
        let cross_site = server
            .call(
                Method::POST,
                "/session",
                Some(json!({"api_key": key})),
                &[("sec-fetch-site", "cross-site")],
            )
            .await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        assert!(cross_site.headers.get("set-cookie").is_none());
        let both = server
            .post("/session", json!({"token": "a", "api_key": "b"}))
            .await;
        assert_eq!(both.status, StatusCode::BAD_REQUEST);
        let unknown: Value = server.post("/session", json!({"password": "x"})).await.body;
        assert_eq!(unknown["error"]["code"], "invalid_body");
    })
    .await;
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use tasker_api::CacheSettings;

    #[tokio::test]
    async fn a_session_started_on_one_replica_works_and_ends_on_every_replica() {
        let Ok(url) = std::env::var("TASKER_TEST_REDIS_URL") else {
            return;
        };
        on_each_database(move |db| {
            let settings = CacheSettings {
                redis_url: Some(url.clone()),
                key_prefix: format!("tasker-test:{}:", uuid::Uuid::new_v4()),
                ..CacheSettings::default()
            };
            async move {
                let ttl = Duration::from_secs(15);
                let one = crate::support::serve_api(db, header_access(), |api| {
                    api.cache(settings.build().unwrap(), ttl)
                })
                .await;
                let two = one
                    .replica(header_access(), |api| {
                        api.cache(settings.build().unwrap(), ttl)
                    })
                    .await;
                let (cookie, csrf, _) = sign_in(&one, OPERATOR).await;
                let there = get_as(&two, "/tasks", &cookie).await;
                assert_eq!(there.status, StatusCode::OK, "the session is in Redis");
                let out = two
                    .call(
                        Method::DELETE,
                        "/session",
                        None,
                        &[("cookie", &cookie), (CSRF_HEADER, &csrf)],
                    )
                    .await;
                assert_eq!(out.status, StatusCode::NO_CONTENT);
                let here = get_as(&one, "/tasks", &cookie).await;
                assert_eq!(
                    here.status,
                    StatusCode::UNAUTHORIZED,
                    "revoked for every replica"
                );
            }
        })
        .await;
    }
}
