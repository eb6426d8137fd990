//! Subscriptions: live events from the event bus (on PostgreSQL, with the events other
//! processes relay), checked against the caller's namespace policies event by event.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, Subscription};
use futures::Stream;
use tasker_auth::{AuthorizationContext, Operation, Principal};
use tasker_domain::TaskId;
use tasker_events::{Event, EventStream, Interest, Payload};
use uuid::Uuid;

use super::types::{EventFilterInput, EventView, OrGql, gql, shared};
use crate::error::ApiError;
use crate::routes::events::{kept_by, template_of};
use crate::state::Shared;

/// Events queued per subscription before the slowest client starts losing them (counted by
/// the bus as drops).
const BUFFER: usize = 1024;

/// The root of every subscription.
pub(crate) struct SubscriptionRoot;

/// Decides, once per namespace, whether the subscriber may see a namespace's events.
struct NamespaceGate {
    shared: Arc<Shared>,
    principal: Principal,
    operation: Operation,
    decided: HashMap<String, bool>,
}

impl NamespaceGate {
    async fn allows(&mut self, event: &Event) -> bool {
        let Some((namespace, _)) = template_of(event) else {
            return true;
        };
        let namespace = namespace.to_owned();
        if let Some(allowed) = self.decided.get(&namespace) {
            return *allowed;
        }
        let allowed = self
            .shared
            .access
            .authorize(
                &self.principal,
                self.operation,
                AuthorizationContext::new().namespace(namespace.clone()),
            )
            .await
            .is_allowed();
        self.decided.insert(namespace, allowed);
        allowed
    }
}

type Test = Box<dyn Fn(&Event) -> bool + Send + Sync>;

/// One subscription's state.
struct Watch {
    events: EventStream,
    gate: NamespaceGate,
    /// The events it delivers.
    keep: Test,
    /// The event after which it ends, if the client asked to end.
    last: Option<Test>,
    done: bool,
}

fn deliver(watch: Watch) -> impl Stream<Item = EventView> {
    futures::stream::unfold(watch, |mut watch| async move {
        if watch.done {
            return None;
        }
        loop {
            let event = watch.events.recv().await?;
            if !(watch.keep)(&event) || !watch.gate.allows(&event).await {
                continue;
            }
            if watch.last.as_ref().is_some_and(|last| last(&event)) {
                watch.done = true;
            }
            return Some((EventView::from(event.as_ref()), watch));
        }
    })
}

fn principal(ctx: &Context<'_>) -> async_graphql::Result<Principal> {
    ctx.data_opt::<Principal>()
        .cloned()
        .ok_or_else(|| gql(ApiError::unauthorized()))
}

fn task_finished(task: TaskId) -> Test {
    Box::new(move |event| match &event.payload {
        Payload::Task(p) => p.task_id == task && p.state.is_finished(),
        _ => false,
    })
}

/// Opens a watch of one task: checks the task exists and the namespace is allowed, and
/// subscribes before reading its state, so nothing falls between the two.
async fn watch_task(
    ctx: &Context<'_>,
    task_id: Uuid,
    keep: Test,
    until_finished: bool,
) -> async_graphql::Result<Watch> {
    let shared = shared(ctx).clone();
    let principal = principal(ctx)?;
    let events = shared.engine.events().stream(vec![Interest::all()], BUFFER);
    let task = shared.engine.store().task(TaskId(task_id)).await.gql()?;
    let mut gate = NamespaceGate {
        shared,
        principal,
        operation: Operation::StreamTaskEvents,
        decided: HashMap::new(),
    };
    let allowed = gate
        .shared
        .access
        .authorize(
            &gate.principal,
            gate.operation,
            AuthorizationContext::new()
                .resource_id(task_id.to_string())
                .namespace(task.namespace.clone()),
        )
        .await;
    if !allowed.is_allowed() {
        return Err(gql(ApiError::forbidden(format!(
            "the events of namespace `{}` are not yours to see",
            task.namespace
        ))));
    }
    gate.decided.insert(task.namespace.clone(), true);
    Ok(Watch {
        events,
        gate,
        keep,
        last: until_finished.then(|| task_finished(task.task_id)),
        done: until_finished && task.state.is_finished(),
    })
}

#[Subscription]
impl SubscriptionRoot {
    /// One task's events as they happen, in the order they were committed. With
    /// `untilFinished` (the default) the subscription ends after the task's final event
    /// (complete, cancelled or resolved by hand), or at once if it is already final; a task in
    /// error may still be retried, so its subscription stays open.
    async fn task_events(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        #[graphql(default = true)] until_finished: bool,
    ) -> async_graphql::Result<impl Stream<Item = EventView>> {
        let task = TaskId(task_id);
        let keep: Test = Box::new(move |event| event.task_id() == Some(task));
        Ok(deliver(
            watch_task(ctx, task_id, keep, until_finished).await?,
        ))
    }

    /// One step's events (by the step's name or id), ending with its task like `taskEvents`.
    async fn step_events(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
        step: String,
        #[graphql(default = true)] until_finished: bool,
    ) -> async_graphql::Result<impl Stream<Item = EventView>> {
        let task = TaskId(task_id);
        let finished = task_finished(task);
        let keep: Test = Box::new(move |event| match &event.payload {
            Payload::Step(p) => {
                p.task_id == task
                    && (*p.step_name == *step || p.step_id.as_uuid().to_string() == step)
            }
            _ => finished(event),
        });
        Ok(deliver(
            watch_task(ctx, task_id, keep, until_finished).await?,
        ))
    }

    /// Every event as it happens. The filters combine: `events` (names or `*` patterns) or
    /// `category` choose what the bus delivers; `namespace` and `name` keep one workflow's.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = EventView>> {
        let shared = shared(ctx).clone();
        let filter = filter.unwrap_or_default();
        let names = filter.events.unwrap_or_default();
        let interests = crate::routes::events::interests(
            names.iter().map(String::as_str),
            filter.category.as_deref(),
        )
        .gql()?;
        let (namespace, name) = (filter.namespace, filter.name);
        let keep: Test =
            Box::new(move |event| kept_by(event, namespace.as_deref(), name.as_deref()));
        let events = shared.engine.events().stream(interests, BUFFER);
        Ok(deliver(Watch {
            events,
            gate: NamespaceGate {
                shared,
                principal: principal(ctx)?,
                operation: Operation::SubscribeEvents,
                decided: HashMap::new(),
            },
            keep,
            last: None,
            done: false,
        }))
    }
}
