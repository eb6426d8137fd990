//! Hostile and broken credentials. Every case must be refused, for the reason stated: a token
//! refused for the wrong reason would mean a check ran by accident.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_auth::jwt::{KeySet, SigningKey, StaticKeySet, VerificationKey};
use tasker_auth::{
    ApiKey, ApiKeyAuthenticator, AuthError, Authenticator, ConfiguredApiKeys, JwtAlgorithm,
    JwtAuthenticator, JwtPolicy, Rejection, StoredApiKey, TokenRejection,
};

use crate::support::*;

fn rs256() -> SigningKey {
    signer("rsa-private.pem", JwtAlgorithm::RS256)
}

fn good_token() -> String {
    rs256().sign_claims(&good_claims()).unwrap()
}

/// Verifies `token` at `t0()` and returns the rejection, failing if it was accepted.
fn refused(token: &str) -> TokenRejection {
    match verifier().verify(token, t0()) {
        Ok(verified) => panic!("accepted: {verified:?}"),
        Err(err) => token_rejection(err),
    }
}

fn check(name: &str, token: &str, expect: TokenRejection) {
    assert_eq!(refused(token), expect, "case `{name}`");
    // The same token through the Authorization header gets the same answer.
    let err = run(verifier().authenticate(&bearer(token), t0())).unwrap_err();
    assert_eq!(token_rejection(err), expect, "case `{name}` via header");
}

fn malformed(problem: &'static str) -> TokenRejection {
    TokenRejection::Malformed { problem }
}

#[test]
fn the_good_token_is_accepted() {
    // The baseline every attack below departs from.
    let verified = verifier().verify(&good_token(), t0()).unwrap();
    assert_eq!(verified.principal.subject, "alice");
    assert_eq!(verified.algorithm, JwtAlgorithm::RS256);
}

#[test]
fn alg_none() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = raw_token(json!({"alg": alg, "typ": "JWT"}), &good_claims(), "");
        check(
            alg,
            &token,
            TokenRejection::AlgorithmNotAllowed { alg: alg.into() },
        );
    }
    // With a signature copied from a genuine token.
    let signature = good_token().rsplit('.').next().unwrap().to_owned();
    let token = raw_token(json!({"alg": "none"}), &good_claims(), &signature);
    check(
        "none with a signature",
        &token,
        TokenRejection::AlgorithmNotAllowed { alg: "none".into() },
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_as_secret() {
    let forged = SigningKey::hmac(&key_bytes("rsa-public.pem"), JwtAlgorithm::HS256)
        .unwrap()
        .sign_claims(&good_claims())
        .unwrap();
    // HS256 accepted (with its own secret): the public key is never an HMAC secret.
    check("HS256 configured", &forged, TokenRejection::BadSignature);
    // Only RS256 accepted: the algorithm itself is refused.
    let rs_only = verifier_with(JwtPolicy::new(vec![JwtAlgorithm::RS256]));
    let err = rs_only.verify(&forged, t0()).unwrap_err();
    assert_eq!(
        token_rejection(err),
        TokenRejection::AlgorithmNotAllowed {
            alg: "HS256".into()
        }
    );
    // HS256 accepted but only the RSA key configured: no key can verify HMAC at all.
    let keys = KeySet::new(vec![public_key("rsa-public.pem")]);
    let confused = JwtAuthenticator::new(
        JwtPolicy::new(vec![JwtAlgorithm::RS256, JwtAlgorithm::HS256]),
        vec![Arc::new(StaticKeySet::new(keys))],
    );
    let err = confused.verify(&forged, t0()).unwrap_err();
    assert_eq!(
        token_rejection(err),
        TokenRejection::NoKeyForAlgorithm {
            alg: JwtAlgorithm::HS256
        }
    );
}

#[test]
fn an_ec_signature_claiming_to_be_rsa() {
    let es = signer("ec256-private.pem", JwtAlgorithm::ES256)
        .sign_claims(&good_claims())
        .unwrap();
    let parts: Vec<&str> = es.split('.').collect();
    let header = b64(json!({"alg": "RS256", "typ": "JWT"}).to_string().as_bytes());
    let token = format!("{header}.{}.{}", parts[1], parts[2]);
    check(
        "ES256 signature as RS256",
        &token,
        TokenRejection::BadSignature,
    );
}

#[test]
fn expired() {
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("exp".into(), json!(t0().timestamp() - 31));
        }))
        .unwrap();
    check(
        "expired beyond the leeway",
        &token,
        TokenRejection::Expired {
            expired_at: at(-31),
            now: t0(),
        },
    );
    // Within the leeway it still passes: the leeway is honoured, not ignored.
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("exp".into(), json!(t0().timestamp() - 29));
        }))
        .unwrap();
    assert!(verifier().verify(&token, t0()).is_ok());
}

