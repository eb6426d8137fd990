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
