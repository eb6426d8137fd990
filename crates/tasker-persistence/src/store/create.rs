//! Task creation: the task, all its steps and edges in one transaction, with every input
//! validated before anything is written.
//!
//! Creation is two phases: [`Store::prepare_task`] validates a request and lays out its rows
//! without touching the database, and the write stores any number of prepared tasks at once
//! (group commit). On PostgreSQL that is one statement (see `one_statement`), which needs no
//! transaction around it; on SQLite, and for tasks with bypassed steps (whose transitions are
//! written too), one transaction of multi-row INSERTs. A task whose identity already exists is
//! skipped by `ON CONFLICT DO NOTHING` and reported as [`StoreError::DuplicateTask`] while the
//! others are stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use tasker_domain::{StepId, TaskId, TaskRequest, TemplateId};
use tasker_template::{ContextSchema, TaskTemplate};
use uuid::Uuid;

use super::changes::{State, TransitionRow, changes};
use super::history::{Owners, write_transitions};
use super::sql::{
    Db, STATEMENT_SEPARATOR, commit, get, insert_rows, json, max_params, params, recordset, stmt,
};
use super::{CreateTaskOptions, CreatedTask, RegisteredTemplate, Store, TaskRecord, Transaction};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

const STEP_COLUMNS: &[&str] = &[
    "workflow_step_id",
    "task_id",
    "named_step_id",
    "name",
    "position",
    "state",
    "retryable",
    "retry_limit",
    "attempts",
    "skippable",
    "processed",
    "processed_at",
    "in_process",
    "next_attempt_at",
    "unfinished_parents",
    "total_parents",
    "inputs",
    "last_sort_key",
    "created_at",
    "updated_at",
];

const EDGE_COLUMNS: &[&str] = &["from_step_id", "to_step_id", "name"];

/// An edge as [`one_statement`] sends it: its columns and its task's id.
const EDGE_RECORD_COLUMNS: &[&str] = &["from_step_id", "to_step_id", "name", "task_id"];

const TASK_COLUMNS: &[&str] = &[
    "task_id",
    "named_task_id",
    "state",
    "complete",
    "requested_at",
    "initiator",
    "source_system",
    "reason",
    "bypass_steps",
    "tags",
    "context",
    "identity_hash",
    "correlation_id",
    "total_steps",
    "done_steps",
    "blocked_steps",
    "active_steps",
    "last_sort_key",
    "created_at",
    "updated_at",
    "completed_at",
    "trace_parent",
];

changes! {
    /// A step the request bypasses is resolved as it is created.
    step BYPASS: Pending => ResolvedManually;
    /// A task whose steps are all bypassed starts as it is created...
    task BYPASSED_START: Pending => InProgress;
    /// ...and completes at once.
    task BYPASSED_COMPLETE: InProgress => Complete, guard "every step is bypassed, so done_steps = total_steps";
}

/// A task validated and laid out as rows, not yet stored: made by [`Store::prepare_task`],
/// written by [`Store::create_prepared`] (many in one transaction) or
/// [`Store::create_prepared_in`].
#[derive(Debug, Clone)]
pub struct PreparedTask {
    task_row: Vec<Value>,
    step_rows: Vec<Vec<Value>>,
    edge_rows: Vec<Vec<Value>>,
    step_transitions: Vec<TransitionRow>,
    task_transitions: Vec<TransitionRow>,
    now: i64,
    created: CreatedTask,
    /// What [`PreparedTask::record`] needs beyond `created`.
    described: Described,
}

/// The task row's fields a [`TaskRecord`] shows, kept as values (the row holds them as bind
/// parameters).
#[derive(Debug, Clone)]
struct Described {
    named_task_id: TemplateId,
    template: Arc<TaskTemplate>,
    tags: Vec<String>,
    bypass_steps: Vec<String>,
    initiator: String,
    source_system: String,
    reason: String,
    requested_at: i64,
    done_steps: u32,
    active_steps: u32,
}

impl PreparedTask {
    /// What creation returns once the task is stored (its ids are fixed already).
    pub fn created(&self) -> &CreatedTask {
        &self.created
    }

