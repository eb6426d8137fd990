//! Task creation: the task, all its steps and edges in one transaction, with every input
//! validated before anything is written.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, SqlErr, Value};
use tasker_domain::{ContextSchema, StepId, TaskId, TaskRequest, TaskState};

use super::sql::insert_rows;
use super::transitions::{TransitionRow, write_step_transitions, write_task_transitions};
use super::{CreateTaskOptions, CreatedTask, RegisteredTemplate, Store};
use crate::error::StoreError;
use crate::time::to_micros;

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

fn json(value: serde_json::Value) -> Value {
    Value::Json(Some(Box::new(value)))
}

impl Store {
    /// Creates a task from a registered template in its own transaction.
    pub async fn create_task(
        &self,
        registered: &RegisteredTemplate,
        request: &TaskRequest,
        options: &CreateTaskOptions<'_>,
    ) -> Result<CreatedTask, StoreError> {
        let txn = self.write_txn().await?;
        let created = Self::create_task_in(&txn, registered, request, options).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Creates a task inside a transaction the caller holds, so an application can write its
    /// own rows and a task atomically. Nothing is written when an error is returned, but the
    /// caller should roll back on error all the same.
    pub async fn create_task_in<C: ConnectionTrait>(
        db: &C,
        registered: &RegisteredTemplate,
        request: &TaskRequest,
        options: &CreateTaskOptions<'_>,
    ) -> Result<CreatedTask, StoreError> {
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
                skip_transitions.push(TransitionRow {
                    id: step_ids[position].as_uuid(),
                    from_state: Some("pending"),
                    to_state: "resolved_manually",
                    sort_key: 10,
                    most_recent: true,
                    metadata: serde_json::json!({"reason": "bypassed", "skipped": true}),
                });
            }
            step_rows.push(vec![
                step_ids[position].as_uuid().into(),
                task_id.as_uuid().into(),
                named_step(&step.name)?.into(),
                step.name.as_str().into(),
                i32::try_from(position).unwrap_or(i32::MAX).into(),
                (if is_skipped {
                    "resolved_manually"
                } else {
                    "pending"
                })
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
            TaskState::Complete
        } else {
            TaskState::Pending
        };
        let task_row = vec![
            task_id.as_uuid().into(),
            registered.named_task_id.into(),
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
        ];
        let inserted = insert_rows(
            db,
            "tasker_tasks",
            &[
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
            ],
            vec![task_row],
        )
        .await;
        if let Err(StoreError::Database(err)) = &inserted
            && matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
        {
            return Err(StoreError::DuplicateTask { identity_hash });
        }
        inserted?;
        insert_rows(db, "tasker_workflow_steps", STEP_COLUMNS, step_rows).await?;
        insert_rows(
            db,
            "tasker_workflow_step_edges",
            &["from_step_id", "to_step_id", "name"],
            edge_rows,
        )
        .await?;
        write_step_transitions(db, skip_transitions, now, false).await?;
        if finished_at_creation {
            let task_rows = vec![
                TransitionRow {
                    id: task_id.as_uuid(),
                    from_state: Some("pending"),
                    to_state: "in_progress",
                    sort_key: 10,
                    most_recent: false,
                    metadata: serde_json::json!({"reason": "all_steps_bypassed"}),
                },
                TransitionRow {
                    id: task_id.as_uuid(),
                    from_state: Some("in_progress"),
                    to_state: "complete",
                    sort_key: 20,
                    most_recent: true,
                    metadata: serde_json::json!({"reason": "all_steps_bypassed"}),
                },
            ];
            write_task_transitions(db, task_rows, now, false).await?;
        }
        let mut skipped_names: Vec<String> = skipped.into_iter().map(str::to_owned).collect();
        skipped_names.sort_by_key(|name| index_of(name));
        Ok(CreatedTask {
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
        })
    }
}
