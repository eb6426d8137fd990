//! `[auth]` validation: every refusal names the key at fault.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_auth::{
    ApiKey, AuthConfig, AuthConfigError, AuthError, ConfiguredApiKeys, Operation, Profile,
    StoredApiKey,
};

use crate::support::*;

fn config(value: Value) -> AuthConfig {
    serde_json::from_value(value).unwrap()
}

fn error(value: Value) -> String {
    error_in(value, Profile::Development)
}

fn error_in(value: Value, profile: Profile) -> String {
    match config(value).build(profile, None) {
        Ok(_) => panic!("accepted"),
        Err(err) => err.to_string(),
    }
}

fn path(name: &str) -> String {
    key_path(name).display().to_string()
}

#[test]
fn open_is_the_development_default_and_refused_in_production() {
    let built = AuthConfig::default()
        .build(Profile::Development, None)
        .unwrap();
    let principal = run(built.access.authenticate(&http::HeaderMap::new(), t0())).unwrap();
    assert_eq!(principal.subject, "anonymous");
    assert_eq!(
        error_in(json!({}), Profile::Production),
        "auth.authenticators includes `open` in the production profile; set auth.allow_open_in_production = true if that is intended"
    );
    assert!(
        config(json!({"allow_open_in_production": true}))
            .build(Profile::Production, None)
            .is_ok()
    );
}

#[test]
fn authenticator_lists() {
    assert_eq!(
        error(json!({"authenticators": []})),
        "auth.authenticators is empty: name at least one of open, jwt, api_key"
    );
    assert_eq!(
        error(json!({"authenticators": ["open", "api_key"]})),
        "auth.authenticators: `open` must come last (it accepts every request, so nothing after it would run)"
    );
    assert_eq!(
        error(json!({"authenticators": ["api_key", "api_key"]})),
        "auth.authenticators lists `api_key` twice"
    );
    let unknown = serde_json::from_value::<AuthConfig>(json!({"authenticators": ["ldap"]}))
        .unwrap_err()
        .to_string();
    assert!(unknown.starts_with("unknown variant `ldap`"), "{unknown}");
    let typo = serde_json::from_value::<AuthConfig>(json!({"jwt": {"algorithm": ["HS256"]}}))
        .unwrap_err()
        .to_string();
    assert!(typo.starts_with("unknown field `algorithm`"), "{typo}");
}

#[test]
fn jwt_settings_are_checked() {
    let jwt = |settings: Value| json!({"authenticators": ["jwt"], "jwt": settings});
    let cases = [
        (json!({}), "auth.jwt.algorithms is empty: choose the algorithms tokens may use".to_owned()),
        (
            json!({"algorithms": ["HS256", "HS257"], "secret": SECRET}),
            "auth.jwt.algorithms[1]: unknown algorithm `HS257` (supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)".to_owned(),
        ),
        (
            json!({"algorithms": ["none"]}),
            "auth.jwt.algorithms[0]: unknown algorithm `none` (supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)".to_owned(),
        ),
        (
            json!({"algorithms": ["HS256"], "secret": "too-short"}),
            "auth.jwt.secret is 9 bytes long; an HMAC secret needs at least 32".to_owned(),
        ),
        (
            json!({"algorithms": ["HS256"]}),
            "auth.jwt.algorithms[0]: no configured key verifies HS256 (it needs an HMAC secret)".to_owned(),
        ),
        (
            json!({"algorithms": ["RS256"], "public_keys": ["/nonexistent/key.pem"]}),
            "auth.jwt.public_keys[0]: cannot read /nonexistent/key.pem: No such file or directory (os error 2)".to_owned(),
        ),
        (
            json!({"algorithms": ["RS256"], "public_keys": [path("rsa-private.pem")]}),
            format!("auth.jwt.public_keys[0]: {} is a private key; configure the public key (`openssl pkey -in KEY -pubout`)", path("rsa-private.pem")),
        ),
        (
            json!({"algorithms": ["RS256"], "public_keys": [path("ec256-public.pem")]}),
            format!("auth.jwt.public_keys[0]: {} is an EC P-256 key, which no algorithm in auth.jwt.algorithms uses", path("ec256-public.pem")),
        ),
        (
            json!({"algorithms": ["RS256", "ES384"], "public_keys": [path("rsa-public.pem")]}),
            "auth.jwt.algorithms[1]: no configured key verifies ES384 (it needs an EC P-384 key)".to_owned(),
        ),
        (
            json!({"algorithms": ["ES256"], "jwks_file": path("rsa-public.pem")}),
            format!("auth.jwt.jwks_file: {} is not JSON: invalid number at line 1 column 2", path("rsa-public.pem")),
        ),
        (
            json!({"algorithms": ["HS256"], "secret": SECRET, "leeway": -1.0}),
            "auth.jwt.leeway: must be a non-negative number of seconds".to_owned(),
        ),
        (
            json!({"algorithms": ["HS256"], "secret": SECRET, "roles_claim": ""}),
            "auth.jwt.roles_claim: must not be empty".to_owned(),
        ),
    ];
    for (settings, expect) in cases {
        assert_eq!(error(jwt(settings.clone())), expect, "{settings}");
    }
}