#[test]
fn exp_missing_or_not_a_number() {
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.remove("exp");
        }))
        .unwrap();
    check(
        "no exp",
        &token,
        TokenRejection::MissingClaim {
            claim: "exp".into(),
        },
    );
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("exp".into(), json!("tomorrow"));
        }))
        .unwrap();
    check(
        "exp as text",
        &token,
        TokenRejection::MissingClaim {
            claim: "exp".into(),
        },
    );
}

#[test]
fn not_before_in_the_future() {
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("nbf".into(), json!(t0().timestamp() + 31));
        }))
        .unwrap();
    check(
        "nbf",
        &token,
        TokenRejection::NotYetValid {
            not_before: at(31),
            now: t0(),
        },
    );
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("nbf".into(), json!(t0().timestamp() + 29));
        }))
        .unwrap();
    assert!(verifier().verify(&token, t0()).is_ok(), "within the leeway");
}

#[test]
fn issued_in_the_future() {
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("iat".into(), json!(t0().timestamp() + 600));
        }))
        .unwrap();
    check(
        "iat",
        &token,
        TokenRejection::IssuedInTheFuture {
            issued_at: at(600),
            now: t0(),
        },
    );
}

#[test]
fn wrong_issuer_or_audience() {
    let sign = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        rs256().sign_claims(&claims_with(|c| edit(c))).unwrap()
    };
    check(
        "wrong iss",
        &sign(&|c| {
            c.insert("iss".into(), json!("https://evil.example"));
        }),
        TokenRejection::WrongIssuer,
    );
    check(
        "no iss",
        &sign(&|c| {
            c.remove("iss");
        }),
        TokenRejection::MissingClaim {
            claim: "iss".into(),
        },
    );
    check(
        "wrong aud",
        &sign(&|c| {
            c.insert("aud".into(), json!("billing"));
        }),
        TokenRejection::WrongAudience,
    );
    check(
        "aud list without ours",
        &sign(&|c| {
            c.insert("aud".into(), json!(["billing", "reports"]));
        }),
        TokenRejection::WrongAudience,
    );
    check(
        "no aud",
        &sign(&|c| {
            c.remove("aud");
        }),
        TokenRejection::MissingClaim {
            claim: "aud".into(),
        },
    );
}

#[test]
fn signed_with_another_key() {
    let other = signer("rsa-other-private.pem", JwtAlgorithm::RS256)
        .sign_claims(&good_claims())
        .unwrap();
    check("another RSA key", &other, TokenRejection::BadSignature);
    let other_secret = SigningKey::hmac(
        b"another-secret-that-is-long-enough-32",
        JwtAlgorithm::HS256,
    )
    .unwrap()
    .sign_claims(&good_claims())
    .unwrap();
    check(
        "another secret",
        &other_secret,
        TokenRejection::BadSignature,
    );
    // A P-384 key signing "ES256" tokens does not fit the P-256 algorithm.
    let parts: Vec<String> = signer("ec384-private.pem", JwtAlgorithm::ES384)
        .sign_claims(&good_claims())
        .unwrap()
        .split('.')
        .map(str::to_owned)
        .collect();
    let header = b64(json!({"alg": "ES256"}).to_string().as_bytes());
    let token = format!("{header}.{}.{}", parts[1], parts[2]);
    check(
        "P-384 signature as ES256",
        &token,
        TokenRejection::BadSignature,
    );
}

