//! DataLoaders: a query of many tasks loads their steps in one statement and each template's
//! graph once, whatever the number of tasks.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use tasker_domain::{TaskId, TemplateId};
use tasker_persistence::StepRecord;
use tasker_template::DependencyGraph;

use crate::error::ApiError;
use crate::state::Shared;

/// The loaders of one request.
pub(crate) struct Loaders {
    pub(crate) steps: DataLoader<StepsOfTask, HashMapCache>,
    pub(crate) graphs: DataLoader<TemplateGraph, HashMapCache>,
}

impl Loaders {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            steps: DataLoader::with_cache(
                StepsOfTask(shared.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            graphs: DataLoader::with_cache(
                TemplateGraph(shared),
                tokio::spawn,
                HashMapCache::default(),
            ),
        }
    }
}

/// A task's steps, in template order, by task.
pub(crate) struct StepsOfTask(pub(crate) Arc<Shared>);

impl Loader<TaskId> for StepsOfTask {
    type Value = Arc<Vec<StepRecord>>;
    type Error = ApiError;

    async fn load(&self, keys: &[TaskId]) -> Result<HashMap<TaskId, Self::Value>, Self::Error> {
        let mut by_task: HashMap<TaskId, Vec<StepRecord>> =
            keys.iter().map(|id| (*id, Vec::new())).collect();
        for step in self.0.engine.store().steps_of_tasks(keys).await? {
            by_task.entry(step.task_id).or_default().push(step);
        }
        Ok(by_task
            .into_iter()
            .map(|(id, steps)| (id, Arc::new(steps)))
            .collect())
    }
}

/// A template's dependency graph, by its stored id.
pub(crate) struct TemplateGraph(pub(crate) Arc<Shared>);

impl Loader<TemplateId> for TemplateGraph {
    type Value = Arc<DependencyGraph>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[TemplateId],
    ) -> Result<HashMap<TemplateId, Self::Value>, Self::Error> {
        let mut graphs = HashMap::with_capacity(keys.len());
        for id in keys {
            let template = self.0.engine.store().find_template_by_id(*id).await?;
            graphs.insert(*id, Arc::new(template.template.graph()));
        }
        Ok(graphs)
    }
}
