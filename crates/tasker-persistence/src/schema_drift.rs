//! Schema drift: where the sea-orm entities ([`crate::entities`]) and a migrated database
//! disagree: a table or column on one side only, a column whose type family differs, or a
//! column nullable on one side and `NOT NULL` on the other. `cargo xtask migrate check` runs it
//! on a freshly migrated SQLite and PostgreSQL database.

use std::collections::BTreeMap;

use sea_orm::sea_query::ColumnType;
use sea_orm::{ColumnTrait, EntityTrait, IdenStatic, Iterable, Statement};

use crate::entities;
use crate::store::sql::{Db, get};
use crate::{Backend, Store, StoreError};

/// A column as one side describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    family: Family,
    /// The type as written (entity `ColumnType` or the database's declared type).
    declared: String,
    nullable: bool,
}

/// A rough type family: what must agree between an entity and its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Integer,
    Boolean,
    Float,
    Text,
    Json,
    Uuid,
    Binary,
    Time,
    Other,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Integer => "integer",
            Family::Boolean => "boolean",
            Family::Float => "float",
            Family::Text => "text",
            Family::Json => "json",
            Family::Uuid => "uuid",
            Family::Binary => "binary",
            Family::Time => "date/time",
            Family::Other => "other",
        }
    }
}

type Tables = BTreeMap<String, BTreeMap<String, Column>>;

fn entity_family(column_type: &ColumnType) -> Family {
    match column_type {
        ColumnType::TinyInteger
        | ColumnType::SmallInteger
        | ColumnType::Integer
        | ColumnType::BigInteger
        | ColumnType::TinyUnsigned
        | ColumnType::SmallUnsigned
        | ColumnType::Unsigned
        | ColumnType::BigUnsigned => Family::Integer,
        ColumnType::Boolean => Family::Boolean,
        ColumnType::Float | ColumnType::Double | ColumnType::Decimal(_) => Family::Float,
        ColumnType::Char(_) | ColumnType::String(_) | ColumnType::Text => Family::Text,
        ColumnType::Json | ColumnType::JsonBinary => Family::Json,
        ColumnType::Uuid => Family::Uuid,
        ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => Family::Binary,
        ColumnType::DateTime
        | ColumnType::Timestamp
        | ColumnType::TimestampWithTimeZone
        | ColumnType::Date
        | ColumnType::Time => Family::Time,
        _ => Family::Other,
    }
}

/// The family of a type as the database declares it. SQLite keeps the declared type text
/// sea-query wrote (`bigint`, `json_text`, `uuid_text`, `boolean`, ...).
fn database_family(declared: &str) -> Family {
    let t = declared.to_ascii_lowercase();
    let has = |s: &str| t.contains(s);
    if has("uuid") {
        Family::Uuid
    } else if has("json") {
        Family::Json
    } else if has("bool") {
        Family::Boolean
    } else if has("int") || t == "serial" || t == "bigserial" {
        Family::Integer
    } else if has("real") || has("double") || has("float") || has("numeric") || has("decimal") {
        Family::Float
    } else if has("char") || has("text") || has("clob") || t.is_empty() {
        Family::Text
    } else if has("blob") || has("bytea") || has("binary") {
        Family::Binary
    } else if has("time") || has("date") {
        Family::Time
    } else {
        Family::Other
    }
}

fn describe<E: EntityTrait + Default>(tables: &mut Tables) {
    let mut columns = BTreeMap::new();
    for column in E::Column::iter() {
        let def = column.def();
        let column_type = def.get_column_type();
        columns.insert(
            column.as_str().to_owned(),
            Column {
                family: entity_family(column_type),
                declared: format!("{column_type:?}"),
                nullable: def.is_null(),
            },
        );
    }
    tables.insert(E::default().table_name().to_owned(), columns);
}

/// Every table the entities describe, with its columns.
fn entity_tables() -> Tables {
    let mut tables = Tables::new();
    describe::<entities::task_namespace::Entity>(&mut tables);
    describe::<entities::named_task::Entity>(&mut tables);
    describe::<entities::dependent_system::Entity>(&mut tables);
    describe::<entities::named_step::Entity>(&mut tables);
    describe::<entities::named_task_named_step::Entity>(&mut tables);
    describe::<entities::annotation_type::Entity>(&mut tables);
    describe::<entities::dependent_system_object_map::Entity>(&mut tables);
    describe::<entities::task::Entity>(&mut tables);
    describe::<entities::workflow_step::Entity>(&mut tables);
    describe::<entities::workflow_step_edge::Entity>(&mut tables);
    describe::<entities::task_transition::Entity>(&mut tables);
    describe::<entities::workflow_step_transition::Entity>(&mut tables);
    describe::<entities::task_annotation::Entity>(&mut tables);
    describe::<entities::api_key::Entity>(&mut tables);
    describe::<entities::revoked_token::Entity>(&mut tables);
    describe::<entities::runtime_switch::Entity>(&mut tables);
    describe::<entities::runtime_switch_change::Entity>(&mut tables);
    tables
}

