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

#[test]
fn durations_read_seconds_or_written_units() {
    use std::time::Duration;
    use tasker_auth::{ConfigDuration, parse_duration};
    assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
    for bad in ["", "soon", "-5", "5 parsecs", "NaN"] {
        assert_eq!(
            parse_duration(bad).unwrap_err().to_string(),
            format!(
                "`{bad}` is not a duration (seconds, or a number with a unit: `90s`, `15m`, `1h`, `30d`)"
            )
        );
    }
    let jwt = |value: Value| {
        serde_json::from_value::<AuthConfig>(json!({"jwt": {"jwks_refresh": value}}))
            .map(|c| c.jwt.jwks_refresh)
            .map_err(|e| e.to_string())
    };
    assert_eq!(jwt(json!(60)), Ok(ConfigDuration(Duration::from_secs(60))));
    assert_eq!(
        jwt(json!("2m")),
        Ok(ConfigDuration(Duration::from_secs(120)))
    );
    assert_eq!(
        jwt(json!(0.5)),
        Ok(ConfigDuration(Duration::from_millis(500)))
    );
    assert!(jwt(json!(-1)).unwrap_err().contains("-1 is negative"));
    assert!(
        jwt(json!("soon"))
            .unwrap_err()
            .contains("`soon` is not a duration")
    );
    let defaults = AuthConfig::default();
    assert_eq!(defaults.jwt.jwks_refresh.0, Duration::from_secs(300));
    assert_eq!(defaults.jwt.jwks_max_staleness.0, Duration::from_secs(3600));
    // Written back as seconds, and read again.
    let round_trip: AuthConfig =
        serde_json::from_value(serde_json::to_value(&defaults).unwrap()).unwrap();
    assert_eq!(round_trip, defaults);
}

#[test]
fn jwks_url_settings_are_checked() {
    let jwt = |settings: Value| json!({"authenticators": ["jwt"], "jwt": settings});
    let url = "https://idp.example/.well-known/jwks.json";
    let cases = [
        (
            json!({"algorithms": ["RS256"], "jwks_url": "ftp://idp.example/jwks"}),
            "auth.jwt.jwks_url: must be an http:// or https:// URL",
        ),
        (
            json!({"algorithms": ["RS256"], "jwks_url": "https:///jwks"}),
            "auth.jwt.jwks_url: must be an http:// or https:// URL with a host",
        ),
        (
            json!({"algorithms": ["RS256"], "jwks_url": url, "jwks_refresh": 0}),
            "auth.jwt.jwks_refresh: must be at least 1 second",
        ),
        (
            json!({"algorithms": ["RS256"], "jwks_url": url, "jwks_refresh": "10m", "jwks_max_staleness": "5m"}),
            "auth.jwt.jwks_max_staleness: must be at least auth.jwt.jwks_refresh (otherwise keys go stale between two fetches)",
        ),
        (
            json!({"algorithms": ["RS256"], "jwks_url": url}),
            "auth.jwt.jwks_url is set, but nothing fetches it here (`tasker serve` does; a custom server passes its fetched key set to AuthConfig::build_with_jwks)",
        ),
    ];
    for (settings, expect) in cases {
        assert_eq!(error(jwt(settings.clone())), expect, "{settings}");
    }
    let settings = config(jwt(
        json!({"algorithms": ["RS256"], "jwks_url": url, "jwks_refresh": "1m"}),
    ))
    .jwks_url_settings()
    .unwrap()
    .unwrap();
    assert_eq!(settings.url, url);
    assert_eq!(settings.refresh, std::time::Duration::from_secs(60));
    assert_eq!(settings.max_staleness, std::time::Duration::from_secs(3600));
}

