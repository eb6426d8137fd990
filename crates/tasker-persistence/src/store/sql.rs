//! Small helpers for the portable SQL the hot paths use. Placeholders are `$N` on both
//! databases (sqlx's SQLite driver reads `$N` as position N).

use std::future::Future;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, ExecResult, QueryResult, Statement, Value,
};

use tasker_domain::TemplateId;

use super::LeaseClock;
use crate::error::StoreError;

/// sea-orm's raw statements, answering with this crate's error: the driver's error type never
/// reaches a caller (see [`crate::DatabaseError`]).
pub(crate) trait Db: ConnectionTrait {
    /// Every row `stmt` returns.
    fn rows(
        &self,
        stmt: Statement,
    ) -> impl Future<Output = Result<Vec<QueryResult>, StoreError>> + Send + '_ {
        let query = self.query_all_raw(stmt);
        async move { query.await.map_err(StoreError::db) }
    }

    /// The first row `stmt` returns, if any.
    fn row(
        &self,
        stmt: Statement,
    ) -> impl Future<Output = Result<Option<QueryResult>, StoreError>> + Send + '_ {
        let query = self.query_one_raw(stmt);
        async move { query.await.map_err(StoreError::db) }
    }

    /// Runs `stmt`, which returns no rows.
    fn exec(
        &self,
        stmt: Statement,
    ) -> impl Future<Output = Result<ExecResult, StoreError>> + Send + '_ {
        let query = self.execute_raw(stmt);
        async move { query.await.map_err(StoreError::db) }
    }

    /// Runs `sql` (one or more statements) without parameters or a prepared statement.
    #[cfg(feature = "testing")]
    fn exec_unprepared<'a>(
        &'a self,
        sql: &'a str,
    ) -> impl Future<Output = Result<ExecResult, StoreError>> + Send + 'a {
        let query = self.execute_unprepared(sql);
        async move { query.await.map_err(StoreError::db) }
    }
}

impl<C: ConnectionTrait> Db for C {}

/// Commits `txn`.
pub(crate) async fn commit(txn: DatabaseTransaction) -> Result<(), StoreError> {
    txn.commit().await.map_err(StoreError::db)
}

/// A JSON value as a statement parameter.
pub(crate) fn json(value: serde_json::Value) -> Value {
    Value::Json(Some(Box::new(value)))
}

/// A duration in whole microseconds, the stored unit (saturating).
pub(crate) fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The database's clock as stored times are (microseconds since the Unix epoch): the one place
/// each backend's current time is read. PostgreSQL's `clock_timestamp()` is the time of the
/// statement, not of the transaction's start (`now()`), so a claim that waited for a lock still
/// gets its full lease; as an uncorrelated scalar subquery it is read once per statement, so a
/// batch shares one expiry and a comparison with it can use `idx_steps_lease` (a bare volatile
/// call could not). SQLite's `julianday('now')` is fixed for one statement step.
pub(crate) fn database_now(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "(SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint)",
        _ => "CAST(round((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER)",
    }
}

/// The longest lease added to the database's clock, in microseconds (about 146,000 years), so
/// that the sum never overflows a BIGINT.
pub(crate) const MAX_LEASE_MICROS: i64 = i64::MAX / 2;

impl LeaseClock {
    /// "Now" in a statement that compares `lease_expires_at` with it: the SQL, and the value to
    /// bind at `$param` (the caller's `now`), if the SQL has one.
    pub(crate) fn now(self, backend: DbBackend, param: usize, now: i64) -> (String, Option<Value>) {
        match self {
            LeaseClock::Database => (database_now(backend).to_owned(), None),
            LeaseClock::Caller => (format!("${param}"), Some(now.into())),
        }
    }

    /// The expiry of a lease of `lease` microseconds starting now: the SQL that sets
    /// `lease_expires_at`, and the value to bind at `$param`.
    pub(crate) fn expiry(
        self,
        backend: DbBackend,
        param: usize,
        now: i64,
        lease: i64,
    ) -> (String, Value) {
        match self {
            LeaseClock::Database => (
                format!("({} + ${param})", database_now(backend)),
                lease.min(MAX_LEASE_MICROS).into(),
            ),
            LeaseClock::Caller => (format!("${param}"), now.saturating_add(lease).into()),
        }
    }
}

