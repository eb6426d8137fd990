//! Runs user task hooks ([`TaskHooks`]) isolated from the engine: a hook that panics or never
//! returns costs its own call, never the coordinator's lease renewal or an operator call.
//!
//! - Creation hooks run in the caller's request, under [`HOOK_TIMEOUT`] and `catch_unwind`; a
//!   panic or a timeout refuses the request like an error from the hook.
//! - Finalization hooks run on tasks of their own, outside the event-order gate and after the
//!   commit that finalized the task, under the same limits. [`HookRuns`] tracks them, so
//!   `Engine::wait_for_task` and `Engine::wait_until_idle` return once a finished task's
//!   annotations are stored.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::FutureExt as _;
use tasker_domain::{StepError, TaskId, TaskRequest, codes};
use tasker_handler::{Clock, TaskHooks};
use tokio::sync::watch;

/// How long one hook call may run (on the engine's clock) before it is abandoned.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// A panic's message, when it carries one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs `call` under [`HOOK_TIMEOUT`] on `clock` and `catch_unwind`: a permanent error (and an
/// error log naming `what`) when it panicked or timed out.
async fn isolated<T>(
    clock: &dyn Clock,
    what: &str,
    call: impl std::future::Future<Output = T>,
) -> Result<T, StepError> {
    tokio::select! {
        outcome = AssertUnwindSafe(call).catch_unwind() => outcome.map_err(|payload| {
            let message = panic_message(&*payload);
            tracing::error!(hook = what, panic = %message, "a task hook panicked");
            StepError::permanent(format!("the {what} hook panicked: {message}"), codes::HANDLER_PANIC)
        }),
        () = clock.sleep(HOOK_TIMEOUT) => {
            tracing::error!(hook = what, timeout_secs = HOOK_TIMEOUT.as_secs(), "a task hook timed out");
            Err(StepError::permanent(
                format!("the {what} hook did not return within {} s", HOOK_TIMEOUT.as_secs()),
                codes::TIMEOUT,
            ))
        }
    }
}

/// `establish_step_dependencies_and_defaults`, isolated: a panic or timeout is an error.
pub(crate) async fn establish(
    hooks: &dyn TaskHooks,
    request: &mut TaskRequest,
    clock: &dyn Clock,
) -> Result<(), StepError> {
    isolated(
        clock,
        "establish_step_dependencies_and_defaults",
        hooks.establish_step_dependencies_and_defaults(request),
    )
    .await?
}

/// `update_annotations`, isolated: a panic or timeout stores no annotation.
pub(crate) async fn annotations(
    hooks: &dyn TaskHooks,
    task_id: TaskId,
    state: tasker_domain::TaskState,
    clock: &dyn Clock,
) -> Vec<(String, serde_json::Value)> {
    isolated(
        clock,
        "update_annotations",
        hooks.update_annotations(task_id, state),
    )
    .await
    .unwrap_or_default()
}

/// The finalization hook runs in flight in this engine.
pub(crate) struct HookRuns {
    /// By task: becomes `true` when that task's run has finished.
    by_task: DashMap<TaskId, watch::Receiver<bool>>,
    /// How many runs are in flight.
    in_flight: watch::Sender<usize>,
}

impl Default for HookRuns {
    fn default() -> Self {
        Self {
            by_task: DashMap::new(),
            in_flight: watch::channel(0).0,
        }
    }
}

impl HookRuns {
    /// Runs `run` for `task_id` on a task of its own, tracked until it finishes. `runs` is the
    /// engine's (shared) tracker.
    pub(crate) fn spawn(
        runs: &Arc<Self>,
        task_id: TaskId,
        run: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (done, finished) = watch::channel(false);
        runs.by_task.insert(task_id, finished);
        runs.in_flight.send_modify(|n| *n += 1);
        let runs = Arc::clone(runs);
        tokio::spawn(async move {
            // `run` isolates the hooks themselves; this catches anything else, so the count
            // always comes down.
            if let Err(payload) = AssertUnwindSafe(run).catch_unwind().await {
                tracing::error!(%task_id, panic = %panic_message(&*payload), "finalizing a task panicked");
            }
            done.send_replace(true);
            runs.by_task
                .remove_if(&task_id, |_, receiver| *receiver.borrow());
            runs.in_flight.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// Waits until `task_id`'s run, if one is in flight here, has finished.
    pub(crate) async fn settled_for(&self, task_id: TaskId) {
        let receiver = self.by_task.get(&task_id).map(|r| r.clone());
        if let Some(mut receiver) = receiver {
            let _ = receiver.wait_for(|finished| *finished).await;
        }
    }

    /// Waits until no run is in flight.
    pub(crate) async fn settled(&self) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }
}
