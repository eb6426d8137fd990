//! API keys in the `X-API-Key` header.
//!
//! A key is 32 random bytes, shown once as `tsk_` and 64 hex digits, and stored only as its
//! SHA-256 hash. A slow password hash would add nothing: the key is random, so its hash cannot
//! be reversed by guessing. Stores are looked up by hash ([`ApiKeyStore`]); the configuration
//! store compares every key's hash in constant time, and a database's index lookup is on the
//! hash, so timing can reveal nothing about a key.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authenticate::{AuthError, Authenticator, Rejection, single_header};
use crate::permission::Grant;
use crate::principal::{AuthMethod, Principal};

/// The header that carries API keys.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What every key starts with, so a leaked key is recognisable.
pub const API_KEY_PREFIX: &str = "tsk_";

/// Longer header values are refused without hashing.
const MAX_KEY_BYTES: usize = 256;

/// How often a key's last-used time is written back: a busy key would otherwise cost a write
/// per request.
const LAST_USED_GRANULARITY: chrono::Duration = chrono::Duration::minutes(1);

/// A plaintext API key. Shown to its owner once, at creation; never logged (its `Debug`
/// prints only the prefix).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A new random key.
    pub fn generate() -> Result<Self, ApiKeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|err| ApiKeyError::Random {
            reason: err.to_string(),
        })?;
        Ok(Self(format!("{API_KEY_PREFIX}{}", hex::encode(bytes))))
    }

    /// The key, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its hash, the only form stored.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash::of(&self.0)
    }

    /// Its first characters, stored beside the hash so listings can show which key is which.
    pub fn display_prefix(&self) -> &str {
        &self.0[..self.0.len().min(API_KEY_PREFIX.len() + 8)]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

/// The SHA-256 hash of a key; written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash([u8; 32]);

impl ApiKeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Compares in time independent of where the hashes differ.
    pub fn ct_eq(&self, other: &ApiKeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash({})", self.to_hex())
    }
}

impl fmt::Display for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for ApiKeyHash {
    type Err = ApiKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ApiKeyError::InvalidHash)?;
        Ok(Self(bytes))
    }
}

/// A stored key as a store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredApiKey {
    /// Its id (a database id, or the name for keys from configuration).
    pub id: String,
    /// Its name; the principal's subject.
    pub name: String,
    /// Its hash.
    pub hash: ApiKeyHash,
    /// Its grants as written (`resource:action`, `resource:*`).
    pub permissions: Vec<String>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request, if known.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl StoredApiKey {
    /// A live key with no recorded use.
    pub fn new(id: impl Into<String>, name: impl Into<String>, hash: ApiKeyHash) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            hash,
            permissions: Vec::new(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    /// With these grants.
    pub fn with_permissions<S: Into<String>>(
        mut self,
        permissions: impl IntoIterator<Item = S>,
    ) -> Self {
        self.permissions = permissions.into_iter().map(Into::into).collect();
        self
    }

    /// Expiring at `at`.
    pub fn expiring_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = at;
        self
    }

    /// Revoked at `at`.
    pub fn revoked(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.revoked_at = at;
        self
    }

    /// Last used at `at`.
    pub fn last_used(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.last_used_at = at;
        self
    }
}

/// Where stored keys live. Implemented by the server over the database, and by
/// [`ConfiguredApiKeys`] over the configuration.
#[async_trait::async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// The key with this hash, revoked and expired ones included (so the rejection can say
    /// why).
    async fn find_by_hash(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<StoredApiKey>, ApiKeyStoreError>;

    /// Records that key `id` authenticated a request at `at`.
    async fn record_use(&self, id: &str, at: DateTime<Utc>) -> Result<(), ApiKeyStoreError>;
}

/// A key store failed (the database is down): a server fault, not the client's.
#[derive(Debug, thiserror::Error)]
#[error("api key store failed: {source}")]
pub struct ApiKeyStoreError {
    /// What failed.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl ApiKeyStoreError {
    /// Wraps a store's own error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Something wrong with a key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {reason}")]
    Random {
        /// The error.
        reason: String,
    },
    /// A hash is not 64 hex digits.
    #[error("an api key hash is 64 hex digits (the SHA-256 of the key)")]
    InvalidHash,
}