/// The most bind parameters one statement gets on `backend`. PostgreSQL allows 65,535. SQLite
/// allows 32,766, but it finds each numbered parameter by a linear search (when preparing, and
/// again when sqlx binds by name), so a statement's cost grows with the square of its parameter
/// count: a few hundred per statement is the sweet spot there. On PostgreSQL a statement whose
/// message exceeds one TCP segment waits about 40 ms for the server's delayed ACK (sqlx leaves
/// Nagle's algorithm on): 2,560 parameters took 50 ms in one statement and 1.6 ms in three, so
/// a thousand parameters keep messages small.
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

/// Inserts `rows` into `table`. On PostgreSQL the rows travel as one JSON parameter per
/// statement (`json_to_recordset`), each statement's payload under [`MAX_MESSAGE_BYTES`]; on
/// SQLite, and for values with no JSON form, as few multi-row statements as the parameter limit
/// allows.
pub(crate) async fn insert_rows<C: ConnectionTrait>(
    db: &C,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<(), StoreError> {
    insert_rows_flipping(db, table, columns, rows, None).await
}

/// [`insert_rows`] into a history table; with `flip` (the owner column, first of `columns`),
/// the owners' current `most_recent` rows are cleared first. On PostgreSQL the clearing and the
/// insert are one statement per payload ([`flip_then_insert`]: the insert waits for the flip's
/// CTE), so the partial unique index on the current rows
/// never sees two at once. On SQLite (and for values with no JSON form) the clearing is a
/// statement of its own.
pub(crate) async fn insert_rows_flipping<C: ConnectionTrait>(
    db: &C,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
    flip: Option<&str>,
) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    if rows.is_empty() {
        return Ok(());
    }
    if backend == DbBackend::Postgres
        && let Some((insert, chunks)) = json_chunks(table, columns, &rows, 1)
    {
        for (payload, owners) in chunks {
            let mut values = vec![Value::from(payload)];
            let sql = match flip {
                Some(owner) if owners.len() < max_params(backend) => {
                    let list = params(2, owners.len());
                    values.extend(owners);
                    format!(
                        "WITH {} SELECT 1",
                        flip_then_insert("inserted", table, owner, &list, &insert)
                    )
                }
                Some(owner) => {
                    execute_in_chunks(
                        db,
                        &format!("UPDATE {table} SET most_recent = FALSE WHERE most_recent AND {owner} IN ({{ids}})"),
                        vec![],
                        &owners,
                    )
                    .await?;
                    insert.clone()
                }
                None => insert.clone(),
            };
            db.exec(stmt(backend, sql, values)).await?;
        }
        return Ok(());
    }
    if let Some(owner) = flip {
        let mut owners: Vec<Value> = rows.iter().filter_map(|row| row.first().cloned()).collect();
        owners.dedup();
        execute_in_chunks(
            db,
            &format!(
                "UPDATE {table} SET most_recent = FALSE WHERE most_recent AND {owner} IN ({{ids}})"
            ),
            vec![],
            &owners,
        )
        .await?;
    }
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
        db.exec(stmt(backend, sql, values)).await?;
    }
    Ok(())
}

/// One JSON payload of rows, with the distinct owners (first column) of its rows.
type JsonChunk = (String, Vec<Value>);