#[test]
fn unknown_kid() {
    let (set, _) = KeySet::from_jwks(&key_bytes("jwks.json"), "jwks.json").unwrap();
    let jwks = JwtAuthenticator::new(
        JwtPolicy::new(vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]),
        vec![Arc::new(StaticKeySet::new(set))],
    );
    let token = rs256()
        .with_kid("rsa-2025-retired")
        .sign_claims(&good_claims())
        .unwrap();
    assert_eq!(
        token_rejection(jwks.verify(&token, t0()).unwrap_err()),
        TokenRejection::UnknownKeyId {
            kid: "rsa-2025-retired".into()
        }
    );
    // A real kid of another key type: the key exists, but cannot verify RS256.
    let token = rs256()
        .with_kid("ec-2026-01")
        .sign_claims(&good_claims())
        .unwrap();
    assert_eq!(
        token_rejection(jwks.verify(&token, t0()).unwrap_err()),
        TokenRejection::NoKeyForAlgorithm {
            alg: JwtAlgorithm::RS256
        }
    );
    // The right key under the other RSA key's kid: only that key is tried.
    let token = rs256()
        .with_kid("rsa-2026-02")
        .sign_claims(&good_claims())
        .unwrap();
    assert_eq!(
        token_rejection(jwks.verify(&token, t0()).unwrap_err()),
        TokenRejection::BadSignature
    );
}

#[test]
fn tampered_header_payload_or_signature() {
    let token = good_token();
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64(json!({"alg": "RS256", "typ": "JWT", "kid": "x"})
        .to_string()
        .as_bytes());
    check(
        "header",
        &format!("{header}.{}.{}", parts[1], parts[2]),
        TokenRejection::BadSignature,
    );
    let mut claims: serde_json::Map<String, Value> =
        serde_json::from_slice(&unb64(parts[1])).unwrap();
    claims.insert("sub".into(), json!("admin"));
    claims.insert("permissions".into(), json!(["*"]));
    let payload = b64(Value::Object(claims).to_string().as_bytes());
    check(
        "payload",
        &format!("{}.{payload}.{}", parts[0], parts[2]),
        TokenRejection::BadSignature,
    );
    let mut signature = unb64(parts[2]);
    signature[10] ^= 0x01;
    check(
        "signature",
        &format!("{}.{}.{}", parts[0], parts[1], b64(&signature)),
        TokenRejection::BadSignature,
    );
    check(
        "signature of another token",
        &format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            rs256()
                .sign_claims(&claims_with(|c| {
                    c.insert("sub".into(), json!("bob"));
                }))
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
        ),
        TokenRejection::BadSignature,
    );
}

#[test]
fn truncated() {
    let token = good_token();
    // An RS256 signature is 342 base64url characters; 340 still decode (to 255 bytes).
    check(
        "signature cut short",
        &token[..token.len() - 2],
        TokenRejection::BadSignature,
    );
    check(
        "signature cut mid-character",
        &token[..token.len() - 1],
        malformed("payload or signature is not base64url"),
    );
    let (message, _) = token.rsplit_once('.').unwrap();
    check(
        "no signature part",
        message,
        malformed("not three dot-separated parts"),
    );
    check(
        "empty signature",
        &format!("{message}."),
        TokenRejection::BadSignature,
    );
    check(
        "header only",
        token.split('.').next().unwrap(),
        malformed("not three dot-separated parts"),
    );
    assert_eq!(refused(""), malformed("not three dot-separated parts"));
    let err = run(verifier().authenticate(&bearer(""), t0())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`authorization` header has an empty bearer token"
    );
    check(
        "four parts",
        &format!("{token}.x"),
        malformed("not three dot-separated parts"),
    );
}