    /// The task as [`Store::task`] reads it right after this task is stored: every field is
    /// known before the write, so a caller that answers with the new task need not read it
    /// back. Times are whole microseconds, as stored.
    pub fn record(&self) -> TaskRecord {
        let described = &self.described;
        let template = &described.template;
        let finished = self.created.state.is_finished();
        TaskRecord {
            task_id: self.created.task_id,
            named_task_id: described.named_task_id,
            namespace: template.namespace_name.clone(),
            name: template.name.clone(),
            version: template.version.to_string(),
            state: self.created.state,
            context: self.created.context.clone(),
            tags: described.tags.clone(),
            bypass_steps: described.bypass_steps.clone(),
            initiator: described.initiator.clone(),
            source_system: described.source_system.clone(),
            reason: described.reason.clone(),
            identity_hash: self.created.identity_hash.clone(),
            correlation_id: self.created.correlation_id.clone(),
            total_steps: u32::try_from(self.created.steps.len()).unwrap_or(u32::MAX),
            done_steps: described.done_steps,
            blocked_steps: 0,
            active_steps: described.active_steps,
            requested_at: from_micros(described.requested_at),
            created_at: from_micros(self.now),
            updated_at: from_micros(self.now),
            completed_at: finished.then(|| from_micros(self.now)),
        }
    }
}

impl Store {
    /// Creates a task from a registered template in its own transaction.
    pub async fn create_task(
        &self,
        registered: &RegisteredTemplate,
        request: &TaskRequest,
        options: &CreateTaskOptions<'_>,
    ) -> Result<CreatedTask, StoreError> {
        let prepared = Self::prepare_task(registered, request, options)?;
        let txn = self.write_txn().await?;
        let created = write_prepared(&txn, vec![prepared])
            .await?
            .pop()
            .expect("one result per prepared task")?;
        commit(txn).await?;
        Ok(created)
    }

