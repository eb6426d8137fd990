//! Revoked JWTs by `jti`. The store only keeps the list: `tasker-auth` refuses listed tokens,
//! and the server puts a cache in front of the look-up.

use chrono::{DateTime, Utc};

use super::Store;
use super::sql::{Db, commit, get, stmt};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    /// The token's `jti`.
    pub jti: String,
    /// When it was revoked.
    pub revoked_at: DateTime<Utc>,
    /// The token's own expiry, after which the row may go.
    pub expires_at: Option<DateTime<Utc>>,
    /// Why, as the operator said.
    pub reason: Option<String>,
}

impl Store {
    /// Puts `jti` on the list (revoking it again keeps the first time and reason), and drops
    /// rows of tokens that expired before `now`. Returns the stored row.
    pub async fn revoke_token(
        &self,
        jti: &str,
        expires_at: Option<DateTime<Utc>>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<RevokedToken, StoreError> {
        let backend = self.db_backend();
        let txn = self.write_txn().await?;
        txn.exec(stmt(
            backend,
            "DELETE FROM tasker_revoked_tokens WHERE expires_at IS NOT NULL AND expires_at < $1",
            vec![to_micros(now).into()],
        ))
        .await?;
        txn.exec(stmt(
            backend,
            "INSERT INTO tasker_revoked_tokens (jti, revoked_at, expires_at, reason) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
            vec![
                jti.into(),
                to_micros(now).into(),
                expires_at.map(to_micros).into(),
                reason.map(str::to_owned).into(),
            ],
        ))
        .await?;
        commit(txn).await?;
        self.revoked_token(jti)
            .await?
            .ok_or_else(|| StoreError::Malformed {
                what: "revoked token",
                message: format!("`{jti}` was not stored"),
            })
    }

    /// The list's row for `jti`, if it is on the list.
    pub async fn revoked_token(&self, jti: &str) -> Result<Option<RevokedToken>, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                "SELECT jti, revoked_at, expires_at, reason FROM tasker_revoked_tokens WHERE jti = $1",
                vec![jti.into()],
            ))
            .await?;
        row.map(|row| {
            Ok(RevokedToken {
                jti: get(&row, "jti")?,
                revoked_at: from_micros(get(&row, "revoked_at")?),
                expires_at: get::<Option<i64>>(&row, "expires_at")?.map(from_micros),
                reason: get(&row, "reason")?,
            })
        })
        .transpose()
    }
}