/// Keys written in the configuration. Every lookup compares against every key in constant
/// time; last-used times are kept in memory only.
#[derive(Debug, Default)]
pub struct ConfiguredApiKeys {
    keys: Vec<StoredApiKey>,
    last_used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl ConfiguredApiKeys {
    /// These keys.
    pub fn new(keys: Vec<StoredApiKey>) -> Self {
        Self {
            keys,
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// The keys, with their in-memory last-used times.
    pub fn keys(&self) -> Vec<StoredApiKey> {
        let last_used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        self.keys
            .iter()
            .map(|key| {
                let mut key = key.clone();
                key.last_used_at = last_used.get(&key.id).copied().or(key.last_used_at);
                key
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for ConfiguredApiKeys {
    async fn find_by_hash(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<StoredApiKey>, ApiKeyStoreError> {
        // No early exit: the time taken does not depend on which key (if any) matches.
        let mut found = None;
        for key in &self.keys {
            if key.hash.ct_eq(hash) {
                found = Some(key);
            }
        }
        Ok(found.map(|key| {
            let mut key = key.clone();
            let last_used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
            key.last_used_at = last_used.get(&key.id).copied();
            key
        }))
    }

    async fn record_use(&self, id: &str, at: DateTime<Utc>) -> Result<(), ApiKeyStoreError> {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), at);
        Ok(())
    }
}

/// Authenticates `X-API-Key` requests against one or more stores, tried in order.
#[derive(Clone, Default)]
pub struct ApiKeyAuthenticator {
    stores: Vec<Arc<dyn ApiKeyStore>>,
}

impl fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("stores", &self.stores.len())
            .finish()
    }
}

impl ApiKeyAuthenticator {
    /// Looks keys up in `stores`, in order.
    pub fn new(stores: Vec<Arc<dyn ApiKeyStore>>) -> Self {
        Self { stores }
    }

    async fn lookup(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<(StoredApiKey, &dyn ApiKeyStore)>, AuthError> {
        for store in &self.stores {
            let found = store
                .find_by_hash(hash)
                .await
                .map_err(|err| AuthError::Unavailable {
                    source: Box::new(err),
                })?;
            // A store that looked the key up by index still gets a constant-time check.
            if let Some(key) = found.filter(|key| key.hash.ct_eq(hash)) {
                return Ok(Some((key, store.as_ref())));
            }
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl Authenticator for ApiKeyAuthenticator {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let Some(key) = single_header(headers, API_KEY_HEADER)? else {
            return Err(AuthError::NoCredentials);
        };
        let key = key.trim();
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Rejection::UnknownApiKey.into());
        }
        let Some((stored, store)) = self.lookup(&ApiKeyHash::of(key)).await? else {
            return Err(Rejection::UnknownApiKey.into());
        };
        if let Some(revoked_at) = stored.revoked_at {
            return Err(Rejection::ApiKeyRevoked {
                key_id: stored.id,
                revoked_at,
            }
            .into());
        }
        if let Some(expired_at) = stored.expires_at.filter(|at| now >= *at) {
            return Err(Rejection::ApiKeyExpired {
                key_id: stored.id,
                expired_at,
            }
            .into());
        }
        if stored
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_GRANULARITY)
            && let Err(err) = store.record_use(&stored.id, now).await
        {
            // The request is genuine; a missed last-used update is not worth refusing it.
            tracing::warn!(target: "tasker::auth", key_id = %stored.id, "cannot record api key use: {err}");
        }
        let permissions = stored
            .permissions
            .iter()
            .filter_map(|text| match text.parse::<Grant>() {
                Ok(grant) => Some(grant),
                Err(err) => {
                    tracing::warn!(target: "tasker::auth", key_id = %stored.id, "ignoring permission `{text}`: {err}");
                    None
                }
            })
            .collect::<Vec<_>>();
        let mut claims = Map::new();
        claims.insert("key_id".into(), json!(stored.id));
        claims.insert("name".into(), json!(stored.name));
        if let Some(expires_at) = stored.expires_at {
            claims.insert("expires_at".into(), Value::String(expires_at.to_rfc3339()));
        }
        Ok(
            Principal::new(stored.name, AuthMethod::ApiKey { key_id: stored.id })
                .with_permissions(permissions)
                .with_claims(claims),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_random_prefixed_and_hash_to_hex() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("tsk_"));
        assert_eq!(a.expose().len(), 4 + 64);
        assert_eq!(a.display_prefix().len(), 12);
        assert!(!format!("{a:?}").contains(&a.expose()[12..]));
        let hash = a.hash();
        assert_eq!(hash.to_hex().parse::<ApiKeyHash>(), Ok(hash));
        assert!(hash.ct_eq(&ApiKeyHash::of(a.expose())));
        assert!(!hash.ct_eq(&b.hash()));
    }

    #[test]
    fn known_hash() {
        assert_eq!(
            ApiKeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!("xyz".parse::<ApiKeyHash>(), Err(ApiKeyError::InvalidHash));
        assert_eq!(
            "ba7816bf".parse::<ApiKeyHash>(),
            Err(ApiKeyError::InvalidHash)
        );
    }
}
