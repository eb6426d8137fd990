//! Queries: the reads of the REST API.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Object, SimpleObject};
use serde_json::Value;
use tasker_domain::{StepId, TaskId, TemplateId};
use uuid::Uuid;

use async_graphql::dataloader::Loader as _;
use tasker_persistence::TaskRecord;

use super::loaders::{StepsOfTask, TemplateGraph};
use super::types::{OrGql, Step, Task, TaskFilterInput, TaskOrder, gql, loaders, shared};
use crate::error::ApiError;
use crate::routes::analytics::{
    BottlenecksQuery, PerformanceQuery, bottlenecks_report, performance_report,
};
use crate::views::{
    HandlerNamespace, HealthStatusView, ListTasksQuery, TemplateSummary, TemplateView,
    ValidationView,
};

/// The root of every query.
pub(crate) struct QueryRoot;

/// Loads what a page's selection needs of every task at once (their steps in one statement,
/// each template's graph once), so the statements a page takes do not grow with its size.
async fn prime(ctx: &Context<'_>, tasks: &[TaskRecord]) -> async_graphql::Result<()> {
    let node = ctx.look_ahead().field("edges").field("node");
    let steps = node.field("steps");
    let loaders = loaders(ctx);
    if steps.exists() {
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id).collect();
        let loaded = StepsOfTask(shared(ctx).clone()).load(&ids).await.gql()?;
        loaders.steps.feed_many(loaded).await;
    }
    if node.field("graph").exists()
        || steps.field("parents").exists()
        || steps.field("children").exists()
    {
        let templates: Vec<TemplateId> = tasks
            .iter()
            .map(|t| t.named_task_id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let loaded = TemplateGraph(shared(ctx).clone())
            .load(&templates)
            .await
            .gql()?;
        loaders.graphs.feed_many(loaded).await;
    }
    Ok(())
}

/// What a page of tasks adds to the connection.
#[derive(SimpleObject, Debug, Clone, Copy)]
pub(crate) struct TaskTotals {
    /// Tasks matching the filter in all.
    total_count: u64,
}

/// A page of tasks.
pub(crate) type TaskConnection = Connection<String, Task, TaskTotals, EmptyFields>;

