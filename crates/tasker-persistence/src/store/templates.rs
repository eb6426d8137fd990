//! The catalogue: namespaces, named tasks (with the template as configuration), dependent
//! systems, named steps and their defaults. Registration is an idempotent upsert.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};
use tasker_domain::TemplateId;
use tasker_template::TaskTemplate;

use super::sql::{Db, commit, get, stmt, template_id};
use super::{RegisteredTemplate, Store};
use crate::error::StoreError;
use crate::time::to_micros;

/// The dependent system of steps whose template names none.
const DEFAULT_SYSTEM: &str = "default";

impl Store {
    /// Stores `template` in the catalogue (find-or-create namespace, named task, dependent
    /// systems, named steps, defaults). Registering the same namespace/name/version again
    /// replaces the stored template.
    pub async fn register_template(
        &self,
        template: &TaskTemplate,
        now: DateTime<Utc>,
    ) -> Result<RegisteredTemplate, StoreError> {
        let txn = self.write_txn().await?;
        let registered = register_in(&txn, template, now).await?;
        commit(txn).await?;
        Ok(registered)
    }

    /// The template `namespace/name`, at `version` or else the highest semver version.
    pub async fn find_template(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&semver::Version>,
    ) -> Result<RegisteredTemplate, StoreError> {
        let db = &self.db;
        let rows = db
            .rows(stmt(
                self.db_backend(),
                "SELECT t.named_task_id, t.version, t.configuration FROM tasker_named_tasks t \
                 JOIN tasker_task_namespaces n ON n.task_namespace_id = t.task_namespace_id \
                 WHERE n.name = $1 AND t.name = $2",
                vec![namespace.into(), name.into()],
            ))
            .await?;
        let mut best: Option<(semver::Version, TemplateId, serde_json::Value)> = None;
        for row in rows {
            let text: String = get(&row, "version")?;
            let Ok(candidate) = semver::Version::parse(&text) else {
                continue;
            };
            let wanted = version.is_none_or(|v| *v == candidate);
            if wanted && best.as_ref().is_none_or(|(b, _, _)| candidate > *b) {
                best = Some((
                    candidate,
                    template_id(&row, "named_task_id")?,
                    get(&row, "configuration")?,
                ));
            }
        }
        let Some((_, named_task_id, configuration)) = best else {
            return Err(StoreError::TemplateNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                version: version.cloned(),
            });
        };
        let template: TaskTemplate = serde_json::from_value(configuration)
            .map_err(|e| StoreError::malformed("task template", e))?;
        let named_step_ids = named_step_ids(db, named_task_id).await?;
        Ok(RegisteredTemplate {
            named_task_id,
            template: Arc::new(template),
            named_step_ids,
        })
    }
}

impl Store {
    /// Every template in the catalogue with its named task id, for an engine deciding which
    /// tasks it can run. A stored template that no longer decodes is left out.
    pub async fn template_catalogue(&self) -> Result<Vec<(TemplateId, TaskTemplate)>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT named_task_id, configuration FROM tasker_named_tasks ORDER BY named_task_id",
                vec![],
            ))
            .await?;
        let mut templates = Vec::with_capacity(rows.len());
        for row in rows {
            let configuration: serde_json::Value = get(&row, "configuration")?;
            if let Ok(template) = serde_json::from_value::<TaskTemplate>(configuration) {
                templates.push((template_id(&row, "named_task_id")?, template));
            }
        }
        Ok(templates)
    }

    /// The template stored as `named_task_id`.
    pub async fn find_template_by_id(
        &self,
        named_task_id: TemplateId,
    ) -> Result<RegisteredTemplate, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                "SELECT configuration FROM tasker_named_tasks WHERE named_task_id = $1",
                vec![named_task_id.get().into()],
            ))
            .await?
            .ok_or_else(|| StoreError::TemplateNotFound {
                namespace: String::new(),
                name: format!("#{named_task_id}"),
                version: None,
            })?;
        let template: TaskTemplate = serde_json::from_value(get(&row, "configuration")?)
            .map_err(|e| StoreError::malformed("task template", e))?;
        let named_step_ids = named_step_ids(&self.db, named_task_id).await?;
        Ok(RegisteredTemplate {
            named_task_id,
            template: Arc::new(template),
            named_step_ids,
        })
    }
}

async fn named_step_ids<C: ConnectionTrait>(
    db: &C,
    named_task_id: TemplateId,
) -> Result<HashMap<String, i64>, StoreError> {
    let rows = db
        .rows(stmt(
            db.get_database_backend(),
            "SELECT s.named_step_id, s.name FROM tasker_named_tasks_named_steps a \
             JOIN tasker_named_steps s ON s.named_step_id = a.named_step_id WHERE a.named_task_id = $1",
            vec![named_task_id.get().into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                get::<String>(row, "name")?,
                get::<i64>(row, "named_step_id")?,
            ))
        })
        .collect()
}