#[test]
fn not_base64() {
    let token = good_token();
    let parts: Vec<&str> = token.split('.').collect();
    check(
        "header",
        &format!("!!!.{}.{}", parts[1], parts[2]),
        malformed("header is not base64url"),
    );
    check(
        "header padded",
        &format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
        malformed("header is not base64url"),
    );
    check(
        "payload",
        &format!("{}.%%%.{}", parts[0], parts[2]),
        TokenRejection::BadSignature,
    );
    check(
        "signature",
        &format!("{}.{}.***", parts[0], parts[1]),
        malformed("payload or signature is not base64url"),
    );
    check(
        "header not JSON",
        &format!("{}.{}.{}", b64(b"alg=RS256"), parts[1], parts[2]),
        malformed("header is not a JSON object"),
    );
}

#[test]
fn payload_that_is_not_an_object() {
    // Correctly signed, but the payload is a JSON array.
    let header = b64(json!({"alg": "HS256"}).to_string().as_bytes());
    let payload = b64(b"[\"alice\"]");
    let signature = {
        use jsonwebtoken::crypto::sign;
        sign(
            format!("{header}.{payload}").as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap()
    };
    check(
        "array payload",
        &format!("{header}.{payload}.{signature}"),
        malformed("payload is not a JSON object"),
    );
}

#[test]
fn critical_header_extensions() {
    let token = raw_token(
        json!({"alg": "RS256", "crit": ["exp"], "exp": 0}),
        &good_claims(),
        "c2ln",
    );
    check(
        "crit",
        &token,
        malformed("header has critical extensions this verifier does not know"),
    );
}

#[test]
fn oversized() {
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("padding".into(), json!("x".repeat(9000)));
        }))
        .unwrap();
    check(
        "oversized",
        &token,
        TokenRejection::TooLarge {
            size: token.len(),
            limit: 8192,
        },
    );
    // The limit applies before parsing: garbage of that size is refused the same way.
    let garbage = "a".repeat(8193);
    check(
        "oversized garbage",
        &garbage,
        TokenRejection::TooLarge {
            size: 8193,
            limit: 8192,
        },
    );
}

#[test]
fn subject_missing_or_empty() {
    let sign = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        rs256().sign_claims(&claims_with(|c| edit(c))).unwrap()
    };
    check(
        "no sub",
        &sign(&|c| {
            c.remove("sub");
        }),
        TokenRejection::MissingClaim {
            claim: "sub".into(),
        },
    );
    check(
        "empty sub",
        &sign(&|c| {
            c.insert("sub".into(), json!("  "));
        }),
        TokenRejection::InvalidClaim {
            claim: "sub".into(),
            problem: "is empty",
        },
    );
    check(
        "numeric sub",
        &sign(&|c| {
            c.insert("sub".into(), json!(42));
        }),
        TokenRejection::MissingClaim {
            claim: "sub".into(),
        },
    );
}

#[test]
fn permissions_claim_of_the_wrong_type() {
    let token = rs256()
        .sign_claims(&claims_with(|c| {
            c.insert("permissions".into(), json!({"tasker.task": "index"}));
        }))
        .unwrap();
    check(
        "permissions object",
        &token,
        TokenRejection::InvalidClaim {
            claim: "permissions".into(),
            problem: "is not a list of strings",
        },
    );
}

#[test]
fn algorithms_not_configured() {
    let token = signer("rsa-private.pem", JwtAlgorithm::RS512)
        .sign_claims(&good_claims())
        .unwrap();
    check(
        "RS512",
        &token,
        TokenRejection::AlgorithmNotAllowed {
            alg: "RS512".into(),
        },
    );
    let token = raw_token(json!({"alg": "HS1"}), &good_claims(), "c2ln");
    check(
        "unknown alg",
        &token,
        TokenRejection::AlgorithmNotAllowed { alg: "HS1".into() },
    );
    let token = raw_token(json!({"typ": "JWT"}), &good_claims(), "c2ln");
    check("no alg", &token, malformed("header has no `alg`"));
}