#[test]
fn a_fetched_key_set_serves_the_jwks_url() {
    use tasker_auth::jwt::{FetchedKeySet, KeySet};
    let url = "https://idp.example/jwks.json";
    let config = config(json!({
        "authenticators": ["jwt"],
        "jwt": {"algorithms": ["RS256"], "jwks_url": url},
    }));
    let fetched = Arc::new(FetchedKeySet::new(
        url,
        std::time::Duration::from_secs(3600),
    ));
    // Nothing fetched: no key verifies RS256, which startup reports.
    assert_eq!(
        config
            .build_with_jwks(Profile::Development, None, Some(Arc::clone(&fetched)))
            .unwrap_err()
            .to_string(),
        "auth.jwt.algorithms[0]: no configured key verifies RS256 (it needs an RSA key)"
    );
    let (set, _) = KeySet::from_jwks(&key_bytes("jwks.json"), url).unwrap();
    fetched.update(set, t0());
    let built = config
        .build_with_jwks(Profile::Development, None, Some(fetched))
        .unwrap();
    let token = signer("rsa-private.pem", tasker_auth::JwtAlgorithm::RS256)
        .with_kid("rsa-2026-01")
        .sign_claims(&claims_with(|c| {
            c.remove("iss");
            c.remove("aud");
        }))
        .unwrap();
    let principal = run(built.access.authenticate(&bearer(&token), t0())).unwrap();
    assert_eq!(principal.subject, "alice");
}

#[test]
fn the_private_key_is_checked_at_startup_and_preferred_for_minting() {
    let jwt = |settings: Value| json!({"authenticators": ["jwt"], "jwt": settings});
    let cases = [
        (
            json!({"algorithms": ["RS256"], "public_keys": [path("rsa-public.pem")], "private_key": path("rsa-public.pem")}),
            format!("auth.jwt.private_key: {}: not an RSA, EC or Ed25519 private key in PEM form (PKCS#8, or PKCS#1 for RSA)", path("rsa-public.pem")),
        ),
        (
            json!({"algorithms": ["RS256"], "public_keys": [path("rsa-public.pem")], "private_key": "/nonexistent/key.pem"}),
            "auth.jwt.private_key: /nonexistent/key.pem: cannot read it: No such file or directory (os error 2)".to_owned(),
        ),
        (
            json!({"algorithms": ["RS256"], "public_keys": [path("rsa-public.pem")], "private_key": path("ec256-private.pem")}),
            format!("auth.jwt.private_key: {}: cannot sign any algorithm in auth.jwt.algorithms (RS256)", path("ec256-private.pem")),
        ),
    ];
    for (settings, expect) in cases {
        assert_eq!(error(jwt(settings.clone())), expect, "{settings}");
    }
    // A key whose public half verifies nothing here works, with a warning.
    let built = config(jwt(json!({
        "algorithms": ["RS256"],
        "public_keys": [path("rsa-public.pem")],
        "private_key": path("rsa-other-private.pem"),
    })))
    .build(Profile::Development, None)
    .unwrap();
    assert_eq!(
        built.warnings,
        [
            "auth.jwt.private_key: tokens it signs would be refused here: no configured public key (auth.jwt.public_keys, jwks_file, jwks_url) matches it"
        ]
    );
    let matching = config(jwt(json!({
        "algorithms": ["HS256", "PS256", "RS256"],
        "secret": SECRET,
        "public_keys": [path("rsa-public.pem")],
        "private_key": path("rsa-private.pem"),
    })));
    assert!(
        matching
            .build(Profile::Development, None)
            .unwrap()
            .warnings
            .is_empty()
    );
    // The private key wins over the secret, with the first algorithm of its kind.
    let key = matching.signing_key(Some("k1")).unwrap();
    assert_eq!(key.algorithm(), tasker_auth::JwtAlgorithm::PS256);
    let token = key
        .mint(
            &tasker_auth::jwt::TokenRequest::new("a", std::time::Duration::from_secs(60)),
            t0(),
        )
        .unwrap();
    assert_eq!(
        tasker_auth::jwt::decode_unverified(&token).unwrap().header["kid"],
        "k1"
    );
    let none = AuthConfig::default().signing_key(None).unwrap_err();
    assert!(matches!(none, AuthConfigError::NoSigningKey));
    assert_eq!(
        none.to_string(),
        "no signing key is configured: set auth.jwt.private_key (a PEM private key file) or auth.jwt.secret (an HMAC secret)"
    );
}
