//! SQLite: a whole write transaction as one call to the driver ([`Store::script`]).
//!
//! The SQLite driver runs each connection on a thread of its own, and every call is a
//! hand-over to that thread and back: tens of microseconds each across cores, more than the
//! statements of a small write cost to run. A transaction made of `BEGIN`, a few statements
//! and `COMMIT` pays that once per statement. A script sends them as the statements of one
//! string, which the driver runs in turn: one hand-over for the whole transaction.
//!
//! The driver's own transaction tracking knows nothing of a `BEGIN` inside a string, so the
//! script rolls back itself: when a statement fails, and when the caller stops waiting while
//! the script runs (the connection would otherwise go back to the pool inside a transaction,
//! and the next write on it would fail).

use std::sync::Arc;

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Executor, Sqlite};
use sea_orm::{ConnAcquireErr, DbErr, QueryResult, RuntimeErr, Value};
use sea_query_sqlx::SqlxValues;

use super::Store;
use super::sql::STATEMENT_SEPARATOR;
use crate::error::StoreError;

impl Store {
    /// SQLite: runs `statements` (each may itself be several, separated by
    /// [`STATEMENT_SEPARATOR`]) as one transaction (`BEGIN IMMEDIATE`, the statements, `COMMIT`)
    /// in one call to the driver on the writer's connection, binding `values` as the driver
    /// does for one string (`$n` to the n-th value, `?` in turn), and returns the rows all of
    /// them returned, in order. Either
    /// every statement takes effect or none does. Counted as one transaction and one call.
    pub(super) async fn script(
        &self,
        statements: &[String],
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>, StoreError> {
        let pool = self.writer().get_sqlite_connection_pool();
        let conn = pool.acquire().await.map_err(acquire_error)?;
        let mut open = OpenScript { conn: Some(conn) };
        let body = statements.join(STATEMENT_SEPARATOR);
        self.wrote(1 + body.matches(STATEMENT_SEPARATOR).count());
        let sql = format!("BEGIN IMMEDIATE{STATEMENT_SEPARATOR}{body}{STATEMENT_SEPARATOR}COMMIT");
        let query = sqlx::query_with(
            sqlx::AssertSqlSafe(sql),
            SqlxValues(sea_orm::sea_query::Values(values)),
        );
        let Some(conn) = open.conn.as_mut() else {
            unreachable!("the connection is taken only below")
        };
        match query.fetch_all(&mut **conn).await {
            Ok(rows) => {
                open.settled();
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
            Err(err) => {
                // The guard rolls back on a task of its own, which holds the connection until
                // the `ROLLBACK` has run, whether or not this caller still waits.
                drop(open);
                Err(StoreError::db(DbErr::Query(RuntimeErr::SqlxError(
                    Arc::new(err),
                ))))
            }
        }
    }
}

/// A script's connection until the script has committed: dropped before that (the caller
/// stopped waiting), it rolls the transaction back on a task of its own before the
/// connection goes back to the pool.
struct OpenScript {
    conn: Option<PoolConnection<Sqlite>>,
}

impl OpenScript {
    /// The script committed: the connection goes back to the pool as it is.
    fn settled(&mut self) {
        self.conn.take();
    }
}

impl Drop for OpenScript {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // The driver's thread finishes or abandons the script before it takes the `ROLLBACK`.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(roll_back(conn));
            }
            // Outside a runtime the connection is closed instead, which rolls back too.
            Err(_) => drop(conn.detach()),
        }
    }
}

/// Rolls back whatever transaction a failed or abandoned script left open on `conn`. SQLite
/// has already rolled back after some failures, and a script that got as far as `COMMIT`
/// left nothing open: the "no transaction" error is then expected and ignored. A connection
/// that cannot run the `ROLLBACK` is closed rather than given back to the pool.
async fn roll_back(mut conn: PoolConnection<Sqlite>) {
    if let Err(err) = conn.execute("ROLLBACK").await {
        let nothing_open = matches!(&err, sqlx::Error::Database(db)
            if db.message().contains("no transaction is active"));
        if !nothing_open {
            tracing::warn!(error = %err, "rolling back a failed SQLite script failed; closing its connection");
            conn.close_on_drop();
        }
    }
}

/// A failure to take the writer's connection, as sea-orm reports one.
fn acquire_error(err: sqlx::Error) -> StoreError {
    StoreError::db(match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
    })
}
