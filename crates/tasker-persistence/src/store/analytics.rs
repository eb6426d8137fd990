//! Performance and bottleneck analytics over a time window, aggregated by the database: each
//! report is a few statements whose results are bounded by the number of templates or by a
//! limit, whatever the number of rows in the window.
//!
//! Definitions (the same on both databases):
//! - A task is *created* in the window when `created_at` is in `[since, until)`; it *finished*
//!   in the window when its current state is final (`complete`, `error`, `cancelled`,
//!   `resolved_manually`) and it entered that state (`completed_at`) in the window. A task in
//!   `error` that is retried leaves the finished set until it finishes again.
//! - A task's duration is `completed_at - created_at` (queueing included), over tasks that
//!   finished in the window as `complete` or `error`.
//! - An *attempt* is one claim of a step: it ends with the step's transition out of
//!   `in_progress` to `complete` or `error`, and it counts in the window when that transition
//!   was written in the window. Its duration runs from the step's latest earlier transition to
//!   `in_progress` (the claim) to its end. Its number is the step's attempt count at its end.
//! - Percentiles are nearest-rank: the p-th percentile of `n` sorted values is the value at
//!   rank `ceil(p * n / 100)`. PostgreSQL computes them with `percentile_disc`, SQLite with
//!   `ROW_NUMBER` and `COUNT` over a partition; both give that rank.

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, QueryResult, Value};

use super::Store;
use super::sql::{Db, get, stmt};
use crate::error::StoreError;
use crate::time::to_micros;

/// The longest window a report covers.
pub const MAX_ANALYTICS_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// The longest list a bottleneck report returns.
pub const MAX_ANALYTICS_LIMIT: u32 = 100;

/// What a report covers: a window `[since, until)` and optional template filters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnalyticsScope {
    /// The window's start (included).
    pub since: DateTime<Utc>,
    /// The window's end (excluded).
    pub until: DateTime<Utc>,
    /// Only templates of this namespace.
    pub namespace: Option<String>,
    /// Only templates of this name.
    pub name: Option<String>,
    /// Only this template version (exact, e.g. `1.2.0`).
    pub version: Option<String>,
}

impl AnalyticsScope {
    /// The window `[since, until)` with no filters.
    pub fn window(since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        Self {
            since,
            until,
            namespace: None,
            name: None,
            version: None,
        }
    }

    /// The window's length in minutes (zero for an empty or reversed window).
    pub fn minutes(&self) -> f64 {
        let micros = (to_micros(self.until) - to_micros(self.since)).max(0);
        micros as f64 / 60_000_000.0
    }
}

/// One template's performance over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplatePerformance {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// Tasks created in the window.
    pub created: u64,
    /// Tasks that finished in the window as `complete`.
    pub completed: u64,
    /// Tasks that finished in the window as `error`.
    pub failed: u64,
    /// Tasks that finished in the window as `cancelled`.
    pub cancelled: u64,
    /// Tasks that finished in the window as `resolved_manually`.
    pub resolved_manually: u64,
    /// Duration percentiles in milliseconds; `None` without a task finished as `complete` or
    /// `error`.
    pub duration_p50_ms: Option<f64>,
    /// 95th percentile.
    pub duration_p95_ms: Option<f64>,
    /// 99th percentile.
    pub duration_p99_ms: Option<f64>,
}

impl TemplatePerformance {
    /// Tasks that finished in the window, in any final state.
    pub fn finished(&self) -> u64 {
        self.completed + self.failed + self.cancelled + self.resolved_manually
    }
}

/// Per-template performance over a window, templates in namespace, name and version order
/// (only templates with a task created or finished in the window).
#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    /// The window and filters.
    pub scope: AnalyticsScope,
    /// One entry per template.
    pub templates: Vec<TemplatePerformance>,
}

/// Attempt durations of one step of one template.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTiming {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Mean attempt duration, in milliseconds.
    pub mean_ms: f64,
    /// 95th percentile attempt duration, in milliseconds.
    pub p95_ms: f64,
    /// Longest attempt, in milliseconds.
    pub max_ms: f64,
}

