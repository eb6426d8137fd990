//! Runtime switches: paused namespaces and templates, and per-namespace caps on running step
//! attempts. One row per switch in force; every change is also appended to a change log with
//! who made it, when and why. Claims honour the switches through [`super::ClaimFilter`], which
//! the engine builds from [`Store::runtime_switches`].

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult, Value};
use serde::Serialize;

use super::Store;
use super::sql::{Db, commit, get, retrying, stmt};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

/// What a switch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchKind {
    /// No new claims for the target's steps.
    Pause,
    /// At most `max_running` step attempts of the namespace run at once, across processes.
    Limit,
}

impl SwitchKind {
    fn as_str(self) -> &'static str {
        match self {
            SwitchKind::Pause => "pause",
            SwitchKind::Limit => "limit",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "pause" => Ok(SwitchKind::Pause),
            "limit" => Ok(SwitchKind::Limit),
            other => Err(StoreError::Malformed {
                what: "runtime switch kind",
                message: format!("unknown kind `{other}`"),
            }),
        }
    }
}

/// What a switch applies to: a namespace, a template (every version), or one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchTarget {
    /// The namespace.
    pub namespace: String,
    /// The template's name; `None`: the whole namespace.
    pub name: Option<String>,
    /// The template's version; `None`: every version.
    pub version: Option<String>,
}

impl SwitchTarget {
    /// A whole namespace.
    pub fn namespace(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: None,
            version: None,
        }
    }

    /// A template, every version (`version: None`) or one.
    pub fn template(
        namespace: impl Into<String>,
        name: impl Into<String>,
        version: Option<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: Some(name.into()),
            version,
        }
    }

    /// `namespace`, `namespace/name` or `namespace/name@version`.
    pub fn key(&self) -> String {
        match (&self.name, &self.version) {
            (None, _) => self.namespace.clone(),
            (Some(name), None) => format!("{}/{name}", self.namespace),
            (Some(name), Some(version)) => format!("{}/{name}@{version}", self.namespace),
        }
    }

    /// Whether a template `namespace/name@version` falls under this target.
    pub fn covers(&self, namespace: &str, name: &str, version: &str) -> bool {
        self.namespace == namespace
            && self.name.as_deref().is_none_or(|n| n == name)
            && self.version.as_deref().is_none_or(|v| v == version)
    }
}

/// A switch in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeSwitch {
    /// Pause or limit.
    pub kind: SwitchKind,
    /// What it applies to (a limit: always a namespace).
    pub target: SwitchTarget,
    /// A limit's cap on running step attempts.
    pub max_running: Option<u32>,
    /// Why it was set.
    pub reason: String,
    /// Who set it.
    pub set_by: String,
    /// When.
    pub set_at: DateTime<Utc>,
}

/// One audited change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchChange {
    /// Its id, increasing.
    pub change_id: i64,
    /// `pause`, `resume`, `limit` or `unlimit`.
    pub action: String,
    /// The kind of switch changed.
    pub kind: SwitchKind,
    /// What it applies to.
    pub target: SwitchTarget,
    /// The cap a `limit` set.
    pub max_running: Option<u32>,
    /// Why.
    pub reason: String,
    /// Who.
    pub changed_by: String,
    /// When.
    pub changed_at: DateTime<Utc>,
}

fn target_of(row: &QueryResult) -> Result<SwitchTarget, StoreError> {
    Ok(SwitchTarget {
        namespace: get(row, "namespace")?,
        name: get(row, "name")?,
        version: get(row, "version")?,
    })
}

fn max_running_of(row: &QueryResult) -> Result<Option<u32>, StoreError> {
    Ok(get::<Option<i32>>(row, "max_running")?.map(|n| u32::try_from(n).unwrap_or(0)))
}

fn cap(max_running: Option<u32>) -> Value {
    max_running
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        .into()
}

