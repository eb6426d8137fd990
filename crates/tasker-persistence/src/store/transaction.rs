//! A transaction the caller holds ([`Transaction`]), so an application can create tasks
//! atomically with writes of its own, and the parameters of those writes ([`SqlValue`]).
//!
//! The escape hatch is deliberately small: [`Transaction::execute`] runs one statement with
//! positional parameters and returns the rows it affected. It serves an application's own
//! writes (insert an order, mark it submitted) next to [`Store::create_task_in`]; reads, and
//! anything larger, belong on the application's own connection. No type of the database
//! library behind the store appears here, so the store can change it without changing this API.

use sea_orm::{DatabaseTransaction, Value};
use tasker_domain::{StepId, TaskId, TemplateId};
use uuid::Uuid;

use super::Backend;
use super::sql::{Db, commit, stmt};
use crate::error::StoreError;

#[cfg(doc)]
use super::Store;

/// A read-write transaction on the store's database, begun by [`Store::begin`].
///
/// Nothing written in it is visible to anyone else until [`Transaction::commit`];
/// [`Transaction::rollback`] or dropping it undoes everything. On SQLite it takes the database's
/// write lock when it begins (`BEGIN IMMEDIATE`), so other writers wait (up to the busy
/// timeout) until it ends: keep it short.
pub struct Transaction {
    inner: DatabaseTransaction,
    backend: Backend,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Transaction {
    pub(crate) fn new(inner: DatabaseTransaction, backend: Backend) -> Self {
        Self { inner, backend }
    }

    /// The open sea-orm transaction, for the store's own statements.
    pub(crate) fn inner(&self) -> &DatabaseTransaction {
        &self.inner
    }

    /// Which database the transaction is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs one SQL statement inside the transaction and returns how many rows it affected.
    /// Parameters are positional, written `$1`, `$2`, ... on both databases. For an
    /// application's own tables; the store's tables are written only through [`Store`].
    ///
    /// A statement the database refuses (bad SQL, a constraint, a parameter of the wrong type)
    /// is a [`StoreError::Database`] carrying the database's message; the transaction should
    /// then be rolled back (on PostgreSQL nothing else can run in it).
    pub async fn execute(
        &self,
        sql: &str,
        params: impl IntoIterator<Item = SqlValue>,
    ) -> Result<u64, StoreError> {
        let values = params.into_iter().map(SqlValue::into_sea_orm).collect();
        Ok(self
            .inner
            .exec(stmt(self.backend.sea_orm(), sql, values))
            .await?
            .rows_affected())
    }

    /// Makes every write of the transaction durable and visible.
    pub async fn commit(self) -> Result<(), StoreError> {
        commit(self.inner).await
    }

    /// Undoes every write of the transaction (dropping it does the same).
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await.map_err(StoreError::db)
    }
}

/// One parameter of [`Transaction::execute`]. `None` inside a variant is SQL `NULL` of that
/// type (PostgreSQL checks a parameter's type even when it is `NULL`).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `BOOLEAN`.
    Bool(Option<bool>),
    /// `INTEGER` (32 bits).
    Int(Option<i32>),
    /// `BIGINT` (64 bits).
    BigInt(Option<i64>),
    /// `DOUBLE PRECISION` (SQLite `REAL`).
    Double(Option<f64>),
    /// Text.
    Text(Option<String>),
    /// Bytes (`BYTEA`, SQLite `BLOB`).
    Bytes(Option<Vec<u8>>),
    /// JSON (`JSONB` on PostgreSQL, JSON text on SQLite).
    Json(Option<serde_json::Value>),
    /// A UUID (`UUID` on PostgreSQL, text on SQLite), as Tasker stores task and step ids.
    Uuid(Option<Uuid>),
}

impl SqlValue {
    /// The parameter as sea-orm binds it (crate-private: no sea-orm type is in the API).
    pub(crate) fn into_sea_orm(self) -> Value {
        match self {
            SqlValue::Bool(v) => Value::Bool(v),
            SqlValue::Int(v) => Value::Int(v),
            SqlValue::BigInt(v) => Value::BigInt(v),
            SqlValue::Double(v) => Value::Double(v),
            SqlValue::Text(v) => Value::String(v),
            SqlValue::Bytes(v) => Value::Bytes(v),
            SqlValue::Json(v) => Value::Json(v.map(Box::new)),
            SqlValue::Uuid(v) => Value::Uuid(v),
        }
    }
}

macro_rules! sql_value_from {
    ($($ty:ty => $variant:ident $(via $convert:expr)?),* $(,)?) => {
        $(
            impl From<$ty> for SqlValue {
                fn from(value: $ty) -> Self {
                    SqlValue::$variant(Some(sql_value_from!(@convert value $(, $convert)?)))
                }
            }

            impl From<Option<$ty>> for SqlValue {
                fn from(value: Option<$ty>) -> Self {
                    SqlValue::$variant(value.map(|value| sql_value_from!(@convert value $(, $convert)?)))
                }
            }
        )*
    };
    (@convert $value:ident) => { $value };
    (@convert $value:ident, $convert:expr) => { ($convert)($value) };
}

sql_value_from! {
    bool => Bool,
    i32 => Int,
    i64 => BigInt,
    f64 => Double,
    String => Text,
    &str => Text via |v: &str| v.to_owned(),
    Vec<u8> => Bytes,
    serde_json::Value => Json,
    Uuid => Uuid,
    TaskId => Uuid via |v: TaskId| v.as_uuid(),
    StepId => Uuid via |v: StepId| v.as_uuid(),
    TemplateId => BigInt via |v: TemplateId| v.get(),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_typed_nulls_and_ids_keep_their_stored_form() {
        assert_eq!(SqlValue::from(None::<i64>), SqlValue::BigInt(None));
        assert_eq!(SqlValue::from(Some("x")), SqlValue::Text(Some("x".into())));
        let task = TaskId::new();
        assert_eq!(SqlValue::from(task), SqlValue::Uuid(Some(task.as_uuid())));
        assert_eq!(SqlValue::from(TemplateId(7)), SqlValue::BigInt(Some(7)));
        assert_eq!(
            SqlValue::from(serde_json::json!({"a": 1})).into_sea_orm(),
            Value::Json(Some(Box::new(serde_json::json!({"a": 1}))))
        );
    }
}
