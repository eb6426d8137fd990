//! Revoked tokens: a JWT whose `jti` is on the list is refused although its signature and
//! times are good. The list lives outside this crate (the server keeps it in the database,
//! behind its cache, so a revocation reaches every replica); [`RevocationList`] is how the
//! JWT authenticator asks it.

/// Answers whether a token id was revoked.
#[async_trait::async_trait]
pub trait RevocationList: Send + Sync {
    /// Whether the token with this `jti` was revoked. An error means the list could not be
    /// read: the request is answered "unavailable", never let through.
    async fn is_revoked(&self, jti: &str) -> Result<bool, RevocationError>;
}

/// The revocation list could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the revocation list cannot be read: {0}")]
pub struct RevocationError(pub String);

impl RevocationError {
    /// An error with this description.
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}