#[test]
fn repeated_or_binary_authorization_header() {
    let mut headers = bearer(&good_token());
    headers.append("authorization", "Bearer other".parse().unwrap());
    let err = run(verifier().authenticate(&headers, t0())).unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Rejected(Rejection::MalformedHeader {
                header: "authorization",
                problem: "is repeated"
            })
        ),
        "{err:?}"
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    );
    let err = run(verifier().authenticate(&headers, t0())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`authorization` header is not visible ASCII"
    );
}

// --- API keys

fn keys_at_t0() -> (ApiKeyAuthenticator, [ApiKey; 3]) {
    let live = ApiKey::generate().unwrap();
    let expired = ApiKey::generate().unwrap();
    let revoked = ApiKey::generate().unwrap();
    let store = ConfiguredApiKeys::new(vec![
        StoredApiKey::new("1", "ci", live.hash()).with_permissions(["tasker.task:index"]),
        StoredApiKey::new("2", "old", expired.hash()).expiring_at(Some(at(-1))),
        StoredApiKey::new("3", "leaked", revoked.hash()).revoked(Some(at(-3600))),
    ]);
    (
        ApiKeyAuthenticator::new(vec![Arc::new(store)]),
        [live, expired, revoked],
    )
}

fn key_rejection(authenticator: &ApiKeyAuthenticator, key: &str) -> Rejection {
    match run(authenticator.authenticate(&api_key_header(key), t0())) {
        Err(AuthError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection for `{key}`, got {other:?}"),
    }
}

#[test]
fn api_keys_wrong_expired_or_revoked() {
    let (authenticator, [live, expired, revoked]) = keys_at_t0();
    let principal = run(authenticator.authenticate(&api_key_header(live.expose()), t0())).unwrap();
    assert_eq!(principal.subject, "ci", "the live key is the baseline");

    let wrong = ApiKey::generate().unwrap();
    assert_eq!(
        key_rejection(&authenticator, wrong.expose()),
        Rejection::UnknownApiKey
    );
    let almost = &live.expose()[..live.expose().len() - 1];
    assert_eq!(
        key_rejection(&authenticator, almost),
        Rejection::UnknownApiKey
    );
    let uppercase = live.expose().to_uppercase();
    assert_eq!(
        key_rejection(&authenticator, &uppercase),
        Rejection::UnknownApiKey
    );
    // The stored hash itself is not a key.
    assert_eq!(
        key_rejection(&authenticator, &live.hash().to_hex()),
        Rejection::UnknownApiKey
    );
    assert_eq!(
        key_rejection(&authenticator, &"k".repeat(4096)),
        Rejection::UnknownApiKey
    );
    assert_eq!(
        key_rejection(&authenticator, expired.expose()),
        Rejection::ApiKeyExpired {
            key_id: "2".into(),
            expired_at: at(-1)
        }
    );
    assert_eq!(
        key_rejection(&authenticator, revoked.expose()),
        Rejection::ApiKeyRevoked {
            key_id: "3".into(),
            revoked_at: at(-3600)
        }
    );
}

#[test]
fn api_key_header_repeated() {
    let (authenticator, [live, ..]) = keys_at_t0();
    let mut headers = api_key_header(live.expose());
    headers.append("x-api-key", live.expose().parse().unwrap());
    let err = run(authenticator.authenticate(&headers, t0())).unwrap_err();
    assert_eq!(err.to_string(), "`x-api-key` header is repeated");
}

#[test]
fn a_token_in_the_api_key_header_is_not_a_key() {
    let (authenticator, _) = keys_at_t0();
    assert_eq!(
        key_rejection(&authenticator, &good_token()),
        Rejection::UnknownApiKey
    );
}

#[test]
fn hmac_key_verification_key_refuses_short_secrets() {
    let err = VerificationKey::hmac(b"short", "auth.jwt.secret").unwrap_err();
    assert_eq!(
        err.to_string(),
        "auth.jwt.secret is 5 bytes long; an HMAC secret needs at least 32"
    );
}
