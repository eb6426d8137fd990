//! Task creation: the task, all its steps and edges in one transaction, with every input
//! validated before anything is written.
//!
//! Creation is two phases: [`Store::prepare_task`] validates a request and lays out its rows
//! without touching the database, and the write stores any number of prepared tasks at once
//! (group commit). On PostgreSQL that is one statement (see `one_statement`), which needs no
//! transaction around it, its rows sent as binary arrays (`arrays.rs`); on SQLite one call of
//! one statement per table (`one_string`) in a transaction, or multi-row INSERTs for a batch
//! too large for one call. The history rows of bypassed steps and of claims made at creation
//! (`eager.rs`) are written by the same write. A task whose identity already exists is skipped
//! by `ON CONFLICT DO NOTHING` and reported as [`StoreError::DuplicateTask`] while the others
//! are stored.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use tasker_domain::{StepId, TaskId, TaskRequest, TemplateId};
use tasker_template::{ContextSchema, TaskTemplate};
use uuid::Uuid;

use super::arrays::{Arrays, RowParams};
use super::changes::{State, TransitionRow, changes};
use super::eager::{CreationClaim, StepLayout, lease_claims};
use super::history::{Owners, write_transitions};
use super::script::Waiting;
use super::sql::{
    Db, SQLITE_PARAMS, STATEMENT_SEPARATOR, anonymous_inserts, commit, get, insert_rows, json,
    max_params, params, placeholders, stmt,
};
use super::{
    ClaimBatch, CreateTaskOptions, CreatedTask, RegisteredTemplate, Store, TaskRecord, Transaction,
};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

pub(super) const STEP_COLUMNS: &[&str] = &[
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
    "claim_owner",
    "lease_expires_at",
    "last_attempted_at",
];

const EDGE_COLUMNS: &[&str] = &["from_step_id", "to_step_id", "name"];

/// An edge as [`one_statement`] sends it: its columns and its task's id.
const EDGE_RECORD_COLUMNS: &[&str] = &["from_step_id", "to_step_id", "name", "task_id"];

pub(super) const TASK_COLUMNS: &[&str] = &[
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
    pub(super) task_row: Vec<Value>,
    pub(super) step_rows: Vec<Vec<Value>>,
    edge_rows: Vec<Vec<Value>>,
    pub(super) step_transitions: Vec<TransitionRow>,
    pub(super) task_transitions: Vec<TransitionRow>,
    pub(super) now: i64,
    pub(super) created: CreatedTask,
    /// What [`PreparedTask::record`] and a claim at creation need beyond `created`.
    pub(super) described: Described,
    /// The root steps claimed as the task is written ([`Store::claim_at_creation`]).
    pub(super) claim: Option<CreationClaim>,
}

/// The task row's fields a [`TaskRecord`] shows, kept as values (the row holds them as bind
/// parameters).
#[derive(Debug, Clone)]
pub(super) struct Described {
    pub(super) named_task_id: TemplateId,
    pub(super) template: Arc<TaskTemplate>,
    pub(super) trace_parent: Option<String>,
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
        let mut arrays = Arrays::default();
        if let Some(sql) = one_statement(self.db_backend(), &tasks, &mut arrays) {
            let rows = self.write_arrays(sql, arrays).await?;
            return Ok(answered(tasks, rows));
        }
        // On SQLite the transaction of `one_string` is one call to the driver.
        if let Some(statement) = one_string(self.db_backend(), &tasks) {
            let values = statement.values.map(|v| v.0).unwrap_or_default();
            let rows = self
                .script(&[statement.sql], values, Waiting::Parked)
                .await?;
            return Ok(answered(tasks, rows));
        }
        let txn = self.write_txn().await?;
        let results = write_prepared(&txn, tasks).await?;
        commit(txn).await?;
        Ok(results)
    }

    /// Runs a one-statement write whose rows are arrays (PostgreSQL), on the pool through
    /// sqlx, and answers its rows. The connection is taken apart, as sea-orm does, so that an
    /// unreachable database reads as unavailable; the statement is counted once sent.
    async fn write_arrays(
        &self,
        sql: String,
        arrays: Arrays,
    ) -> Result<Vec<QueryResult>, StoreError> {
        let pool = self.one_statement_txn().get_postgres_connection_pool();
        let mut connection = pool.acquire().await.map_err(StoreError::acquire)?;
        self.sent_directly();
        let rows = arrays
            .fetch_all(sql, &mut connection)
            .await
            .map_err(StoreError::db)?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
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
                Option::<String>::None.into(),
                Option::<i64>::None.into(),
                Option::<i64>::None.into(),
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
            claimed: ClaimBatch::default(),
        };
        let described = Described {
            named_task_id: registered.named_task_id,
            template: template.clone(),
            trace_parent: options.trace_parent.clone(),
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
            claim: None,
        })
    }
}

