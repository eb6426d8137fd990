//! The [`Store`]: one API over SQLite and PostgreSQL.

mod analytics;
mod api_keys;
mod arrays;
mod changes;
pub(crate) mod checkpoint;
mod claims;
mod create;
mod eager;
mod handoff;
mod history;
mod nodelay;
mod notify;
mod outcomes;
#[cfg(test)]
pub(crate) mod plans;
mod queries;
mod revocations;
mod script;
pub(crate) mod sql;
mod switches;
mod templates;
mod tls;
mod transaction;
mod transitions;
mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{
    AccessMode, Database, DatabaseConnection, DatabaseTransaction, DbBackend, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tasker_migrations::MigratorTrait;

pub use analytics::{
    AnalyticsScope, Bottlenecks, ErrorHotSpot, MAX_ANALYTICS_LIMIT, MAX_ANALYTICS_WINDOW,
    Performance, RetriedStep, StepTiming, TemplatePerformance,
};
pub use api_keys::{ApiKeyRecord, NewApiKey};
pub use create::PreparedTask;
pub use notify::{Listener, MAX_NOTIFY_PAYLOAD};
pub use revocations::RevokedToken;
pub use switches::{RuntimeSwitch, SwitchChange, SwitchKind, SwitchTarget};
pub use transaction::{SqlValue, Transaction};
pub use types::{
    Backlog, BlockingReason, ChangedStep, Claim, ClaimBatch, ClaimFilter, ClaimedStep,
    CreateTaskOptions, CreatedTask, ExecutionStatus, FollowingClaim, HealthCounts, HealthStatus,
    NamespaceLimit, Page, PoolStatus, RecommendedAction, RecordReport, RecordedStep,
    RegisteredTemplate, StepFailure, StepInputs, StepOutcome, StepReadiness, StepRecord,
    TaskExecutionContext, TaskFilter, TaskRecord, TransitionRecord,
};

use crate::error::{DatabaseError, StoreError};

/// Which database a store is on. Callers never need it for correctness (the store answers the
/// same on both); it is for messages, metrics labels and an application's own SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (a file, one writer at a time).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    pub(crate) fn sea_orm(self) -> DbBackend {
        match self {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres => DbBackend::Postgres,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectOptions {
    /// Largest pool size (on SQLite the pool for reads; writes have one more connection).
    pub max_connections: u32,
    /// Smallest pool size kept open.
    pub min_connections: u32,
    /// How long to wait for a connection from the pool.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for the lock before failing.
    pub sqlite_busy_timeout: Duration,
    /// Run pending migrations on connect.
    pub migrate: bool,
    /// Whose clock lease expiry is computed and compared with.
    pub lease_clock: LeaseClock,
}

/// Whose clock sets and checks lease expiry (`lease_expires_at`): the time a claim's lease runs
/// to, whether it has lapsed, and which claims [`Store::reclaim_expired`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LeaseClock {
    /// The database's clock (PostgreSQL's `clock_timestamp()`, SQLite's `julianday('now')`):
    /// processes on one database agree on every lease whatever their own clocks say, so a
    /// process with a skewed clock neither takes back live claims of others nor keeps lapsed
    /// ones. The `now` a call is given still stamps everything else (history, retry times).
    #[default]
    Database,
    /// The `now` each call is given: for tests that move a fake clock to expire leases, and a
    /// single process whose clock is the only one.
    Caller,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(30),
            sqlite_busy_timeout: Duration::from_secs(30),
            migrate: true,
            lease_clock: LeaseClock::Database,
        }
    }
}

/// The default database: a SQLite file in the working directory, created when missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tasker.db?mode=rwc";

/// Tasker's storage on one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite: the one connection the store's writes run on (see [`Store::connect`]); `None`
    /// where writes share `db`.
    writer: Option<DatabaseConnection>,
    /// SQLite: the task that checkpoints the write-ahead log off the writer's path.
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    lease_clock: LeaseClock,
    counters: Arc<Counters>,
}

