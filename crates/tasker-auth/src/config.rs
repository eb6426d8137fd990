//! The `[auth]` configuration section and its validation. [`AuthConfig::build`] checks
//! everything at startup (secrets, algorithms, key files, role mappings) and every error names
//! the configuration key at fault, so a server never starts half-configured.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api_key::{
    ApiKeyAuthenticator, ApiKeyHash, ApiKeyStore, ConfiguredApiKeys, StoredApiKey,
};
use crate::authenticate::{Authenticator, AuthenticatorChain, OpenAuthenticator};
use crate::authorize::{AccessControl, Authorizer, PermissionPolicy, RoleGrants};
use crate::jwt::{
    FetchedKeySet, JwksFile, JwtAlgorithm, JwtAuthenticator, JwtPolicy, KeyError, KeyKind, KeySet,
    KeySetProvider, MintError, SigningKey, StaticKeySet, TokenRequest, VerificationKey,
};
use crate::operation::Operation;
use crate::permission::{Grant, Permission, PermissionError};

mod duration;

pub use duration::{ConfigDuration, InvalidDuration, parse_duration};

/// Which rules apply: development and test allow open access, production refuses it unless
/// `auth.allow_open_in_production` says otherwise.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A developer's machine.
    #[default]
    Development,
    /// Automated tests: deterministic defaults.
    Test,
    /// A deployment.
    Production,
}

impl Profile {
    /// The written name: `development`, `test` or `production`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Test => "test",
            Profile::Production => "production",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticator named in `auth.authenticators`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatorKind {
    /// No authentication.
    Open,
    /// `Authorization: Bearer <JWT>`.
    Jwt,
    /// `X-API-Key`.
    ApiKey,
}

impl fmt::Display for AuthenticatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthenticatorKind::Open => "open",
            AuthenticatorKind::Jwt => "jwt",
            AuthenticatorKind::ApiKey => "api_key",
        })
    }
}

/// A secret string: `Debug` never prints it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `[auth]`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tried in order; `open` (the default) must come last.
    pub authenticators: Vec<AuthenticatorKind>,
    /// Let `open` run in the production profile.
    pub allow_open_in_production: bool,
    /// Honour the global wildcard `*` in grants.
    pub allow_global_wildcard: bool,
    /// Role name → grants (`resource:action`, `resource:*`).
    pub roles: BTreeMap<String, Vec<String>>,
    /// `[auth.jwt]`.
    pub jwt: JwtConfig,
    /// `[auth.api_keys]`.
    pub api_keys: ApiKeysConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            authenticators: vec![AuthenticatorKind::Open],
            allow_open_in_production: false,
            allow_global_wildcard: false,
            roles: BTreeMap::new(),
            jwt: JwtConfig::default(),
            api_keys: ApiKeysConfig::default(),
        }
    }
}

/// `[auth.jwt]`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Accepted algorithms (`HS256` … `EdDSA`); none by default, so they are always chosen.
    pub algorithms: Vec<String>,
    /// The HMAC secret for `HS*` (at least 32 bytes); `tasker token mint` signs with it.
    pub secret: Option<Secret>,
    /// PEM public keys, all valid at once.
    pub public_keys: Vec<PathBuf>,
    /// A JWKS document; tokens choose a key by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document served over HTTP(S), fetched at startup and refreshed by the server.
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is fetched again.
    pub jwks_refresh: ConfigDuration,
    /// How old the last good fetch of `jwks_url` may be before tokens are refused.
    pub jwks_max_staleness: ConfigDuration,
    /// A PEM private key `tasker token mint` signs with (instead of `secret`).
    pub private_key: Option<PathBuf>,
    /// The required `iss`.
    pub issuer: Option<String>,
    /// The audience that must be in `aud`.
    pub audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    #[cfg_attr(feature = "schema", schemars(extend("x-unit" = "seconds")))]
    pub leeway: f64,
    /// Longer tokens are refused unparsed.
    pub max_token_bytes: usize,
    /// The claim holding permissions.
    pub permissions_claim: String,
    /// The claim holding roles.
    pub roles_claim: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        let policy = JwtPolicy::new(Vec::new());
        Self {
            algorithms: Vec::new(),
            secret: None,
            public_keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: ConfigDuration(DEFAULT_JWKS_REFRESH),
            jwks_max_staleness: ConfigDuration(DEFAULT_JWKS_MAX_STALENESS),
            private_key: None,
            issuer: None,
            audience: None,
            leeway: policy.leeway.as_secs_f64(),
            max_token_bytes: policy.max_token_bytes,
            permissions_claim: policy.permissions_claim,
            roles_claim: policy.roles_claim,
        }
    }
}