/// PostgreSQL: the `INSERT ... SELECT ... FROM json_to_recordset($param::json)` for `rows`, and
/// the rows as JSON payloads, each under [`MAX_MESSAGE_BYTES`], with the distinct owners (first
/// column) of each. `None` when there are no rows or a value has no JSON form.
fn json_chunks(
    table: &str,
    columns: &[&str],
    rows: &[Vec<Value>],
    param: usize,
) -> Option<(String, Vec<JsonChunk>)> {
    let definition = definition(columns, rows.first()?)?;
    let insert = format!(
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM json_to_recordset(${param}::json) AS x({definition})",
        columns = columns.join(", "),
    );
    // Statements stay under one TCP segment: sqlx does not set TCP_NODELAY, so a message split
    // across segments waits for the server's delayed ACK (about 40 ms on Linux).
    let mut chunks: Vec<JsonChunk> = Vec::new();
    let mut payload = vec![b'['];
    let mut owners: Vec<Value> = Vec::new();
    let mut text = Vec::new();
    for row in rows {
        text.clear();
        write_row(&mut text, columns, row)?;
        if payload.len() > 1 && payload.len() + text.len() + 2 > MAX_MESSAGE_BYTES {
            payload.push(b']');
            chunks.push((
                into_text(std::mem::replace(&mut payload, vec![b'[']))?,
                std::mem::take(&mut owners),
            ));
        }
        if payload.len() > 1 {
            payload.push(b',');
        }
        payload.extend_from_slice(&text);
        if let Some(owner) = row.first()
            && !owners.contains(owner)
        {
            owners.push(owner.clone());
        }
    }
    payload.push(b']');
    chunks.push((into_text(payload)?, owners));
    Some((insert, chunks))
}

/// Rows for one history table: the table, its owner column (first of `columns`) and the rows.
pub(crate) struct HistoryRows<'a> {
    pub(crate) table: &'a str,
    pub(crate) columns: &'a [&'a str],
    pub(crate) rows: Vec<Vec<Value>>,
}

/// Writes the rows of several history tables, each owner's current row cleared first as
/// [`insert_rows_flipping`] does. On PostgreSQL, when every table's rows fit one payload and
/// together one message, that is one statement for all of them (a flip and an insert per
/// table as data-modifying CTEs, each insert waiting for its flip); otherwise each table is
/// written on its own.
pub(crate) async fn insert_history<C: ConnectionTrait>(
    db: &C,
    tables: Vec<HistoryRows<'_>>,
) -> Result<(), StoreError> {
    let tables: Vec<HistoryRows<'_>> = tables.into_iter().filter(|t| !t.rows.is_empty()).collect();
    let backend = db.get_database_backend();
    if backend == DbBackend::Postgres
        && tables.len() > 1
        && let Some(statement) = one_history_statement(&tables)
    {
        db.exec(statement).await?;
        return Ok(());
    }
    if backend == DbBackend::Sqlite
        && tables
            .iter()
            .map(|t| t.rows.len() * t.columns.len())
            .sum::<usize>()
            <= max_params(backend)
    {
        return history_in_one_string(db, tables).await;
    }
    for HistoryRows {
        table,
        columns,
        rows,
    } in tables
    {
        insert_rows_flipping(db, table, columns, rows, Some(columns[0])).await?;
    }
    Ok(())
}

/// What separates the statements of one SQL string sent in one call (SQLite runs them in turn,
/// binding each `$n` to the string's n-th value); [`Store::statements`](super::Store::statements)
/// counts each statement.
pub(crate) const STATEMENT_SEPARATOR: &str = ";\n";

/// SQLite, history of at most [`max_params`] values (a hand-off's): every table's flip and
/// insert as the statements of one string, one call to the driver (its connection runs on a
/// thread of its own, and each call is a hand-over to that thread and back). The flip names its
/// owners by the parameters the insert already carries. Larger batches take a call per
/// statement: the string's text changes with every table's row count, and the driver caches
/// prepared statements by their text, so large batches of varying sizes would be parsed again
/// and again (SQLite looks up each `$n` of a statement by name while parsing it).
async fn history_in_one_string<C: ConnectionTrait>(
    db: &C,
    tables: Vec<HistoryRows<'_>>,
) -> Result<(), StoreError> {
    let mut statements: Vec<String> = Vec::with_capacity(tables.len() * 2);
    let mut values: Vec<Value> = Vec::new();
    for HistoryRows {
        table,
        columns,
        rows,
    } in tables
    {
        let mut owners: Vec<String> = Vec::new();
        let mut seen: Vec<Value> = Vec::new();
        let mut tuples: Vec<String> = Vec::with_capacity(rows.len());
        for row in rows {
            let at = values.len() + 1;
            if let Some(owner) = row.first()
                && !seen.contains(owner)
            {
                seen.push(owner.clone());
                owners.push(format!("${at}"));
            }
            tuples.push(format!("({})", params(at, row.len())));
            values.extend(row);
        }
        statements.push(format!(
            "UPDATE {table} SET most_recent = FALSE WHERE most_recent AND {} IN ({})",
            columns[0],
            owners.join(", ")
        ));
        statements.push(format!(
            "INSERT INTO {table} ({}) VALUES {}",
            columns.join(", "),
            tuples.join(", ")
        ));
    }
    if !statements.is_empty() {
        let sql = statements.join(STATEMENT_SEPARATOR);
        db.exec(stmt(DbBackend::Sqlite, sql, values)).await?;
    }
    Ok(())
}

