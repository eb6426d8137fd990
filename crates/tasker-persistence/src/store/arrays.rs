//! PostgreSQL: rows sent as binary typed arrays, one parameter per column, read back as rows
//! with `unnest`.
//!
//! A statement that inserts many rows reads them from its parameters. As one JSON document
//! (`json_to_recordset`) the server parses the text and builds a lookup of every object's keys
//! for each row: about half of the 64-task creation statement examined went there. As one
//! array per column in the binary protocol the server decodes each array once and `unnest`
//! zips them back into rows. sea-orm binds an array value only as a `Vec<T>` of non-NULL
//! elements (its sqlx binder panics on a NULL element), and rows have NULL columns, so such a
//! statement is bound here through sqlx directly, as `Vec<Option<T>>`.

use std::sync::Arc;

use sea_orm::sqlx::postgres::{PgConnection, PgRow};
use sea_orm::{DbErr, RuntimeErr, Value};
use uuid::Uuid;

use super::sql::recordset;

/// One column of rows as an array parameter.
#[derive(Debug)]
enum Column {
    Bool(Vec<Option<bool>>),
    SmallInt(Vec<Option<i16>>),
    Int(Vec<Option<i32>>),
    BigInt(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Json(Vec<Option<serde_json::Value>>),
    Uuid(Vec<Option<Uuid>>),
}

impl Column {
    /// An empty column for values of `first`'s kind, with its array type; `None` for kinds we
    /// do not send.
    fn of(first: &Value) -> Option<(Self, &'static str)> {
        Some(match first {
            Value::Bool(_) => (Self::Bool(Vec::new()), "boolean[]"),
            Value::SmallInt(_) => (Self::SmallInt(Vec::new()), "smallint[]"),
            Value::Int(_) => (Self::Int(Vec::new()), "integer[]"),
            Value::BigInt(_) => (Self::BigInt(Vec::new()), "bigint[]"),
            Value::Double(_) => (Self::Double(Vec::new()), "double precision[]"),
            Value::String(_) => (Self::Text(Vec::new()), "text[]"),
            Value::Json(_) => (Self::Json(Vec::new()), "jsonb[]"),
            Value::Uuid(_) => (Self::Uuid(Vec::new()), "uuid[]"),
            _ => return None,
        })
    }

    /// Appends `value`; `None` when it is of another kind than the column.
    fn push(&mut self, value: &Value) -> Option<()> {
        match (self, value) {
            (Self::Bool(column), Value::Bool(v)) => column.push(*v),
            (Self::SmallInt(column), Value::SmallInt(v)) => column.push(*v),
            (Self::Int(column), Value::Int(v)) => column.push(*v),
            (Self::BigInt(column), Value::BigInt(v)) => column.push(*v),
            (Self::Double(column), Value::Double(v)) => column.push(*v),
            (Self::Text(column), Value::String(v)) => column.push(v.clone()),
            // A JSON null is SQL NULL, as `json_to_recordset` reads it.
            (Self::Json(column), Value::Json(v)) => {
                column.push(v.as_deref().filter(|json| !json.is_null()).cloned());
            }
            (Self::Uuid(column), Value::Uuid(v)) => column.push(*v),
            _ => return None,
        }
        Some(())
    }
}

/// The array parameters of one statement, in the order of their placeholders.
#[derive(Debug, Default)]
pub(crate) struct Arrays {
    columns: Vec<Column>,
}

impl Arrays {
    /// Runs `sql` on `connection` with these arrays bound in order, and answers its rows; an
    /// error as sea-orm reports a statement's.
    pub(crate) async fn fetch_all(
        self,
        sql: String,
        connection: &mut PgConnection,
    ) -> Result<Vec<PgRow>, DbErr> {
        let mut query = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql));
        for column in self.columns {
            query = match column {
                Column::Bool(v) => query.bind(v),
                Column::SmallInt(v) => query.bind(v),
                Column::Int(v) => query.bind(v),
                Column::BigInt(v) => query.bind(v),
                Column::Double(v) => query.bind(v),
                Column::Text(v) => query.bind(v),
                Column::Json(v) => query.bind(v),
                Column::Uuid(v) => query.bind(v),
            };
        }
        query
            .fetch_all(connection)
            .await
            .map_err(|err| DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))))
    }
}

