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
//! is on the critical path (the coordinator's hand-off) stays awake for the first
//! [`AWAKE_FOR`] of it ([`poll_awake`]) instead of putting its worker thread to sleep and
//! waking it again for each message: on a two-core machine those wake-ups cost a hand-off
//! more than SQLite's own work did. It gives its core back to the operating system now and
//! then, so that the driver's thread is not kept waiting behind it for a whole time slice.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

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
        let fetching = query.fetch_all(&mut **conn);
        let answer = match waiting {
            Waiting::Awake => {
                let started = Instant::now();
                poll_awake(fetching, || started.elapsed() < AWAKE_FOR).await
            }
            Waiting::Parked => fetching.await,
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
#[derive(Debug, Clone, Copy)]
pub(super) enum Waiting {
    /// Awake for the first [`AWAKE_FOR`] ([`poll_awake`]): for a caller whose wait is the
    /// latency of the work it hands on, such as the coordinator's hand-off from one step to
    /// the next.
    Awake,
    /// Parked between the driver's messages, leaving the core to other work: for callers that
    /// come many at a time, such as task creation.
    Parked,
}

/// How long a [`Waiting::Awake`] caller keeps its task running, from the start of the
/// script's answer; a script still running then (waiting for another process's write lock)
/// is awaited as usual.
const AWAKE_FOR: Duration = Duration::from_millis(2);

/// Every this many polls of an awake wait, its thread gives its core to any other thread
/// waiting for it ([`poll_awake`]).
const POLLS_PER_THREAD_YIELD: u32 = 8;

/// Awaits `future`, yielding to the runtime between polls instead of letting the worker
/// thread park, while `awake()` holds; then awaits it as usual. The driver answers a script
/// with one message per statement and per row, each a few tens of microseconds apart: a task
/// that waited for each would put its worker thread to sleep and wake it again per message.
/// Other tasks of the runtime still run between the polls.
///
/// Every [`POLLS_PER_THREAD_YIELD`]-th poll the thread also yields its core to the operating
/// system. A thread that only polls keeps its core until the scheduler's time slice ends: when
/// the other core was busy, the driver's thread, woken to run the very script awaited here,
/// waited behind it for that slice (about 2 ms, in some 5 % of B2's tasks on SQLite, which put
/// B2's p99 at twice its p50).
async fn poll_awake<F: Future>(future: F, mut awake: impl FnMut() -> bool) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut polls = 0_u32;
    while awake() {
        let polled = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = polled {
            return output;
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(POLLS_PER_THREAD_YIELD) {
            std::thread::yield_now();
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
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::poll_awake;

    /// Counts its polls; pending for its first `silent` polls without arranging a wake-up
    /// (only a caller that polls again by itself gets past them), then as `inner` is.
    struct Counted<F> {
        inner: Pin<Box<F>>,
        silent: u32,
        polls: Arc<AtomicU32>,
    }

    impl<F: Future> Future for Counted<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let polls = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if polls <= self.silent {
                return Poll::Pending;
            }
            self.inner.as_mut().poll(cx)
        }
    }

    fn counted<F: Future>(inner: F, silent: u32) -> (Counted<F>, Arc<AtomicU32>) {
        let polls = Arc::new(AtomicU32::new(0));
        let future = Counted {
            inner: Box::pin(inner),
            silent,
            polls: polls.clone(),
        };
        (future, polls)
    }

    /// A waker that notes it was woken.
    #[derive(Default)]
    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_awake_wait_polls_again_without_being_woken() {
        // Pending for twenty polls: past the polls that also yield the thread.
        let (future, polls) = counted(std::future::ready(7), 20);
        let mut waiting = std::pin::pin!(poll_awake(future, || true));
        // Polled by hand, again only when woken, as a runtime would: the wait must wake
        // itself each time the future it waits for does not.
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut done = None;
        for _ in 0..100 {
            if let Poll::Ready(output) = waiting.as_mut().poll(&mut cx) {
                done = Some(output);
                break;
            }
            if !woken.0.swap(false, Ordering::Relaxed) {
                break;
            }
        }
        assert_eq!(done, Some(7));
        assert_eq!(polls.load(Ordering::Relaxed), 21);
    }

    #[tokio::test]
    async fn once_no_longer_awake_the_wait_waits_to_be_woken() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (future, polls) = counted(rx, 0);
        let mut awake_checks = 0;
        let waiter = tokio::spawn(poll_awake(future, move || {
            awake_checks += 1;
            awake_checks <= 3
        }));
        // The waiter runs between these; had it kept polling, each would count.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            4,
            "three awake polls, then one to wait"
        );
        tx.send(7).unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), 7);
        assert_eq!(polls.load(Ordering::Relaxed), 5, "and one when woken");
    }
}