#[test]
fn role_mappings_are_checked() {
    assert_eq!(
        error(json!({"roles": {"operator": ["tasker.task:*", "tasker.task:cancl"]}})),
        "auth.roles.operator[1]: unknown action `cancl` (did you mean `cancel`?)"
    );
    assert_eq!(
        error(json!({"roles": {"admin": ["*"]}})),
        "auth.roles.admin[0]: the global wildcard `*` needs auth.allow_global_wildcard = true"
    );
    let built = config(json!({"roles": {"legacy": ["tasker.task:destroy", "tasker.task:index"]}}))
        .build(Profile::Development, None)
        .unwrap();
    assert_eq!(
        built.warnings,
        [
            "auth.roles.legacy[0]: `tasker.task:destroy` is accepted for compatibility but no operation requires it (cancelling requires `cancel`)"
        ]
    );
    assert!(
        config(json!({"allow_global_wildcard": true, "roles": {"admin": ["*"]}}))
            .build(Profile::Development, None)
            .is_ok()
    );
}

#[test]
fn api_key_settings_are_checked() {
    let keys = |entries: Value| json!({"authenticators": ["api_key"], "api_keys": {"database": false, "keys": entries}});
    let hash = ApiKey::generate().unwrap().hash().to_hex();
    assert_eq!(
        error(keys(json!([{"name": "ci", "hash": "abc"}]))),
        "auth.api_keys.keys[0].hash: must be 64 hex digits: the SHA-256 of the key"
    );
    assert_eq!(
        error(keys(
            json!([{"name": "ci", "hash": hash}, {"name": "ci", "hash": hash}])
        )),
        "auth.api_keys.keys[1].name: is used by another key"
    );
    assert_eq!(
        error(keys(
            json!([{"name": "ci", "hash": hash, "permissions": ["tasker.metrics:create"]}])
        )),
        "auth.api_keys.keys[0].permissions[0]: `tasker.metrics:create` is not a permission: tasker.metrics allows index"
    );
    assert_eq!(
        error(keys(json!([]))),
        "auth.authenticators includes `api_key` but auth.api_keys has no keys and auth.api_keys.database is off"
    );
    assert_eq!(
        error(json!({"authenticators": ["api_key"]})),
        "auth.api_keys.database is on but no database is available to look keys up in"
    );
}

#[test]
fn a_full_configuration_authenticates_and_authorizes() {
    let key = ApiKey::generate().unwrap();
    let database_key = ApiKey::generate().unwrap();
    let database = ConfiguredApiKeys::new(vec![
        StoredApiKey::new("17", "from-db", database_key.hash())
            .with_permissions(["tasker.metrics:index"]),
    ]);
    let config = config(json!({
        "authenticators": ["jwt", "api_key"],
        "roles": {"operator": ["tasker.task:*"]},
        "jwt": {
            "algorithms": ["HS256", "RS256", "ES256", "EdDSA"],
            "secret": SECRET,
            "public_keys": [path("rsa-public.pem")],
            "jwks_file": path("jwks.json"),
            "issuer": ISSUER,
            "audience": AUDIENCE,
        },
        "api_keys": {"keys": [{"name": "ci", "hash": key.hash().to_hex(), "permissions": ["tasker.task:create"], "expires_at": "2027-01-01T00:00:00Z"}]},
    }));
    let built = config
        .build(Profile::Production, Some(Arc::new(database)))
        .unwrap();
    assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    let access = built.access;

    let token = signer("ed25519-private.pem", tasker_auth::JwtAlgorithm::EdDSA)
        .sign_claims(&claims_with(|c| {
            c.insert("permissions".into(), json!([]));
        }))
        .unwrap();
    let alice = run(access.authenticate(&bearer(&token), t0())).unwrap();
    assert_eq!(alice.roles, ["operator"]);
    let cancel = run(access.authorize(&alice, Operation::CancelTask, Default::default()));
    assert_eq!(
        cancel.to_string(),
        "allowed: granted by role `operator` (`tasker.task:*`)"
    );
    let metrics = run(access.authorize(&alice, Operation::Metrics, Default::default()));
    assert!(!metrics.is_allowed());

    let ci = run(access.authenticate(&api_key_header(key.expose()), t0())).unwrap();
    assert_eq!(ci.subject, "ci");
    assert!(run(access.authorize(&ci, Operation::CreateTask, Default::default())).is_allowed());
    let from_db = run(access.authenticate(&api_key_header(database_key.expose()), t0())).unwrap();
    assert!(run(access.authorize(&from_db, Operation::Metrics, Default::default())).is_allowed());

    let err = run(access.authenticate(&http::HeaderMap::new(), t0())).unwrap_err();
    assert!(matches!(err, AuthError::NoCredentials), "no open fallback");
}

#[test]
fn minting_uses_the_configured_secret_and_never_shows_it() {
    let config = config(json!({"jwt": {"algorithms": ["RS256", "HS512"], "secret": SECRET}}));
    let key = config.secret_signing_key(None).unwrap();
    assert_eq!(key.algorithm(), tasker_auth::JwtAlgorithm::HS512);
    assert!(!format!("{config:?}").contains(SECRET));
    assert!(!format!("{key:?}").contains(SECRET));
    let none = AuthConfig::default().secret_signing_key(None).unwrap_err();
    assert!(matches!(none, AuthConfigError::NoSecret));
    assert_eq!(none.to_string(), "auth.jwt.secret is not set");
}
