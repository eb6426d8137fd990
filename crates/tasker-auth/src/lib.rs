//! Authentication and authorization for Tasker: who is calling ([`Authenticator`]: open, JWT,
//! API keys, or a chain of them), and may they do this ([`Authorizer`]: `resource:action`
//! permissions from one registry, roles, and an application's own
//! [`AuthorizationCoordinator`]s). [`Operation::TABLE`] maps every API operation to the one
//! permission it requires, for the REST and GraphQL layers alike.
//!
//! Who depends on it: `tasker-api` (which turns request headers into a [`Principal`] and asks
//! [`AccessControl`] before each operation), `tasker-server` (configuration, `tasker token`,
//! `tasker keys`, the database API key store), and teams building their own server, who plug
//! in their own authenticator or coordinator.
//!
//! Architecture Invariants:
//! - Depends on no workspace crate. No async runtime, no database, no HTTP framework: it reads
//!   `http::HeaderMap`s and claims. Its dependency closure holds no tokio, sea-orm, sqlx,
//!   axum, hyper, tower or async-graphql (`cargo xtask lint-layers` checks).
//! - "Now" is always an argument, so expiry decisions are deterministic.
//! - A rejection's reason is logged, never sent to the client; a denial is a [`Decision`]
//!   value, not an error, and every decision goes to the `tasker::audit` log target.
//! - Secrets and keys never appear in `Debug` output, errors or logs.
//!
//! API boundary: everything re-exported here is public API; [`AuthConfig`] is the `[auth]`
//! section of `tasker.toml`.

mod api_key;
mod authenticate;
mod authorize;
mod config;
pub mod jwt;
mod operation;
mod permission;
mod principal;
mod revocation;

pub use api_key::{
    API_KEY_HEADER, API_KEY_PREFIX, ApiKey, ApiKeyAuthenticator, ApiKeyError, ApiKeyHash,
    ApiKeyStore, ApiKeyStoreError, ConfiguredApiKeys, StoredApiKey,
};
pub use authenticate::{
    AuthError, Authenticator, AuthenticatorChain, OpenAuthenticator, Rejection,
};
pub use authorize::{
    AUDIT_TARGET, AccessControl, AuthorizationContext, AuthorizationCoordinator, Authorizer,
    Decision, PermissionPolicy, RoleGrants,
};
pub use config::{
    ApiKeysConfig, AuthConfig, AuthConfigError, AuthParts, AuthenticatorKind, BuiltAuth,
    ConfigDuration, ConfiguredKey, DEFAULT_JWKS_MAX_STALENESS, DEFAULT_JWKS_REFRESH,
    InvalidDuration, JwksUrlSettings, JwtConfig, Profile, Secret, parse_duration,
};
pub use jwt::{JwtAlgorithm, JwtAuthenticator, JwtPolicy, TokenRejection};
pub use operation::{Operation, OperationSpec, RestMethod, RestRoute};
pub use permission::{Action, Grant, Permission, PermissionError, Resource};
pub use principal::{AuthMethod, Principal};
pub use revocation::{RevocationError, RevocationList};
