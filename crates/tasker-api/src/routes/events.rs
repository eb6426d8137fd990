//! Live events as Server-Sent Events: every event (with filters), and one task's events with
//! its history replayed first, so a client that connects late misses nothing.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tasker_domain::TaskId;
use tasker_events::{Category, Event, EventStream, Interest, Payload};
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::tasks::history;
use crate::error::{ApiError, ReadErrors};
use crate::extract::{Path, Query};
use crate::schemas;
use crate::state::Shared;
use crate::views::EventFilter;

/// Events queued per client before the slowest client starts losing them (counted by the
/// bus as drops).
const CLIENT_BUFFER: usize = 1024;

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(event_stream))
        .routes(routes!(task_events))
}

/// Whether the `namespace` and `name` filters of an event stream keep `event`: the events of
/// that workflow's tasks, and the runtime switch changes of its namespace or template (a
/// namespace-wide change passes a `name` filter too). Events of no workflow pass only when
/// neither filter is set.
pub(crate) fn kept_by(event: &Event, namespace: Option<&str>, name: Option<&str>) -> bool {
    match (namespace, name, template_of(event)) {
        (None, None, _) => true,
        (_, _, None) => false,
        (ns, n, Some((of_ns, of_name))) => {
            ns.is_none_or(|ns| of_ns == ns)
                && n.is_none_or(|n| of_name.is_none_or(|of_name| of_name == n))
        }
    }
}

/// The namespace and template an event concerns: its task's, or a switch's (no template when
/// the switch is for the whole namespace).
pub(crate) fn template_of(event: &Event) -> Option<(&str, Option<&str>)> {
    if let Payload::Switch(p) = &event.payload {
        return Some((&p.namespace, p.name.as_deref()));
    }
    event
        .labels()
        .map(|labels| (&*labels.namespace, Some(&*labels.task_name)))
}

fn sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .event(event.name.as_ref())
        .json_data(event)
        .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"))
}

/// Runs `pump` in its own task, feeding an SSE response; the task ends when the client goes.
fn spawn_stream<F, Fut>(pump: F) -> Response
where
    F: FnOnce(mpsc::Sender<SseEvent>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(pump(tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    });
    Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The next event of `events`, or `None` when the bus is gone or the client left.
async fn next(
    events: &mut EventStream,
    tx: &mpsc::Sender<SseEvent>,
) -> Option<std::sync::Arc<Event>> {
    tokio::select! {
        () = tx.closed() => None,
        event = events.recv() => event,
    }
}

/// What a stream asks the bus for (REST and GraphQL): event names or `*` patterns (blank
/// ones skipped) and a category; everything when neither is given.
pub(crate) fn interests<'a>(
    names: impl IntoIterator<Item = &'a str>,
    category: Option<&str>,
) -> Result<Vec<Interest>, ApiError> {
    let mut interests: Vec<Interest> = names
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains('*') {
                Interest::pattern(s)
            } else {
                Interest::name(s)
            }
        })
        .collect();
    if let Some(category) = category {
        let category: Category = category
            .parse()
            .map_err(|err| ApiError::bad_request(format!("`category`: {err}")))?;
        interests.push(Interest::Category(category));
    }
    if interests.is_empty() {
        interests.push(Interest::all());
    }
    Ok(interests)
}

/// Every event, as it happens. Filters combine: `events` (names or `*` patterns) or
/// `category` choose what the bus delivers; `namespace` and `name` keep one workflow's, with
/// the runtime switch changes that concern it.
#[utoipa::path(
    get, path = "/events/stream", tag = "events",
    params(EventFilter),
    responses(
        (status = 200, description = "A text/event-stream: each SSE event is named after the Tasker event and carries it as JSON", content_type = "text/event-stream", body = inline(schemas::SseEventData)),
        ReadErrors,
    )
)]
pub(crate) async fn event_stream(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<EventFilter>,
) -> Result<Response, ApiError> {
    let interests = interests(
        filter.events.as_deref().unwrap_or("").split(','),
        filter.category.as_deref(),
    )?;
    let mut events = shared.engine.events().stream(interests, CLIENT_BUFFER);
    let (namespace, name) = (filter.namespace, filter.name);
    Ok(spawn_stream(move |tx| async move {
        while let Some(event) = next(&mut events, &tx).await {
            let wanted = kept_by(&event, namespace.as_deref(), name.as_deref());
            if wanted && tx.send(sse(&event)).await.is_err() {
                return;
            }
        }
    }))
}

/// One task's events: first its stored history (SSE events named `transition`, each a
/// transition as in `/tasks/{task_id}/transitions`), then its live events as they happen. The
/// stream ends after the task's final event (complete, cancelled or resolved by hand), or at
/// once if it is already final; a task in error may still be retried, so its stream stays open.
#[utoipa::path(
    get, path = "/tasks/{task_id}/events", tag = "events",
    params(("task_id" = Uuid, Path, description = "The task")),
    responses(
        (status = 200, description = "A text/event-stream: `transition` events replaying the history, then the task's live events as JSON", content_type = "text/event-stream", body = inline(schemas::SseEventData)),
        ReadErrors,
    )
)]
pub(crate) async fn task_events(
    State(shared): State<Arc<Shared>>,
    Path(task_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let task_id = TaskId(task_id);
    // Subscribe before reading the history, so nothing falls between the two.
    let mut events = shared
        .engine
        .events()
        .stream(vec![Interest::all()], CLIENT_BUFFER);
    // The state before the history: a task final by then has its final transition in the
    // history; one that finishes later is followed live. (Read after, a task finishing in
    // between would end the stream with its last transition missing.)
    let finished = shared
        .engine
        .store()
        .task(task_id)
        .await?
        .state
        .is_finished();
    let replay = history(&shared, task_id).await?;
    let last_replayed = replay.transitions.iter().map(|t| t.created_at).max();
    Ok(spawn_stream(move |tx| async move {
        for transition in &replay.transitions {
            let event = SseEvent::default()
                .event("transition")
                .json_data(transition)
                .unwrap_or_else(|_| SseEvent::default().comment("unserializable transition"));
            if tx.send(event).await.is_err() {
                return;
            }
        }
        if finished {
            return;
        }
        while let Some(event) = next(&mut events, &tx).await {
            if event.task_id() != Some(task_id) {
                continue;
            }
            // Already replayed: the history was read after this event happened.
            if last_replayed.is_some_and(|at| event.timestamp < at) {
                continue;
            }
            if tx.send(sse(&event)).await.is_err() {
                return;
            }
            if let Payload::Task(payload) = &event.payload
                && payload.state.is_finished()
            {
                return;
            }
        }
    }))
}