/// Writes prepared tasks inside `db`'s transaction (see [`Store::create_prepared_in`]).
async fn write_prepared<C: ConnectionTrait>(
    db: &C,
    tasks: Vec<PreparedTask>,
) -> Result<Vec<Result<CreatedTask, StoreError>>, StoreError> {
    let backend = db.get_database_backend();
    if let Some(statement) =
        one_json_statement(backend, &tasks).or_else(|| one_string(backend, &tasks))
    {
        let inserted = Inserted::read(db, statement).await?;
        return Ok(finish(tasks, inserted));
    }
    let sqlite = backend == DbBackend::Sqlite;
    let mut inserted = Inserted::default();
    if sqlite {
        let rows: Vec<Vec<Value>> = tasks.iter().map(|t| t.task_row.clone()).collect();
        let suffix = " ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id";
        for statement in anonymous_inserts("tasker_tasks", TASK_COLUMNS, rows, suffix) {
            for row in db.rows(statement).await? {
                inserted.tasks.insert(get(&row, "task_id")?);
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
                inserted.tasks.insert(get(&row, "task_id")?);
            }
        }
    }
    let mut step_rows = Vec::new();
    let mut edge_rows = Vec::new();
    let mut step_transitions: BTreeMap<i64, Vec<TransitionRow>> = BTreeMap::new();
    let mut task_transitions: BTreeMap<i64, Vec<TransitionRow>> = BTreeMap::new();
    for task in tasks.iter().filter(|t| inserted.has(t)) {
        step_rows.extend(task.step_rows.iter().cloned());
        edge_rows.extend(task.edge_rows.iter().cloned());
        if !task.step_transitions.is_empty() {
            step_transitions
                .entry(task.now)
                .or_default()
                .extend(task.step_transitions.iter().cloned());
        }
        if !task.task_transitions.is_empty() {
            task_transitions
                .entry(task.now)
                .or_default()
                .extend(task.task_transitions.iter().cloned());
        }
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
    // Steps claimed at creation were inserted without their leases: set on the store's clock.
    inserted.leases = lease_claims(db, &tasks, &inserted.tasks).await?;
    Ok(finish(tasks, inserted))
}

/// The history rows `tasks` write as they are created (bypassed steps, claims at creation),
/// for the one-statement writes: step rows and task rows.
fn transition_records(tasks: &[PreparedTask]) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    let rows = |of: fn(&PreparedTask) -> &Vec<TransitionRow>| -> Vec<Vec<Value>> {
        tasks
            .iter()
            .flat_map(|t| of(t).iter().map(|r| r.clone().into_values(t.now)))
            .collect()
    };
    (rows(|t| &t.step_transitions), rows(|t| &t.task_transitions))
}

