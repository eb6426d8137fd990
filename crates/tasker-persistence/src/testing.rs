//! Test support for crates that run against real databases: a fresh SQLite file always, and a
//! fresh PostgreSQL database when `TASKER_TEST_DATABASE_URL` is set. Enabled by the `testing`
//! feature; used by this workspace's suites and available to applications' own tests.

use std::future::Future;

use crate::scratch_db::{create_database, drop_database};
use crate::store::sql::Db;
use crate::{ConnectOptions, LeaseClock, Store};

/// Which database a test is running on: a SQLite file in a temporary directory, or a database
/// created for the test on the server `TASKER_TEST_DATABASE_URL` names.
pub use crate::Backend;

/// A fresh, migrated database for one test; dropped (PostgreSQL) or deleted (SQLite) on drop.
///
/// Its store's leases run on the caller's clock ([`LeaseClock::Caller`]), so a test expires them
/// by moving its own clock; `store.clone().with_lease_clock(LeaseClock::Database)` gives a store
/// on the database's clock, as a deployment has.
pub struct TestDatabase {
    /// The store on it.
    pub store: Store,
    /// Its URL, for a second store or process on the same database.
    pub url: String,
    /// The backend.
    pub backend: Backend,
    dir: Option<std::sync::Arc<tempfile::TempDir>>,
    admin: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh SQLite database.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(Schema::Migrated).await
    }

    async fn sqlite_with(schema: Schema) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("tasker.db").display()
        );
        let options = ConnectOptions {
            migrate: schema == Schema::Migrated,
            lease_clock: LeaseClock::Caller,
            ..ConnectOptions::default()
        };
        let store = Store::connect(&url, &options).await.expect("open sqlite");
        Self {
            store,
            url,
            backend: Backend::Sqlite,
            dir: Some(std::sync::Arc::new(dir)),
            admin: None,
        }
    }

    /// A fresh PostgreSQL database, when `TASKER_TEST_DATABASE_URL` is set.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(Schema::Migrated).await
    }

    async fn postgres_with(schema: Schema) -> Option<Self> {
        let admin_url = std::env::var("TASKER_TEST_DATABASE_URL").ok()?;
        let (url, name) = create_database(&admin_url, "tasker_t_").await;
        let store = Store::connect(
            &url,
            &ConnectOptions {
                max_connections: 12,
                migrate: schema == Schema::Migrated,
                lease_clock: LeaseClock::Caller,
                ..Default::default()
            },
        )
        .await
        .expect("open test database");
        Some(Self {
            store,
            url,
            backend: Backend::Postgres,
            dir: None,
            admin: Some((admin_url, name)),
        })
    }

    /// Runs raw SQL on this database (a trigger, a lock) so a test can make the real database
    /// refuse or fail a write; panics if the SQL fails.
    pub async fn execute(&self, sql: &str) {
        self.store
            .connection()
            .exec_unprepared(sql)
            .await
            .unwrap_or_else(|err| panic!("test SQL failed: {err}\n{sql}"));
    }

    /// PostgreSQL: yields until some session of this database waits for a lock, or gives up
    /// after 100,000 looks; returns how many sessions wait. Watched from a session of its own:
    /// inside a transaction that holds the lock, `pg_stat_activity` would show one snapshot.
    pub async fn lock_waiters(&self) -> i64 {
        let watcher = self.session().await;
        let mut waiting = 0;
        for _ in 0..100_000 {
            waiting = watcher
                .count(
                    "SELECT count(*)::bigint AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .await
                .unwrap_or_else(|err| panic!("reading pg_stat_activity failed: {err}"));
            if waiting > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        waiting
    }

    /// A session of its own on this database (one connection), for a test that opens a
    /// transaction or takes locks by hand (`BEGIN`, `SELECT ... FOR UPDATE`) and ends them later.
    pub async fn session(&self) -> Session {
        let store = Store::connect(
            &self.url,
            &ConnectOptions {
                max_connections: 1,
                min_connections: 1,
                migrate: false,
                ..Default::default()
            },
        )
        .await
        .expect("open a test session");
        Session { store }
    }

    /// Closes the store and drops the PostgreSQL database.
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = &self.admin {
            drop_database(admin_url, name).await;
        }
    }
}

/// Whether a test database gets the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Migrated,
    Empty,
}

/// Runs `test` on a fresh SQLite database, then on a fresh PostgreSQL database when
/// `TASKER_TEST_DATABASE_URL` is set; a failure names the backend.
pub async fn on_each_database<F, Fut>(test: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_each(Schema::Migrated, test).await;
}

/// [`on_each_database`] with databases that have no schema yet (their store never migrated),
/// for tests of what applies the migrations.
pub async fn on_each_empty_database<F, Fut>(test: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_each(Schema::Empty, test).await;
}

async fn on_each<F, Fut>(schema: Schema, test: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_on(TestDatabase::sqlite_with(schema).await, &test).await;
    if let Some(db) = TestDatabase::postgres_with(schema).await {
        run_on(db, &test).await;
    }
}

async fn run_on<F, Fut>(db: TestDatabase, test: &F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let backend = db.backend;
    let url = db.url.clone();
    let admin = db.admin.clone();
    // A test that uses only some fields of `db` drops the rest early; the directory must live on.
    let dir = db.dir.clone();
    let outcome = tokio::spawn(test(db)).await;
    drop(dir);
    if let Some((admin_url, name)) = admin {
        drop_database(&admin_url, &name).await;
    }
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => {
                eprintln!("test failed on {} ({url})", backend.as_str());
                std::panic::resume_unwind(panic)
            }
            Err(err) => panic!("test on {} was cancelled: {err}", backend.as_str()),
        }
    }
}

/// One connection to a test database; statements run in order on it, so a transaction begun
/// with `BEGIN` spans calls until `COMMIT` or `ROLLBACK`.
pub struct Session {
    store: Store,
}

impl Session {
    /// Runs `sql` (one or more statements without parameters).
    pub async fn execute(&self, sql: &str) -> Result<(), crate::StoreError> {
        self.store.connection().exec_unprepared(sql).await?;
        Ok(())
    }

    /// The single integer `sql` returns in a column named `n`.
    pub async fn count(&self, sql: &str) -> Result<i64, crate::StoreError> {
        let backend = self.store.db_backend();
        let row = self
            .store
            .connection()
            .row(sea_orm::Statement::from_string(backend, sql))
            .await?
            .ok_or_else(|| crate::StoreError::malformed("count", "no row"))?;
        crate::store::sql::get::<i64>(&row, "n")
    }
}

/// Counts the SQL statements a store runs: `counting(&store)` gives a store on the same pool
/// whose every statement sent through sea-orm adds one to the counter, for tests that bound how
/// many statements an operation takes. (Task creation's one statement on PostgreSQL is sent
/// through sqlx directly and is not seen here; `Store::statements` counts it.)
pub fn counting(store: &Store) -> (Store, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut connection = store.connection().clone();
    let count = counter.clone();
    connection.set_metric_callback(move |_| {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    (
        Store::from_connection(connection, store.lease_clock()),
        counter,
    )
}