/// The default `auth.jwt.jwks_refresh`: 5 minutes.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// The default `auth.jwt.jwks_max_staleness`: 1 hour.
pub const DEFAULT_JWKS_MAX_STALENESS: Duration = Duration::from_secs(3600);

/// `auth.jwt.jwks_url` and its timing, validated: what a fetcher needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksUrlSettings {
    /// The document's URL (`http://` or `https://`).
    pub url: String,
    /// How often it is fetched again.
    pub refresh: Duration,
    /// How old the last good fetch may be before tokens are refused.
    pub max_staleness: Duration,
}

/// `[auth.api_keys]`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// Look keys up in the database (`tasker keys create`).
    pub database: bool,
    /// Keys written here, by hash.
    pub keys: Vec<ConfiguredKey>,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            database: true,
            keys: Vec::new(),
        }
    }
}

/// `[[auth.api_keys.keys]]`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredKey {
    /// Unique name; the principal's subject.
    pub name: String,
    /// SHA-256 of the key, 64 hex digits.
    pub hash: String,
    /// Grants.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// When it stops working (RFC 3339).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A configuration that cannot run. Each names its key.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// `auth.authenticators` is empty.
    #[error("auth.authenticators is empty: name at least one of open, jwt, api_key")]
    NoAuthenticators,
    /// An authenticator is listed twice.
    #[error("auth.authenticators lists `{kind}` twice")]
    DuplicateAuthenticator {
        /// The authenticator.
        kind: AuthenticatorKind,
    },
    /// `open` is followed by others.
    #[error(
        "auth.authenticators: `open` must come last (it accepts every request, so nothing after it would run)"
    )]
    OpenNotLast,
    /// `open` in the production profile.
    #[error(
        "auth.authenticators includes `open` in the production profile; set auth.allow_open_in_production = true if that is intended"
    )]
    OpenInProduction,
    /// A grant does not parse.
    #[error("{key}: {source}")]
    UnknownPermission {
        /// Where, e.g. `auth.roles.operator[1]`.
        key: String,
        /// Why.
        #[source]
        source: PermissionError,
    },
    /// `*` without `auth.allow_global_wildcard`.
    #[error("{key}: the global wildcard `*` needs auth.allow_global_wildcard = true")]
    GlobalWildcardNotEnabled {
        /// Where.
        key: String,
    },
    /// `jwt` is listed but no algorithm is.
    #[error("auth.jwt.algorithms is empty: choose the algorithms tokens may use")]
    NoAlgorithms,
    /// An algorithm name is unknown.
    #[error("{key}: {source}")]
    UnknownAlgorithm {
        /// Where, e.g. `auth.jwt.algorithms[0]`.
        key: String,
        /// Why.
        #[source]
        source: crate::jwt::UnknownAlgorithm,
    },
    /// The HMAC secret is too short.
    #[error("{key} is {length} bytes long; an HMAC secret needs at least {minimum}")]
    SecretTooShort {
        /// The setting, `auth.jwt.secret`.
        key: &'static str,
        /// Its length in bytes.
        length: usize,
        /// The minimum.
        minimum: usize,
    },
    /// A key (file, JWKS) cannot be used.
    #[error("{key}: {source}")]
    InvalidKey {
        /// Where, e.g. `auth.jwt.public_keys[0]`.
        key: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A configured algorithm has no key.
    #[error("{key}: no configured key verifies {algorithm} (it needs {needs})")]
    NoKeyForAlgorithm {
        /// Where.
        key: String,
        /// The algorithm.
        algorithm: JwtAlgorithm,
        /// The kind of key it needs.
        needs: KeyKind,
    },
    /// A key no configured algorithm uses: the wrong file, or a missing algorithm.
    #[error("{key}: {origin} is {kind}, which no algorithm in auth.jwt.algorithms uses")]
    KeyMismatch {
        /// Where.
        key: String,
        /// The key's source.
        origin: String,
        /// What kind of key it is.
        kind: KeyKind,
    },
    /// A number out of range.
    #[error("{key}: {problem}")]
    InvalidValue {
        /// Where.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// An API key entry is unusable.
    #[error("{key}: {problem}")]
    InvalidApiKey {
        /// Where, e.g. `auth.api_keys.keys[0].hash`.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// `api_key` is listed with the database on, but no database store was supplied.
    #[error("auth.api_keys.database is on but no database is available to look keys up in")]
    NoDatabaseForApiKeys,
    /// `api_key` is listed with nowhere to find keys.
    #[error(
        "auth.authenticators includes `api_key` but auth.api_keys has no keys and auth.api_keys.database is off"
    )]
    NoApiKeySource,
    /// The HMAC secret is needed (to mint) but not configured.
    #[error("auth.jwt.secret is not set")]
    NoSecret,
    /// Minting needs a key, and neither `auth.jwt.private_key` nor `auth.jwt.secret` is set.
    #[error(
        "no signing key is configured: set auth.jwt.private_key (a PEM private key file) or auth.jwt.secret (an HMAC secret)"
    )]
    NoSigningKey,
    /// `auth.jwt.private_key` cannot sign.
    #[error("auth.jwt.private_key: {path}: {problem}")]
    PrivateKey {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// `auth.jwt.jwks_url` is set but the caller fetches nothing.
    #[error(
        "auth.jwt.jwks_url is set, but nothing fetches it here (`tasker serve` does; a custom server passes its fetched key set to AuthConfig::build_with_jwks)"
    )]
    JwksUrlNotFetched,
    /// Minting with the secret failed.
    #[error("auth.jwt.secret: {source}")]
    Mint {
        /// Why.
        #[source]
        source: MintError,
    },
}

