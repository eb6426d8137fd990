//! Tokens that must be accepted, what they yield, and where keys come from.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tasker_auth::jwt::{
    FetchedKeySet, JwksFile, KeyError, KeySet, KeySetProvider, MintError, SigningKey, StaticKeySet,
    TokenRequest, VerificationKey, decode_unverified,
};
use tasker_auth::{
    AuthError, AuthMethod, Authenticator, Grant, JwtAlgorithm, JwtAuthenticator, JwtPolicy,
    TokenRejection,
};

use crate::support::*;

#[test]
fn every_algorithm_verifies_with_its_key() {
    let all = JwtPolicy::new(JwtAlgorithm::ALL.to_vec());
    let verifier = verifier_with(all);
    let cases = [
        (JwtAlgorithm::HS256, None),
        (JwtAlgorithm::HS384, None),
        (JwtAlgorithm::HS512, None),
        (JwtAlgorithm::RS256, Some("rsa-private.pem")),
        (JwtAlgorithm::RS384, Some("rsa-private.pem")),
        (JwtAlgorithm::RS512, Some("rsa-private.pem")),
        (JwtAlgorithm::PS256, Some("rsa-private.pem")),
        (JwtAlgorithm::PS384, Some("rsa-private.pem")),
        (JwtAlgorithm::PS512, Some("rsa-private.pem")),
        (JwtAlgorithm::ES256, Some("ec256-private.pem")),
        (JwtAlgorithm::ES384, Some("ec384-private.pem")),
        (JwtAlgorithm::EdDSA, Some("ed25519-private.pem")),
    ];
    assert_eq!(cases.len(), JwtAlgorithm::ALL.len());
    for (alg, private_key) in cases {
        let key = match private_key {
            Some(file) => signer(file, alg),
            None => hmac_signer(alg),
        };
        let token = key.sign_claims(&good_claims()).unwrap();
        let verified = verifier
            .verify(&token, t0())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.algorithm, alg);
    }
}

#[test]
fn the_principal_carries_subject_grants_roles_and_claims() {
    let token = hmac_signer(JwtAlgorithm::HS256)
        .sign_claims(&claims_with(|c| {
            c.insert(
                "permissions".into(),
                json!([
                    "tasker.task:index",
                    "tasker.workflow_step:*",
                    "bogus:x",
                    "*"
                ]),
            );
        }))
        .unwrap();
    let principal = run(verifier().authenticate(&bearer(&token), t0())).unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.method, AuthMethod::Jwt);
    assert_eq!(
        principal
            .permissions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["tasker.task:index", "tasker.workflow_step:*", "*"],
        "an unparsable grant is dropped; `*` is kept for the policy to judge"
    );
    assert_eq!(principal.roles, ["operator"]);
    assert_eq!(principal.claims["iss"], ISSUER);
}

#[test]
fn claim_names_are_configurable_and_scope_strings_split() {
    let mut policy = policy();
    policy.permissions_claim = "scope".into();
    policy.roles_claim = "groups".into();
    let token = hmac_signer(JwtAlgorithm::HS256)
        .sign_claims(&claims_with(|c| {
            c.insert("scope".into(), json!("tasker.task:show tasker.task:cancel"));
            c.insert("groups".into(), json!(["ops"]));
        }))
        .unwrap();
    let principal = verifier_with(policy)
        .verify(&token, t0())
        .unwrap()
        .principal;
    assert_eq!(
        principal.permissions,
        [
            "tasker.task:show".parse::<Grant>().unwrap(),
            "tasker.task:cancel".parse().unwrap()
        ]
    );
    assert_eq!(principal.roles, ["ops"]);
}

#[test]
fn issuer_and_audience_are_checked_only_when_configured() {
    let token = hmac_signer(JwtAlgorithm::HS256)
        .sign_claims(&claims_with(|c| {
            c.insert("iss".into(), json!("anyone"));
            c.insert("aud".into(), json!(["someone-else"]));
        }))
        .unwrap();
    let lax = verifier_with(JwtPolicy::new(vec![JwtAlgorithm::HS256]));
    assert!(lax.verify(&token, t0()).is_ok());
    let token = hmac_signer(JwtAlgorithm::HS256)
        .sign_claims(&claims_with(|c| {
            c.insert("aud".into(), json!(["reports", AUDIENCE]));
        }))
        .unwrap();
    assert!(
        verifier().verify(&token, t0()).is_ok(),
        "a list including ours"
    );
}