    /// Creates a task inside a transaction the caller holds ([`Store::begin`]), so an
    /// application can write its own rows ([`Transaction::execute`]) and a task atomically: the
    /// task exists once the transaction commits, and not at all if it rolls back. An invalid
    /// request is refused before anything is written; after any error the caller should roll
    /// back all the same (on PostgreSQL a failed statement spoils the transaction).
    ///
    /// ```no_run
    /// # async fn example(
    /// #     store: &tasker_persistence::Store,
    /// #     registered: &tasker_persistence::RegisteredTemplate,
    /// #     request: &tasker_domain::TaskRequest,
    /// #     options: &tasker_persistence::CreateTaskOptions<'_>,
    /// # ) -> Result<(), tasker_persistence::StoreError> {
    /// let txn = store.begin().await?;
    /// txn.execute(
    ///     "UPDATE orders SET state = $1 WHERE order_id = $2",
    ///     ["submitted".into(), 42_i64.into()],
    /// )
    /// .await?;
    /// let created = tasker_persistence::Store::create_task_in(&txn, registered, request, options).await?;
    /// txn.commit().await?; // the order's new state and the task, or neither
    /// # let _ = created;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_task_in(
        txn: &Transaction,
        registered: &RegisteredTemplate,
        request: &TaskRequest,
        options: &CreateTaskOptions<'_>,
    ) -> Result<CreatedTask, StoreError> {
        let prepared = Self::prepare_task(registered, request, options)?;
        write_prepared(txn.inner(), vec![prepared])
            .await?
            .pop()
            .expect("one result per prepared task")
    }

    /// Creates many tasks, each validated on its own: a request that is invalid or whose
    /// identity already exists gets its own error and stores nothing, the others are written
    /// together (see [`Store::create_prepared`]). Results are in request order.
    pub async fn create_tasks(
        &self,
        requests: &[(&RegisteredTemplate, &TaskRequest, CreateTaskOptions<'_>)],
    ) -> Vec<Result<CreatedTask, StoreError>> {
        let mut results: Vec<Option<Result<CreatedTask, StoreError>>> =
            Vec::with_capacity(requests.len());
        let mut prepared = Vec::with_capacity(requests.len());
        for (registered, request, options) in requests {
            match Self::prepare_task(registered, request, options) {
                Ok(task) => {
                    prepared.push(task);
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        let mut written = self.create_prepared(prepared).await.into_iter();
        results
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| written.next().expect("one result per prepared task"))
            })
            .collect()
    }

    /// Writes prepared tasks in one transaction (one commit for all of them); results are in
    /// order. A task whose identity already exists gets [`StoreError::DuplicateTask`] and the
    /// rest are stored. If the shared transaction fails for any other reason, each task is
    /// written again in a transaction of its own, so one task's failure never costs the
    /// others theirs.
    pub async fn create_prepared(
        &self,
        tasks: Vec<PreparedTask>,
    ) -> Vec<Result<CreatedTask, StoreError>> {
        if tasks.is_empty() {
            return Vec::new();
        }
        if tasks.len() == 1 {
            return vec![self.create_prepared_alone(tasks).await];
        }
        match self.create_prepared_together(tasks.clone()).await {
            Ok(results) => results,
            Err(err) => {
                tracing::warn!(tasks = tasks.len(), error = %err, "creating tasks together failed; creating each alone");
                let mut results = Vec::with_capacity(tasks.len());
                for task in tasks {
                    results.push(self.create_prepared_alone(vec![task]).await);
                }
                results
            }
        }
    }

    async fn create_prepared_together(
        &self,
        tasks: Vec<PreparedTask>,
    ) -> Result<Vec<Result<CreatedTask, StoreError>>, StoreError> {
        // One statement is atomic on its own: no BEGIN and COMMIT round trips around it, and
        // with `synchronous_commit` on it is durable when PostgreSQL answers.
        if let Some(statement) = one_statement(self.db_backend(), &tasks) {
            return finish(
                tasks,
                inserted_ids(self.one_statement_txn(), statement).await?,
            );
        }
        let txn = self.write_txn().await?;
        let results = write_prepared(&txn, tasks).await?;
        commit(txn).await?;
        Ok(results)
    }

    async fn create_prepared_alone(
        &self,
        tasks: Vec<PreparedTask>,
    ) -> Result<CreatedTask, StoreError> {
        self.create_prepared_together(tasks)
            .await?
            .pop()
            .expect("one result per prepared task")
    }

    /// Writes prepared tasks inside a transaction the caller holds ([`Store::begin`]): the
    /// outer error is a database failure (roll back), the inner ones are tasks whose identity
    /// already exists (nothing of theirs was written).
    pub async fn create_prepared_in(
        txn: &Transaction,
        tasks: Vec<PreparedTask>,
    ) -> Result<Vec<Result<CreatedTask, StoreError>>, StoreError> {
        write_prepared(txn.inner(), tasks).await
    }

    /// Validates a request against its template and lays out its rows; touches no database.
    /// Every error a request can cause (unknown template, bad bypass, invalid context) comes
    /// from here, before anything is written.
    pub fn prepare_task(
        registered: &RegisteredTemplate,
        request: &TaskRequest,
        options: &CreateTaskOptions<'_>,
    ) -> Result<PreparedTask, StoreError> {
        let template = &registered.template;
        if request.name != template.name || request.namespace != template.namespace_name {
            return Err(StoreError::TemplateNotFound {
                namespace: request.namespace.clone(),
                name: request.name.clone(),
                version: request.version.clone(),
            });
        }
        // Validate everything before the first write.
        let mut skipped: HashSet<&str> = HashSet::new();
        for name in &request.bypass_steps {
            match template.step(name) {
                None => {
                    return Err(StoreError::InvalidBypass {
                        step: name.clone(),
                        reason: "no such step",
                    });
                }
                Some(step) if !step.skippable => {
                    return Err(StoreError::InvalidBypass {
                        step: name.clone(),
                        reason: "the template does not mark it skippable",
                    });
                }
                Some(_) => {
                    skipped.insert(name);
                }
            }
        }
        let mut context = request.context.clone();
        if let Some(schema) = &template.schema {
            let schema = ContextSchema::compile(schema)
                .map_err(|e| StoreError::malformed("context schema", e))?;
            schema
                .validate(&mut context)
                .map_err(StoreError::InvalidContext)?;
        }
        let named_step = |name: &str| {
            registered.named_step_ids.get(name).copied().ok_or_else(|| {
                StoreError::malformed("catalogue", format!("step `{name}` is not registered"))
            })
        };

        let now = to_micros(options.now);
        let task_id = TaskId::new();
        let requested_at = request.requested_at.unwrap_or(options.now);
        let identity_hash = options
            .identity
            .identity(request, &template.version, requested_at);
        let correlation_id = options
            .correlation_id
            .clone()
            .unwrap_or_else(|| format!("tsk-{}", task_id.as_uuid().simple()));
        let step_ids: Vec<StepId> = template
            .step_templates
            .iter()
            .map(|_| StepId::new())
            .collect();
        let index_of = |name: &str| template.step_templates.iter().position(|s| s.name == name);

        let total = template.step_templates.len();
        let done = skipped.len();
        let mut active = 0usize;
        let mut step_rows = Vec::with_capacity(total);
        let mut edge_rows = Vec::new();
        let mut skip_transitions = Vec::new();
        for (position, step) in template.step_templates.iter().enumerate() {
            let is_skipped = skipped.contains(step.name.as_str());
            let unfinished = step
                .depends_on_steps
                .iter()
                .filter(|d| !skipped.contains(d.as_str()))
                .count();
            if !is_skipped && unfinished == 0 {
                active += 1;
            }
            for dependency in &step.depends_on_steps {
                let parent = index_of(dependency).ok_or_else(|| {
                    StoreError::malformed(
                        "task template",
                        format!("unknown dependency `{dependency}`"),
                    )
                })?;
                edge_rows.push(vec![
                    step_ids[parent].as_uuid().into(),
                    step_ids[position].as_uuid().into(),
                    "provides".into(),
                ]);
            }
            if is_skipped {
                skip_transitions.push(BYPASS.row(
                    step_ids[position].as_uuid(),
                    10,
                    true,
                    serde_json::json!({"reason": "bypassed", "skipped": true}),
                ));
            }
            step_rows.push(vec![
                step_ids[position].as_uuid().into(),
                task_id.as_uuid().into(),
                named_step(&step.name)?.into(),
                step.name.as_str().into(),
                i32::try_from(position).unwrap_or(i32::MAX).into(),
                (if is_skipped {
                    BYPASS.to()
                } else {
                    BYPASS.from()
                })
                .name()
                .into(),
                step.default_retryable.into(),
                i32::try_from(step.default_retry_limit)
                    .unwrap_or(i32::MAX)
                    .into(),
                0i32.into(),
                step.skippable.into(),
                is_skipped.into(),
                (if is_skipped { Some(now) } else { None }).into(),
                false.into(),
                (if is_skipped { None } else { Some(now) }).into(),
                i32::try_from(unfinished).unwrap_or(i32::MAX).into(),
                i32::try_from(step.depends_on_steps.len())
                    .unwrap_or(i32::MAX)
                    .into(),
                json(serde_json::json!({})),
                (if is_skipped { 10i32 } else { 0 }).into(),
                now.into(),
                now.into(),
            ]);
        }
        let finished_at_creation = done == total;
        let state = if finished_at_creation {
            BYPASSED_COMPLETE.to()
        } else {
            BYPASSED_START.from()
        };
        let task_row = vec![
            task_id.as_uuid().into(),
            registered.named_task_id.get().into(),
            state.as_str().into(),
            finished_at_creation.into(),
            to_micros(requested_at).into(),
            request.initiator.as_str().into(),
            request.source_system.as_str().into(),
            request.reason.as_str().into(),
            json(serde_json::json!(request.bypass_steps)),
            json(serde_json::json!(request.tags)),
            json(context.clone()),
            identity_hash.as_str().into(),
            correlation_id.as_str().into(),
            i32::try_from(total).unwrap_or(i32::MAX).into(),
            i32::try_from(done).unwrap_or(i32::MAX).into(),
            0i32.into(),
            i32::try_from(active).unwrap_or(i32::MAX).into(),
            (if finished_at_creation { 20i32 } else { 0 }).into(),
            now.into(),
            now.into(),
            (if finished_at_creation {
                Some(now)
            } else {
                None
            })
            .into(),
            options.trace_parent.clone().into(),
        ];
        let step_transitions = skip_transitions;
        let task_transitions = if finished_at_creation {
            let reason = serde_json::json!({"reason": "all_steps_bypassed"});
            vec![
                BYPASSED_START.row(task_id.as_uuid(), 10, false, reason.clone()),
                BYPASSED_COMPLETE.row(task_id.as_uuid(), 20, true, reason),
            ]
        } else {
            Vec::new()
        };
        let mut skipped_names: Vec<String> = skipped.into_iter().map(str::to_owned).collect();
        skipped_names.sort_by_key(|name| index_of(name));
        let created = CreatedTask {
            task_id,
            state,
            steps: template
                .step_templates
                .iter()
                .map(|s| s.name.clone())
                .zip(step_ids)
                .collect(),
            context,
            skipped: skipped_names,
            identity_hash,
            correlation_id,
        };
        let described = Described {
            named_task_id: registered.named_task_id,
            template: template.clone(),
            tags: request.tags.clone(),
            bypass_steps: request.bypass_steps.clone(),
            initiator: request.initiator.clone(),
            source_system: request.source_system.clone(),
            reason: request.reason.clone(),
            requested_at: to_micros(requested_at),
            done_steps: u32::try_from(done).unwrap_or(u32::MAX),
            active_steps: u32::try_from(active).unwrap_or(u32::MAX),
        };
        Ok(PreparedTask {
            task_row,
            step_rows,
            edge_rows,
            step_transitions,
            task_transitions,
            now,
            created,
            described,
        })
    }
}

/// Writes prepared tasks inside `db`'s transaction (see [`Store::create_prepared_in`]).
async fn write_prepared<C: ConnectionTrait>(
    db: &C,
    tasks: Vec<PreparedTask>,
) -> Result<Vec<Result<CreatedTask, StoreError>>, StoreError> {
    let backend = db.get_database_backend();
    if let Some(statement) = one_statement(backend, &tasks).or_else(|| one_string(backend, &tasks))
    {
        let inserted = inserted_ids(db, statement).await?;
        return finish(tasks, inserted);
    }
    let sqlite = backend == DbBackend::Sqlite;
    let mut inserted: HashSet<Uuid> = HashSet::with_capacity(tasks.len());
    if sqlite {
        let rows: Vec<Vec<Value>> = tasks.iter().map(|t| t.task_row.clone()).collect();
        let suffix = " ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id";
        for statement in anonymous_inserts("tasker_tasks", TASK_COLUMNS, rows, suffix) {
            for row in db.rows(statement).await? {
                inserted.insert(get(&row, "task_id")?);
            }
        }
    } else {
        let per_statement = (max_params(backend) / TASK_COLUMNS.len()).max(1);
        for chunk in tasks.chunks(per_statement) {
            let mut sql = format!(
                "INSERT INTO tasker_tasks ({}) VALUES ",
                TASK_COLUMNS.join(", ")
            );
            let mut values = Vec::with_capacity(chunk.len() * TASK_COLUMNS.len());
            for (i, task) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&params(values.len() + 1, task.task_row.len()));
                sql.push(')');
                values.extend(task.task_row.iter().cloned());
            }
            sql.push_str(" ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id");
            for row in db.rows(stmt(backend, sql, values)).await? {
                inserted.insert(get(&row, "task_id")?);
            }
        }
    }
    let mut step_rows = Vec::new();
    let mut edge_rows = Vec::new();
    let mut step_transitions: BTreeMap<i64, Vec<TransitionRow>> = BTreeMap::new();
    let mut task_transitions: BTreeMap<i64, Vec<TransitionRow>> = BTreeMap::new();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        if !inserted.contains(&task.created.task_id.as_uuid()) {
            results.push(Err(StoreError::DuplicateTask {
                identity_hash: task.created.identity_hash,
            }));
            continue;
        }
        step_rows.extend(task.step_rows);
        edge_rows.extend(task.edge_rows);
        if !task.step_transitions.is_empty() {
            step_transitions
                .entry(task.now)
                .or_default()
                .extend(task.step_transitions);
        }
        if !task.task_transitions.is_empty() {
            task_transitions
                .entry(task.now)
                .or_default()
                .extend(task.task_transitions);
        }
        results.push(Ok(task.created));
    }
    if sqlite {
        let statements =
            anonymous_inserts("tasker_workflow_steps", STEP_COLUMNS, step_rows, "").chain(
                anonymous_inserts("tasker_workflow_step_edges", EDGE_COLUMNS, edge_rows, ""),
            );
        for statement in statements {
            db.exec(statement).await?;
        }
    } else {
        insert_rows(db, "tasker_workflow_steps", STEP_COLUMNS, step_rows).await?;
        insert_rows(db, "tasker_workflow_step_edges", EDGE_COLUMNS, edge_rows).await?;
    }
    for (now, rows) in step_transitions {
        write_transitions(db, Owners::Steps, rows, now, false).await?;
    }
    for (now, rows) in task_transitions {
        write_transitions(db, Owners::Tasks, rows, now, false).await?;
    }
    Ok(results)
}

