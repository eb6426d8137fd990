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
//!
//! The answer still comes back as one message per statement and per row. A caller whose wait
//! is on the critical path (the coordinator's hand-off) stays awake between them ([`hot`])
//! instead of putting its worker thread to sleep and waking it again for each: on a two-core
//! machine those wake-ups, not SQLite, were most of a hand-off's time.

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
    /// them returned, in order. Either every statement takes effect or none does. Counted as
    /// one transaction and one call. `waiting` says how its caller waits for the answer.
    pub(super) async fn script(
        &self,
        statements: &[String],
        values: Vec<Value>,
        waiting: Waiting,
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
        let answer = query.fetch_all(&mut **conn);
        let answer = match waiting {
            Waiting::Hot => hot(answer, HOT_FOR).await,
            Waiting::Parked => answer.await,
        };
        match answer {
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

/// How the caller of a script waits for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// Awake ([`hot`]): for a caller whose wait is the latency of the work it hands on,
    /// such as the coordinator's hand-off from one step to the next.
    Hot,
    /// Parked between the driver's answers, leaving the core to other work: for callers that
    /// come many at a time, such as task creation.
    Parked,
}

/// How long [`hot`] keeps its task running between the driver's answers.
const HOT_FOR: std::time::Duration = std::time::Duration::from_millis(2);

/// Awaits `future`, yielding to the runtime between polls instead of letting the worker
/// thread park, for up to `budget`; then awaits it as usual. The driver answers a script
/// with one message per statement and per row, each a few tens of microseconds apart: a task
/// that waited for each would put its worker thread to sleep and wake it again per message.
async fn hot<F: std::future::Future>(future: F, budget: std::time::Duration) -> F::Output {
    use std::task::Poll;
    let mut future = std::pin::pin!(future);
    let started = std::time::Instant::now();
    while started.elapsed() < budget {
        let polled = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = polled {
            return output;
        }
        tokio::task::yield_now().await;
    }
    future.await
}

/// A failure to take the writer's connection, as sea-orm reports one.
fn acquire_error(err: sqlx::Error) -> StoreError {
    StoreError::db(match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
    })
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::hot;

    /// Pending for its first `left` polls without arranging a wake-up: only a caller that
    /// polls again by itself ever sees it finish.
    struct Silent {
        left: u32,
        polls: u32,
    }

    impl Future for Silent {
        type Output = u32;

        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.left == 0 {
                return Poll::Ready(self.polls);
            }
            self.left -= 1;
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_hot_wait_polls_again_without_being_woken() {
        let polls = hot(Silent { left: 5, polls: 0 }, Duration::from_secs(3600)).await;
        assert_eq!(polls, 6);
    }

    /// Counts the polls of the future it wraps.
    struct Counted<F> {
        inner: Pin<Box<F>>,
        polls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    }

    impl<F: Future> Future for Counted<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn past_its_budget_a_hot_wait_waits_to_be_woken() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = Counted {
            inner: Box::pin(rx),
            polls: polls.clone(),
        };
        let waiter = tokio::spawn(hot(counted, Duration::ZERO));
        // The waiter runs between these; had it kept polling, each would count.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tx.send(7).unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), 7);
        // Once at first, once when woken.
        assert_eq!(polls.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