async fn upsert_named<C: ConnectionTrait>(
    db: &C,
    table: &str,
    id_col: &str,
    name: &str,
    now: i64,
) -> Result<i64, StoreError> {
    let backend = db.get_database_backend();
    db.exec(stmt(
        backend,
        format!("INSERT INTO {table} (name, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (name) DO NOTHING"),
        vec![name.into(), now.into()],
    ))
    .await?;
    let row = db
        .row(stmt(
            backend,
            format!("SELECT {id_col} FROM {table} WHERE name = $1"),
            vec![name.into()],
        ))
        .await?
        .ok_or_else(|| {
            StoreError::malformed("catalogue", format!("{table} row `{name}` vanished"))
        })?;
    get(&row, id_col)
}

pub(crate) async fn register_in<C: ConnectionTrait>(
    db: &C,
    template: &TaskTemplate,
    now: DateTime<Utc>,
) -> Result<RegisteredTemplate, StoreError> {
    let backend = db.get_database_backend();
    let now = to_micros(now);
    let namespace_id = upsert_named(
        db,
        "tasker_task_namespaces",
        "task_namespace_id",
        &template.namespace_name,
        now,
    )
    .await?;
    let configuration =
        serde_json::to_value(template).map_err(|e| StoreError::malformed("task template", e))?;
    let version = &template.version;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    db.exec(stmt(
        backend,
        "INSERT INTO tasker_named_tasks (task_namespace_id, name, version, version_major, version_minor, \
         version_patch, description, configuration, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (task_namespace_id, name, version) DO UPDATE SET \
         configuration = excluded.configuration, description = excluded.description, updated_at = excluded.updated_at",
        vec![
            namespace_id.into(),
            template.name.as_str().into(),
            version.to_string().into(),
            as_i64(version.major).into(),
            as_i64(version.minor).into(),
            as_i64(version.patch).into(),
            template.description.clone().into(),
            Value::Json(Some(Box::new(configuration))),
            now.into(),
        ],
    ))
    .await?;
    let row = db
        .row(stmt(
            backend,
            "SELECT named_task_id FROM tasker_named_tasks WHERE task_namespace_id = $1 AND name = $2 AND version = $3",
            vec![namespace_id.into(), template.name.as_str().into(), version.to_string().into()],
        ))
        .await?
        .ok_or_else(|| StoreError::malformed("catalogue", "named task row vanished"))?;
    let named_task_id = template_id(&row, "named_task_id")?;
    let mut systems: HashMap<&str, i64> = HashMap::new();
    let mut named_step_ids = HashMap::new();
    for step in &template.step_templates {
        let system = step.dependent_system.as_deref().unwrap_or(DEFAULT_SYSTEM);
        let system_id = match systems.get(system) {
            Some(id) => *id,
            None => {
                let id = upsert_named(
                    db,
                    "tasker_dependent_systems",
                    "dependent_system_id",
                    system,
                    now,
                )
                .await?;
                systems.insert(system, id);
                id
            }
        };
        db.exec(stmt(
            backend,
            "INSERT INTO tasker_named_steps (dependent_system_id, name, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (dependent_system_id, name) DO NOTHING",
            vec![system_id.into(), step.name.as_str().into(), step.description.clone().into(), now.into()],
        ))
        .await?;
        let row = db
            .row(stmt(
                backend,
                "SELECT named_step_id FROM tasker_named_steps WHERE dependent_system_id = $1 AND name = $2",
                vec![system_id.into(), step.name.as_str().into()],
            ))
            .await?
            .ok_or_else(|| StoreError::malformed("catalogue", "named step row vanished"))?;
        let named_step_id: i64 = get(&row, "named_step_id")?;
        db.exec(stmt(
            backend,
            "INSERT INTO tasker_named_tasks_named_steps (named_task_id, named_step_id, skippable, default_retryable, \
             default_retry_limit) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (named_task_id, named_step_id) DO UPDATE SET \
             skippable = excluded.skippable, default_retryable = excluded.default_retryable, \
             default_retry_limit = excluded.default_retry_limit",
            vec![
                named_task_id.get().into(),
                named_step_id.into(),
                step.skippable.into(),
                step.default_retryable.into(),
                i32::try_from(step.default_retry_limit).unwrap_or(i32::MAX).into(),
            ],
        ))
        .await?;
        named_step_ids.insert(step.name.clone(), named_step_id);
    }
    Ok(RegisteredTemplate {
        named_task_id,
        template: std::sync::Arc::new(template.clone()),
        named_step_ids,
    })
}
