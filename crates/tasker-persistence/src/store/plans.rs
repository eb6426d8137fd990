//! Test support: the query plans SQLite makes for the store's statements, so a test can fail
//! when a statement on the hot path reads a whole table or a wrong index. SQLite plans without
//! statistics (nothing runs `ANALYZE`), so the plans of an empty database are those the store
//! runs with at any size.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::{ConnectOptions, Store};

/// A fresh, migrated SQLite store in `dir`.
pub(crate) async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    Store::connect(&url, &ConnectOptions::default())
        .await
        .expect("open sqlite")
}

/// SQLite's query plan of `statement` with `values` bound, one line per step of the plan.
pub(crate) async fn sqlite_plan<C: ConnectionTrait>(
    db: &C,
    statement: &str,
    values: &[Value],
) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {statement}"),
            values.to_vec(),
        ))
        .await
        .unwrap_or_else(|err| panic!("EXPLAIN failed: {err}\n{statement}"));
    rows.iter()
        .map(|row| row.try_get::<String>("", "detail").expect("plan detail"))
        .collect()
}