/// Whether a batch of `tasks` can be written at once ([`one_statement`], [`one_string`]): it
/// has tasks, and none with bypassed steps (their transitions are written by the transaction
/// path).
fn written_at_once(tasks: &[PreparedTask]) -> bool {
    !tasks.is_empty()
        && tasks
            .iter()
            .all(|t| t.step_transitions.is_empty() && t.task_transitions.is_empty())
}

/// On PostgreSQL, the whole write of `tasks` as one statement: the task rows (a task whose
/// identity exists is skipped by `ON CONFLICT DO NOTHING`), and the steps and edges of the tasks
/// that were inserted, each table's rows as one `json_to_recordset` parameter. The foreign keys
/// from steps to tasks and from edges to steps are checked at the end of the statement, when
/// every row is in. It answers the inserted task ids. `None` on SQLite, and for tasks with
/// bypassed steps (their transitions are written by the transaction path).
fn one_statement(backend: DbBackend, tasks: &[PreparedTask]) -> Option<Statement> {
    if backend != DbBackend::Postgres || !written_at_once(tasks) {
        return None;
    }
    let (task_definition, task_payload) =
        recordset(TASK_COLUMNS, tasks.iter().map(|t| &t.task_row))?;
    let (step_definition, step_payload) =
        recordset(STEP_COLUMNS, tasks.iter().flat_map(|t| &t.step_rows))?;
    // Each edge carries its task's id, so the edges of a skipped task are left out.
    let edge_rows: Vec<Vec<Value>> = tasks
        .iter()
        .flat_map(|t| {
            let task_id: Value = t.created.task_id.as_uuid().into();
            t.edge_rows.iter().map(move |edge| {
                let mut row = edge.clone();
                row.push(task_id.clone());
                row
            })
        })
        .collect();
    let tasks_cte = format!(
        "WITH t AS (INSERT INTO tasker_tasks ({columns}) SELECT {columns} \
         FROM json_to_recordset($1::json) AS x({task_definition}) \
         ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id), \
         s AS (INSERT INTO tasker_workflow_steps ({steps}) SELECT {steps} \
         FROM json_to_recordset($2::json) AS x({step_definition}) \
         WHERE x.task_id IN (SELECT task_id FROM t))",
        columns = TASK_COLUMNS.join(", "),
        steps = STEP_COLUMNS.join(", "),
    );
    let mut values: Vec<Value> = vec![task_payload.into(), step_payload.into()];
    let sql = match recordset(EDGE_RECORD_COLUMNS, &edge_rows) {
        Some((edge_definition, edge_payload)) => {
            values.push(edge_payload.into());
            format!(
                "{tasks_cte}, e AS (INSERT INTO tasker_workflow_step_edges ({edges}) \
                 SELECT {edges} FROM json_to_recordset($3::json) AS x({edge_definition}) \
                 WHERE x.task_id IN (SELECT task_id FROM t)) SELECT task_id FROM t",
                edges = EDGE_COLUMNS.join(", "),
            )
        }
        None if edge_rows.is_empty() => format!("{tasks_cte} SELECT task_id FROM t"),
        None => return None,
    };
    Some(stmt(backend, sql, values))
}

