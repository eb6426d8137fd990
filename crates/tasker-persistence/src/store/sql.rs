//! Small helpers for the portable SQL the hot paths use. Placeholders are `$N` on both
//! databases (sqlx's SQLite driver reads `$N` as position N).

use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};

use crate::error::StoreError;

/// The most bind parameters one statement gets on `backend`. PostgreSQL allows 65,535. SQLite
/// allows 32,766, but it finds each numbered parameter by a linear search (when preparing, and
/// again when sqlx binds by name), so a statement's cost grows with the square of its parameter
/// count: a few hundred per statement is the sweet spot there. PostgreSQL statements also grow
/// faster than linearly past about a thousand parameters (measured: inserting 128 step rows,
/// 2,560 parameters, took 50 ms in one statement and 1.6 ms in three).
pub(crate) fn max_params(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Sqlite => 400,
        _ => 1_000,
    }
}

/// `$from, $from+1, ..., $from+n-1`.
pub(crate) fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn stmt(backend: DbBackend, sql: impl Into<String>, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, sql.into(), values)
}

/// Inserts `rows` into `table` in as few multi-row statements as the parameter limit allows.
pub(crate) async fn insert_rows<C: ConnectionTrait>(
    db: &C,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    let per_statement = (max_params(backend) / columns.len()).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut values = Vec::with_capacity(chunk.len() * columns.len());
        for (i, row) in chunk.into_iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&params(values.len() + 1, row.len()));
            sql.push(')');
            values.extend(row);
        }
        db.execute_raw(stmt(backend, sql, values)).await?;
    }
    Ok(())
}

/// Runs `sql` once per chunk of `ids`, substituting `{ids}` with the chunk's placeholders after
/// `leading` fixed parameters; returns every row.
pub(crate) async fn query_in_chunks<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    leading: Vec<Value>,
    ids: &[Value],
) -> Result<Vec<QueryResult>, StoreError> {
    let backend = db.get_database_backend();
    let mut rows = Vec::new();
    for chunk in ids.chunks(max_params(backend)) {
        let text = sql.replace("{ids}", &params(leading.len() + 1, chunk.len()));
        let mut values = leading.clone();
        values.extend(chunk.iter().cloned());
        rows.extend(db.query_all_raw(stmt(backend, text, values)).await?);
    }
    Ok(rows)
}

/// Like [`query_in_chunks`] for statements without results; returns rows affected.
pub(crate) async fn execute_in_chunks<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    leading: Vec<Value>,
    ids: &[Value],
) -> Result<u64, StoreError> {
    let backend = db.get_database_backend();
    let mut affected = 0;
    for chunk in ids.chunks(max_params(backend)) {
        let text = sql.replace("{ids}", &params(leading.len() + 1, chunk.len()));
        let mut values = leading.clone();
        values.extend(chunk.iter().cloned());
        affected += db
            .execute_raw(stmt(backend, text, values))
            .await?
            .rows_affected();
    }
    Ok(affected)
}

/// Reads column `col` of `row`.
pub(crate) fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<T, StoreError> {
    row.try_get::<T>("", col).map_err(StoreError::from)
}

/// `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer needs no row locks.
pub(crate) fn skip_locked(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    }
}
