//! PostgreSQL `LISTEN`/`NOTIFY`, for relaying events between processes. SQLite has no
//! equivalent (it is embedded: one process), so these report `None` / do nothing there.

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{DbBackend, Value};

use super::sql::{Db, stmt};
use super::{Backend, Store};
use crate::StoreError;
use crate::error::DatabaseError;

/// PostgreSQL's limit on a notification payload is 8,000 bytes; stay under it.
pub const MAX_NOTIFY_PAYLOAD: usize = 7_900;

/// A `LISTEN`ing connection (it holds one pool connection for as long as it lives).
pub struct Listener {
    inner: PgListener,
}

impl Listener {
    /// The next notification's payload. Notifications sent while the connection was being
    /// re-established are lost (callers treat notifications as hints, not as a log).
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        let notification = self.inner.recv().await.map_err(|e| {
            StoreError::Database(DatabaseError::custom(format!("LISTEN failed: {e}")))
        })?;
        Ok(notification.payload().to_owned())
    }
}

impl Store {
    /// Whether this database relays notifications between processes (PostgreSQL).
    pub fn supports_notify(&self) -> bool {
        self.backend() == Backend::Postgres
    }

    /// Listens on `channel`; `None` on SQLite.
    pub async fn listen(&self, channel: &str) -> Result<Option<Listener>, StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let pool = self.connection().get_postgres_connection_pool();
        let failed = |e: sea_orm::sqlx::Error| {
            StoreError::Database(DatabaseError::custom(format!("LISTEN {channel}: {e}")))
        };
        let mut inner = PgListener::connect_with(pool).await.map_err(failed)?;
        inner.listen(channel).await.map_err(failed)?;
        Ok(Some(Listener { inner }))
    }

    /// Sends each payload as one notification on `channel`, in order, in one statement (they
    /// are delivered when it commits). Payloads longer than [`MAX_NOTIFY_PAYLOAD`] are refused.
    /// Does nothing on SQLite.
    pub async fn notify(&self, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres || payloads.is_empty() {
            return Ok(());
        }
        if let Some(long) = payloads.iter().find(|p| p.len() > MAX_NOTIFY_PAYLOAD) {
            return Err(StoreError::Database(DatabaseError::custom(format!(
                "a notification of {} bytes exceeds the {MAX_NOTIFY_PAYLOAD}-byte limit",
                long.len()
            ))));
        }
        let calls: Vec<String> = (0..payloads.len())
            .map(|i| format!("pg_notify($1, ${})", i + 2))
            .collect();
        let mut values: Vec<Value> = vec![channel.into()];
        values.extend(payloads.iter().map(|p| Value::from(p.as_str())));
        self.connection()
            .exec(stmt(
                DbBackend::Postgres,
                format!("SELECT {}", calls.join(", ")),
                values,
            ))
            .await?;
        Ok(())
    }
}
