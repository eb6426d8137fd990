//! Task creation: one task, or many at once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_domain::{StepState, TaskRequest, TaskState};
use tasker_events::names::observability;
use tasker_persistence::{CreateTaskOptions, CreatedTask, PreparedTask, Store, TaskRecord};
use tasker_template::TaskTemplate;
use tracing::{Instrument, Span};

use crate::emit::{StepEvent, StepIdentity, TaskEvent, TemplateNames};
use crate::error::EngineError;
use crate::operator::CreateOptions;
use crate::trace_context;

use super::{BULK_BATCH, Engine};

impl Engine {
    /// Creates a task from a registered template (the latest version when the request names
    /// none). Everything is validated before anything is stored. While this engine's
    /// coordinator runs and has room, the write also claims the task's root steps for it
    /// (the task is then `in_progress` when this returns) and the coordinator starts them
    /// without a claim of its own.
    pub async fn create_task(&self, request: TaskRequest) -> Result<CreatedTask, EngineError> {
        self.create_task_with(request, &CreateOptions::default())
            .await
    }

    /// [`create_task`](Self::create_task) with a correlation id to store (instead of a new
    /// one) and an idempotency key: a second request with the same key for the same workflow
    /// fails with [`tasker_persistence::StoreError::DuplicateTask`], whose identity hash finds
    /// the first task.
    pub async fn create_task_with(
        &self,
        request: TaskRequest,
        options: &CreateOptions,
    ) -> Result<CreatedTask, EngineError> {
        self.create_one(request, options, |_| ())
            .await
            .map(|(created, ())| created)
    }

    /// [`create_task_with`](Self::create_task_with), answering with the new task as
    /// [`Store::task`] would read it right after creation, without reading it back: every
    /// field is known before the write. (A read-back could already show the coordinator's
    /// first changes; this is the task as created.)
    pub async fn create_task_record(
        &self,
        request: TaskRequest,
        options: &CreateOptions,
    ) -> Result<TaskRecord, EngineError> {
        self.create_one(request, options, PreparedTask::record)
            .await
            .map(|(_, record)| record)
    }

    /// Creates one task; `describe` takes what the caller wants of the prepared task before it
    /// is handed to the batch.
    async fn create_one<T>(
        &self,
        request: TaskRequest,
        options: &CreateOptions,
        describe: impl FnOnce(&PreparedTask) -> T,
    ) -> Result<(CreatedTask, T), EngineError> {
        let now = self.inner.clock.now();
        let span = creation_span(&request);
        async {
            let (template, mut prepared) = self.prepare_task(request, options, now).await?;
            let reservation = self.claim_at_creation(&mut prepared);
            let described = describe(&prepared);
            // Validated above, before it joins a batch: a bad request fails alone.
            let created = match reservation {
                None => {
                    let created = self.inner.creator.create(prepared).await?;
                    self.created(&template, &created, now);
                    // The coordinator claims the new task's steps.
                    self.inner.wake.notify_one();
                    created
                }
                Some(reservation) => {
                    self.create_claimed(template, prepared, reservation, now)
                        .await?
                }
            };
            Ok((created, described))
        }
        .instrument(span)
        .await
    }