/// Retries of one step of one template.
#[derive(Debug, Clone, PartialEq)]
pub struct RetriedStep {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Of those, attempts after a step's first (attempt number above 1).
    pub retries: u64,
    /// Steps (instances) with a retry that ended in the window.
    pub steps_retried: u64,
    /// The highest attempt number among them.
    pub max_attempt: u32,
}

/// Failed attempts of one step of one template, with the most common error.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorHotSpot {
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub name: String,
    /// The template's version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Of those, attempts that ended in `error`.
    pub failed_attempts: u64,
    /// The most common error code among them (`None` when the most common error had none).
    pub top_error_code: Option<String>,
    /// That error's message (its first 500 characters).
    pub top_error_message: Option<String>,
    /// How many failed attempts had that code and message.
    pub top_error_count: u64,
}

/// Bottlenecks over a window: each list at most `limit` long.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottlenecks {
    /// The window and filters.
    pub scope: AnalyticsScope,
    /// The list length asked for (after clamping to `1..=MAX_ANALYTICS_LIMIT`).
    pub limit: u32,
    /// Steps by 95th percentile attempt duration, slowest first.
    pub slowest_steps: Vec<StepTiming>,
    /// Steps with retries, most retries first.
    pub most_retried_steps: Vec<RetriedStep>,
    /// Steps with failed attempts, most failures first.
    pub error_hot_spots: Vec<ErrorHotSpot>,
}

/// Binds `value` as the next `$N`.
fn bind(value: Value, values: &mut Vec<Value>) -> String {
    values.push(value);
    format!("${}", values.len())
}

/// `scope` CTE: the templates the filters allow, with their names. `$1` and `$2` are the window.
fn scope_cte(scope: &AnalyticsScope, values: &mut Vec<Value>) -> String {
    let mut conditions = Vec::new();
    if let Some(namespace) = &scope.namespace {
        conditions.push(format!(
            "n.name = {}",
            bind(namespace.as_str().into(), values)
        ));
    }
    if let Some(name) = &scope.name {
        conditions.push(format!("nt.name = {}", bind(name.as_str().into(), values)));
    }
    if let Some(version) = &scope.version {
        conditions.push(format!(
            "nt.version = {}",
            bind(version.as_str().into(), values)
        ));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "scope AS (SELECT nt.named_task_id, n.name AS namespace, nt.name, nt.version, nt.version_major, \
         nt.version_minor, nt.version_patch FROM tasker_named_tasks nt \
         JOIN tasker_task_namespaces n ON n.task_namespace_id = nt.task_namespace_id{clause})"
    )
}

/// The condition that limits `alias`'s tasks to the scope's templates (nothing when no filter).
fn in_scope(scope: &AnalyticsScope, alias: &str) -> String {
    if scope.namespace.is_none() && scope.name.is_none() && scope.version.is_none() {
        String::new()
    } else {
        format!(" AND {alias}.named_task_id IN (SELECT named_task_id FROM scope)")
    }
}

/// A statement over `source` (rows with the columns `group_cols` and a duration `d`) that
/// selects, per group, `group_cols`, `n` (rows), `mean_d`, `max_d` and one nearest-rank
/// percentile column `p{P}` per entry of `ps`.
fn percentiles(backend: DbBackend, source: &str, group_cols: &str, ps: &[u32]) -> String {
    match backend {
        DbBackend::Postgres => {
            let columns: Vec<String> = ps
                .iter()
                .map(|p| {
                    format!(
                        "percentile_disc({}) WITHIN GROUP (ORDER BY d) AS p{p}",
                        f64::from(*p) / 100.0
                    )
                })
                .collect();
            format!(
                "SELECT {group_cols}, COUNT(*) AS n, CAST(AVG(d) AS DOUBLE PRECISION) AS mean_d, MAX(d) AS max_d, {} \
                 FROM {source} GROUP BY {group_cols}",
                columns.join(", ")
            )
        }
        _ => {
            // rank = ceil(p * cnt / 100), in integers.
            let columns: Vec<String> = ps
                .iter()
                .map(|p| format!("MAX(CASE WHEN rn = ({p} * cnt + 99) / 100 THEN d END) AS p{p}"))
                .collect();
            format!(
                "SELECT {group_cols}, COUNT(*) AS n, CAST(AVG(d) AS DOUBLE PRECISION) AS mean_d, MAX(d) AS max_d, {} \
                 FROM (SELECT {group_cols}, d, ROW_NUMBER() OVER (PARTITION BY {group_cols} ORDER BY d) AS rn, \
                 COUNT(*) OVER (PARTITION BY {group_cols}) AS cnt FROM {source}) ranked GROUP BY {group_cols}",
                columns.join(", ")
            )
        }
    }
}