/// Where a one-statement write puts its rows: as JSON text read by `json_to_recordset` (the
/// parameters of a sea-orm statement, as inside a caller's transaction), or as binary typed
/// arrays read by `unnest` (run through sqlx on the pool).
pub(crate) trait RowParams {
    /// Adds `rows` (laid out as `columns`) as parameters, and answers the `FROM` item that
    /// reads them back as rows named `x`; `None` when there are no rows or a value cannot be
    /// sent this way.
    fn rows<R: AsRef<[Value]>>(
        &mut self,
        columns: &[&str],
        rows: impl IntoIterator<Item = R>,
    ) -> Option<String>;
}

impl RowParams for Vec<Value> {
    fn rows<R: AsRef<[Value]>>(
        &mut self,
        columns: &[&str],
        rows: impl IntoIterator<Item = R>,
    ) -> Option<String> {
        let (definition, payload) = recordset(columns, rows)?;
        self.push(payload.into());
        Some(format!(
            "json_to_recordset(${}::json) AS x({definition})",
            self.len()
        ))
    }
}

impl RowParams for Arrays {
    /// Adds `rows` (each laid out as `columns`, typed by the first row) as one array per
    /// column, and answers the `FROM` item that reads them back as rows named `x`:
    /// `unnest($1::uuid[], $2::text[], ...) AS x(a, b, ...)`. `None` when there are no rows,
    /// a value is of a kind we do not send, or a row's kinds differ from the first's.
    fn rows<R: AsRef<[Value]>>(
        &mut self,
        columns: &[&str],
        rows: impl IntoIterator<Item = R>,
    ) -> Option<String> {
        let mut rows = rows.into_iter().peekable();
        let (mut added, casts): (Vec<Column>, Vec<&str>) = rows
            .peek()?
            .as_ref()
            .iter()
            .map(Column::of)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .unzip();
        for row in rows {
            let row = row.as_ref();
            if row.len() != added.len() {
                return None;
            }
            for (column, value) in added.iter_mut().zip(row) {
                column.push(value)?;
            }
        }
        let first = self.columns.len();
        let parameters: Vec<String> = casts
            .iter()
            .enumerate()
            .map(|(i, cast)| format!("${}::{cast}", first + i + 1))
            .collect();
        self.columns.extend(added);
        Some(format!(
            "unnest({}) AS x({})",
            parameters.join(", "),
            columns.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_one_typed_array_per_column_numbered_after_those_before() {
        let mut arrays = Arrays::default();
        let first = arrays.rows(&["a"], [vec![Value::from(1_i64)]]).unwrap();
        assert_eq!(first, "unnest($1::bigint[]) AS x(a)");
        let rows = [
            vec![
                Value::from(Uuid::nil()),
                Value::String(None),
                Value::from(true),
            ],
            vec![Value::Uuid(None), Value::from("b"), Value::Bool(None)],
        ];
        let second = arrays.rows(&["id", "name", "flag"], &rows).unwrap();
        assert_eq!(
            second,
            "unnest($2::uuid[], $3::text[], $4::boolean[]) AS x(id, name, flag)"
        );
        assert_eq!(arrays.columns.len(), 4);
        let Column::Text(names) = &arrays.columns[2] else {
            panic!("{:?}", arrays.columns[2]);
        };
        assert_eq!(names, &[None, Some("b".to_owned())]);
        let json = [
            vec![Value::from(serde_json::json!({"a": null}))],
            vec![Value::from(serde_json::Value::Null)],
        ];
        arrays.rows(&["j"], &json).unwrap();
        let Column::Json(values) = &arrays.columns[4] else {
            panic!("{:?}", arrays.columns[4]);
        };
        assert_eq!(
            values,
            &[Some(serde_json::json!({"a": null})), None],
            "a JSON null is SQL NULL, a null inside a document stays"
        );
    }

    #[test]
    fn rows_of_mixed_or_unsent_kinds_have_no_array_form() {
        let mut arrays = Arrays::default();
        let mixed = [vec![Value::from(1_i64)], vec![Value::from("one")]];
        assert!(arrays.rows(&["a"], &mixed).is_none());
        let bytes = [vec![Value::Bytes(Some(vec![1]))]];
        assert!(arrays.rows(&["b"], &bytes).is_none());
        let short = [
            vec![Value::from(1_i64), Value::from(2_i64)],
            vec![Value::from(3_i64)],
        ];
        assert!(arrays.rows(&["a", "b"], &short).is_none());
        assert!(arrays.rows(&["a"], Vec::<Vec<Value>>::new()).is_none());
        assert!(
            arrays.columns.is_empty(),
            "nothing added by a refused batch"
        );
    }
}