/// On SQLite, inside the caller's transaction, the same write as [`one_statement`] in one call
/// to the driver: three statements of one string (sqlx-sqlite runs them in turn, binding the
/// anonymous `?` of each in order). The tasks are inserted as by the transaction path; the
/// steps and edges are inserted from `VALUES` lists only where their task (their step) is now
/// in the table, and a task's id is new, so the rows of a task skipped as a duplicate are left
/// out. It answers the inserted task ids. `None` on PostgreSQL, for tasks with bypassed steps,
/// and for a batch whose table would need more than one statement.
fn one_string(backend: DbBackend, tasks: &[PreparedTask]) -> Option<Statement> {
    if backend != DbBackend::Sqlite || !written_at_once(tasks) {
        return None;
    }
    let fits = |columns: &[&str], rows: usize| rows * columns.len() <= SQLITE_PARAMS;
    let steps: usize = tasks.iter().map(|t| t.step_rows.len()).sum();
    let edges: usize = tasks.iter().map(|t| t.edge_rows.len()).sum();
    if !fits(TASK_COLUMNS, tasks.len()) || !fits(STEP_COLUMNS, steps) || !fits(EDGE_COLUMNS, edges)
    {
        return None;
    }
    let mut values = Vec::new();
    let mut statements = vec![format!(
        "INSERT INTO tasker_tasks ({}) VALUES {} ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id",
        TASK_COLUMNS.join(", "),
        placeholders(
            TASK_COLUMNS,
            tasks.iter().map(|t| t.task_row.clone()),
            &mut values
        ),
    )];
    // Rows inserted only where `exists` finds their owner: `column2` of a step row is its
    // task's id, `column1` of an edge row its parent step's.
    let mut where_owned = |table: &str, columns: &[&str], rows: Vec<Vec<Value>>, exists: &str| {
        if !rows.is_empty() {
            statements.push(format!(
                "INSERT INTO {table} ({}) SELECT * FROM (VALUES {}) AS v WHERE EXISTS ({exists})",
                columns.join(", "),
                placeholders(columns, rows, &mut values),
            ));
        }
    };
    where_owned(
        "tasker_workflow_steps",
        STEP_COLUMNS,
        tasks
            .iter()
            .flat_map(|t| t.step_rows.iter().cloned())
            .collect(),
        "SELECT 1 FROM tasker_tasks t WHERE t.task_id = v.column2",
    );
    where_owned(
        "tasker_workflow_step_edges",
        EDGE_COLUMNS,
        tasks
            .iter()
            .flat_map(|t| t.edge_rows.iter().cloned())
            .collect(),
        "SELECT 1 FROM tasker_workflow_steps s WHERE s.workflow_step_id = v.column1",
    );
    Some(stmt(backend, statements.join(STATEMENT_SEPARATOR), values))
}