fn one_history_statement(tables: &[HistoryRows<'_>]) -> Option<Statement> {
    let mut ctes = Vec::with_capacity(tables.len());
    let mut values: Vec<Value> = Vec::new();
    let mut bytes = 0;
    for (
        i,
        HistoryRows {
            table,
            columns,
            rows,
        },
    ) in tables.iter().enumerate()
    {
        let (insert, mut chunks) = json_chunks(table, columns, rows, values.len() + 1)?;
        let (payload, owners) = chunks.pop()?;
        bytes += payload.len();
        if !chunks.is_empty() || bytes > MAX_MESSAGE_BYTES {
            return None;
        }
        values.push(Value::from(payload));
        let list = params(values.len() + 1, owners.len());
        values.extend(owners);
        if values.len() > max_params(DbBackend::Postgres) {
            return None;
        }
        ctes.push(flip_then_insert(
            &format!("inserted{i}"),
            table,
            columns[0],
            &list,
            &insert,
        ));
    }
    let sql = format!("WITH {} SELECT 1", ctes.join(", "));
    Some(stmt(DbBackend::Postgres, sql, values))
}

/// Two data-modifying CTEs, `{name}_flip` and `{name}`: the first clears the current
/// (`most_recent`) rows in `table` of the owners `list` names (a parameter list, so the flip
/// finds them through the partial unique index whatever the planner guesses of the payload; or
/// a subquery over the rows a sibling CTE changed), the second runs `insert` after it (its one-time filter reads the flip's
/// count), so the partial unique index never sees two current rows. Data-modifying CTEs run to
/// completion whether or not the main query reads them.
pub(crate) fn flip_then_insert(
    name: &str,
    table: &str,
    owner: &str,
    list: &str,
    insert: &str,
) -> String {
    format!(
        "{name}_flip AS (UPDATE {table} SET most_recent = FALSE WHERE most_recent \
         AND {owner} IN ({list}) RETURNING 1), \
         {name} AS ({insert} WHERE (SELECT COUNT(*) FROM {name}_flip) >= 0 RETURNING 1)"
    )
}

/// The column definition list of a `json_to_recordset` (`name type, ...`), typed by `first`.
/// `None` when a value has no JSON form.
fn definition(columns: &[&str], first: &[Value]) -> Option<String> {
    let definition: Option<Vec<String>> = columns
        .iter()
        .zip(first)
        .map(|(column, value)| Some(format!("{column} {}", pg_type(value)?)))
        .collect();
    Some(definition?.join(", "))
}

/// Rows as one `json_to_recordset` parameter for PostgreSQL: the column definition list
/// (`name type, ...`, typed by the first row) and the JSON array text. `None` when there are
/// no rows or a value has no JSON form.
pub(crate) fn recordset<R: AsRef<[Value]>>(
    columns: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> Option<(String, String)> {
    let mut rows = rows.into_iter().peekable();
    let definition = definition(columns, rows.peek()?.as_ref())?;
    let mut payload = vec![b'['];
    for row in rows {
        if payload.len() > 1 {
            payload.push(b',');
        }
        write_row(&mut payload, columns, row.as_ref())?;
    }
    payload.push(b']');
    Some((definition, into_text(payload)?))
}

/// The largest JSON payload one statement sends (well under a 64 KiB loopback segment).
pub(crate) const MAX_MESSAGE_BYTES: usize = 48 * 1024;

/// The PostgreSQL type a value is inserted as through JSON; `None` for kinds we do not send.
fn pg_type(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Bool(_) => "boolean",
        Value::SmallInt(_) => "smallint",
        Value::Int(_) => "integer",
        Value::BigInt(_) => "bigint",
        Value::Double(_) => "double precision",
        Value::String(_) => "text",
        Value::Json(_) => "jsonb",
        Value::Uuid(_) => "uuid",
        _ => return None,
    })
}

