//! Fixtures: the committed test keys, a fixed clock, token builders and header helpers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use http::HeaderMap;
use serde_json::{Map, Value, json};
use tasker_auth::jwt::{KeySet, SigningKey, StaticKeySet, VerificationKey};
use tasker_auth::{
    AuthError, JwtAlgorithm, JwtAuthenticator, JwtPolicy, Rejection, TokenRejection,
};

pub(crate) const SECRET: &str = "0123456789abcdef0123456789abcdef-test-only";
pub(crate) const ISSUER: &str = "https://issuer.example";
pub(crate) const AUDIENCE: &str = "tasker";

/// The fixed "now" of every test; time moves by adding to it, never by sleeping.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(seconds)
}

pub(crate) fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

pub(crate) fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

pub(crate) fn signer(private_key: &str, alg: JwtAlgorithm) -> SigningKey {
    SigningKey::from_private_pem(&key_bytes(private_key), Some(alg)).unwrap()
}

pub(crate) fn hmac_signer(alg: JwtAlgorithm) -> SigningKey {
    SigningKey::hmac(SECRET.as_bytes(), alg).unwrap()
}

pub(crate) fn public_key(name: &str) -> VerificationKey {
    VerificationKey::from_public_pem(&key_bytes(name), name).unwrap()
}

/// Claims that pass every check at `t0()`.
pub(crate) fn good_claims() -> Map<String, Value> {
    json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": t0().timestamp() - 60,
        "exp": t0().timestamp() + 3600,
        "permissions": ["tasker.task:index", "tasker.workflow_step:*"],
        "roles": ["operator"],
    })
    .as_object()
    .unwrap()
    .clone()
}

pub(crate) fn claims_with(edit: impl FnOnce(&mut Map<String, Value>)) -> Map<String, Value> {
    let mut claims = good_claims();
    edit(&mut claims);
    claims
}

/// A policy accepting every algorithm family, with issuer and audience checks and 30 s leeway.
pub(crate) fn policy() -> JwtPolicy {
    let mut policy = JwtPolicy::new(vec![
        JwtAlgorithm::HS256,
        JwtAlgorithm::RS256,
        JwtAlgorithm::PS256,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ]);
    policy.issuer = Some(ISSUER.to_owned());
    policy.audience = Some(AUDIENCE.to_owned());
    policy.leeway = Duration::from_secs(30);
    policy
}

/// The verifier of the attack suite: the HMAC secret, and the RSA, EC and Ed25519 public keys.
pub(crate) fn verifier() -> JwtAuthenticator {
    verifier_with(policy())
}

pub(crate) fn verifier_with(policy: JwtPolicy) -> JwtAuthenticator {
    let keys = KeySet::new(vec![
        VerificationKey::hmac(SECRET.as_bytes(), "test secret").unwrap(),
        public_key("rsa-public.pem"),
        public_key("ec256-public.pem"),
        public_key("ec384-public.pem"),
        public_key("ed25519-public.pem"),
    ]);
    JwtAuthenticator::new(policy, vec![Arc::new(StaticKeySet::new(keys))])
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// A token assembled by hand: any header, any claims, any signature.
pub(crate) fn raw_token(header: Value, claims: &Map<String, Value>, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(Value::Object(claims.clone()).to_string().as_bytes())
    )
}

pub(crate) fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

pub(crate) fn api_key_header(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());
    headers
}

/// The token rejection inside `err`, or a panic naming what came instead.
pub(crate) fn token_rejection(err: AuthError) -> TokenRejection {
    match err {
        AuthError::Rejected(Rejection::Token(rejection)) => rejection,
        other => panic!("expected a token rejection, got {other:?}"),
    }
}

pub(crate) fn run<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}