#[Object]
impl QueryRoot {
    /// One task.
    async fn task(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Task> {
        Ok(Task(
            shared(ctx).engine.store().task(TaskId(id)).await.gql()?,
        ))
    }

    /// Tasks, a page at a time (newest first unless the filter says otherwise). `after` is the
    /// cursor of the last edge of the previous page.
    #[graphql(
        complexity = "(first.unwrap_or(25).clamp(1, 1_000_000) as usize).saturating_mul(child_complexity).saturating_add(1)"
    )]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        filter: Option<TaskFilterInput>,
        first: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<TaskConnection> {
        let shared = shared(ctx);
        let filter = filter.unwrap_or_default();
        let limit = match first {
            None => None,
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Some(n) => {
                return Err(gql(ApiError::bad_request(format!(
                    "`first` must be at least 1, got {n}"
                ))));
            }
        };
        let query = ListTasksQuery {
            namespace: filter.namespace,
            name: filter.name,
            version: filter.version,
            state: filter.state.map(|s| s.as_str().to_owned()),
            correlation_id: None,
            annotation: filter.annotation,
            created_after: filter.created_after,
            created_before: filter.created_before,
            completed_after: filter.completed_after,
            completed_before: filter.completed_before,
            sort: Some(
                match filter.order.unwrap_or_default() {
                    TaskOrder::NewestFirst => "-created_at",
                    TaskOrder::OldestFirst => "created_at",
                }
                .to_owned(),
            ),
            limit,
            cursor: after.clone(),
        };
        let (filter, limit) = crate::routes::tasks::filter_of(shared, query).gql()?;
        let page = shared.engine.store().list_tasks(&filter).await.gql()?;
        prime(ctx, &page.items).await?;
        let has_next = page.items.len() as u64 == limit && page.total > limit;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            has_next,
            TaskTotals {
                total_count: page.total,
            },
        );
        connection.edges.extend(page.items.into_iter().map(|task| {
            Edge::new(
                crate::routes::tasks::encode_cursor(task.created_at, task.task_id),
                Task(task),
            )
        }));
        Ok(connection)
    }

    /// One step of a task, by id or by name.
    async fn step(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        id: Option<Uuid>,
        name: Option<String>,
    ) -> async_graphql::Result<Step> {
        let store = shared(ctx).engine.store();
        let task = store.task(TaskId(task_id)).await.gql()?;
        let step = match (id, name) {
            (Some(id), None) => {
                let step = store.step(StepId(id)).await.gql()?;
                (step.task_id == task.task_id).then_some(step)
            }
            (None, Some(name)) => store
                .steps(task.task_id)
                .await
                .gql()?
                .into_iter()
                .find(|s| s.name == name),
            _ => {
                return Err(gql(ApiError::bad_request(
                    "give the step's `id` or its `name`, not both",
                )));
            }
        };
        step.map(|s| Step::new(s, task.named_task_id))
            .ok_or_else(|| {
                gql(ApiError::not_found(format!(
                    "task {task_id} has no such step"
                )))
            })
    }

    /// A task's steps, in template order.
    async fn steps(&self, ctx: &Context<'_>, task_id: Uuid) -> async_graphql::Result<Vec<Step>> {
        let store = shared(ctx).engine.store();
        let task = store.task(TaskId(task_id)).await.gql()?;
        Ok(store
            .steps(task.task_id)
            .await
            .gql()?
            .into_iter()
            .map(|s| Step::new(s, task.named_task_id))
            .collect())
    }

    /// Every registered template.
    async fn templates(&self, ctx: &Context<'_>) -> Vec<TemplateSummary> {
        crate::routes::templates::summaries(shared(ctx))
    }

    /// One template: an exact version, or the highest.
    async fn template(
        &self,
        ctx: &Context<'_>,
        namespace: String,
        name: String,
        version: Option<String>,
    ) -> async_graphql::Result<TemplateView> {
        crate::routes::templates::find(shared(ctx), &namespace, &name, version.as_deref())
            .await
            .gql()
    }

    /// Checks a template (YAML or JSON text) without registering it.
    async fn validate_template(&self, ctx: &Context<'_>, template: String) -> ValidationView {
        crate::routes::templates::validation(
            shared(ctx),
            tasker_template::TaskTemplate::from_yaml_str(&template, Some("template")),
        )
    }

    /// The workflows this server can run, by namespace, with their versions and step handlers.
    async fn handlers(
        &self,
        ctx: &Context<'_>,
        namespace: Option<String>,
    ) -> Vec<HandlerNamespace> {
        crate::routes::templates::handler_namespaces(shared(ctx), namespace.as_deref())
    }

    /// The names of every annotation type in use.
    async fn annotation_types(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        shared(ctx).engine.store().annotation_types().await.gql()
    }

    /// The health report `/health/status` gives: checks, counts, pool, cache and a verdict.
    async fn health_status(&self, ctx: &Context<'_>) -> async_graphql::Result<HealthStatusView> {
        crate::routes::health::status_report(shared(ctx))
            .await
            .gql()
    }

    /// Per-template performance over a window, as `/analytics/performance` gives it.
    #[allow(clippy::too_many_arguments)]
    async fn analytics_performance(
        &self,
        ctx: &Context<'_>,
        since: Option<chrono::DateTime<chrono::Utc>>,
        until: Option<chrono::DateTime<chrono::Utc>>,
        window: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
        version: Option<String>,
    ) -> async_graphql::Result<Value> {
        let query = PerformanceQuery {
            since,
            until,
            window,
            namespace,
            name,
            version,
        };
        let view = performance_report(shared(ctx), query).await.gql()?;
        Ok(serde_json::to_value(view)?)
    }

    /// The slowest, most retried and most failing steps over a window, as
    /// `/analytics/bottlenecks` gives them.
    #[allow(clippy::too_many_arguments)]
    async fn analytics_bottlenecks(
        &self,
        ctx: &Context<'_>,
        since: Option<chrono::DateTime<chrono::Utc>>,
        until: Option<chrono::DateTime<chrono::Utc>>,
        window: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
        version: Option<String>,
        limit: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let query = BottlenecksQuery {
            since,
            until,
            window,
            namespace,
            name,
            version,
            // Out of range (negative included) is refused with REST's message.
            limit: limit.map(|l| u32::try_from(l).unwrap_or(0)),
        };
        let view = bottlenecks_report(shared(ctx), query).await.gql()?;
        Ok(serde_json::to_value(view)?)
    }
}