/// What [`AuthConfig::build_with_parts`] takes besides the configuration.
#[derive(Default)]
pub struct AuthParts {
    /// The database's API key store, needed when `api_key` is listed and
    /// `auth.api_keys.database` is on.
    pub database_keys: Option<Arc<dyn ApiKeyStore>>,
    /// The key set fetched from `auth.jwt.jwks_url` (required when that is set).
    pub fetched: Option<Arc<FetchedKeySet>>,
    /// Revoked token ids: JWTs whose `jti` is listed are refused.
    pub revocations: Option<Arc<dyn crate::RevocationList>>,
}

impl std::fmt::Debug for AuthParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthParts")
            .field("database_keys", &self.database_keys.is_some())
            .field("fetched", &self.fetched.is_some())
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}

/// What [`AuthConfig::build`] produces.
#[derive(Debug)]
#[non_exhaustive]
pub struct BuiltAuth {
    /// The authenticator chain and the authorizer, for the API layer.
    pub access: AccessControl,
    /// The JWT authenticator, when configured (also for `tasker token inspect`).
    pub jwt: Option<JwtAuthenticator>,
    /// Things that work but are probably not meant (log them at startup).
    pub warnings: Vec<String>,
}

impl AuthConfig {
    /// Validates everything and builds the access control. `database_keys` is the database's
    /// API key store, needed when `api_key` is listed and `auth.api_keys.database` is on.
    pub fn build(
        &self,
        profile: Profile,
        database_keys: Option<Arc<dyn ApiKeyStore>>,
    ) -> Result<BuiltAuth, AuthConfigError> {
        self.build_with_jwks(profile, database_keys, None)
    }

    /// [`AuthConfig::build`], with the key set fetched from `auth.jwt.jwks_url` (required
    /// when that is set: the caller fetches it first, see [`AuthConfig::jwks_url_settings`]).
    pub fn build_with_jwks(
        &self,
        profile: Profile,
        database_keys: Option<Arc<dyn ApiKeyStore>>,
        fetched: Option<Arc<FetchedKeySet>>,
    ) -> Result<BuiltAuth, AuthConfigError> {
        self.build_with_parts(
            profile,
            AuthParts {
                database_keys,
                fetched,
                revocations: None,
            },
        )
    }

