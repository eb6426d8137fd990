//! The database as an API key store for `tasker-auth`: keys are looked up by hash and their
//! use is recorded.

use chrono::{DateTime, Utc};
use tasker_auth::{ApiKeyHash, ApiKeyStore, ApiKeyStoreError, StoredApiKey};
use tasker_persistence::Store;

/// API keys kept in the database (created with `Store::create_api_key`).
#[derive(Debug, Clone)]
pub struct DatabaseApiKeys {
    store: Store,
}

impl DatabaseApiKeys {
    /// Keys in `store`'s database.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for DatabaseApiKeys {
    async fn find_by_hash(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<StoredApiKey>, ApiKeyStoreError> {
        let Some(record) = self
            .store
            .find_api_key_by_hash(&hash.to_hex())
            .await
            .map_err(ApiKeyStoreError::new)?
        else {
            return Ok(None);
        };
        let stored_hash: ApiKeyHash = record.key_hash.parse().map_err(ApiKeyStoreError::new)?;
        let mut key = StoredApiKey::new(record.api_key_id.to_string(), record.name, stored_hash);
        key.permissions = record.permissions;
        key.expires_at = record.expires_at;
        key.revoked_at = record.revoked_at;
        key.last_used_at = record.last_used_at;
        Ok(Some(key))
    }

    async fn record_use(&self, id: &str, at: DateTime<Utc>) -> Result<(), ApiKeyStoreError> {
        let id: i64 = id.parse().map_err(|_| {
            ApiKeyStoreError::new(format!("api key id `{id}` is not a database id"))
        })?;
        self.store
            .touch_api_key(id, at)
            .await
            .map_err(ApiKeyStoreError::new)
    }
}

/// The database's revocation list behind the cache: a token id's verdict is read from the
/// cache, else from the database and then cached for the TTL. Revoking writes the database and
/// then the cache, so with a shared (Redis) cache every replica refuses the token on its next
/// request; with an in-process cache, other processes learn of it within the TTL.
#[derive(Debug, Clone)]
pub struct DatabaseRevocations {
    store: Store,
    cache: crate::Cache,
    ttl: std::time::Duration,
}

impl DatabaseRevocations {
    /// The list in `store`'s database, cached in `cache` for `ttl`.
    pub fn new(store: Store, cache: crate::Cache, ttl: std::time::Duration) -> Self {
        Self { store, cache, ttl }
    }

    fn key(jti: &str) -> String {
        format!("revoked:jti:{jti}")
    }

    /// Revokes the token `jti` (whose own expiry is `expires_at`, when known).
    pub async fn revoke(
        &self,
        jti: &str,
        expires_at: Option<DateTime<Utc>>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<tasker_persistence::RevokedToken, tasker_persistence::StoreError> {
        let revoked = self
            .store
            .revoke_token(jti, expires_at, reason, now)
            .await?;
        self.cache.set_json(&Self::key(jti), &true, self.ttl).await;
        Ok(revoked)
    }
}

#[async_trait::async_trait]
impl tasker_auth::RevocationList for DatabaseRevocations {
    async fn is_revoked(&self, jti: &str) -> Result<bool, tasker_auth::RevocationError> {
        let key = Self::key(jti);
        if let Some(revoked) = self.cache.get_json::<bool>(&key).await {
            return Ok(revoked);
        }
        let revoked = self
            .store
            .revoked_token(jti)
            .await
            .map_err(tasker_auth::RevocationError::new)?
            .is_some();
        self.cache.set_json(&key, &revoked, self.ttl).await;
        Ok(revoked)
    }
}