/// What a store has sent to its database, shared by its clones: one relaxed atomic add per
/// statement or transaction, read by [`Store::statements`] and [`Store::transactions`].
#[derive(Debug, Default)]
struct Counters {
    statements: AtomicU64,
    calls: AtomicU64,
    transactions: AtomicU64,
}

/// How the database's schema compares with this build's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations this build carries that the database has not applied, oldest first.
    pub pending: Vec<String>,
}

impl SchemaStatus {
    /// Whether the schema is at the version this build expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Store {
    /// Opens `url` (`sqlite://...` or `postgres://...`). SQLite runs in WAL mode with
    /// `synchronous=NORMAL`, a busy timeout and foreign keys on. A PostgreSQL server on the
    /// same host (`localhost`, a loopback address) is reached without TLS unless the URL's
    /// `sslmode` or the environment's `PGSSLMODE` says otherwise; other servers keep the
    /// driver's default (`prefer`: TLS when the server offers it).
    ///
    /// On SQLite the store's writes run on one connection of their own, and reads on the pool
    /// of `options.max_connections`. SQLite has one writer at a time anyway, and a connection
    /// drops its whole page cache when it finds that another connection wrote since its last
    /// transaction: writes spread over a pool found every cache stale and read their pages
    /// again. One writer keeps its cache, and writers of this process queue for it in turn
    /// rather than polling SQLite's lock (the busy timeout still orders other processes).
    /// The write-ahead log is checkpointed by a task of the store's own, on the pool, so that
    /// no commit waits for a checkpoint; hence a SQLite store is opened inside a Tokio runtime.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let sqlite = url.starts_with("sqlite");
        let db = Self::open_pool(
            url,
            options,
            options.max_connections,
            options.min_connections,
            false,
        )
        .await?;
        let (writer, checkpointer) = if sqlite {
            (
                Some(Self::open_pool(url, options, 1, 1, true).await?),
                // On the pool, before the statement counters are attached to it: the
                // checkpoints are the store's upkeep, not statements of its callers.
                Some(Arc::new(checkpoint::Checkpointer::start(db.clone()))),
            )
        } else {
            (None, None)
        };
        let counters = Arc::new(Counters::default());
        let mut store = Self {
            db,
            writer,
            checkpointer,
            lease_clock: options.lease_clock,
            counters,
        };
        // sea-orm calls this once per call to the database (in a transaction or not); a call
        // can carry several statements in one string on SQLite, each counted. PostgreSQL's
        // statements are never read for separators.
        for db in std::iter::once(&mut store.db).chain(store.writer.as_mut()) {
            let counted = store.counters.clone();
            db.set_metric_callback(move |info| {
                let statements = if sqlite {
                    1 + info.statement.sql.matches(sql::STATEMENT_SEPARATOR).count()
                } else {
                    1
                };
                counted.statements.fetch_add(
                    u64::try_from(statements).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                counted.calls.fetch_add(1, Ordering::Relaxed);
            });
        }
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// A pool of up to `max` connections (`min` kept open) to `url`, set up as
    /// [`Store::connect`] says. SQLite's `writer` checkpoints the write-ahead log by itself
    /// only past a large threshold: the store's checkpointer does it off its path.
    async fn open_pool(
        url: &str,
        options: &ConnectOptions,
        max: u32,
        min: u32,
        writer: bool,
    ) -> Result<DatabaseConnection, StoreError> {
        let mut opts = sea_orm::ConnectOptions::new(url.to_owned());
        opts.max_connections(max)
            .min_connections(min)
            .acquire_timeout(options.acquire_timeout)
            .sqlx_logging(false);
        let busy = options.sqlite_busy_timeout;
        if url.starts_with("postgres") {
            // No TLS to a server on the same host unless asked for (see `tls`).
            let env_mode = std::env::var("PGSSLMODE").ok();
            if let Some(mode) = tls::loopback_mode(url, env_mode.as_deref()) {
                opts.map_sqlx_postgres_opts(move |o| o.ssl_mode(mode));
            }
            // Every new connection: TCP_NODELAY on the database's sockets (see `nodelay`).
            let peers = std::sync::Arc::new(nodelay::DatabasePeers::of_url(url));
            opts.map_sqlx_postgres_pool_opts(move |pool| {
                let peers = peers.clone();
                pool.after_connect(move |_, _| {
                    let peers = peers.clone();
                    Box::pin(async move {
                        peers.set_nodelay();
                        Ok(())
                    })
                })
            });
        }
        // PostgreSQL plans a prepared statement once and, after five runs, may keep a generic
        // plan made from the table sizes of that moment, however the tables grow after. The hot
        // statements are written so that their generic plans stay on the indexes (each planned
        // run costs about as much server time as running it); see the claim's statement.
        opts.map_sqlx_sqlite_opts(move |o| {
            let o = o
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(busy)
                .foreign_keys(true);
            if writer {
                o.pragma("wal_autocheckpoint", checkpoint::WRITER_THRESHOLD)
            } else {
                o
            }
        });
        Database::connect(opts)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source: DatabaseError(source),
            })
    }

    /// Wraps an open connection (migrations are the caller's business).
    #[cfg(feature = "testing")]
    pub(crate) fn from_connection(db: DatabaseConnection, lease_clock: LeaseClock) -> Self {
        Self {
            db,
            writer: None,
            checkpointer: None,
            lease_clock,
            counters: Arc::default(),
        }
    }

    /// This store on the same connection pool with leases on `clock`.
    #[must_use]
    pub fn with_lease_clock(mut self, clock: LeaseClock) -> Self {
        self.lease_clock = clock;
        self
    }

    /// Whose clock this store's leases run on.
    pub fn lease_clock(&self) -> LeaseClock {
        self.lease_clock
    }

    /// SQL statements this store and its clones have sent to the database since
    /// [`Store::connect`] opened it: every query and write, inside a transaction or not, each
    /// chunk of a chunked write apart, failed ones included. Not counted: `BEGIN`, `COMMIT` and
    /// `ROLLBACK` (see [`Store::transactions`]), SQL sent unprepared (as migrations partly
    /// are), the pool's connection set-up, and a listener's `LISTEN` ([`Store::listen`]).
    /// Costs one relaxed atomic add per statement (plus the two clock reads sea-orm makes
    /// around a statement once anything observes it); take the difference of two readings
    /// around the work to measure.
    pub fn statements(&self) -> u64 {
        self.counters.statements.load(Ordering::Relaxed)
    }

    /// Calls this store and its clones have made to the database driver for the statements of
    /// [`Store::statements`]: one per statement, except on SQLite, where a call can carry
    /// several statements in one string (the driver runs each connection on a thread of its
    /// own, so every call is a hand-over to that thread and back). Counted like statements.
    pub fn calls(&self) -> u64 {
        self.counters.calls.load(Ordering::Relaxed)
    }

    /// Read-write transactions this store and its clones have begun since it was opened (each
    /// ends in one `COMMIT` or `ROLLBACK`, or is one statement sent on its own); every store
    /// write and [`Store::begin`] is one. The store's reads run outside transactions and are
    /// not counted here.
    pub fn transactions(&self) -> u64 {
        self.counters.transactions.load(Ordering::Relaxed)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        tasker_migrations::Migrator::up(&self.db, None)
            .await
            .map_err(StoreError::db)
    }

    /// Whether the database answers a trivial query (the readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::db)
    }

    /// Closes the connection pool: open connections are closed once given back, and every
    /// later operation on this store or its clones fails as unavailable.
    pub async fn close(&self) {
        // Closing a pool that is closed already is harmless; nothing else can fail here.
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop();
        }
        if let Some(writer) = &self.writer {
            writer.clone().close().await.ok();
        }
        self.db.clone().close().await.ok();
    }

    /// How the database's schema compares with the migrations this build carries.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let pending = tasker_migrations::Migrator::get_pending_migrations(&self.db)
            .await
            .map_err(StoreError::db)?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        Ok(SchemaStatus { pending })
    }

    /// The sea-orm connection pool, for this crate's statements and its `testing` support.
    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.db.get_database_backend() {
            DbBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// The sea-orm name of [`Store::backend`], for building statements.
    pub(crate) fn db_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Begins a read-write transaction for the caller, who writes in it with
    /// [`Transaction::execute`] and creates tasks in it with [`Store::create_task_in`], then
    /// commits or rolls back (dropping it rolls back).
    pub async fn begin(&self) -> Result<Transaction, StoreError> {
        Ok(Transaction::new(self.write_txn().await?, self.backend()))
    }

    /// The connection pool's size and idle connections; `None` for a connection that is not
    /// a pool (never the case for a store from [`Store::connect`]).
    pub fn pool_status(&self) -> Option<PoolStatus> {
        use sea_orm::DatabaseConnectionType as Type;
        let (size, idle, max) = match &self.db.inner {
            Type::SqlxPostgresPoolConnection(_) => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            Type::SqlxSqlitePoolConnection(_) => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => return None,
        };
        Some(PoolStatus {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX).min(size),
            max,
        })
    }

    /// How long taking a connection from the pool waits right now: one connection is taken
    /// and given back at once. A pool too small for its load shows here first.
    pub async fn acquire_wait(&self) -> Result<Duration, StoreError> {
        use sea_orm::DatabaseConnectionType as Type;
        let started = std::time::Instant::now();
        let acquired = match &self.db.inner {
            Type::SqlxPostgresPoolConnection(_) => self
                .db
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map(drop),
            Type::SqlxSqlitePoolConnection(_) => self
                .db
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .map(drop),
            _ => Ok(()),
        };
        acquired.map_err(StoreError::acquire)?;
        Ok(started.elapsed())
    }

    /// A read-write transaction: `BEGIN IMMEDIATE` on SQLite, so the write lock is taken up
    /// front and concurrent writers queue on the busy timeout instead of failing to upgrade.
    pub(crate) async fn write_txn(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            isolation_level: None::<IsolationLevel>,
            access_mode: None::<AccessMode>,
            sqlite_transaction_mode: (self.backend() == Backend::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
        };
        let txn = self
            .writer()
            .begin_with_options(options)
            .await
            .map_err(StoreError::db)?;
        self.began_write();
        Ok(txn)
    }

    /// Counts a write transaction begun, and tells the checkpointer.
    fn began_write(&self) {
        let began = self.counters.transactions.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wrote(began);
        }
    }

    /// Counts a [`Store::script`]: one write transaction, one call carrying `statements`
    /// statements (its `BEGIN` and `COMMIT` not among them).
    fn wrote(&self, statements: usize) {
        self.began_write();
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.counters.statements.fetch_add(
            u64::try_from(statements).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts one statement in one call sent through sqlx directly, as sea-orm's metric
    /// callback counts its own (see [`Store::connect`]).
    pub(crate) fn sent_directly(&self) {
        self.counters.statements.fetch_add(1, Ordering::Relaxed);
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The pool, for a write that is one statement: atomic on its own, so it needs no `BEGIN`
    /// and `COMMIT` round trips, and durable when the database answers. Counted as a
    /// transaction, as it is one.
    pub(crate) fn one_statement_txn(&self) -> &DatabaseConnection {
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.writer()
    }

    /// SQLite: how many write-ahead log checkpoints this store has run in the background (see
    /// [`Store::connect`]), as a watch that changes with each one; `None` on PostgreSQL.
    pub fn wal_checkpoints(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.checkpointer.as_ref().map(|c| c.runs())
    }

    /// The connection writes outside a transaction run on: SQLite's one writer, else the pool.
    pub(crate) fn writer(&self) -> &DatabaseConnection {
        self.writer.as_ref().unwrap_or(&self.db)
    }
}

/// `url` with its password replaced by `***`, for messages and listings.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact_url("sqlite://tasker.db"),
            "sqlite://tasker.db"
        );
    }
}