    /// [`AuthConfig::build`], with every part that lives outside the configuration.
    pub fn build_with_parts(
        &self,
        profile: Profile,
        parts: AuthParts,
    ) -> Result<BuiltAuth, AuthConfigError> {
        let AuthParts {
            database_keys,
            fetched,
            revocations,
        } = parts;
        let mut warnings = Vec::new();
        self.check_authenticators(profile)?;
        self.jwks_url_settings()?;
        let roles = self.role_grants(&mut warnings)?;
        let mut chain = AuthenticatorChain::new();
        let mut jwt = None;
        for kind in &self.authenticators {
            let link: Arc<dyn Authenticator> = match kind {
                AuthenticatorKind::Open => Arc::new(OpenAuthenticator),
                AuthenticatorKind::Jwt => {
                    let mut authenticator = self.jwt_authenticator_with(fetched.clone())?;
                    if let Some(list) = &revocations {
                        authenticator = authenticator.with_revocations(list.clone());
                    }
                    jwt = Some(authenticator.clone());
                    Arc::new(authenticator)
                }
                AuthenticatorKind::ApiKey => {
                    Arc::new(self.api_key_authenticator(database_keys.clone(), &mut warnings)?)
                }
            };
            chain = chain.then(link);
        }
        if jwt.is_none() && !self.jwt.algorithms.is_empty() {
            warnings.push(
                "auth.jwt is configured but `jwt` is not in auth.authenticators: tokens are not accepted"
                    .to_owned(),
            );
        }
        if self.jwt.private_key.is_some() {
            let signing = self.signing_key(None)?;
            if let Some(verifier) = &jwt
                && !self.verifies_own_tokens(&signing, verifier)
            {
                warnings.push(
                    "auth.jwt.private_key: tokens it signs would be refused here: no configured public key (auth.jwt.public_keys, jwks_file, jwks_url) matches it"
                        .to_owned(),
                );
            }
        }
        let authorizer = Authorizer::new(PermissionPolicy::new(roles, self.allow_global_wildcard));
        Ok(BuiltAuth {
            access: AccessControl::new(Arc::new(chain), authorizer),
            jwt,
            warnings,
        })
    }

    fn check_authenticators(&self, profile: Profile) -> Result<(), AuthConfigError> {
        let list = &self.authenticators;
        if list.is_empty() {
            return Err(AuthConfigError::NoAuthenticators);
        }
        for (index, kind) in list.iter().enumerate() {
            if list[..index].contains(kind) {
                return Err(AuthConfigError::DuplicateAuthenticator { kind: *kind });
            }
        }
        if let Some(position) = list.iter().position(|k| *k == AuthenticatorKind::Open) {
            if position + 1 != list.len() {
                return Err(AuthConfigError::OpenNotLast);
            }
            if profile == Profile::Production && !self.allow_open_in_production {
                return Err(AuthConfigError::OpenInProduction);
            }
        }
        Ok(())
    }

    /// The role mapping, every grant parsed; `warnings` learns of grants that guard nothing.
    pub fn role_grants(&self, warnings: &mut Vec<String>) -> Result<RoleGrants, AuthConfigError> {
        self.roles
            .iter()
            .map(|(role, grants)| {
                let key = format!("auth.roles.{role}");
                Ok((role.clone(), self.parse_grants(&key, grants, warnings)?))
            })
            .collect()
    }