#[test]
fn no_bearer_token_means_no_credentials() {
    let err = run(verifier().authenticate(&http::HeaderMap::new(), t0())).unwrap_err();
    assert!(matches!(err, AuthError::NoCredentials));
    let mut basic = http::HeaderMap::new();
    basic.insert("authorization", "Basic YWxpY2U6eA==".parse().unwrap());
    let err = run(verifier().authenticate(&basic, t0())).unwrap_err();
    assert!(matches!(err, AuthError::NoCredentials));
}

#[test]
fn rotation_accepts_old_and_new_keys_and_kid_selects() {
    let (set, skipped) = KeySet::from_jwks(&key_bytes("jwks.json"), "jwks.json").unwrap();
    assert!(skipped.is_empty());
    assert_eq!(set.keys().len(), 4);
    let verifier = JwtAuthenticator::new(
        JwtPolicy::new(vec![
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ]),
        vec![Arc::new(StaticKeySet::new(set))],
    );
    for (file, kid, origin) in [
        (
            "rsa-private.pem",
            Some("rsa-2026-01"),
            "jwks.json key 0 (kid `rsa-2026-01`)",
        ),
        (
            "rsa-other-private.pem",
            Some("rsa-2026-02"),
            "jwks.json key 1 (kid `rsa-2026-02`)",
        ),
        // Without a kid every RSA key is tried.
        (
            "rsa-other-private.pem",
            None,
            "jwks.json key 1 (kid `rsa-2026-02`)",
        ),
    ] {
        let mut key = signer(file, JwtAlgorithm::RS256);
        if let Some(kid) = kid {
            key = key.with_kid(kid);
        }
        let verified = verifier
            .verify(&key.sign_claims(&good_claims()).unwrap(), t0())
            .unwrap();
        assert_eq!(verified.kid.as_deref(), kid);
        assert_eq!(verified.key_origin, origin);
    }
    let ed = signer("ed25519-private.pem", JwtAlgorithm::EdDSA).with_kid("ed-2026-01");
    assert!(
        verifier
            .verify(&ed.sign_claims(&good_claims()).unwrap(), t0())
            .is_ok()
    );
}

#[test]
fn a_jwk_alg_restricts_its_key() {
    // The JWKS marks the RSA keys RS256; a PS256 token must not verify against them.
    let (set, _) = KeySet::from_jwks(&key_bytes("jwks.json"), "jwks.json").unwrap();
    let verifier = JwtAuthenticator::new(
        JwtPolicy::new(vec![JwtAlgorithm::PS256]),
        vec![Arc::new(StaticKeySet::new(set))],
    );
    let token = signer("rsa-private.pem", JwtAlgorithm::PS256)
        .sign_claims(&good_claims())
        .unwrap();
    assert_eq!(
        token_rejection(verifier.verify(&token, t0()).unwrap_err()),
        TokenRejection::NoKeyForAlgorithm {
            alg: JwtAlgorithm::PS256
        }
    );
}

#[test]
fn jwks_documents_skip_unusable_keys_and_refuse_useless_ones() {
    let mixed = json!({"keys": [
        {"kty": "RSA", "use": "enc", "kid": "enc-1", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "short", "k": "c2hvcnQ"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
        serde_json::from_slice::<serde_json::Value>(&key_bytes("jwks.json")).unwrap()["keys"][0].clone(),
    ]});
    let (set, skipped) = KeySet::from_jwks(mixed.to_string().as_bytes(), "idp").unwrap();
    assert_eq!(set.keys().len(), 1);
    assert_eq!(
        skipped,
        [
            "idp key 0 (kid `enc-1`) is an encryption key (`use: enc`)",
            "idp key 1 (kid `short`) is 5 bytes long; an HMAC secret needs at least 32",
            "idp key 2 (kid `p521`) uses an unsupported curve",
        ]
    );
    let err = KeySet::from_jwks(b"{\"keys\": []}", "empty.json").unwrap_err();
    assert_eq!(err.to_string(), "empty.json has no keys");
    let err = KeySet::from_jwks(b"[1]", "list.json").unwrap_err();
    assert_eq!(err.to_string(), "list.json has no `keys` list");
    let err = KeySet::from_jwks(b"{", "broken.json").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("broken.json is not JSON: EOF while parsing"),
        "{err}"
    );
}