/// On PostgreSQL, the whole write of `tasks` as one statement: the task rows (a task whose
/// identity exists is skipped by `ON CONFLICT DO NOTHING`), and the steps, edges and history
/// rows of the tasks that were inserted, each table's rows read from `params`. It answers the
/// inserted task ids, and the leases of the steps claimed at creation. `None` on SQLite.
fn one_statement(
    backend: DbBackend,
    tasks: &[PreparedTask],
    params: &mut impl RowParams,
) -> Option<String> {
    if backend != DbBackend::Postgres || tasks.is_empty() {
        return None;
    }
    let task_rows = params.rows(TASK_COLUMNS, tasks.iter().map(|t| &t.task_row))?;
    let layout = StepLayout::of(tasks);
    let step_rows = params.rows(
        &layout.record_columns(),
        tasks.iter().flat_map(|t| t.step_records(layout)),
    )?;
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
    let (step_history, task_history) = transition_records(tasks);
    let mut sql = format!(
        "WITH t AS (INSERT INTO tasker_tasks ({columns}) SELECT {columns} \
         FROM {task_rows} \
         ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id), \
         s AS (INSERT INTO tasker_workflow_steps ({steps}) SELECT {select} \
         FROM {step_rows} \
         WHERE x.task_id IN (SELECT task_id FROM t){returning})",
        columns = TASK_COLUMNS.join(", "),
        steps = layout.columns().join(", "),
        select = layout.select(backend, |column| format!("x.{column}")),
        // The step history finds the inserted steps here, and the answer the claimed ones.
        returning = if step_history.is_empty() {
            ""
        } else {
            " RETURNING workflow_step_id, lease_expires_at"
        },
    );
    // A CTE inserting `rows` (laid out as `record`) into `table`'s `columns`, only those
    // `owned` keeps; none for no rows.
    let mut insert = |name: &str,
                      table: &str,
                      columns: &[&str],
                      record: &[&str],
                      rows: &[Vec<Value>],
                      owned: &str| {
        if rows.is_empty() {
            return Some(());
        }
        let from = params.rows(record, rows)?;
        sql.push_str(&format!(
            ", {name} AS (INSERT INTO {table} ({list}) SELECT {list} FROM {from} WHERE {owned})",
            list = columns.join(", "),
        ));
        Some(())
    };
    let in_t = "x.task_id IN (SELECT task_id FROM t)";
    insert(
        "e",
        "tasker_workflow_step_edges",
        EDGE_COLUMNS,
        EDGE_RECORD_COLUMNS,
        &edge_rows,
        in_t,
    )?;
    let (step_table, step_columns) = Owners::Steps.table();
    insert(
        "sh",
        step_table,
        step_columns,
        step_columns,
        &step_history,
        "x.workflow_step_id IN (SELECT workflow_step_id FROM s)",
    )?;
    let (task_table, task_columns) = Owners::Tasks.table();
    insert(
        "th",
        task_table,
        task_columns,
        task_columns,
        &task_history,
        in_t,
    )?;
    sql.push_str(" SELECT 'task' AS kind, task_id AS id, NULL::bigint AS lease FROM t");
    if layout.claims() {
        sql.push_str(
            " UNION ALL SELECT 'step', workflow_step_id, lease_expires_at FROM s \
             WHERE lease_expires_at IS NOT NULL",
        );
    }
    Some(sql)
}

/// [`one_statement`] with its rows as JSON, to run through sea-orm.
fn one_json_statement(backend: DbBackend, tasks: &[PreparedTask]) -> Option<Statement> {
    let mut values = Vec::new();
    let sql = one_statement(backend, tasks, &mut values)?;
    Some(stmt(backend, sql, values))
}

/// On SQLite, inside the caller's transaction, the same write as [`one_statement`] in one call
/// to the driver: a statement per table of one string (sqlx-sqlite runs them in turn, binding
/// the anonymous `?` of each in order). The tasks are inserted as by the transaction path; the
/// steps, edges and history rows are inserted from `VALUES` lists only where their task (their
/// step) is now in the table, and a task's id is new, so the rows of a task skipped as a
/// duplicate are left out. It answers the inserted task ids, and the leases of the steps
/// claimed at creation. `None` on PostgreSQL, and for a batch whose table would need more than
/// one statement.
fn one_string(backend: DbBackend, tasks: &[PreparedTask]) -> Option<Statement> {
    if backend != DbBackend::Sqlite || tasks.is_empty() {
        return None;
    }
    let layout = StepLayout::of(tasks);
    let step_columns = layout.record_columns();
    let (step_history, task_history) = transition_records(tasks);
    let fits = |columns: usize, rows: usize| rows * columns <= SQLITE_PARAMS;
    let steps: usize = tasks.iter().map(|t| t.step_rows.len()).sum();
    let edges: usize = tasks.iter().map(|t| t.edge_rows.len()).sum();
    let history_columns = Owners::Steps.table().1.len();
    if !fits(TASK_COLUMNS.len(), tasks.len())
        || !fits(step_columns.len(), steps)
        || !fits(EDGE_COLUMNS.len(), edges)
        || !fits(history_columns, step_history.len())
        || !fits(history_columns, task_history.len())
    {
        return None;
    }
    let mut values = Vec::new();
    let mut statements = vec![format!(
        "INSERT INTO tasker_tasks ({}) VALUES {} ON CONFLICT (identity_hash) DO NOTHING \
         RETURNING 'task' AS kind, task_id AS id, NULL AS lease",
        TASK_COLUMNS.join(", "),
        placeholders(
            TASK_COLUMNS.len(),
            tasks.iter().map(|t| t.task_row.clone()),
            &mut values
        ),
    )];
    // `VALUES` names its columns column1, column2, ...
    let position =
        |columns: &[&str], name: &str| columns.iter().position(|c| *c == name).map(|i| i + 1);
    let select = layout.select(backend, |name| {
        let n = position(&step_columns, name).expect("a column of the step records");
        format!("v.column{n}")
    });
    statements.push(format!(
        "INSERT INTO tasker_workflow_steps ({}) SELECT {select} FROM (VALUES {}) AS v \
         WHERE EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = v.column2){}",
        layout.columns().join(", "),
        placeholders(
            step_columns.len(),
            tasks
                .iter()
                .flat_map(|t| t.step_records(layout).map(Cow::into_owned)),
            &mut values
        ),
        // Every step comes back; only the claimed steps' leases are wanted.
        if layout.claims() {
            " RETURNING 'step' AS kind, workflow_step_id AS id, lease_expires_at AS lease"
        } else {
            ""
        },
    ));
    // Rows inserted only where `exists` finds their owner: `column1` of an edge row is its
    // parent step's id, of a history row its step's or task's.
    let mut where_owned = |table: &str, columns: &[&str], rows: Vec<Vec<Value>>, exists: &str| {
        if !rows.is_empty() {
            statements.push(format!(
                "INSERT INTO {table} ({}) SELECT * FROM (VALUES {}) AS v WHERE EXISTS ({exists})",
                columns.join(", "),
                placeholders(columns.len(), rows, &mut values),
            ));
        }
    };
    let step_exists = "SELECT 1 FROM tasker_workflow_steps s WHERE s.workflow_step_id = v.column1";
    where_owned(
        "tasker_workflow_step_edges",
        EDGE_COLUMNS,
        tasks
            .iter()
            .flat_map(|t| t.edge_rows.iter().cloned())
            .collect(),
        step_exists,
    );
    let (step_table, step_history_columns) = Owners::Steps.table();
    where_owned(step_table, step_history_columns, step_history, step_exists);
    let (task_table, task_history_columns) = Owners::Tasks.table();
    where_owned(
        task_table,
        task_history_columns,
        task_history,
        "SELECT 1 FROM tasker_tasks t WHERE t.task_id = v.column1",
    );
    Some(stmt(backend, statements.join(STATEMENT_SEPARATOR), values))
}

