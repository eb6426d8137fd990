//! Who is calling, as an authenticator established it.

use std::fmt;

use serde_json::{Map, Value};

use crate::permission::Grant;

/// How a principal was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// No authentication: the open authenticator's anonymous principal.
    Open,
    /// A verified JSON Web Token.
    Jwt,
    /// An API key; the key's id (never the key).
    ApiKey {
        /// The stored key's id.
        key_id: String,
    },
    /// An application's own authenticator, by the name it gives.
    Custom(String),
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::Open => f.write_str("open"),
            AuthMethod::Jwt => f.write_str("jwt"),
            AuthMethod::ApiKey { key_id } => write!(f, "api_key {key_id}"),
            AuthMethod::Custom(name) => write!(f, "custom {name}"),
        }
    }
}

/// An authenticated caller: its subject, the grants it holds directly, its roles (which the
/// authorization policy expands through the configured role mapping), and the verified claims
/// it came with.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// Who: a JWT's `sub`, an API key's name, `anonymous` for open access.
    pub subject: String,
    /// Grants held directly (a token's permissions claim, an API key's permissions).
    pub permissions: Vec<Grant>,
    /// Role names.
    pub roles: Vec<String>,
    /// The verified claims (a JWT's payload; an API key's id and name).
    pub claims: Map<String, Value>,
    /// How it was authenticated.
    pub method: AuthMethod,
}

impl Principal {
    /// A principal with no grants, roles or claims.
    pub fn new(subject: impl Into<String>, method: AuthMethod) -> Self {
        Self {
            subject: subject.into(),
            permissions: Vec::new(),
            roles: Vec::new(),
            claims: Map::new(),
            method,
        }
    }

    /// The open authenticator's principal.
    pub fn anonymous() -> Self {
        Self::new("anonymous", AuthMethod::Open)
    }

    /// With these direct grants.
    pub fn with_permissions(mut self, permissions: impl IntoIterator<Item = Grant>) -> Self {
        self.permissions = permissions.into_iter().collect();
        self
    }

    /// With these roles.
    pub fn with_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// With these claims.
    pub fn with_claims(mut self, claims: Map<String, Value>) -> Self {
        self.claims = claims;
        self
    }
}