#[test]
fn jwks_file_reloads_and_keeps_old_keys_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, key_bytes("jwks.json")).unwrap();
    let (file, _) = JwksFile::load(&path).unwrap();
    assert_eq!(file.key_set(t0()).unwrap().keys().len(), 4);
    std::fs::write(&path, b"not json").unwrap();
    assert!(file.reload().is_err());
    assert_eq!(file.key_set(t0()).unwrap().keys().len(), 4);
    let one = json!({"keys": [serde_json::from_slice::<serde_json::Value>(&key_bytes("jwks.json")).unwrap()["keys"][3].clone()]});
    std::fs::write(&path, one.to_string()).unwrap();
    file.reload().unwrap();
    assert_eq!(file.key_set(t0()).unwrap().keys().len(), 1);
    let missing = JwksFile::load(dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(missing, KeyError::Unreadable { .. }), "{missing}");
}

#[test]
fn a_fetched_key_set_refuses_when_stale_and_asks_for_refresh_on_unknown_kid() {
    let fetched = Arc::new(FetchedKeySet::new(
        "https://idp.example/jwks",
        Duration::from_secs(600),
    ));
    let verifier = JwtAuthenticator::new(
        JwtPolicy::new(vec![JwtAlgorithm::RS256]),
        vec![fetched.clone()],
    );
    let token = signer("rsa-private.pem", JwtAlgorithm::RS256)
        .with_kid("rsa-2026-01")
        .sign_claims(&good_claims())
        .unwrap();
    let err = verifier.verify(&token, t0()).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "credentials cannot be checked: no keys fetched yet from https://idp.example/jwks"
    );

    let (set, _) = KeySet::from_jwks(&key_bytes("jwks.json"), "idp").unwrap();
    fetched.update(set, t0());
    assert!(verifier.verify(&token, at(600)).is_ok());
    let err = verifier.verify(&token, at(601)).unwrap_err();
    assert!(err.is_unavailable());
    assert_eq!(
        err.to_string(),
        "credentials cannot be checked: keys from https://idp.example/jwks were last fetched at 2026-01-01 12:00:00 UTC, longer ago than the allowed 600s"
    );

    assert!(!fetched.take_refresh_request());
    let unknown = signer("rsa-private.pem", JwtAlgorithm::RS256)
        .with_kid("rsa-2026-03")
        .sign_claims(&good_claims())
        .unwrap();
    assert!(verifier.verify(&unknown, t0()).is_err());
    assert!(fetched.take_refresh_request());
    assert!(!fetched.take_refresh_request(), "the request is cleared");
}

#[test]
fn pem_keys_are_classified_and_bad_ones_refused() {
    let kinds: Vec<String> = [
        "rsa-public.pem",
        "ec256-public.pem",
        "ec384-public.pem",
        "ed25519-public.pem",
    ]
    .iter()
    .map(|f| public_key(f).kind().to_string())
    .collect();
    assert_eq!(
        kinds,
        [
            "an RSA key",
            "an EC P-256 key",
            "an EC P-384 key",
            "an Ed25519 key"
        ]
    );
    let cases: [(&[u8], &str); 4] = [
        (
            &key_bytes("rsa-private.pem"),
            "k is a private key; configure the public key (`openssl pkey -in KEY -pubout`)",
        ),
        (b"hello", "k is not PEM (no -----BEGIN line)"),
        (
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "k is not an RSA, EC (P-256, P-384) or Ed25519 public key",
        ),
        (&[0xff, 0xfe], "k is not PEM text"),
    ];
    for (pem, expect) in cases {
        assert_eq!(
            VerificationKey::from_public_pem(pem, "k")
                .unwrap_err()
                .to_string(),
            expect
        );
    }
}