/// Every Tasker table in the database (`tasker_*`), with its columns.
async fn database_tables(store: &Store) -> Result<Tables, StoreError> {
    let db = store.connection();
    let backend = store.db_backend();
    let mut tables = Tables::new();
    match store.backend() {
        Backend::Sqlite => {
            let names = db
                .rows(Statement::from_string(
                    backend,
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tasker\\_%' ESCAPE '\\'",
                ))
                .await?;
            for row in names {
                let table: String = get(&row, "name")?;
                let columns = db
                    .rows(Statement::from_sql_and_values(
                        backend,
                        "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)",
                        [table.clone().into()],
                    ))
                    .await?;
                let mut described = BTreeMap::new();
                for column in columns {
                    let name: String = get(&column, "name")?;
                    let declared: String = get(&column, "type")?;
                    let not_null: i32 = get(&column, "notnull")?;
                    let primary_key: i32 = get(&column, "pk")?;
                    described.insert(
                        name,
                        Column {
                            family: database_family(&declared),
                            declared,
                            // SQLite lets a non-integer primary key hold NULL unless declared
                            // NOT NULL; Tasker's keys are never NULL, so a key counts as NOT NULL.
                            nullable: not_null == 0 && primary_key == 0,
                        },
                    );
                }
                tables.insert(table, described);
            }
        }
        Backend::Postgres => {
            let columns = db
                .rows(Statement::from_string(
                    backend,
                    "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                     data_type::text AS data_type, is_nullable::text AS is_nullable \
                     FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name LIKE 'tasker\\_%'",
                ))
                .await?;
            for column in columns {
                let table: String = get(&column, "table_name")?;
                let name: String = get(&column, "column_name")?;
                let declared: String = get(&column, "data_type")?;
                let nullable: String = get(&column, "is_nullable")?;
                tables.entry(table).or_default().insert(
                    name,
                    Column {
                        family: database_family(&declared),
                        declared,
                        nullable: nullable == "YES",
                    },
                );
            }
        }
    }
    Ok(tables)
}

/// Compares what the entities describe with what the store's database holds; each returned
/// line names the table, the column and both sides. Empty when they agree.
pub async fn schema_drift(store: &Store) -> Result<Vec<String>, StoreError> {
    Ok(compare(
        &entity_tables(),
        &database_tables(store).await?,
        store.backend().as_str(),
    ))
}

fn compare(entities: &Tables, database: &Tables, backend: &str) -> Vec<String> {
    let mut drift = Vec::new();
    for (table, columns) in entities {
        let Some(actual) = database.get(table) else {
            drift.push(format!(
                "{backend}: table `{table}` is described by an entity but no migration creates it"
            ));
            continue;
        };
        for (name, wanted) in columns {
            let Some(found) = actual.get(name) else {
                drift.push(format!(
                    "{backend}: column `{table}.{name}` ({}) is in the entity but not in the migrated table",
                    wanted.declared
                ));
                continue;
            };
            if wanted.family != found.family {
                drift.push(format!(
                    "{backend}: column `{table}.{name}` is {} in the entity ({}) but {} in the database ({})",
                    wanted.family.name(),
                    wanted.declared,
                    found.family.name(),
                    found.declared
                ));
            }
            if wanted.nullable != found.nullable {
                let side = |nullable: bool| if nullable { "NULL" } else { "NOT NULL" };
                drift.push(format!(
                    "{backend}: column `{table}.{name}` is {} in the entity (Option<_> means NULL) but {} in the database",
                    side(wanted.nullable),
                    side(found.nullable)
                ));
            }
        }
        for name in actual.keys().filter(|name| !columns.contains_key(*name)) {
            drift.push(format!(
                "{backend}: column `{table}.{name}` is in the migrated table but not in the entity"
            ));
        }
    }
    for table in database
        .keys()
        .filter(|table| !entities.contains_key(*table))
    {
        drift.push(format!(
            "{backend}: table `{table}` is created by a migration but no entity describes it (add it to entities.rs and to schema_drift's list)"
        ));
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(family: Family, nullable: bool) -> Column {
        Column {
            family,
            declared: family.name().to_owned(),
            nullable,
        }
    }

    #[test]
    fn each_kind_of_drift_is_named() {
        let mut entities = Tables::new();
        entities.insert(
            "tasker_a".into(),
            BTreeMap::from([
                ("id".into(), column(Family::Integer, false)),
                ("note".into(), column(Family::Text, true)),
                ("data".into(), column(Family::Json, false)),
                ("gone".into(), column(Family::Text, false)),
            ]),
        );
        entities.insert("tasker_missing".into(), BTreeMap::new());
        let mut database = Tables::new();
        database.insert(
            "tasker_a".into(),
            BTreeMap::from([
                ("id".into(), column(Family::Integer, false)),
                ("note".into(), column(Family::Text, false)),
                ("data".into(), column(Family::Text, false)),
                ("extra".into(), column(Family::Integer, true)),
            ]),
        );
        database.insert("tasker_orphan".into(), BTreeMap::new());
        let drift = compare(&entities, &database, "sqlite");
        assert_eq!(
            drift,
            [
                "sqlite: column `tasker_a.data` is json in the entity (json) but text in the database (text)",
                "sqlite: column `tasker_a.gone` (text) is in the entity but not in the migrated table",
                "sqlite: column `tasker_a.note` is NULL in the entity (Option<_> means NULL) but NOT NULL in the database",
                "sqlite: column `tasker_a.extra` is in the migrated table but not in the entity",
                "sqlite: table `tasker_missing` is described by an entity but no migration creates it",
                "sqlite: table `tasker_orphan` is created by a migration but no entity describes it (add it to entities.rs and to schema_drift's list)",
            ]
        );
    }

    #[test]
    fn database_types_fall_into_families() {
        assert_eq!(database_family("bigint"), Family::Integer);
        assert_eq!(database_family("json_text"), Family::Json);
        assert_eq!(database_family("jsonb"), Family::Json);
        assert_eq!(database_family("uuid_text"), Family::Uuid);
        assert_eq!(database_family("character varying"), Family::Text);
        assert_eq!(database_family("double precision"), Family::Float);
        assert_eq!(database_family("boolean"), Family::Boolean);
    }
}
