//! API keys: stored as hashes (the key itself is never written), looked up by hash, revoked
//! rather than deleted. The store knows nothing of authentication: `tasker-auth` decides what
//! a key may do, and the server adapts these methods to its key-store trait.

use chrono::{DateTime, Utc};
use sea_orm::QueryResult;

use super::Store;
use super::sql::{Db, get, stmt};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

/// A key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// A name people recognise it by.
    pub name: String,
    /// The SHA-256 of the key, hex.
    pub key_hash: String,
    /// The key's first characters, for listings.
    pub key_prefix: String,
    /// Its grants as written (`resource:action`).
    pub permissions: Vec<String>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Its id.
    pub api_key_id: i64,
    /// Its name.
    pub name: String,
    /// The SHA-256 of the key, hex.
    pub key_hash: String,
    /// The key's first characters.
    pub key_prefix: String,
    /// Its grants as written.
    pub permissions: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "api_key_id, name, key_hash, key_prefix, permissions, created_at, \
                       expires_at, last_used_at, revoked_at";

impl Store {
    /// Stores a new key created at `now`.
    pub async fn create_api_key(
        &self,
        key: &NewApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let permissions = serde_json::to_value(&key.permissions)
            .map_err(|e| StoreError::malformed("api key permissions", e))?;
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                format!(
                    "INSERT INTO tasker_api_keys (name, key_hash, key_prefix, permissions, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
                ),
                vec![
                    key.name.clone().into(),
                    key.key_hash.clone().into(),
                    key.key_prefix.clone().into(),
                    permissions.into(),
                    to_micros(now).into(),
                    key.expires_at.map(to_micros).into(),
                ],
            ))
            .await?
            .ok_or_else(|| StoreError::malformed("api key", "INSERT returned no row"))?;
        record(&row)
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                format!("SELECT {COLUMNS} FROM tasker_api_keys ORDER BY api_key_id"),
                vec![],
            ))
            .await?;
        rows.iter().map(record).collect()
    }

    /// The key with this hash, revoked or expired ones included.
    pub async fn find_api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                format!("SELECT {COLUMNS} FROM tasker_api_keys WHERE key_hash = $1"),
                vec![key_hash.into()],
            ))
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Revokes key `api_key_id` at `now`. Revoking a revoked key keeps its first revocation
    /// time. Returns the key as it now is.
    pub async fn revoke_api_key(
        &self,
        api_key_id: i64,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                format!(
                    "UPDATE tasker_api_keys SET revoked_at = COALESCE(revoked_at, $2) \
                     WHERE api_key_id = $1 RETURNING {COLUMNS}"
                ),
                vec![api_key_id.into(), to_micros(now).into()],
            ))
            .await?
            .ok_or(StoreError::ApiKeyNotFound(api_key_id))?;
        record(&row)
    }

    /// Records that key `api_key_id` was used at `at` (a later use never moves it back).
    pub async fn touch_api_key(
        &self,
        api_key_id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .db
            .exec(stmt(
                self.db_backend(),
                "UPDATE tasker_api_keys SET last_used_at = $2 \
                 WHERE api_key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                vec![api_key_id.into(), to_micros(at).into()],
            ))
            .await?;
        if result.rows_affected() == 0 && !self.api_key_exists(api_key_id).await? {
            return Err(StoreError::ApiKeyNotFound(api_key_id));
        }
        Ok(())
    }

    async fn api_key_exists(&self, api_key_id: i64) -> Result<bool, StoreError> {
        Ok(self
            .db
            .row(stmt(
                self.db_backend(),
                "SELECT api_key_id FROM tasker_api_keys WHERE api_key_id = $1",
                vec![api_key_id.into()],
            ))
            .await?
            .is_some())
    }
}

fn record(row: &QueryResult) -> Result<ApiKeyRecord, StoreError> {
    let permissions: serde_json::Value = get(row, "permissions")?;
    let permissions = serde_json::from_value(permissions)
        .map_err(|e| StoreError::malformed("api key permissions", e))?;
    let time = |column| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(get::<Option<i64>>(row, column)?.map(from_micros))
    };
    Ok(ApiKeyRecord {
        api_key_id: get(row, "api_key_id")?,
        name: get(row, "name")?,
        key_hash: get(row, "key_hash")?,
        key_prefix: get(row, "key_prefix")?,
        permissions,
        created_at: from_micros(get(row, "created_at")?),
        expires_at: time("expires_at")?,
        last_used_at: time("last_used_at")?,
        revoked_at: time("revoked_at")?,
    })
}