/// A JSON text field of the `metadata` column of transition alias `x`.
fn metadata_text(backend: DbBackend, field: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("(x.metadata ->> '{field}')"),
        _ => format!("json_extract(x.metadata, '$.{field}')"),
    }
}

/// The `attempts` CTE: one row per attempt that ended in the window (see the module docs),
/// with its template, step name, step instance, end state, duration `d` (microseconds), number
/// and error code and message.
fn attempts_cte(backend: DbBackend, scope: &AnalyticsScope) -> String {
    let number = match backend {
        DbBackend::Postgres => "CAST(x.metadata ->> 'attempt_number' AS BIGINT)".to_owned(),
        _ => "CAST(json_extract(x.metadata, '$.attempt_number') AS INTEGER)".to_owned(),
    };
    format!(
        "attempts AS (SELECT t.named_task_id, s.name AS step, x.workflow_step_id, x.to_state, {number} AS attempt, \
         {code} AS error_code, SUBSTR({message}, 1, 500) AS error_message, \
         x.created_at - (SELECT p.created_at FROM tasker_workflow_step_transitions p \
         WHERE p.workflow_step_id = x.workflow_step_id AND p.to_state = 'in_progress' AND p.sort_key < x.sort_key \
         ORDER BY p.sort_key DESC LIMIT 1) AS d \
         FROM tasker_workflow_step_transitions x \
         JOIN tasker_workflow_steps s ON s.workflow_step_id = x.workflow_step_id \
         JOIN tasker_tasks t ON t.task_id = s.task_id \
         WHERE x.from_state = 'in_progress' AND x.to_state IN ('complete', 'error') \
         AND x.created_at >= $1 AND x.created_at < $2{filter})",
        code = metadata_text(backend, "error_code"),
        message = metadata_text(backend, "error_message"),
        filter = in_scope(scope, "t"),
    )
}