    fn parse_grants(
        &self,
        key: &str,
        grants: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Grant>, AuthConfigError> {
        grants
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let key = format!("{key}[{index}]");
                let grant: Grant = text.parse().map_err(|source| {
                    AuthConfigError::UnknownPermission {
                        key: key.clone(),
                        source,
                    }
                })?;
                if grant == Grant::All && !self.allow_global_wildcard {
                    return Err(AuthConfigError::GlobalWildcardNotEnabled { key });
                }
                if let Grant::Permission(permission) = grant
                    && !guards_an_operation(permission)
                {
                    warnings.push(format!(
                        "{key}: `{permission}` is accepted for compatibility but no operation requires it{}",
                        if permission.action() == crate::permission::Action::Destroy {
                            " (cancelling requires `cancel`)"
                        } else {
                            ""
                        }
                    ));
                }
                Ok(grant)
            })
            .collect()
    }

    /// The JWT policy, validated.
    pub fn jwt_policy(&self) -> Result<JwtPolicy, AuthConfigError> {
        let config = &self.jwt;
        if config.algorithms.is_empty() {
            return Err(AuthConfigError::NoAlgorithms);
        }
        let mut algorithms = Vec::new();
        for (index, name) in config.algorithms.iter().enumerate() {
            let algorithm = name.parse::<JwtAlgorithm>().map_err(|source| {
                AuthConfigError::UnknownAlgorithm {
                    key: format!("auth.jwt.algorithms[{index}]"),
                    source,
                }
            })?;
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
        let leeway = Duration::try_from_secs_f64(config.leeway).map_err(|_| {
            AuthConfigError::InvalidValue {
                key: "auth.jwt.leeway".into(),
                problem: "must be a non-negative number of seconds",
            }
        })?;
        if config.max_token_bytes < 64 {
            return Err(AuthConfigError::InvalidValue {
                key: "auth.jwt.max_token_bytes".into(),
                problem: "must be at least 64",
            });
        }
        for (key, claim) in [
            ("auth.jwt.permissions_claim", &config.permissions_claim),
            ("auth.jwt.roles_claim", &config.roles_claim),
        ] {
            if claim.is_empty() {
                return Err(AuthConfigError::InvalidValue {
                    key: key.into(),
                    problem: "must not be empty",
                });
            }
        }
        let mut policy = JwtPolicy::new(algorithms);
        policy.issuer = config.issuer.clone();
        policy.audience = config.audience.clone();
        policy.leeway = leeway;
        policy.max_token_bytes = config.max_token_bytes;
        policy.permissions_claim = config.permissions_claim.clone();
        policy.roles_claim = config.roles_claim.clone();
        Ok(policy)
    }

    /// The JWT authenticator: policy and keys validated, every key fitting an algorithm and
    /// every algorithm having a key. Refuses a configuration with `auth.jwt.jwks_url`, whose
    /// keys must be fetched first ([`AuthConfig::jwt_authenticator_with`]).
    pub fn jwt_authenticator(&self) -> Result<JwtAuthenticator, AuthConfigError> {
        self.jwt_authenticator_with(None)
    }

    /// [`AuthConfig::jwt_authenticator`], with the key set fetched from `auth.jwt.jwks_url`.
    pub fn jwt_authenticator_with(
        &self,
        fetched_keys: Option<Arc<FetchedKeySet>>,
    ) -> Result<JwtAuthenticator, AuthConfigError> {
        let policy = self.jwt_policy()?;
        let url = self.jwks_url_settings()?;
        let mut fixed: Vec<(String, VerificationKey)> = Vec::new();
        if let Some(secret) = &self.jwt.secret {
            let key = VerificationKey::hmac(secret.expose().as_bytes(), "auth.jwt.secret")
                .map_err(|source| match source {
                    KeyError::SecretTooShort {
                        length, minimum, ..
                    } => AuthConfigError::SecretTooShort {
                        key: "auth.jwt.secret",
                        length,
                        minimum,
                    },
                    source => invalid_key("auth.jwt.secret".into(), source),
                })?;
            fixed.push(("auth.jwt.secret".into(), key));
        }
        for (index, path) in self.jwt.public_keys.iter().enumerate() {
            let setting = format!("auth.jwt.public_keys[{index}]");
            let pem = std::fs::read(path).map_err(|source| {
                invalid_key(
                    setting.clone(),
                    KeyError::Unreadable {
                        path: path.clone(),
                        source: Arc::new(source),
                    },
                )
            })?;
            let key = VerificationKey::from_public_pem(&pem, path.display().to_string())
                .map_err(|source| invalid_key(setting.clone(), source))?;
            fixed.push((setting, key));
        }
        // A key fixed here that no algorithm uses is a mistake; a JWKS document from an
        // identity provider may well hold keys for algorithms not accepted here.
        check_keys_fit(&policy, &fixed)?;
        let fixed: Vec<VerificationKey> = fixed.into_iter().map(|(_, key)| key).collect();
        let mut fetched: Vec<VerificationKey> = Vec::new();
        let mut providers: Vec<Arc<dyn KeySetProvider>> =
            vec![Arc::new(StaticKeySet::new(KeySet::new(fixed.clone())))];
        if let Some(path) = &self.jwt.jwks_file {
            let (file, _skipped) = JwksFile::load(path.clone())
                .map_err(|source| invalid_key("auth.jwt.jwks_file".into(), source))?;
            fetched.extend(file.keys().keys().iter().cloned());
            providers.push(Arc::new(file));
        }
        match (url, fetched_keys) {
            (Some(_), None) => return Err(AuthConfigError::JwksUrlNotFetched),
            (Some(_), Some(set)) => {
                if let Some((keys, _)) = set.latest() {
                    fetched.extend(keys.keys().iter().cloned());
                }
                providers.push(set);
            }
            (None, _) => {}
        }
        check_algorithms_have_keys(&policy, &self.jwt.algorithms, fixed.iter().chain(&fetched))?;
        Ok(JwtAuthenticator::new(policy, providers))
    }

    /// A signing key from `auth.jwt.secret`, for `algorithm` or else the first configured
    /// `HS*` algorithm (HS256 when none is).
    pub fn secret_signing_key(
        &self,
        algorithm: Option<JwtAlgorithm>,
    ) -> Result<SigningKey, AuthConfigError> {
        let secret = self.jwt.secret.as_ref().ok_or(AuthConfigError::NoSecret)?;
        let algorithm = algorithm.unwrap_or_else(|| {
            self.jwt
                .algorithms
                .iter()
                .filter_map(|name| name.parse::<JwtAlgorithm>().ok())
                .find(|alg| alg.key_kind() == KeyKind::Hmac)
                .unwrap_or(JwtAlgorithm::HS256)
        });
        SigningKey::hmac(secret.expose().as_bytes(), algorithm)
            .map_err(|source| AuthConfigError::Mint { source })
    }

    /// `auth.jwt.jwks_url` with its refresh interval and staleness limit, validated; `None`
    /// when no URL is configured.
    pub fn jwks_url_settings(&self) -> Result<Option<JwksUrlSettings>, AuthConfigError> {
        let Some(url) = &self.jwt.jwks_url else {
            return Ok(None);
        };
        let invalid = |key: &str, problem| AuthConfigError::InvalidValue {
            key: key.to_owned(),
            problem,
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| invalid("auth.jwt.jwks_url", "must be an http:// or https:// URL"))?;
        if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
            return Err(invalid(
                "auth.jwt.jwks_url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        let refresh = self.jwt.jwks_refresh.0;
        let max_staleness = self.jwt.jwks_max_staleness.0;
        if refresh < Duration::from_secs(1) {
            return Err(invalid(
                "auth.jwt.jwks_refresh",
                "must be at least 1 second",
            ));
        }
        if max_staleness < refresh {
            return Err(invalid(
                "auth.jwt.jwks_max_staleness",
                "must be at least auth.jwt.jwks_refresh (otherwise keys go stale between two fetches)",
            ));
        }
        Ok(Some(JwksUrlSettings {
            url: url.clone(),
            refresh,
            max_staleness,
        }))
    }

    /// The key `tasker token mint` signs with: `auth.jwt.private_key` when set (for the
    /// first configured algorithm of its kind), otherwise `auth.jwt.secret` (for the first
    /// configured `HS*` algorithm). `kid`, when given, goes into each token's header.
    pub fn signing_key(&self, kid: Option<&str>) -> Result<SigningKey, AuthConfigError> {
        let key = if let Some(path) = &self.jwt.private_key {
            let problem = |problem: String| AuthConfigError::PrivateKey {
                path: path.display().to_string(),
                problem,
            };
            let pem = std::fs::read(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
            let configured: Vec<JwtAlgorithm> = self
                .jwt
                .algorithms
                .iter()
                .filter_map(|name| name.parse::<JwtAlgorithm>().ok())
                .filter(|alg| alg.key_kind() != KeyKind::Hmac)
                .collect();
            if configured.is_empty() {
                SigningKey::from_private_pem(&pem, None).map_err(|e| problem(e.to_string()))?
            } else {
                let mut first_error = None;
                let mut found = None;
                for alg in configured {
                    match SigningKey::from_private_pem(&pem, Some(alg)) {
                        Ok(key) => {
                            found = Some(key);
                            break;
                        }
                        Err(err) => {
                            first_error.get_or_insert(err);
                        }
                    }
                }
                match (found, first_error) {
                    (Some(key), _) => key,
                    (None, Some(MintError::NotAPrivateKey)) => {
                        return Err(problem(MintError::NotAPrivateKey.to_string()));
                    }
                    (None, _) => {
                        return Err(problem(format!(
                            "cannot sign any algorithm in auth.jwt.algorithms ({})",
                            self.jwt.algorithms.join(", ")
                        )));
                    }
                }
            }
        } else if self.jwt.secret.is_some() {
            self.secret_signing_key(None)?
        } else {
            return Err(AuthConfigError::NoSigningKey);
        };
        Ok(match kid {
            Some(kid) => key.with_kid(kid),
            None => key,
        })
    }

    /// Whether a token `signing` mints is accepted by `verifier` (a probe at a fixed time, so
    /// no clock is read).
    fn verifies_own_tokens(&self, signing: &SigningKey, verifier: &JwtAuthenticator) -> bool {
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(1);
        let mut request = TokenRequest::new("probe", Duration::from_secs(60));
        request.issuer = self.jwt.issuer.clone();
        request.audience = self.jwt.audience.clone();
        signing
            .mint(&request, at)
            .is_ok_and(|token| verifier.verify(&token, at).is_ok())
    }

    fn api_key_authenticator(
        &self,
        database_keys: Option<Arc<dyn ApiKeyStore>>,
        warnings: &mut Vec<String>,
    ) -> Result<ApiKeyAuthenticator, AuthConfigError> {
        let mut stores: Vec<Arc<dyn ApiKeyStore>> = Vec::new();
        let configured = self.configured_keys(warnings)?;
        if !configured.is_empty() {
            stores.push(Arc::new(ConfiguredApiKeys::new(configured)));
        }
        if self.api_keys.database {
            stores.push(database_keys.ok_or(AuthConfigError::NoDatabaseForApiKeys)?);
        }
        if stores.is_empty() {
            return Err(AuthConfigError::NoApiKeySource);
        }
        Ok(ApiKeyAuthenticator::new(stores))
    }

    /// The keys of `[[auth.api_keys.keys]]`, validated.
    pub fn configured_keys(
        &self,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<StoredApiKey>, AuthConfigError> {
        let mut keys: Vec<StoredApiKey> = Vec::new();
        for (index, entry) in self.api_keys.keys.iter().enumerate() {
            let key = format!("auth.api_keys.keys[{index}]");
            let invalid = |field: &str, problem| AuthConfigError::InvalidApiKey {
                key: format!("{key}.{field}"),
                problem,
            };
            if entry.name.trim().is_empty() {
                return Err(invalid("name", "must not be empty"));
            }
            if keys.iter().any(|k| k.name == entry.name) {
                return Err(invalid("name", "is used by another key"));
            }
            let hash: ApiKeyHash = entry
                .hash
                .parse()
                .map_err(|_| invalid("hash", "must be 64 hex digits: the SHA-256 of the key"))?;
            let grants =
                self.parse_grants(&format!("{key}.permissions"), &entry.permissions, warnings)?;
            keys.push(
                StoredApiKey::new(entry.name.clone(), entry.name.clone(), hash)
                    .with_permissions(grants.iter().map(ToString::to_string))
                    .expiring_at(entry.expires_at),
            );
        }
        Ok(keys)
    }
}

fn invalid_key(key: String, source: KeyError) -> AuthConfigError {
    AuthConfigError::InvalidKey { key, source }
}

fn guards_an_operation(permission: Permission) -> bool {
    Operation::TABLE
        .iter()
        .any(|spec| spec.permission == Some(permission))
}

fn check_keys_fit(
    policy: &JwtPolicy,
    keys: &[(String, VerificationKey)],
) -> Result<(), AuthConfigError> {
    for (setting, key) in keys {
        if !policy.algorithms.iter().any(|alg| key.verifies(*alg)) {
            return Err(AuthConfigError::KeyMismatch {
                key: setting.clone(),
                origin: key.origin().to_owned(),
                kind: key.kind(),
            });
        }
    }
    Ok(())
}

fn check_algorithms_have_keys<'k>(
    policy: &JwtPolicy,
    names: &[String],
    keys: impl Iterator<Item = &'k VerificationKey> + Clone,
) -> Result<(), AuthConfigError> {
    for algorithm in &policy.algorithms {
        if !keys.clone().any(|key| key.verifies(*algorithm)) {
            let index = names
                .iter()
                .position(|name| name == algorithm.as_str())
                .unwrap_or_default();
            return Err(AuthConfigError::NoKeyForAlgorithm {
                key: format!("auth.jwt.algorithms[{index}]"),
                algorithm: *algorithm,
                needs: algorithm.key_kind(),
            });
        }
    }
    Ok(())
}
