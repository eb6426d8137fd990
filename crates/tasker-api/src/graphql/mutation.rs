//! Mutations: the operator actions of the REST API, through the same code and errors.

use async_graphql::{Context, Object};
use serde_json::Value;
use tasker_auth::Principal;
use tasker_domain::TaskId;
use uuid::Uuid;

use super::gate::RequestCorrelation;
use super::types::{CreateTaskInput, OrGql, Step, Task, UpdateTaskInput, gql, shared};
use crate::error::ApiError;
use crate::routes::tasks::operator;
use crate::views::{CreateTaskBody, TemplateView, UpdateStepBody, UpdateTaskBody};

/// The root of every mutation.
pub(crate) struct MutationRoot;

fn principal<'a>(ctx: &Context<'a>) -> Option<&'a Principal> {
    ctx.data_opt::<Principal>()
}

async fn task(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Task> {
    Ok(Task(
        shared(ctx).engine.store().task(TaskId(id)).await.gql()?,
    ))
}

async fn step(ctx: &Context<'_>, task_id: Uuid, step_id: Uuid) -> async_graphql::Result<Step> {
    let store = shared(ctx).engine.store();
    let task = store.task(TaskId(task_id)).await.gql()?;
    let step = store.step(tasker_domain::StepId(step_id)).await.gql()?;
    Ok(Step::new(step, task.named_task_id))
}

#[Object]
impl MutationRoot {
    /// Creates a task. With an `idempotencyKey` already used for the same workflow, returns
    /// the task that key created.
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        input: CreateTaskInput,
    ) -> async_graphql::Result<Task> {
        if let Some(key) = &input.idempotency_key
            && !((1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(gql(ApiError::bad_request(
                "`idempotencyKey` must be 1 to 255 visible ASCII characters",
            )));
        }
        let correlation = ctx
            .data_opt::<RequestCorrelation>()
            .map(|c| c.0.clone())
            .filter(|c| !c.is_empty());
        let body = CreateTaskBody {
            namespace: input.namespace,
            name: input.name,
            version: input.version,
            context: input.context,
            initiator: input.initiator,
            source_system: input.source_system,
            reason: input.reason,
            tags: input.tags,
            bypass_steps: input.bypass_steps,
        };
        let (_, record) = crate::routes::tasks::create(
            shared(ctx),
            principal(ctx),
            correlation,
            input.idempotency_key,
            body,
        )
        .await
        .gql()?;
        Ok(Task(record))
    }

    /// Changes a task's reason or tags.
    async fn update_task(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: UpdateTaskInput,
    ) -> async_graphql::Result<Task> {
        let body = UpdateTaskBody {
            reason: input.reason,
            tags: input.tags,
        };
        crate::routes::tasks::update(shared(ctx), id, body)
            .await
            .gql()?;
        task(ctx, id).await
    }

    /// Cancels a task and its unfinished steps.
    async fn cancel_task(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        reason: Option<String>,
    ) -> async_graphql::Result<Task> {
        shared(ctx)
            .engine
            .cancel_task_as(TaskId(id), &operator(principal(ctx), reason))
            .await
            .gql()?;
        task(ctx, id).await
    }

    /// Gives a task in error another round: its failed steps get their attempts back.
    async fn retry_task(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        reason: Option<String>,
    ) -> async_graphql::Result<Task> {
        shared(ctx)
            .engine
            .retry_task_as(TaskId(id), &operator(principal(ctx), reason))
            .await
            .gql()?;
        task(ctx, id).await
    }

    /// Marks a task resolved by hand.
    async fn resolve_task(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        reason: Option<String>,
    ) -> async_graphql::Result<Task> {
        shared(ctx)
            .engine
            .resolve_task_as(TaskId(id), &operator(principal(ctx), reason))
            .await
            .gql()?;
        task(ctx, id).await
    }

    /// Changes a pending step's retry limit (1 to 100 attempts, the first included).
    async fn update_step(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        step_id: Uuid,
        retry_limit: i64,
    ) -> async_graphql::Result<Step> {
        // Out of range (negative included) is refused with REST's message.
        let retry_limit = u32::try_from(retry_limit).unwrap_or(0);
        crate::routes::steps::update(
            shared(ctx),
            task_id,
            step_id,
            UpdateStepBody { retry_limit },
        )
        .await
        .gql()?;
        step(ctx, task_id, step_id).await
    }

    /// Cancels a step.
    async fn cancel_step(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        step_id: Uuid,
        reason: Option<String>,
    ) -> async_graphql::Result<Step> {
        let id = crate::routes::steps::owned_step(shared(ctx), task_id, step_id)
            .await
            .gql()?;
        shared(ctx)
            .engine
            .cancel_step_as(id, &operator(principal(ctx), reason))
            .await
            .gql()?;
        step(ctx, task_id, step_id).await
    }

    /// Resolves a step by hand with the results its dependants will see.
    async fn resolve_step(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        step_id: Uuid,
        results: Option<Value>,
        reason: Option<String>,
    ) -> async_graphql::Result<Step> {
        let id = crate::routes::steps::owned_step(shared(ctx), task_id, step_id)
            .await
            .gql()?;
        shared(ctx)
            .engine
            .resolve_step_as(
                id,
                results.unwrap_or(Value::Object(Default::default())),
                &operator(principal(ctx), reason),
            )
            .await
            .gql()?;
        step(ctx, task_id, step_id).await
    }

    /// Gives a step in error its attempts back.
    async fn retry_step(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        step_id: Uuid,
        reason: Option<String>,
    ) -> async_graphql::Result<Step> {
        let id = crate::routes::steps::owned_step(shared(ctx), task_id, step_id)
            .await
            .gql()?;
        shared(ctx)
            .engine
            .retry_step_as(id, &operator(principal(ctx), reason))
            .await
            .gql()?;
        step(ctx, task_id, step_id).await
    }

    /// Registers a template given as YAML or JSON text. The same content again is accepted;
    /// other content under a registered version is refused (`template_version_exists`).
    async fn register_template(
        &self,
        ctx: &Context<'_>,
        template: String,
    ) -> async_graphql::Result<TemplateView> {
        let parsed = tasker_template::TaskTemplate::from_yaml_str(&template, Some("template"))
            .map_err(tasker_engine::EngineError::InvalidTemplate)
            .gql()?;
        let (_, view) = crate::routes::templates::register(shared(ctx), parsed)
            .await
            .gql()?;
        Ok(view)
    }
}