fn count(row: &QueryResult, col: &str) -> Result<u64, StoreError> {
    Ok(get::<Option<i64>>(row, col)?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn millis(row: &QueryResult, col: &str) -> Result<Option<f64>, StoreError> {
    Ok(get::<Option<i64>>(row, col)?.map(|micros| micros as f64 / 1000.0))
}

/// Template columns in a stable order for ties.
const TEMPLATE_ORDER: &str =
    "sc.namespace, sc.name, sc.version_major, sc.version_minor, sc.version_patch, sc.version";

impl Store {
    /// Per-template performance over `scope` (see the module docs for the definitions). One
    /// statement; the result has one row per template.
    pub async fn performance(&self, scope: &AnalyticsScope) -> Result<Performance, StoreError> {
        let backend = self.db_backend();
        let mut values: Vec<Value> =
            vec![to_micros(scope.since).into(), to_micros(scope.until).into()];
        let scope_sql = scope_cte(scope, &mut values);
        let filter = in_scope(scope, "t");
        let durations = percentiles(
            backend,
            "finished WHERE state IN ('complete', 'error')",
            "named_task_id",
            &[50, 95, 99],
        );
        let sql = format!(
            "WITH {scope_sql}, \
             created AS (SELECT t.named_task_id, COUNT(*) AS created FROM tasker_tasks t \
               WHERE t.created_at >= $1 AND t.created_at < $2{filter} GROUP BY t.named_task_id), \
             finished AS MATERIALIZED (SELECT t.named_task_id, t.state, t.completed_at - t.created_at AS d FROM tasker_tasks t \
               WHERE t.completed_at >= $1 AND t.completed_at < $2{filter}), \
             outcomes AS (SELECT named_task_id, \
               SUM(CASE WHEN state = 'complete' THEN 1 ELSE 0 END) AS completed, \
               SUM(CASE WHEN state = 'error' THEN 1 ELSE 0 END) AS failed, \
               SUM(CASE WHEN state = 'cancelled' THEN 1 ELSE 0 END) AS cancelled, \
               SUM(CASE WHEN state = 'resolved_manually' THEN 1 ELSE 0 END) AS resolved_manually \
               FROM finished GROUP BY named_task_id), \
             durations AS ({durations}) \
             SELECT sc.namespace, sc.name, sc.version, c.created, o.completed, o.failed, o.cancelled, \
               o.resolved_manually, du.p50, du.p95, du.p99 \
             FROM scope sc LEFT JOIN created c ON c.named_task_id = sc.named_task_id \
             LEFT JOIN outcomes o ON o.named_task_id = sc.named_task_id \
             LEFT JOIN durations du ON du.named_task_id = sc.named_task_id \
             WHERE c.created IS NOT NULL OR o.completed IS NOT NULL \
             ORDER BY {TEMPLATE_ORDER}"
        );
        let rows = self.db.rows(stmt(backend, sql, values)).await?;
        let templates = rows
            .iter()
            .map(|row| {
                Ok(TemplatePerformance {
                    namespace: get(row, "namespace")?,
                    name: get(row, "name")?,
                    version: get(row, "version")?,
                    created: count(row, "created")?,
                    completed: count(row, "completed")?,
                    failed: count(row, "failed")?,
                    cancelled: count(row, "cancelled")?,
                    resolved_manually: count(row, "resolved_manually")?,
                    duration_p50_ms: millis(row, "p50")?,
                    duration_p95_ms: millis(row, "p95")?,
                    duration_p99_ms: millis(row, "p99")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Performance {
            scope: scope.clone(),
            templates,
        })
    }

    /// The slowest steps, the most retried steps and the error hot spots over `scope`, each
    /// list at most `limit` long (clamped to `1..=MAX_ANALYTICS_LIMIT`). Three statements.
    pub async fn bottlenecks(
        &self,
        scope: &AnalyticsScope,
        limit: u32,
    ) -> Result<Bottlenecks, StoreError> {
        let backend = self.db_backend();
        let limit = limit.clamp(1, MAX_ANALYTICS_LIMIT);
        let mut values: Vec<Value> =
            vec![to_micros(scope.since).into(), to_micros(scope.until).into()];
        let scope_sql = scope_cte(scope, &mut values);
        let limit_param = bind(i64::from(limit).into(), &mut values);
        let head = format!("WITH {scope_sql}, {}", attempts_cte(backend, scope));

        let timings = percentiles(
            backend,
            "attempts WHERE d IS NOT NULL",
            "named_task_id, step",
            &[95],
        );
        let slowest = self
            .db
            .rows(stmt(
                backend,
                format!(
                    "{head}, timings AS ({timings}) \
                     SELECT sc.namespace, sc.name, sc.version, ti.step, ti.n, ti.mean_d, ti.max_d, ti.p95 \
                     FROM timings ti JOIN scope sc ON sc.named_task_id = ti.named_task_id \
                     ORDER BY ti.p95 DESC, ti.mean_d DESC, {TEMPLATE_ORDER}, ti.step LIMIT {limit_param}"
                ),
                values.clone(),
            ))
            .await?;
        let slowest_steps = slowest
            .iter()
            .map(|row| {
                Ok(StepTiming {
                    namespace: get(row, "namespace")?,
                    name: get(row, "name")?,
                    version: get(row, "version")?,
                    step: get(row, "step")?,
                    attempts: count(row, "n")?,
                    mean_ms: get::<Option<f64>>(row, "mean_d")?.unwrap_or(0.0) / 1000.0,
                    p95_ms: millis(row, "p95")?.unwrap_or(0.0),
                    max_ms: millis(row, "max_d")?.unwrap_or(0.0),
                })
            })
            .collect::<Result<_, StoreError>>()?;

        let retried = self
            .db
            .rows(stmt(
                backend,
                format!(
                    "{head}, retried AS (SELECT named_task_id, step, COUNT(*) AS n, \
                     SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) AS retries, \
                     COUNT(DISTINCT CASE WHEN attempt > 1 THEN workflow_step_id END) AS steps_retried, \
                     MAX(attempt) AS max_attempt FROM attempts GROUP BY named_task_id, step) \
                     SELECT sc.namespace, sc.name, sc.version, r.step, r.n, r.retries, r.steps_retried, r.max_attempt \
                     FROM retried r JOIN scope sc ON sc.named_task_id = r.named_task_id WHERE r.retries > 0 \
                     ORDER BY r.retries DESC, r.steps_retried DESC, {TEMPLATE_ORDER}, r.step LIMIT {limit_param}"
                ),
                values.clone(),
            ))
            .await?;
        let most_retried_steps = retried
            .iter()
            .map(|row| {
                Ok(RetriedStep {
                    namespace: get(row, "namespace")?,
                    name: get(row, "name")?,
                    version: get(row, "version")?,
                    step: get(row, "step")?,
                    attempts: count(row, "n")?,
                    retries: count(row, "retries")?,
                    steps_retried: count(row, "steps_retried")?,
                    max_attempt: u32::try_from(count(row, "max_attempt")?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<_, StoreError>>()?;

        let errors = self
            .db
            .rows(stmt(
                backend,
                format!(
                    "{head}, per_step AS (SELECT named_task_id, step, COUNT(*) AS n, \
                     SUM(CASE WHEN to_state = 'error' THEN 1 ELSE 0 END) AS failed FROM attempts \
                     GROUP BY named_task_id, step), \
                     kinds AS (SELECT named_task_id, step, error_code, error_message, COUNT(*) AS n FROM attempts \
                     WHERE to_state = 'error' GROUP BY named_task_id, step, error_code, error_message), \
                     ranked AS (SELECT named_task_id, step, error_code, error_message, n, ROW_NUMBER() OVER \
                     (PARTITION BY named_task_id, step ORDER BY n DESC, COALESCE(error_code, ''), \
                     COALESCE(error_message, '')) AS rn FROM kinds) \
                     SELECT sc.namespace, sc.name, sc.version, ps.step, ps.n, ps.failed, k.error_code, \
                     k.error_message, k.n AS top_n \
                     FROM per_step ps JOIN scope sc ON sc.named_task_id = ps.named_task_id \
                     JOIN ranked k ON k.named_task_id = ps.named_task_id AND k.step = ps.step AND k.rn = 1 \
                     WHERE ps.failed > 0 \
                     ORDER BY ps.failed DESC, {TEMPLATE_ORDER}, ps.step LIMIT {limit_param}"
                ),
                values,
            ))
            .await?;
        let error_hot_spots = errors
            .iter()
            .map(|row| {
                Ok(ErrorHotSpot {
                    namespace: get(row, "namespace")?,
                    name: get(row, "name")?,
                    version: get(row, "version")?,
                    step: get(row, "step")?,
                    attempts: count(row, "n")?,
                    failed_attempts: count(row, "failed")?,
                    top_error_code: get(row, "error_code")?,
                    top_error_message: get(row, "error_message")?,
                    top_error_count: count(row, "top_n")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;

        Ok(Bottlenecks {
            scope: scope.clone(),
            limit,
            slowest_steps,
            most_retried_steps,
            error_hot_spots,
        })
    }
}