#[test]
fn minting_round_trips_and_refuses_bad_requests() {
    let mut request = TokenRequest::new("ci-bot", Duration::from_secs(3600));
    request.permissions = vec!["tasker.task:create".parse().unwrap()];
    request.roles = vec!["deployer".into()];
    request.issuer = Some(ISSUER.into());
    request.audience = Some(AUDIENCE.into());
    let token = hmac_signer(JwtAlgorithm::HS256)
        .mint(&request, t0())
        .unwrap();
    let decoded = decode_unverified(&token).unwrap();
    assert_eq!(decoded.header["alg"], "HS256");
    assert_eq!(
        serde_json::Value::Object(decoded.claims),
        json!({
            "sub": "ci-bot", "iat": t0().timestamp(), "exp": t0().timestamp() + 3600,
            "iss": ISSUER, "aud": AUDIENCE,
            "permissions": ["tasker.task:create"], "roles": ["deployer"],
        })
    );
    let principal = verifier().verify(&token, t0()).unwrap().principal;
    assert_eq!(principal.subject, "ci-bot");
    let expired = verifier().verify(&token, at(3600 + 30)).unwrap_err();
    assert!(matches!(
        token_rejection(expired),
        TokenRejection::Expired { .. }
    ));

    assert_eq!(
        SigningKey::hmac(b"short", JwtAlgorithm::HS256).unwrap_err(),
        MintError::SecretTooShort {
            length: 5,
            minimum: 32
        }
    );
    assert_eq!(
        SigningKey::from_private_pem(&key_bytes("rsa-private.pem"), Some(JwtAlgorithm::ES256))
            .unwrap_err()
            .to_string(),
        "an RSA key cannot sign ES256"
    );
    assert_eq!(
        SigningKey::from_private_pem(&key_bytes("ec256-private.pem"), Some(JwtAlgorithm::ES384))
            .unwrap_err()
            .to_string(),
        "an EC P-256 key cannot sign ES384"
    );
    assert_eq!(
        SigningKey::from_private_pem(&key_bytes("rsa-public.pem"), None).unwrap_err(),
        MintError::NotAPrivateKey
    );
    let empty = TokenRequest::new(" ", Duration::from_secs(1));
    assert_eq!(
        hmac_signer(JwtAlgorithm::HS256).mint(&empty, t0()),
        Err(MintError::EmptySubject)
    );
    let forever = TokenRequest::new("x", Duration::from_secs(u64::MAX));
    assert_eq!(
        hmac_signer(JwtAlgorithm::HS256).mint(&forever, t0()),
        Err(MintError::TtlTooLong)
    );
}

#[test]
fn private_keys_default_to_their_algorithm() {
    for (file, alg) in [
        ("rsa-private.pem", JwtAlgorithm::RS256),
        ("ec256-private.pem", JwtAlgorithm::ES256),
        ("ed25519-private.pem", JwtAlgorithm::EdDSA),
    ] {
        let key = SigningKey::from_private_pem(&key_bytes(file), None).unwrap();
        assert_eq!(key.algorithm(), alg, "{file}");
    }
}

mod revocation {
    use tasker_auth::{Rejection, RevocationError, RevocationList};

    use super::*;

    mockall::mock! {
        List {}
        #[async_trait::async_trait]
        impl RevocationList for List {
            async fn is_revoked(&self, jti: &str) -> Result<bool, RevocationError>;
        }
    }

    fn token(jti: Option<&str>) -> String {
        let mut request = TokenRequest::new("alice", Duration::from_secs(600));
        request.issuer = Some(ISSUER.to_owned());
        request.audience = Some(AUDIENCE.to_owned());
        request.jti = jti.map(str::to_owned);
        hmac_signer(JwtAlgorithm::HS256)
            .mint(&request, t0())
            .unwrap()
    }

    #[test]
    fn a_listed_jti_is_refused_an_unlisted_one_passes_and_a_broken_list_is_unavailable() {
        let mut list = MockList::new();
        list.expect_is_revoked()
            .withf(|jti| jti == "gone")
            .returning(|_| Ok(true));
        list.expect_is_revoked()
            .withf(|jti| jti == "fine")
            .returning(|_| Ok(false));
        list.expect_is_revoked()
            .withf(|jti| jti == "unknown")
            .returning(|_| Err(RevocationError::new("database down")));
        let verifier = verifier().with_revocations(Arc::new(list));
        let refused = run(verifier.authenticate(&bearer(&token(Some("gone"))), t0())).unwrap_err();
        assert!(
            matches!(
                &refused,
                AuthError::Rejected(Rejection::Token(TokenRejection::Revoked { jti })) if jti == "gone"
            ),
            "{refused:?}"
        );
        let principal = run(verifier.authenticate(&bearer(&token(Some("fine"))), t0())).unwrap();
        assert_eq!(principal.subject, "alice");
        let unavailable =
            run(verifier.authenticate(&bearer(&token(Some("unknown"))), t0())).unwrap_err();
        assert!(unavailable.is_unavailable(), "{unavailable:?}");
        // Without a `jti` there is nothing to look up (the mock would panic on a call).
        run(verifier.authenticate(&bearer(&token(None)), t0())).unwrap();
        let verified = verifier.verify(&token(Some("fine")), t0()).unwrap();
        assert_eq!(verified.jti.as_deref(), Some("fine"));
    }
}
