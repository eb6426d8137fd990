//! Read-side queries: readiness, the task execution context, records, histories, listing,
//! health counts, analytics and annotations. Computed from the same rows on both databases.

use chrono::{DateTime, Utc};
use sea_orm::{QueryResult, Value};
use tasker_domain::{StepId, StepState, TaskId, TaskState};

use super::sql::{Db, commit, get, stmt, template_id};
use super::{
    Backlog, BlockingReason, ExecutionStatus, HealthCounts, HealthStatus, Page, RecommendedAction,
    StepReadiness, StepRecord, Store, TaskExecutionContext, TaskFilter, TaskRecord,
    TransitionRecord,
};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

const STEP_SELECT: &str = "SELECT workflow_step_id, task_id, named_step_id, name, position, state, attempts, retry_limit, \
     retryable, skippable, results, last_error, claim_owner, lease_expires_at, next_attempt_at, unfinished_parents, \
     total_parents, last_attempted_at, last_failure_at, processed_at, backoff_request_seconds, created_at, updated_at \
     FROM tasker_workflow_steps";

const TASK_SELECT: &str = "SELECT t.task_id, t.named_task_id, n.name AS namespace, nt.name, nt.version, t.state, t.context, \
     t.tags, t.bypass_steps, t.initiator, t.source_system, t.reason, t.identity_hash, t.correlation_id, t.total_steps, \
     t.done_steps, t.blocked_steps, t.active_steps, t.requested_at, t.created_at, t.updated_at, t.completed_at \
     FROM tasker_tasks t JOIN tasker_named_tasks nt ON nt.named_task_id = t.named_task_id \
     JOIN tasker_task_namespaces n ON n.task_namespace_id = nt.task_namespace_id";

fn u32_of(row: &QueryResult, col: &str) -> Result<u32, StoreError> {
    Ok(u32::try_from(get::<i32>(row, col)?).unwrap_or(0))
}

fn time_of(row: &QueryResult, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(get::<Option<i64>>(row, col)?.map(from_micros))
}

fn step_state(row: &QueryResult) -> Result<StepState, StoreError> {
    get::<String>(row, "state")?
        .parse()
        .map_err(|e| StoreError::malformed("step state", e))
}

fn task_state(row: &QueryResult) -> Result<TaskState, StoreError> {
    get::<String>(row, "state")?
        .parse()
        .map_err(|e| StoreError::malformed("task state", e))
}

fn string_list(value: serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn step_record(row: &QueryResult) -> Result<StepRecord, StoreError> {
    Ok(StepRecord {
        step_id: StepId(get(row, "workflow_step_id")?),
        task_id: TaskId(get(row, "task_id")?),
        name: get(row, "name")?,
        position: u32_of(row, "position")?,
        state: step_state(row)?,
        attempts: u32_of(row, "attempts")?,
        retry_limit: u32_of(row, "retry_limit")?,
        retryable: get(row, "retryable")?,
        skippable: get(row, "skippable")?,
        results: get(row, "results")?,
        last_error: get(row, "last_error")?,
        claim_owner: get(row, "claim_owner")?,
        lease_expires_at: time_of(row, "lease_expires_at")?,
        next_attempt_at: time_of(row, "next_attempt_at")?,
        unfinished_parents: u32_of(row, "unfinished_parents")?,
        total_parents: u32_of(row, "total_parents")?,
        last_attempted_at: time_of(row, "last_attempted_at")?,
        processed_at: time_of(row, "processed_at")?,
        created_at: from_micros(get(row, "created_at")?),
        updated_at: from_micros(get(row, "updated_at")?),
    })
}

fn task_record(row: &QueryResult) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        task_id: TaskId(get(row, "task_id")?),
        named_task_id: template_id(row, "named_task_id")?,
        namespace: get(row, "namespace")?,
        name: get(row, "name")?,
        version: get(row, "version")?,
        state: task_state(row)?,
        context: get(row, "context")?,
        tags: string_list(get(row, "tags")?),
        bypass_steps: string_list(get(row, "bypass_steps")?),
        initiator: get(row, "initiator")?,
        source_system: get(row, "source_system")?,
        reason: get(row, "reason")?,
        identity_hash: get(row, "identity_hash")?,
        correlation_id: get(row, "correlation_id")?,
        total_steps: u32_of(row, "total_steps")?,
        done_steps: u32_of(row, "done_steps")?,
        blocked_steps: u32_of(row, "blocked_steps")?,
        active_steps: u32_of(row, "active_steps")?,
        requested_at: from_micros(get(row, "requested_at")?),
        created_at: from_micros(get(row, "created_at")?),
        updated_at: from_micros(get(row, "updated_at")?),
        completed_at: time_of(row, "completed_at")?,
    })
}