impl Store {
    /// Every switch in force, by kind and target.
    pub async fn runtime_switches(&self) -> Result<Vec<RuntimeSwitch>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT kind, namespace, name, version, max_running, reason, set_by, set_at \
                 FROM tasker_runtime_switches ORDER BY kind, target",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RuntimeSwitch {
                    kind: SwitchKind::parse(&get::<String>(row, "kind")?)?,
                    target: target_of(row)?,
                    max_running: max_running_of(row)?,
                    reason: get(row, "reason")?,
                    set_by: get(row, "set_by")?,
                    set_at: from_micros(get(row, "set_at")?),
                })
            })
            .collect()
    }

    /// The latest `limit` changes, newest first.
    pub async fn runtime_switch_changes(
        &self,
        limit: u64,
    ) -> Result<Vec<SwitchChange>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT change_id, action, kind, namespace, name, version, max_running, reason, \
                 changed_by, changed_at FROM tasker_runtime_switch_changes \
                 ORDER BY change_id DESC LIMIT $1",
                vec![i64::try_from(limit).unwrap_or(i64::MAX).into()],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SwitchChange {
                    change_id: get(row, "change_id")?,
                    action: get(row, "action")?,
                    kind: SwitchKind::parse(&get::<String>(row, "kind")?)?,
                    target: target_of(row)?,
                    max_running: max_running_of(row)?,
                    reason: get(row, "reason")?,
                    changed_by: get(row, "changed_by")?,
                    changed_at: from_micros(get(row, "changed_at")?),
                })
            })
            .collect()
    }

    /// Pauses `target`: its ready steps are claimed by no process until it is resumed. Pausing
    /// what is already paused replaces the reason. Returns the change logged.
    pub async fn pause(
        &self,
        target: &SwitchTarget,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<SwitchChange, StoreError> {
        self.set_switch(SwitchKind::Pause, "pause", target, None, reason, by, now)
            .await
            .map(|change| change.expect("a set always logs"))
    }

    /// Resumes `target`; `None` when it was not paused (nothing is logged then).
    pub async fn resume(
        &self,
        target: &SwitchTarget,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SwitchChange>, StoreError> {
        self.clear_switch(SwitchKind::Pause, "resume", target, reason, by, now)
            .await
    }

    /// Caps the step attempts of `namespace` running at once across every process at
    /// `max_running` (`None` removes the cap; returns `None` when there was none to remove).
    pub async fn limit_namespace(
        &self,
        namespace: &str,
        max_running: Option<u32>,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SwitchChange>, StoreError> {
        let target = SwitchTarget::namespace(namespace);
        match max_running {
            Some(n) => {
                self.set_switch(
                    SwitchKind::Limit,
                    "limit",
                    &target,
                    Some(n),
                    reason,
                    by,
                    now,
                )
                .await
            }
            None => {
                self.clear_switch(SwitchKind::Limit, "unlimit", &target, reason, by, now)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn set_switch(
        &self,
        kind: SwitchKind,
        action: &str,
        target: &SwitchTarget,
        max_running: Option<u32>,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SwitchChange>, StoreError> {
        let key = target.key();
        retrying(|| {
            let key = key.clone();
            async move {
                let txn = self.write_txn().await?;
                let backend = txn.get_database_backend();
                txn.exec(stmt(
                    backend,
                    "DELETE FROM tasker_runtime_switches WHERE kind = $1 AND target = $2",
                    vec![kind.as_str().into(), key.clone().into()],
                ))
                .await?;
                txn.exec(stmt(
                    backend,
                    "INSERT INTO tasker_runtime_switches (kind, target, namespace, name, version, \
                     max_running, reason, set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    vec![
                        kind.as_str().into(),
                        key.into(),
                        target.namespace.clone().into(),
                        target.name.clone().into(),
                        target.version.clone().into(),
                        cap(max_running),
                        reason.into(),
                        by.into(),
                        to_micros(now).into(),
                    ],
                ))
                .await?;
                let change = log_change(&txn, action, kind, target, max_running, reason, by, now)
                    .await?;
                commit(txn).await?;
                Ok(Some(change))
            }
        })
        .await
    }

    async fn clear_switch(
        &self,
        kind: SwitchKind,
        action: &str,
        target: &SwitchTarget,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SwitchChange>, StoreError> {
        let key = target.key();
        retrying(|| {
            let key = key.clone();
            async move {
                let txn = self.write_txn().await?;
                let removed = txn
                    .exec(stmt(
                        txn.get_database_backend(),
                        "DELETE FROM tasker_runtime_switches WHERE kind = $1 AND target = $2",
                        vec![kind.as_str().into(), key.into()],
                    ))
                    .await?
                    .rows_affected();
                if removed == 0 {
                    return Ok(None);
                }
                let change = log_change(&txn, action, kind, target, None, reason, by, now).await?;
                commit(txn).await?;
                Ok(Some(change))
            }
        })
        .await
    }
}

#[allow(clippy::too_many_arguments)]
async fn log_change<C: ConnectionTrait>(
    txn: &C,
    action: &str,
    kind: SwitchKind,
    target: &SwitchTarget,
    max_running: Option<u32>,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<SwitchChange, StoreError> {
    let row = txn
        .row(stmt(
            txn.get_database_backend(),
            "INSERT INTO tasker_runtime_switch_changes (action, kind, target, namespace, name, \
             version, max_running, reason, changed_by, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING change_id",
            vec![
                action.into(),
                kind.as_str().into(),
                target.key().into(),
                target.namespace.clone().into(),
                target.name.clone().into(),
                target.version.clone().into(),
                cap(max_running),
                reason.into(),
                by.into(),
                to_micros(now).into(),
            ],
        ))
        .await?
        .ok_or_else(|| StoreError::Malformed {
            what: "runtime switch change",
            message: "the insert returned no id".into(),
        })?;
    Ok(SwitchChange {
        change_id: get(&row, "change_id")?,
        action: action.to_owned(),
        kind,
        target: target.clone(),
        max_running,
        reason: reason.to_owned(),
        changed_by: by.to_owned(),
        changed_at: from_micros(to_micros(now)),
    })
}