/// `(?, ?), (?, ?)`: one group of anonymous placeholders per row of `columns`, the rows' values
/// appended to `values` in order.
fn placeholders(
    columns: &[&str],
    rows: impl IntoIterator<Item = Vec<Value>>,
    values: &mut Vec<Value>,
) -> String {
    let group = format!("({})", vec!["?"; columns.len()].join(", "));
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

/// Runs a statement that answers `task_id` rows: the ids of the tasks it inserted.
async fn inserted_ids<C: ConnectionTrait>(
    db: &C,
    statement: Statement,
) -> Result<HashSet<Uuid>, StoreError> {
    let rows = db.rows(statement).await?;
    let mut inserted = HashSet::with_capacity(rows.len());
    for row in rows {
        inserted.insert(get(&row, "task_id")?);
    }
    Ok(inserted)
}

/// Each task's result once its rows are written: a task not in `inserted` was skipped because
/// its identity exists.
fn finish(
    tasks: Vec<PreparedTask>,
    inserted: HashSet<Uuid>,
) -> Result<Vec<Result<CreatedTask, StoreError>>, StoreError> {
    Ok(tasks
        .into_iter()
        .map(|task| {
            if inserted.contains(&task.created.task_id.as_uuid()) {
                Ok(task.created)
            } else {
                Err(StoreError::DuplicateTask {
                    identity_hash: task.created.identity_hash,
                })
            }
        })
        .collect())
}

/// The most parameters one SQLite creation statement takes (SQLite allows 32,766).
const SQLITE_PARAMS: usize = 4_000;

/// SQLite multi-row INSERTs of `rows` into `table`, each ending in `suffix`, with anonymous `?`
/// placeholders bound in order. SQLite finds a numbered parameter (`$N`) by a linear search
/// when it prepares a statement and again when sqlx binds it, so a statement's cost grows with
/// the square of its numbered parameters; anonymous ones cost the same each, so one statement
/// can take a whole batch's rows.
fn anonymous_inserts<'a>(
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
        let list = placeholders(columns, rows.by_ref().take(per_statement), &mut values);
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {list}{suffix}",
            columns.join(", ")
        );
        Some(stmt(DbBackend::Sqlite, sql, values))
    })
}