/// Writes one row as a JSON object keyed by column, straight to `out` (no intermediate
/// `serde_json::Value`: a creation batch writes tens of rows); `None` if a value has no JSON
/// form, and `out` is then to be discarded. SQL NULL is JSON `null`.
fn write_row(out: &mut Vec<u8>, columns: &[&str], row: &[Value]) -> Option<()> {
    use std::io::Write as _;
    out.push(b'{');
    for (i, (column, value)) in columns.iter().zip(row).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Column names are plain identifiers: nothing to escape.
        out.push(b'"');
        out.extend_from_slice(column.as_bytes());
        out.extend_from_slice(b"\":");
        let written = match value {
            Value::Bool(Some(v)) => write!(out, "{v}"),
            Value::SmallInt(Some(v)) => write!(out, "{v}"),
            Value::Int(Some(v)) => write!(out, "{v}"),
            Value::BigInt(Some(v)) => write!(out, "{v}"),
            Value::Double(Some(v)) => {
                // NaN and the infinities have no JSON form.
                serde_json::to_writer(&mut *out, &serde_json::Number::from_f64(*v)?)
                    .map_err(std::io::Error::other)
            }
            Value::String(Some(v)) => {
                serde_json::to_writer(&mut *out, v.as_str()).map_err(std::io::Error::other)
            }
            Value::Json(Some(v)) => {
                serde_json::to_writer(&mut *out, v.as_ref()).map_err(std::io::Error::other)
            }
            Value::Uuid(Some(v)) => write!(out, "\"{}\"", v.hyphenated()),
            Value::Bool(None)
            | Value::SmallInt(None)
            | Value::Int(None)
            | Value::BigInt(None)
            | Value::Double(None)
            | Value::String(None)
            | Value::Json(None)
            | Value::Uuid(None) => out.write_all(b"null"),
            _ => return None,
        };
        written.ok()?;
    }
    out.push(b'}');
    Some(())
}

/// A payload written by [`write_row`] as text (always UTF-8: `serde_json` writes valid UTF-8
/// and the rest is ASCII).
fn into_text(payload: Vec<u8>) -> Option<String> {
    String::from_utf8(payload).ok()
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
        rows.extend(db.rows(stmt(backend, text, values)).await?);
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
        affected += db.exec(stmt(backend, text, values)).await?.rows_affected();
    }
    Ok(affected)
}

/// Reads a template id (a `named_task_id` column) from column `col` of `row`.
pub(crate) fn template_id(row: &QueryResult, col: &str) -> Result<TemplateId, StoreError> {
    get::<i64>(row, col).map(TemplateId)
}

/// Reads column `col` of `row`.
pub(crate) fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<T, StoreError> {
    row.try_get::<T>("", col).map_err(StoreError::db)
}

/// `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer needs no row locks.
/// ` FOR UPDATE` on PostgreSQL; nothing on SQLite, whose writers are serialized by
/// `BEGIN IMMEDIATE`.
pub(crate) fn for_update(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    }
}

/// How many times a write transaction runs before a deadlock or serialization failure is
/// returned to the caller.
pub(crate) const TXN_ATTEMPTS: u32 = 5;