    /// Creates many tasks at once (bulk submission): each request is validated on its own and
    /// gets its own result, in order; the valid ones are written in transactions of up to
    /// [`BULK_BATCH`] tasks. A bad request fails alone and stores nothing.
    pub async fn create_tasks(
        &self,
        requests: Vec<TaskRequest>,
    ) -> Vec<Result<CreatedTask, EngineError>> {
        let now = self.inner.clock.now();
        let mut results: Vec<Option<Result<CreatedTask, EngineError>>> =
            Vec::with_capacity(requests.len());
        let mut valid = Vec::with_capacity(requests.len());
        for (index, request) in requests.into_iter().enumerate() {
            // One creation span per task; its trace context is what the task stores (the
            // batched write afterwards is the request's, not any one task's).
            let span = creation_span(&request);
            match self
                .prepare_task(request, &CreateOptions::default(), now)
                .instrument(span)
                .await
            {
                Ok((template, prepared)) => {
                    valid.push((index, template, prepared));
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        while !valid.is_empty() {
            let rest = valid.split_off(valid.len().min(BULK_BATCH));
            let batch = std::mem::replace(&mut valid, rest);
            let (meta, prepared): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|(index, template, prepared)| ((index, template), prepared))
                .unzip();
            let written = self.inner.store.create_prepared(prepared).await;
            for ((index, template), result) in meta.into_iter().zip(written) {
                results[index] = Some(match result {
                    Ok(created) => {
                        self.created(&template, &created, now);
                        Ok(created)
                    }
                    Err(err) => Err(err.into()),
                });
            }
        }
        self.inner.wake.notify_one();
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::ShutDown)))
            .collect()
    }

    /// Resolves a request's template, runs its hooks and validates it into rows to write.
    async fn prepare_task(
        &self,
        mut request: TaskRequest,
        creation: &CreateOptions,
        now: DateTime<Utc>,
    ) -> Result<(Arc<TaskTemplate>, tasker_persistence::PreparedTask), EngineError> {
        let registered = self
            .inner
            .registry
            .resolve(&request.namespace, &request.name, request.version.as_ref())
            .ok_or_else(|| EngineError::UnknownTemplate {
                namespace: request.namespace.clone(),
                name: request.name.clone(),
                version: request.version.clone(),
            })?;
        if let Some(hooks) = &registered.hooks {
            crate::hooks::establish(hooks.as_ref(), &mut request, &*self.inner.clock)
                .await
                .map_err(|error| EngineError::RefusedByHooks {
                    template: registered.template.full_name(),
                    error: Box::new(error),
                })?;
        }
        check_json(
            &request.context,
            || "task context".to_owned(),
            || registered.template.full_name(),
            self.inner.config.max_context_bytes,
            "max_context_bytes",
        )?;
        let cached = match self
            .inner
            .templates
            .by_name(&registered.template.full_name())
        {
            Some(cached) => cached,
            None => {
                let stored = self
                    .inner
                    .store
                    .register_template(&registered.template, now)
                    .await?;
                // A template registered in the registry directly (not through the engine)
                // still has its custom events.
                if let Err(err) = self.register_custom_events(&registered.template) {
                    tracing::warn!(error = %err, "registering a template's custom events failed");
                }
                self.inner.templates.stored(stored, &registered)
            }
        };
        let keyed;
        let identity: &dyn tasker_domain::IdentityStrategy = match &creation.idempotency_key {
            Some(key) => {
                keyed = tasker_domain::IdempotencyKey(key.clone());
                &keyed
            }
            None => &tasker_domain::DefaultIdentity,
        };
        let span = Span::current();
        let options = CreateTaskOptions {
            now,
            identity,
            correlation_id: creation.correlation_id.clone(),
            trace_parent: trace_context::traceparent(&span),
        };
        let prepared = Store::prepare_task(&cached.stored, &request, &options)?;
        span.record(
            "task_id",
            tracing::field::display(prepared.created().task_id),
        );
        span.record("correlation_id", prepared.created().correlation_id.as_str());
        Ok((registered.template, prepared))
    }

    /// Publishes a new task's events: `task.initialize_requested`, one `observability.step.skip`
    /// per bypassed step, and the final event if it finished at creation.
    pub(super) fn created(
        &self,
        template: &TaskTemplate,
        created: &CreatedTask,
        now: DateTime<Utc>,
    ) {
        let bus = &self.inner.bus;
        if !bus.has_subscribers() {
            return;
        }
        let labels = TemplateNames::of(template).labels(&created.correlation_id);
        TaskEvent::new(created.task_id, &labels, None, TaskState::Pending)
            .total_steps(created.steps.len())
            .publish(bus, now);
        for name in &created.skipped {
            let Some((_, step_id)) = created.steps.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let who = StepIdentity {
                task_id: created.task_id,
                step_id: *step_id,
                step_name: name.as_str().into(),
                labels: labels.clone(),
                retry_limit: template.step(name).map_or(0, |s| s.default_retry_limit),
            };
            StepEvent::new(
                observability::STEP_SKIP,
                &who,
                0,
                None,
                StepState::ResolvedManually,
            )
            .reason("bypassed")
            .publish(bus, now);
        }
        if created.state.is_finished() {
            TaskEvent::new(
                created.task_id,
                &labels,
                Some(TaskState::Pending),
                created.state,
            )
            .total_steps(created.steps.len())
            .duration_since(now, now)
            .publish(bus, now);
        }
    }
}

/// Checks one JSON value against its size limit and for NUL characters (which PostgreSQL cannot
/// store), so bad input fails before anything is written, the same on both databases.
pub(super) fn check_json(
    value: &Value,
    what: impl Fn() -> String,
    owner: impl Fn() -> String,
    limit: usize,
    key: &'static str,
) -> Result<(), EngineError> {
    let size = crate::limits::json_size(value);
    if size > limit {
        return Err(EngineError::TooLarge {
            what: what(),
            owner: owner(),
            size,
            limit,
            key,
        });
    }
    match crate::limits::find_nul(value) {
        Some(path) => Err(EngineError::Unstorable {
            what: what(),
            owner: owner(),
            path,
        }),
        None => Ok(()),
    }
}

/// The span a task is created in: its trace context is stored with the task, so every attempt
/// of the task's steps joins this trace.
fn creation_span(request: &TaskRequest) -> Span {
    tracing::info_span!(
        "task.create",
        task_id = tracing::field::Empty,
        namespace = %request.namespace,
        template = %request.name,
        correlation_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    )
}