/// What a write inserted: the tasks (the others were duplicates) and the leases of the steps
/// claimed at creation.
#[derive(Default)]
struct Inserted {
    tasks: HashSet<Uuid>,
    leases: HashMap<Uuid, i64>,
}

impl Inserted {
    /// Runs a one-statement write, which answers `kind, id, lease` rows: an inserted task
    /// (`task`), or an inserted step (`step`) with its lease if it was claimed.
    async fn read<C: ConnectionTrait>(db: &C, statement: Statement) -> Result<Self, StoreError> {
        Self::of(db.rows(statement).await?)
    }

    /// What the rows of a one-statement write (or one string's) say was inserted.
    fn of(rows: Vec<QueryResult>) -> Result<Self, StoreError> {
        let mut inserted = Self::default();
        for row in rows {
            let id: Uuid = get(&row, "id")?;
            if get::<String>(&row, "kind")? == "task" {
                inserted.tasks.insert(id);
            } else if let Some(lease) = get::<Option<i64>>(&row, "lease")? {
                inserted.leases.insert(id, lease);
            }
        }
        Ok(inserted)
    }

    fn has(&self, task: &PreparedTask) -> bool {
        self.tasks.contains(&task.created.task_id.as_uuid())
    }
}

/// Each task's result from the rows a committed one-statement write (or one string's)
/// answered. The write has committed: an answer that cannot be read fails each task here
/// rather than sending them to be written again one by one.
fn answered(
    tasks: Vec<PreparedTask>,
    rows: Vec<QueryResult>,
) -> Vec<Result<CreatedTask, StoreError>> {
    match Inserted::of(rows) {
        Ok(inserted) => finish(tasks, inserted),
        Err(err) => {
            let message = err.to_string();
            tasks
                .iter()
                .map(|_| Err(StoreError::malformed("creation's answer", &message)))
                .collect()
        }
    }
}

/// Each task's result once its rows are written: a task not inserted was skipped because its
/// identity exists; an inserted one that claimed at creation answers its claims. (The write
/// may have committed already, so nothing here fails: claims whose lease did not come back
/// are logged and left to lapse, the task stored.)
fn finish(tasks: Vec<PreparedTask>, inserted: Inserted) -> Vec<Result<CreatedTask, StoreError>> {
    tasks
        .into_iter()
        .map(|task| {
            if !inserted.has(&task) {
                return Err(StoreError::DuplicateTask {
                    identity_hash: task.created.identity_hash,
                });
            }
            let claimed = task.claimed(&inserted.leases).unwrap_or_else(|err| {
                tracing::error!(task_id = %task.created.task_id, error = %err, "a claim made at creation is not handed over; it lapses at its lease");
                ClaimBatch::default()
            });
            Ok(CreatedTask {
                claimed,
                ..task.created
            })
        })
        .collect()
}
