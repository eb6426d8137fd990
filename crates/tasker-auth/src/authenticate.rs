//! The [`Authenticator`] trait, what a rejection says, and the two built-ins that need no
//! credentials of their own: [`OpenAuthenticator`] and [`AuthenticatorChain`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::jwt::TokenRejection;
use crate::principal::Principal;

/// Turns a request's headers into a [`Principal`].
///
/// `now` is the caller's clock reading, so expiry decisions are deterministic in tests.
/// Return [`AuthError::NoCredentials`] when the request carries nothing this authenticator
/// reads (so a chain tries the next one), [`AuthError::Rejected`] when it carries credentials
/// that fail. The reason is for the log only: the client learns nothing beyond "unauthorized".
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// Authenticates one request.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError>;
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no credentials any authenticator reads.
    #[error("no credentials")]
    NoCredentials,
    /// The request's credentials were refused.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The credentials could not be checked (a key store or key set is unavailable): a server
    /// fault, not the client's.
    #[error("credentials cannot be checked: {source}")]
    Unavailable {
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AuthError {
    /// Whether the fault is the server's (the API answers "unavailable", not "unauthorized").
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthError::Unavailable { .. })
    }
}

/// Why presented credentials were refused. Logged, never sent to the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// A credential header is unusable.
    #[error("`{header}` header {problem}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A bearer token was refused.
    #[error(transparent)]
    Token(#[from] TokenRejection),
    /// No stored API key has this key's hash.
    #[error("unknown api key")]
    UnknownApiKey,
    /// The API key has expired.
    #[error("api key {key_id} expired at {expired_at}")]
    ApiKeyExpired {
        /// The key's id.
        key_id: String,
        /// When it expired.
        expired_at: DateTime<Utc>,
    },
    /// The API key was revoked.
    #[error("api key {key_id} was revoked at {revoked_at}")]
    ApiKeyRevoked {
        /// The key's id.
        key_id: String,
        /// When it was revoked.
        revoked_at: DateTime<Utc>,
    },
    /// An application authenticator's own reason.
    #[error("{0}")]
    Custom(String),
}

/// No authentication: every request is the anonymous principal, whom the permission policy
/// lets do everything. The development default; configuration refuses it in the production
/// profile unless explicitly allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAuthenticator;

#[async_trait::async_trait]
impl Authenticator for OpenAuthenticator {
    async fn authenticate(
        &self,
        _headers: &HeaderMap,
        _now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        Ok(Principal::anonymous())
    }
}

/// Tries authenticators in order. A request without credentials for one goes on to the next;
/// credentials that one of them refuses are refused, never rescued by a later authenticator
/// (so a bad token cannot fall through to open access).
#[derive(Clone, Default)]
pub struct AuthenticatorChain {
    links: Vec<Arc<dyn Authenticator>>,
}

impl AuthenticatorChain {
    /// An empty chain (which finds no credentials in any request).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `authenticator`.
    pub fn then(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.links.push(authenticator);
        self
    }

    /// How many authenticators the chain holds.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

impl std::fmt::Debug for AuthenticatorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatorChain")
            .field("links", &self.links.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl Authenticator for AuthenticatorChain {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        for link in &self.links {
            match link.authenticate(headers, now).await {
                Err(AuthError::NoCredentials) => continue,
                outcome => return outcome,
            }
        }
        Err(AuthError::NoCredentials)
    }
}

/// The one value of `name`: `None` when absent, a rejection when repeated or not visible
/// ASCII (a credential header has one meaning or none).
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::MalformedHeader {
            header: name,
            problem: "is repeated",
        });
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Rejection::MalformedHeader {
            header: name,
            problem: "is not visible ASCII",
        })
}