/// Runs a write transaction again when PostgreSQL rolled it back for a deadlock or a
/// serialization failure (SQLSTATE `40P01`, `40001`), at most [`TXN_ATTEMPTS`] times in all.
/// The database already undid the failed attempt, so running it again is safe.
pub(crate) async fn retrying<T, F, Fut>(mut run: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match run().await {
            Err(err) if err.is_deadlock_or_serialization() && attempt < TXN_ATTEMPTS => {
                tracing::debug!(error = %err, attempt, "transaction rolled back by the database; running it again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Locks, on PostgreSQL, the task rows that `tasks_sql` (a subquery yielding `task_id`) names, in
/// task id order: the first half of the lock order (task rows before step rows).
pub(crate) async fn lock_tasks<C: ConnectionTrait>(
    db: &C,
    tasks_sql: &str,
    values: Vec<Value>,
) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    if backend != DbBackend::Postgres {
        return Ok(());
    }
    db.rows(stmt(
        backend,
        format!(
            "SELECT task_id FROM tasker_tasks WHERE task_id IN ({tasks_sql}) ORDER BY task_id FOR UPDATE"
        ),
        values,
    ))
    .await?;
    Ok(())
}

pub(crate) fn skip_locked(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    }
}

/// `(?, ?), (?, ?)`: one group of `columns` anonymous placeholders per row, the rows' values
/// appended to `values` in order.
pub(super) fn placeholders(
    columns: usize,
    rows: impl IntoIterator<Item = Vec<Value>>,
    values: &mut Vec<Value>,
) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::new();
    for row in rows {
        if !sql.is_empty() {
            sql.push_str(", ");
        }
        sql.push_str(&group);
        values.extend(row);
    }
    sql
}

/// The most parameters one SQLite creation statement takes (SQLite allows 32,766).
pub(super) const SQLITE_PARAMS: usize = 4_000;

/// SQLite multi-row INSERTs of `rows` into `table`, each ending in `suffix`, with anonymous `?`
/// placeholders bound in order. SQLite finds a numbered parameter (`$N`) by a linear search
/// when it prepares a statement and again when sqlx binds it, so a statement's cost grows with
/// the square of its numbered parameters; anonymous ones cost the same each, so one statement
/// can take a whole batch's rows.
pub(super) fn anonymous_inserts<'a>(
    table: &'a str,
    columns: &'a [&'a str],
    rows: Vec<Vec<Value>>,
    suffix: &'a str,
) -> impl Iterator<Item = Statement> + 'a {
    let per_statement = (SQLITE_PARAMS / columns.len()).max(1);
    let mut rows = rows.into_iter().peekable();
    std::iter::from_fn(move || {
        rows.peek()?;
        let mut values = Vec::with_capacity(per_statement * columns.len());
        let list = placeholders(
            columns.len(),
            rows.by_ref().take(per_statement),
            &mut values,
        );
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {list}{suffix}",
            columns.join(", ")
        );
        Some(stmt(DbBackend::Sqlite, sql, values))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_as_json_objects_of_every_kind() {
        let id = uuid::Uuid::now_v7();
        let columns = ["b", "s", "i", "l", "d", "t", "j", "u", "n", "m"];
        let row: Vec<Value> = vec![
            true.into(),
            7_i16.into(),
            (-3_i32).into(),
            i64::MAX.into(),
            1.5_f64.into(),
            "quote \" slash \\ line\n é \u{1F600}".into(),
            serde_json::json!({"a": [1, null, "x"], "b": {"c": 2.5}}).into(),
            id.into(),
            Value::String(None),
            Value::Json(None),
        ];
        let (definition, payload) =
            recordset(&columns, [&row]).expect("every kind has a JSON form");
        assert_eq!(
            definition,
            "b boolean, s smallint, i integer, l bigint, d double precision, t text, j jsonb, \
             u uuid, n text, m jsonb"
        );
        let parsed: serde_json::Value = serde_json::from_str(&payload).expect("valid JSON");
        assert_eq!(
            parsed,
            serde_json::json!([{
                "b": true, "s": 7, "i": -3, "l": i64::MAX, "d": 1.5,
                "t": "quote \" slash \\ line\n é \u{1F600}",
                "j": {"a": [1, null, "x"], "b": {"c": 2.5}},
                "u": id.to_string(), "n": null, "m": null,
            }])
        );
    }

    #[test]
    fn a_value_with_no_json_form_refuses_the_rows() {
        let nan: Vec<Value> = vec![f64::NAN.into()];
        assert!(recordset(&["d"], [&nan]).is_none());
        let bytes: Vec<Value> = vec![Value::Bytes(Some(vec![1, 2]))];
        assert!(recordset(&["b"], [&bytes]).is_none());
    }
}
