//! `tasker token` and `tasker keys` as an operator runs them, and `tasker serve` accepting
//! what they make: a JWT whose key comes from a JWKS URL, and a database API key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tasker_auth::jwt::{SigningKey, TokenRequest};
use tasker_persistence::testing::on_each_database;

use crate::text;

const SECRET: &str = "cli-test-secret-0123456789abcdef0123456789";

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tasker-auth/tests/keys")
}

fn key(name: &str) -> String {
    keys_dir().join(name).display().to_string()
}

/// Runs `tasker` with this configuration file and no stray environment.
fn tasker_with(config: &Path, args: &[&str]) -> Output {
    tasker_stdin(config, args, None)
}

fn tasker_stdin(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("TASKER_DATABASE_URL")
        .env_remove("TASKER_AUTH__JWT__SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tasker binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(stdin) = stdin {
        input.write_all(stdin.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn config_file(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("tasker.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn hmac_config(dir: &Path) -> PathBuf {
    config_file(
        dir,
        &format!(
            "[auth]\nauthenticators = [\"jwt\"]\nroles = {{ operator = [\"tasker.task:*\"] }}\n[auth.jwt]\nalgorithms = [\"HS384\", \"HS256\"]\nsecret = \"{SECRET}\"\nissuer = \"https://tasker.example\"\naudience = \"tasker-api\"\n"
        ),
    )
}

fn claims(token: &str) -> Map<String, Value> {
    let part = |index: usize| -> Map<String, Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(index).unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    part(1)
}

fn header(token: &str) -> Map<String, Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn token_mint_signs_with_the_secret_and_prints_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = hmac_config(dir.path());
    let out = tasker_with(
        &config,
        &[
            "token",
            "mint",
            "--sub",
            "alice",
            "--permission",
            "tasker.task:index",
            "--permission",
            "tasker.workflow_step:*",
            "--role",
            "operator",
            "--ttl",
            "90m",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "only the token: {stdout}");
    assert_eq!(token.split('.').count(), 3);
    assert!(!stdout.contains(SECRET) && !text(&out.stderr).contains(SECRET));
    assert_eq!(
        text(&out.stderr),
        "",
        "no warning for a token this configuration accepts"
    );
    // The first configured HS* algorithm.
    assert_eq!(header(token)["alg"], "HS384");
    let claims = claims(token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "https://tasker.example");
    assert_eq!(claims["aud"], "tasker-api");
    assert_eq!(
        claims["permissions"],
        json!(["tasker.task:index", "tasker.workflow_step:*"])
    );
    assert_eq!(claims["roles"], json!(["operator"]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 90 * 60);

    // The same configuration accepts it.
    let inspected = tasker_with(&config, &["token", "inspect", token]);
    assert_eq!(
        inspected.status.code(),
        Some(0),
        "{}{}",
        text(&inspected.stdout),
        text(&inspected.stderr)
    );
    let report = text(&inspected.stdout);
    assert!(
        report.contains("accepted: signature (HS384) verified by auth.jwt.secret"),
        "{report}"
    );
    assert!(report.contains("\"sub\": \"alice\""), "{report}");
    assert!(!report.contains(SECRET));
}

#[test]
fn token_mint_refuses_bad_requests_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = hmac_config(dir.path());
    let mint = |extra: &[&str]| {
        let mut args = vec!["token", "mint", "--sub", "alice", "--ttl", "1h"];
        args.extend_from_slice(extra);
        let out = tasker_with(&config, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
        assert!(out.stdout.is_empty(), "no token on failure");
        text(&out.stderr)
    };
    let err = mint(&["--permission", "tasker.task:frobnicate"]);
    assert!(
        err.contains("--permission `tasker.task:frobnicate`") && err.contains("frobnicate"),
        "{err}"
    );
    let err = mint(&["--permission", "*"]);
    assert!(err.contains("auth.allow_global_wildcard"), "{err}");
    let out = tasker_with(
        &config,
        &["token", "mint", "--sub", "alice", "--ttl", "soon"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--ttl: `soon` is not a duration"),
        "{}",
        text(&out.stderr)
    );

    // No signing key at all: the error names both settings.
    let bare = config_file(
        dir.path(),
        &format!(
            "[auth]\nauthenticators = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"RS256\"]\npublic_keys = [\"{}\"]\n",
            key("rsa-public.pem")
        ),
    );
    let out = tasker_with(&bare, &["token", "mint", "--sub", "a", "--ttl", "1h"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no signing key is configured: set auth.jwt.private_key")
            && err.contains("auth.jwt.secret"),
        "{err}"
    );
}

#[test]
fn a_private_key_signs_and_inspect_judges_tokens_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            "[auth]\nauthenticators = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"RS256\"]\nprivate_key = \"{}\"\npublic_keys = [\"{}\"]\nissuer = \"https://tasker.example\"\n",
            key("rsa-private.pem"),
            key("rsa-public.pem")
        ),
    );
    let out = tasker_with(
        &config,
        &[
            "token",
            "mint",
            "--sub",
            "robot",
            "--permission",
            "tasker.task:create",
            "--ttl",
            "3600",
            "--kid",
            "k1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(header(&token)["alg"], "RS256");
    assert_eq!(header(&token)["kid"], "k1");
    assert_eq!(claims(&token)["iss"], "https://tasker.example");

    // From stdin, as one JSON document.
    let out = tasker_stdin(
        &config,
        &["token", "inspect", "-", "--json"],
        Some(&format!("{token}\n")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["accepted"], true);
    assert_eq!(report["subject"], "robot");
    assert_eq!(report["header"]["kid"], "k1");
    assert_eq!(
        report["claims"]["permissions"],
        json!(["tasker.task:create"])
    );
    assert!(report["times"]["exp"].as_str().unwrap().ends_with('Z'));

    // Refusals, each with its reason and exit 1.
    let signer = |file: &str| {
        SigningKey::from_private_pem(&std::fs::read(key(file)).unwrap(), None).unwrap()
    };
    let request = |issuer: &str| {
        let mut request = TokenRequest::new("robot", std::time::Duration::from_secs(60));
        request.issuer = Some(issuer.to_owned());
        request
    };
    let two_hours_ago: DateTime<Utc> = Utc::now() - chrono::Duration::hours(2);
    let cases = [
        (
            signer("rsa-private.pem")
                .mint(&request("https://tasker.example"), two_hours_ago)
                .unwrap(),
            "refused: token expired at ",
        ),
        (
            signer("rsa-private.pem")
                .mint(&request("https://elsewhere.example"), Utc::now())
                .unwrap(),
            "refused: token issuer is not the configured issuer",
        ),
        (
            signer("rsa-other-private.pem")
                .mint(&request("https://tasker.example"), Utc::now())
                .unwrap(),
            "refused: token signature does not verify",
        ),
        (
            SigningKey::hmac(SECRET.as_bytes(), tasker_auth::JwtAlgorithm::HS256)
                .unwrap()
                .mint(&request("https://tasker.example"), Utc::now())
                .unwrap(),
            "refused: token algorithm `HS256` is not accepted",
        ),
        (
            "not-a-token".to_owned(),
            "refused: token is malformed: not three dot-separated parts",
        ),
    ];
    for (token, reason) in cases {
        let out = tasker_with(&config, &["token", "inspect", &token]);
        let report = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{report}");
        assert!(report.contains(reason), "expected `{reason}` in:\n{report}");
    }

    // A configuration that accepts no tokens says so.
    let open = config_file(dir.path(), "[auth]\nauthenticators = [\"open\"]\n");
    let out = tasker_with(&open, &["token", "inspect", &token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("refused: `jwt` is not in auth.authenticators"),
        "{}",
        text(&out.stdout)
    );
}

fn keys_config(dir: &Path, url: &str) -> PathBuf {
    config_file(
        dir,
        &format!("[database]\nurl = \"{url}\"\n[auth]\nauthenticators = [\"api_key\"]\n"),
    )
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_without_showing_secrets() {
    on_each_database(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let config = keys_config(dir.path(), &db.url);
        let out = tasker_with(
            &config,
            &[
                "keys",
                "create",
                "--name",
                "deployer",
                "--permission",
                "tasker.task:create",
                "--permission",
                "tasker.template:*",
                "--expires-in",
                "30d",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let key = text(&out.stdout).trim().to_owned();
        assert!(key.starts_with("tsk_") && key.len() == 68, "{key}");
        assert!(
            text(&out.stderr).contains("X-API-Key"),
            "{}",
            text(&out.stderr)
        );
        let stored = db.store.list_api_keys().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].key_hash,
            tasker_auth::ApiKeyHash::of(&key).to_hex()
        );
        let expires_in = stored[0].expires_at.unwrap() - stored[0].created_at;
        assert_eq!(expires_in, chrono::Duration::days(30));

        let out = tasker_with(
            &config,
            &[
                "keys",
                "create",
                "--name",
                "reader",
                "--permission",
                "tasker.task:index",
                "--expires-at",
                "2999-01-01T00:00:00Z",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let second = text(&out.stdout).trim().to_owned();

        let table = tasker_with(&config, &["keys", "list"]);
        let table = text(&table.stdout);
        let listed = tasker_with(&config, &["keys", "list", "--json"]);
        let listed_text = text(&listed.stdout);
        for secret in [&key, &second, &stored[0].key_hash, &stored[0].key_prefix] {
            assert!(!table.contains(secret.as_str()), "{table}");
            assert!(!listed_text.contains(secret.as_str()), "{listed_text}");
        }
        assert!(table.starts_with("ID  NAME"), "{table}");
        assert!(
            table.contains("tasker.task:create,tasker.template:*"),
            "{table}"
        );
        let listed: Value = serde_json::from_str(&listed_text).unwrap();
        assert_eq!(listed[0]["name"], "deployer");
        assert_eq!(listed[1]["expires_at"], "2999-01-01T00:00:00Z");
        assert_eq!(listed[1]["permissions"], json!(["tasker.task:index"]));
        assert_eq!(listed[1]["revoked_at"], Value::Null);
        assert_eq!(listed[1]["last_used_at"], Value::Null);

        // Bad input: a clear error naming it, and nothing stored.
        let refused = |args: &[&str], expect: &str| {
            let out = tasker_with(&config, args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert!(out.stdout.is_empty(), "{args:?}");
            let err = text(&out.stderr);
            assert!(err.contains(expect), "expected `{expect}` in: {err}");
        };
        refused(
            &[
                "keys",
                "create",
                "--name",
                "deployer",
                "--permission",
                "tasker.task:index",
            ],
            "an API key named `deployer` already exists (id 1)",
        );
        refused(
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--permission",
                "tasker.tsak:index",
            ],
            "--permission `tasker.tsak:index`: ",
        );
        refused(
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--permission",
                "tasker.task:index",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            "--expires-at `2001-01-01T00:00:00Z`: lies in the past",
        );
        refused(
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--permission",
                "tasker.task:index",
                "--expires-in",
                "forever",
            ],
            "--expires-in: `forever` is not a duration",
        );
        refused(
            &["keys", "revoke", "ghost"],
            "no API key has the name or id `ghost`",
        );
        refused(
            &["keys", "revoke", "999"],
            "no API key has the name or id `999`",
        );
        assert_eq!(db.store.list_api_keys().await.unwrap().len(), 2);

        // Revoke by name, then again (already revoked), then the other by id.
        let out = tasker_with(&config, &["keys", "revoke", "deployer"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("revoked API key `deployer` (id 1) at "));
        let out = tasker_with(&config, &["keys", "revoke", "deployer"]);
        assert!(out.status.success());
        assert!(
            text(&out.stdout).contains("was already revoked at"),
            "{}",
            text(&out.stdout)
        );
        let out = tasker_with(&config, &["keys", "revoke", "2"]);
        assert!(text(&out.stdout).starts_with("revoked API key `reader` (id 2)"));
        let stored = db.store.list_api_keys().await.unwrap();
        assert!(stored.iter().all(|k| k.revoked_at.is_some()));
        // A revoked name may be used again.
        let out = tasker_with(
            &config,
            &[
                "keys",
                "create",
                "--name",
                "deployer",
                "--permission",
                "tasker.task:index",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    })
    .await;
}

/// A JWKS endpoint on 127.0.0.1 serving what the test puts in, on a thread and runtime of its
/// own so it answers while the test blocks on a child process.
fn jwks_server(document: Arc<Mutex<String>>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/jwks.json",
                axum::routing::get(move || {
                    let document = Arc::clone(&document);
                    async move { document.lock().unwrap().clone() }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.ok();
        });
    });
    format!("http://{}/jwks.json", rx.recv().unwrap())
}

#[tokio::test]
async fn serve_accepts_a_jwks_signed_token_and_a_database_key_and_refuses_the_rest() {
    on_each_database(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let jwks = std::fs::read_to_string(keys_dir().join("jwks.json")).unwrap();
        let url = jwks_server(Arc::new(Mutex::new(jwks)));
        let config = config_file(
            dir.path(),
            &format!(
                // No cache TTL: a revocation is seen on the very next request.
                "[database]\nurl = \"{}\"\n[cache]\nttl = \"0s\"\n[auth]\nauthenticators = [\"jwt\", \"api_key\"]\n[auth.jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"{url}\"\njwks_refresh = \"5m\"\nprivate_key = \"{}\"\n",
                db.url,
                key("rsa-private.pem")
            ),
        );
        let out = tasker_with(
            &config,
            &["token", "mint", "--sub", "ci", "--permission", "tasker.task:index", "--ttl", "10m", "--kid", "rsa-2026-01"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let token = text(&out.stdout).trim().to_owned();
        // inspect fetches the JWKS URL too.
        let inspected = tasker_with(&config, &["token", "inspect", &token]);
        assert_eq!(
            inspected.status.code(),
            Some(0),
            "{}{}",
            text(&inspected.stdout),
            text(&inspected.stderr)
        );
        assert!(text(&inspected.stdout).contains(&url), "{}", text(&inspected.stdout));
        let out = tasker_with(
            &config,
            &["keys", "create", "--name", "reader", "--permission", "tasker.task:index"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let api_key = text(&out.stdout).trim().to_owned();

        let (mut server, base, stderr) = crate::serve::start_with_config(&config, &db.url, &[]);
        let client = reqwest::Client::new();
        let status = |request: reqwest::RequestBuilder| async move {
            request.send().await.unwrap().status().as_u16()
        };
        let tasks = format!("{base}/v1/tasks");
        assert_eq!(status(client.get(&tasks)).await, 401, "no credentials");
        assert_eq!(status(client.get(&tasks).bearer_auth(&token)).await, 200);
        assert_eq!(status(client.get(&tasks).header("X-API-Key", &api_key)).await, 200);
        // Signed by a key the JWKS does not hold, and a made-up API key.
        let other = SigningKey::from_private_pem(&std::fs::read(key("rsa-other-private.pem")).unwrap(), None)
            .unwrap()
            .with_kid("rsa-2026-01")
            .mint(&TokenRequest::new("ci", std::time::Duration::from_secs(600)), Utc::now())
            .unwrap();
        assert_eq!(status(client.get(&tasks).bearer_auth(&other)).await, 401);
        let made_up = format!("tsk_{}", "0".repeat(64));
        assert_eq!(status(client.get(&tasks).header("X-API-Key", &made_up)).await, 401);
        // The token grants tasker.task:index only.
        assert_eq!(
            status(client.post(&tasks).bearer_auth(&token).json(&json!({"namespace": "x", "name": "y"}))).await,
            403
        );
        // Revoked while the server runs: refused from the next request on.
        let out = tasker_with(&config, &["keys", "revoke", "reader"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(status(client.get(&tasks).header("X-API-Key", &api_key)).await, 401);
        // A minted token carries an id, so it can be revoked alone.
        let jti = claims(&token)["jti"].as_str().unwrap().to_owned();
        assert_eq!(jti.len(), 32, "{jti}");
        assert_eq!(status(client.get(&tasks).bearer_auth(&token)).await, 200);
        let out = tasker_with(&config, &["token", "revoke", &token, "--reason", "leaked in a log"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with(&format!("revoked token {jti} at ")), "{}", text(&out.stdout));
        assert_eq!(status(client.get(&tasks).bearer_auth(&token)).await, 401, "revoked");
        // A fresh token for the same subject still works.
        let out = tasker_with(
            &config,
            &["token", "mint", "--sub", "ci", "--permission", "tasker.task:index", "--ttl", "10m", "--kid", "rsa-2026-01"],
        );
        let fresh = text(&out.stdout).trim().to_owned();
        assert_eq!(status(client.get(&tasks).bearer_auth(&fresh)).await, 200);
        let out = tasker_with(&config, &["token", "revoke", "--jti", " "]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("--jti: must not be empty"), "{}", text(&out.stderr));
        Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
        let code = server.wait().unwrap().code();
        let rest = stderr.recv().unwrap();
        assert_eq!(code, Some(0), "{rest}");
    })
    .await;
}

#[tokio::test]
async fn serve_refuses_to_start_when_the_first_jwks_fetch_fails() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", listener.local_addr().unwrap())
    };
    let config = config_file(
        dir.path(),
        &format!(
            "[auth]\nauthenticators = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"{closed}\"\n"
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args([
            "serve",
            "--migrate",
            "--bind",
            "127.0.0.1:0",
            "--database",
            &database,
            "--config",
        ])
        .arg(&config)
        .env_remove("TASKER_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auth.jwt.jwks_url: the first fetch failed")
            && stderr.contains(&format!("fetching the JWKS document {closed} failed")),
        "{stderr}"
    );
    let bad = config_file(
        dir.path(),
        "[auth]\nauthenticators = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"ftp://keys.example/jwks.json\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args([
            "serve",
            "--migrate",
            "--bind",
            "127.0.0.1:0",
            "--database",
            &database,
            "--config",
        ])
        .arg(&bad)
        .env_remove("TASKER_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auth.jwt.jwks_url: must be an http:// or https:// URL"),
        "{stderr}"
    );
}
