//! `cargo xtask migrate up|down|status|fresh|new NAME|check`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::Database;
use tasker_migrations::Migrator;

/// The database used when `TASKER_DATABASE_URL` is unset: the embedded default.
const DEFAULT_URL: &str = "sqlite://tasker.db?mode=rwc";

#[derive(Subcommand)]
pub(crate) enum Action {
    /// Apply every pending migration
    Up,
    /// Roll back the newest applied migration (or `--steps N`)
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied
    Status,
    /// Drop every table, then apply all migrations
    Fresh,
    /// Compare the sea-orm entities with a freshly migrated SQLite and PostgreSQL database
    /// (PostgreSQL at TASKER_TEST_DATABASE_URL); fail naming each table or column that differs
    Check,
    /// Write a new dated migration file from the template and register it
    New {
        /// snake_case, verb first: `add_task_priority`
        name: String,
    },
}

pub(crate) fn run(action: Action) -> anyhow::Result<()> {
    if let Action::New { name } = &action {
        let root = crate::workspace_root().join("migrations/src");
        let file = new_migration(&root, name, chrono::Utc::now())?;
        println!("created {}", file.display());
        return Ok(());
    }
    if let Action::Check = action {
        return check();
    }
    let url = std::env::var("TASKER_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let db = Database::connect(url.as_str())
            .await
            .with_context(|| format!("cannot open database `{url}`"))?;
        match action {
            Action::Up => Migrator::up(&db, None).await?,
            Action::Down { steps } => Migrator::down(&db, Some(steps)).await?,
            Action::Fresh => Migrator::fresh(&db).await?,
            Action::Status => {
                for migration in Migrator::get_migration_with_status(&db).await? {
                    println!(
                        "{:<8} {}",
                        format!("{:?}", migration.status()).to_lowercase(),
                        migration.name()
                    );
                }
            }
            Action::New { .. } | Action::Check => unreachable!("handled above"),
        }
        anyhow::Ok(())
    })
}

/// `migrate check`: every migration applied to a fresh database of each backend, then
/// [`tasker_persistence::schema_drift`] on it.
fn check() -> anyhow::Result<()> {
    use tasker_persistence::testing::TestDatabase;
    if std::env::var_os("TASKER_TEST_DATABASE_URL").is_none() {
        bail!(
            "migrate check needs PostgreSQL too: set TASKER_TEST_DATABASE_URL, e.g. \
             postgres://postgres@127.0.0.1:5432/tasker_test (a fresh database is created beside it)"
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut drift = Vec::new();
        let sqlite = TestDatabase::sqlite().await;
        drift.extend(tasker_persistence::schema_drift(&sqlite.store).await?);
        sqlite.cleanup().await;
        let postgres = TestDatabase::postgres()
            .await
            .context("TASKER_TEST_DATABASE_URL is set but no database was created")?;
        drift.extend(tasker_persistence::schema_drift(&postgres.store).await?);
        postgres.cleanup().await;
        if !drift.is_empty() {
            bail!(
                "the entities in crates/tasker-persistence/src/entities.rs and the migrations \
                 disagree:\n  {}",
                drift.join("\n  ")
            );
        }
        println!("migrate check: entities match the migrated schema on sqlite and postgres");
        Ok(())
    })
}

/// Writes `mYYYYMMDD_HHMMSS_<name>.rs` under `dir` and registers it in `dir/lib.rs`.
pub(crate) fn new_migration(
    dir: &Path,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.contains('_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!(
            "migration name `{name}` must be snake_case and start with a verb, e.g. `add_task_priority`"
        );
    }
    let module = format!("m{}_{name}", now.format("%Y%m%d_%H%M%S"));
    let file = dir.join(format!("{module}.rs"));
    if file.exists() {
        bail!("{} already exists", file.display());
    }
    let lib_path = dir.join("lib.rs");
    let lib = std::fs::read_to_string(&lib_path)
        .with_context(|| format!("reading {}", lib_path.display()))?;
    let marker = "            // `cargo xtask migrate new` adds migrations above this line.\n";
    let Some(list_end) = lib.find(marker) else {
        bail!("cannot find the migration list in {}", lib_path.display());
    };
    let mut offset = 0;
    let mut line_end = None;
    for line in lib.split_inclusive('\n') {
        offset += line.len();
        if line.starts_with("mod m") {
            line_end = Some(offset);
        }
    }
    let line_end = line_end.context("no existing `mod m...;` line in lib.rs")?;
    let mut updated = String::with_capacity(lib.len() + 128);
    updated.push_str(&lib[..line_end]);
    updated.push_str(&format!("mod {module};\n"));
    updated.push_str(&lib[line_end..list_end]);
    updated.push_str(&format!("            Box::new({module}::Migration),\n"));
    updated.push_str(&lib[list_end..]);
    std::fs::write(&file, TEMPLATE.replace("{name}", name))?;
    std::fs::write(&lib_path, updated)?;
    Ok(file)
}

const TEMPLATE: &str = r#"//! {name}: say what this migration changes and why.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        todo!("write the schema change")
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        todo!("undo the schema change")
    }
}
"#;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn new_migration_writes_a_dated_file_and_registers_it() {
        let dir = std::env::temp_dir().join(format!("xtask-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("lib.rs"),
            "mod m20261126_000001_create_core_tables;\n\nimpl X {\n    fn migrations() -> Vec<Box<dyn MigrationTrait>> {\n        vec![\n            Box::new(m20261126_000001_create_core_tables::Migration),\n            // `cargo xtask migrate new` adds migrations above this line.\n        ]\n    }\n}\n",
        )
        .unwrap();
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 5).unwrap();
        let file = new_migration(&dir, "add_task_priority", now).unwrap();
        assert_eq!(
            file.file_name().unwrap(),
            "m20261201_093005_add_task_priority.rs"
        );
        let lib = std::fs::read_to_string(dir.join("lib.rs")).unwrap();
        assert_eq!(
            lib,
            "mod m20261126_000001_create_core_tables;\nmod m20261201_093005_add_task_priority;\n\nimpl X {\n    fn migrations() -> Vec<Box<dyn MigrationTrait>> {\n        vec![\n            Box::new(m20261126_000001_create_core_tables::Migration),\n            Box::new(m20261201_093005_add_task_priority::Migration),\n            // `cargo xtask migrate new` adds migrations above this line.\n        ]\n    }\n}\n"
        );
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("add_task_priority: say what")
        );
        let err = new_migration(&dir, "Bad-Name", now).unwrap_err();
        assert!(err.to_string().contains("snake_case"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