fn transition_record(row: &QueryResult) -> Result<TransitionRecord, StoreError> {
    Ok(TransitionRecord {
        from_state: get(row, "from_state")?,
        to_state: get(row, "to_state")?,
        sort_key: get(row, "sort_key")?,
        most_recent: get(row, "most_recent")?,
        metadata: get(row, "metadata")?,
        created_at: from_micros(get(row, "created_at")?),
    })
}

impl Store {
    /// One task.
    pub async fn task(&self, task_id: TaskId) -> Result<TaskRecord, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                format!("{TASK_SELECT} WHERE t.task_id = $1"),
                vec![task_id.as_uuid().into()],
            ))
            .await?
            .ok_or(StoreError::TaskNotFound(task_id))?;
        task_record(&row)
    }

    /// The task with this identity hash, if one exists (idempotent creation answers with it).
    pub async fn task_by_identity(
        &self,
        identity_hash: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                format!("{TASK_SELECT} WHERE t.identity_hash = $1"),
                vec![identity_hash.into()],
            ))
            .await?;
        row.as_ref().map(task_record).transpose()
    }

    /// Changes a task's reason and tags (descriptive fields, allowed in every state). `None`
    /// leaves a field as it is.
    pub async fn update_task(
        &self,
        task_id: TaskId,
        reason: Option<&str>,
        tags: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<TaskRecord, StoreError> {
        let mut sets = vec!["updated_at = $1".to_owned()];
        let mut values: Vec<Value> = vec![to_micros(now).into()];
        if let Some(reason) = reason {
            values.push(reason.into());
            sets.push(format!("reason = ${}", values.len()));
        }
        if let Some(tags) = tags {
            values.push(Value::Json(Some(Box::new(serde_json::json!(tags)))));
            sets.push(format!("tags = ${}", values.len()));
        }
        values.push(task_id.as_uuid().into());
        let result = self
            .db
            .exec(stmt(
                self.db_backend(),
                format!(
                    "UPDATE tasker_tasks SET {} WHERE task_id = ${}",
                    sets.join(", "),
                    values.len()
                ),
                values,
            ))
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::TaskNotFound(task_id));
        }
        self.task(task_id).await
    }

    /// Changes a step's attempt limit while it is `pending` (before any attempt could have
    /// been judged against the old limit); [`StoreError::Conflict`] in any other state.
    pub async fn update_step_retry_limit(
        &self,
        step_id: StepId,
        retry_limit: u32,
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StoreError> {
        let limit = i32::try_from(retry_limit).unwrap_or(i32::MAX);
        let result = self
            .db
            .exec(stmt(
                self.db_backend(),
                "UPDATE tasker_workflow_steps SET retry_limit = $1, updated_at = $2 \
                 WHERE workflow_step_id = $3 AND state = 'pending'",
                vec![
                    limit.into(),
                    to_micros(now).into(),
                    step_id.as_uuid().into(),
                ],
            ))
            .await?;
        let step = self.step(step_id).await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                entity: "step",
                id: step_id.to_string(),
                expected: StepState::Pending.as_str().to_owned(),
                actual: step.state.as_str().to_owned(),
            });
        }
        Ok(step)
    }

    /// The steps of a task, in template order.
    pub async fn steps(&self, task_id: TaskId) -> Result<Vec<StepRecord>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                format!("{STEP_SELECT} WHERE task_id = $1 ORDER BY position"),
                vec![task_id.as_uuid().into()],
            ))
            .await?;
        if rows.is_empty() {
            self.task(task_id).await?;
        }
        rows.iter().map(step_record).collect()
    }

    /// The steps of several tasks in one query, each task's in template order; a task that
    /// does not exist has none. At most 1,000 tasks per call (the callers page).
    pub async fn steps_of_tasks(&self, task_ids: &[TaskId]) -> Result<Vec<StepRecord>, StoreError> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        for chunk in task_ids.chunks(1_000) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let values: Vec<Value> = chunk.iter().map(|id| id.as_uuid().into()).collect();
            rows.extend(
                self.db
                    .rows(stmt(
                        self.db_backend(),
                        format!(
                            "{STEP_SELECT} WHERE task_id IN ({}) ORDER BY task_id, position",
                            placeholders.join(", ")
                        ),
                        values,
                    ))
                    .await?,
            );
        }
        rows.iter().map(step_record).collect()
    }

    /// The names of every annotation type, sorted.
    pub async fn annotation_types(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT name FROM tasker_annotation_types ORDER BY name",
                vec![],
            ))
            .await?;
        rows.iter().map(|row| get(row, "name")).collect()
    }

    /// One step.
    pub async fn step(&self, step_id: StepId) -> Result<StepRecord, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                format!("{STEP_SELECT} WHERE workflow_step_id = $1"),
                vec![step_id.as_uuid().into()],
            ))
            .await?
            .ok_or(StoreError::StepNotFound(step_id))?;
        step_record(&row)
    }

    /// The Rails readiness report for every step of a task, at `now`.
    pub async fn step_readiness(
        &self,
        task_id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Vec<StepReadiness>, StoreError> {
        let task = self.task(task_id).await?;
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                format!("{STEP_SELECT} WHERE task_id = $1 ORDER BY position"),
                vec![task_id.as_uuid().into()],
            ))
            .await?;
        let running = matches!(task.state, TaskState::Pending | TaskState::InProgress);
        rows.iter()
            .map(|row| {
                let step = step_record(row)?;
                let next_attempt: Option<i64> = get(row, "next_attempt_at")?;
                let due = next_attempt.is_some_and(|at| at <= to_micros(now));
                let dependencies_satisfied = step.unfinished_parents == 0;
                let in_runnable_state = matches!(step.state, StepState::Pending | StepState::Error);
                let retry_eligible = step.attempts < step.retry_limit
                    && (step.state == StepState::Pending
                        || next_attempt.is_some()
                        || step.state == StepState::InProgress);
                let ready = running && in_runnable_state && dependencies_satisfied && due;
                let blocking_reason = if ready {
                    None
                } else if step.state == StepState::Error && next_attempt.is_none() {
                    Some(BlockingReason::RetriesExhausted)
                } else if step.state == StepState::InProgress {
                    Some(BlockingReason::ClaimedElsewhere)
                } else if !running || !in_runnable_state || next_attempt.is_none() {
                    Some(BlockingReason::InvalidState)
                } else if !dependencies_satisfied {
                    Some(BlockingReason::DependenciesNotSatisfied)
                } else {
                    Some(BlockingReason::WaitingForBackoff)
                };
                Ok(StepReadiness {
                    workflow_step_id: step.step_id,
                    task_id,
                    named_step_id: get(row, "named_step_id")?,
                    name: step.name,
                    current_state: step.state,
                    dependencies_satisfied,
                    retry_eligible,
                    ready_for_execution: ready,
                    last_failure_at: time_of(row, "last_failure_at")?,
                    next_retry_at: if step.state == StepState::Error {
                        step.next_attempt_at
                    } else {
                        None
                    },
                    total_parents: step.total_parents,
                    completed_parents: step.total_parents - step.unfinished_parents,
                    attempts: step.attempts,
                    retry_limit: step.retry_limit,
                    backoff_request_seconds: get(row, "backoff_request_seconds")?,
                    last_attempted_at: step.last_attempted_at,
                    blocking_reason,
                })
            })
            .collect()
    }

    /// The task execution context at `now`.
    pub async fn task_execution_context(
        &self,
        task_id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<TaskExecutionContext, StoreError> {
        let task = self.task(task_id).await?;
        let readiness = self.step_readiness(task_id, now).await?;
        let count = |keep: &dyn Fn(&StepReadiness) -> bool| {
            u32::try_from(readiness.iter().filter(|r| keep(r)).count()).unwrap_or(0)
        };
        let total_steps = u32::try_from(readiness.len()).unwrap_or(0);
        let pending_steps = count(&|r| r.current_state == StepState::Pending);
        let in_progress_steps = count(&|r| r.current_state == StepState::InProgress);
        let completed_steps = count(&|r| r.current_state.is_done());
        let failed_steps = count(&|r| r.current_state == StepState::Error);
        let ready_steps = count(&|r| r.ready_for_execution);
        let permanently_blocked_steps = count(&|r| {
            r.current_state == StepState::Error
                && r.blocking_reason == Some(BlockingReason::RetriesExhausted)
        });
        let (execution_status, recommended_action) = if ready_steps > 0 {
            (
                ExecutionStatus::HasReadySteps,
                RecommendedAction::ExecuteReadySteps,
            )
        } else if in_progress_steps > 0 {
            (
                ExecutionStatus::Processing,
                RecommendedAction::WaitForCompletion,
            )
        } else if permanently_blocked_steps > 0 {
            (
                ExecutionStatus::BlockedByFailures,
                RecommendedAction::HandleFailures,
            )
        } else if total_steps > 0 && completed_steps == total_steps {
            (
                ExecutionStatus::AllComplete,
                RecommendedAction::FinalizeTask,
            )
        } else {
            (
                ExecutionStatus::WaitingForDependencies,
                RecommendedAction::WaitForDependencies,
            )
        };
        let health_status = if failed_steps == 0 {
            HealthStatus::Healthy
        } else if ready_steps > 0 {
            HealthStatus::Recovering
        } else if permanently_blocked_steps > 0 {
            HealthStatus::Blocked
        } else {
            HealthStatus::Recovering
        };
        let completion_percentage = if total_steps == 0 {
            0.0
        } else {
            (f64::from(completed_steps) / f64::from(total_steps) * 10_000.0).round() / 100.0
        };
        Ok(TaskExecutionContext {
            task_id,
            named_task_id: task.named_task_id,
            status: task.state,
            total_steps,
            pending_steps,
            in_progress_steps,
            completed_steps,
            failed_steps,
            ready_steps,
            permanently_blocked_steps,
            execution_status,
            recommended_action,
            completion_percentage,
            health_status,
        })
    }

    /// A task's transition history, oldest first.
    pub async fn task_transitions(
        &self,
        task_id: TaskId,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        self.task(task_id).await?;
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT from_state, to_state, sort_key, most_recent, metadata, created_at FROM tasker_task_transitions \
                 WHERE task_id = $1 ORDER BY sort_key",
                vec![task_id.as_uuid().into()],
            ))
            .await?;
        rows.iter().map(transition_record).collect()
    }

    /// A step's transition history, oldest first.
    pub async fn step_transitions(
        &self,
        step_id: StepId,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        self.step(step_id).await?;
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT from_state, to_state, sort_key, most_recent, metadata, created_at FROM tasker_workflow_step_transitions \
                 WHERE workflow_step_id = $1 ORDER BY sort_key",
                vec![step_id.as_uuid().into()],
            ))
            .await?;
        rows.iter().map(transition_record).collect()
    }

    /// The transition histories of all of a task's steps in one query, each row with its step,
    /// ordered by step then sort key.
    pub async fn step_transitions_of_task(
        &self,
        task_id: TaskId,
    ) -> Result<Vec<(StepId, TransitionRecord)>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT t.workflow_step_id, t.from_state, t.to_state, t.sort_key, t.most_recent, t.metadata, t.created_at \
                 FROM tasker_workflow_step_transitions t JOIN tasker_workflow_steps s ON s.workflow_step_id = t.workflow_step_id \
                 WHERE s.task_id = $1 ORDER BY t.workflow_step_id, t.sort_key",
                vec![task_id.as_uuid().into()],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                let step: uuid::Uuid = get(row, "workflow_step_id")?;
                Ok((StepId(step), transition_record(row)?))
            })
            .collect()
    }

    /// Tasks matching `filter`, newest first.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Page<TaskRecord>, StoreError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let bind = |value: Value, values: &mut Vec<Value>| {
            values.push(value);
            format!("${}", values.len())
        };
        if let Some(namespace) = &filter.namespace {
            conditions.push(format!(
                "n.name = {}",
                bind(namespace.as_str().into(), &mut values)
            ));
        }
        if let Some(name) = &filter.name {
            conditions.push(format!(
                "nt.name = {}",
                bind(name.as_str().into(), &mut values)
            ));
        }
        if let Some(version) = &filter.version {
            conditions.push(format!(
                "nt.version = {}",
                bind(version.as_str().into(), &mut values)
            ));
        }
        if let Some(state) = filter.state {
            conditions.push(format!(
                "t.state = {}",
                bind(state.as_str().into(), &mut values)
            ));
        }
        if let Some(correlation_id) = &filter.correlation_id {
            conditions.push(format!(
                "t.correlation_id = {}",
                bind(correlation_id.as_str().into(), &mut values)
            ));
        }
        let times = [
            ("t.created_at >=", filter.created_after),
            ("t.created_at <", filter.created_before),
            ("t.completed_at >=", filter.completed_after),
            ("t.completed_at <", filter.completed_before),
        ];
        for (condition, at) in times {
            if let Some(at) = at {
                conditions.push(format!(
                    "{condition} {}",
                    bind(to_micros(at).into(), &mut values)
                ));
            }
        }
        if let Some((kind, key, value)) = &filter.annotation {
            // The JSON key is matched here, the same way on both databases, in one query for all
            // annotations of the type; the page itself is cut by the database.
            let rows = self
                .db
                .rows(stmt(
                    self.db_backend(),
                    "SELECT a.task_id, a.annotation FROM tasker_task_annotations a JOIN tasker_annotation_types y \
                     ON y.annotation_type_id = a.annotation_type_id WHERE y.name = $1",
                    vec![kind.as_str().into()],
                ))
                .await?;
            let mut matching = Vec::new();
            for row in rows {
                let annotation: serde_json::Value = get(&row, "annotation")?;
                if annotation.get(key) == Some(value) {
                    matching.push(get::<uuid::Uuid>(&row, "task_id")?);
                }
            }
            matching.sort_unstable();
            matching.dedup();
            if matching.is_empty() {
                conditions.push("1 = 0".to_owned());
            } else {
                let ids: Vec<String> = matching
                    .into_iter()
                    .map(|id| bind(id.into(), &mut values))
                    .collect();
                conditions.push(format!("t.task_id IN ({})", ids.join(", ")));
            }
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let limit = filter.limit.unwrap_or(25).clamp(1, 1_000);
        let offset = if filter.after.is_some() {
            0
        } else {
            filter.offset.unwrap_or(0)
        };
        // The count covers the filter, not the cursor: it is the size of the whole listing.
        let count_clause = clause.clone();
        let count_values = values.clone();
        let (order, before) = if filter.oldest_first {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        let mut clause = clause;
        if let Some((at, task_id)) = filter.after {
            let at = bind(to_micros(at).into(), &mut values);
            let id = bind(task_id.as_uuid().into(), &mut values);
            let keyset = format!(
                "(t.created_at {before} {at} OR (t.created_at = {at} AND t.task_id {before} {id}))"
            );
            clause = if clause.is_empty() {
                format!(" WHERE {keyset}")
            } else {
                format!("{clause} AND {keyset}")
            };
        }
        let total = self
            .db
            .row(stmt(
                self.db_backend(),
                format!(
                    "SELECT COUNT(*) AS n FROM tasker_tasks t JOIN tasker_named_tasks nt ON nt.named_task_id = t.named_task_id \
                     JOIN tasker_task_namespaces n ON n.task_namespace_id = nt.task_namespace_id{count_clause}"
                ),
                count_values,
            ))
            .await?
            .map(|row| get::<i64>(&row, "n"))
            .transpose()?
            .unwrap_or(0);
        let page_params = format!(
            " LIMIT {} OFFSET {}",
            bind(i64::try_from(limit).unwrap_or(i64::MAX).into(), &mut values),
            bind(
                i64::try_from(offset).unwrap_or(i64::MAX).into(),
                &mut values
            )
        );
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                format!(
                    "{TASK_SELECT}{clause} ORDER BY t.created_at {order}, t.task_id {order}{page_params}"
                ),
                values,
            ))
            .await?;
        let items = rows
            .iter()
            .map(task_record)
            .collect::<Result<Vec<_>, _>>()?;
        let total = u64::try_from(total).unwrap_or(0);
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }

    /// Adds an annotation of type `kind` (created when new) to a task.
    pub async fn annotate_task(
        &self,
        task_id: TaskId,
        kind: &str,
        annotation: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = self.write_txn().await?;
        let backend = self.db_backend();
        let now = to_micros(now);
        let exists = txn
            .row(stmt(
                backend,
                "SELECT task_id FROM tasker_tasks WHERE task_id = $1",
                vec![task_id.as_uuid().into()],
            ))
            .await?;
        if exists.is_none() {
            return Err(StoreError::TaskNotFound(task_id));
        }
        txn.exec(stmt(
            backend,
            "INSERT INTO tasker_annotation_types (name, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (name) DO NOTHING",
            vec![kind.into(), now.into()],
        ))
        .await?;
        txn.exec(stmt(
            backend,
            "INSERT INTO tasker_task_annotations (task_id, annotation_type_id, annotation, created_at, updated_at) \
             SELECT $1, annotation_type_id, $2, $3, $3 FROM tasker_annotation_types WHERE name = $4",
            vec![task_id.as_uuid().into(), Value::Json(Some(Box::new(annotation))), now.into(), kind.into()],
        ))
        .await?;
        commit(txn).await?;
        Ok(())
    }

    /// A task's annotations as `(type name, annotation)`, oldest first.
    pub async fn annotations(
        &self,
        task_id: TaskId,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows = self
            .db
            .rows(stmt(
                self.db_backend(),
                "SELECT y.name, a.annotation FROM tasker_task_annotations a JOIN tasker_annotation_types y \
                 ON y.annotation_type_id = a.annotation_type_id WHERE a.task_id = $1 ORDER BY a.task_annotation_id",
                vec![task_id.as_uuid().into()],
            ))
            .await?;
        rows.iter()
            .map(|row| Ok((get(row, "name")?, get(row, "annotation")?)))
            .collect()
    }

    /// System-wide counts at `now`.
    pub async fn health_counts(&self, now: DateTime<Utc>) -> Result<HealthCounts, StoreError> {
        let backend = self.db_backend();
        let now = to_micros(now);
        let mut counts = HealthCounts::default();
        for (table, target) in [
            ("tasker_tasks", &mut counts.tasks_by_state),
            ("tasker_workflow_steps", &mut counts.steps_by_state),
        ] {
            let rows = self
                .db
                .rows(stmt(
                    backend,
                    format!("SELECT state, COUNT(*) AS n FROM {table} GROUP BY state"),
                    vec![],
                ))
                .await?;
            for row in rows {
                target.insert(
                    get(&row, "state")?,
                    u64::try_from(get::<i64>(&row, "n")?).unwrap_or(0),
                );
            }
        }
        let one = |sql: &'static str| stmt(backend, sql, vec![now.into()]);
        let scalar = |row: Option<QueryResult>| -> Result<u64, StoreError> {
            Ok(row
                .map(|r| get::<i64>(&r, "n"))
                .transpose()?
                .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        };
        counts.ready_steps = scalar(
            self.db
                .row(one(
                    "SELECT COUNT(*) AS n FROM tasker_workflow_steps WHERE unfinished_parents = 0 \
                     AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1",
                ))
                .await?,
        )?;
        // Leases are live or lapsed by the store's lease clock.
        let (lease_now, values) = self.lease_clock.now(backend, 1, now);
        let leases = |compare: &str| {
            stmt(
                backend,
                format!(
                    "SELECT COUNT(*) AS n FROM tasker_workflow_steps WHERE lease_expires_at IS NOT NULL \
                     AND lease_expires_at {compare} {lease_now}"
                ),
                values.clone().into_iter().collect(),
            )
        };
        counts.claimed_steps = scalar(self.db.row(leases(">=")).await?)?;
        counts.expired_claims = scalar(self.db.row(leases("<")).await?)?;
        // A step in `error` keeps `next_attempt_at` exactly while another attempt is due.
        let retries = self
            .db
            .row(stmt(
                backend,
                "SELECT COALESCE(SUM(CASE WHEN state = 'error' AND next_attempt_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS retrying, \
                 COALESCE(SUM(CASE WHEN state = 'error' AND next_attempt_at IS NULL THEN 1 ELSE 0 END), 0) AS exhausted, \
                 COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS retries \
                 FROM tasker_workflow_steps",
                vec![],
            ))
            .await?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(match &retries {
                Some(row) => u64::try_from(get::<i64>(row, name)?).unwrap_or(0),
                None => 0,
            })
        };
        counts.retrying_steps = count("retrying")?;
        counts.exhausted_steps = count("exhausted")?;
        counts.retries = count("retries")?;
        Ok(counts)
    }

    /// The claimable frontier at `now`: steps ready to claim, and steps whose next attempt is
    /// later (backoff). One scan of `idx_steps_claimable`, which holds exactly these rows.
    pub async fn backlog(&self, now: DateTime<Utc>) -> Result<Backlog, StoreError> {
        let row = self
            .db
            .row(stmt(
                self.db_backend(),
                "SELECT COALESCE(SUM(CASE WHEN next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS ready, \
                 COALESCE(SUM(CASE WHEN next_attempt_at > $1 THEN 1 ELSE 0 END), 0) AS waiting \
                 FROM tasker_workflow_steps WHERE unfinished_parents = 0 AND next_attempt_at IS NOT NULL",
                vec![to_micros(now).into()],
            ))
            .await?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(match &row {
                Some(row) => u64::try_from(get::<i64>(row, name)?).unwrap_or(0),
                None => 0,
            })
        };
        Ok(Backlog {
            ready: count("ready")?,
            waiting: count("waiting")?,
        })
    }
}
