//! Group-committed task creation: concurrent [`crate::Engine::create_task`] calls are written
//! together, one transaction per batch, so creation is not capped at one commit per task.
//!
//! Each caller validates its own request first ([`Store::prepare_task`]); only valid tasks are
//! queued. There is no waiting for a batch to fill:
//! - a caller that finds no write in flight yields once (so callers that are ready to run can
//!   queue behind it) and, still alone, writes its own task itself (no hand-off to another
//!   task, so a lone caller pays nothing for batching); if others queued, it joins them;
//! - callers that arrive while a write is in flight queue up; when that write ends, a writer
//!   task takes what is queued (at most [`MAX_BATCH`]), writes it with
//!   [`Store::create_prepared`] in one transaction, hands each caller its own result, and
//!   repeats until the queue is empty.

use std::sync::{Arc, Mutex, MutexGuard};

use tasker_persistence::{CreatedTask, PreparedTask, Store, StoreError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::EngineError;

/// The most tasks written in one transaction.
pub(crate) const MAX_BATCH: usize = 64;

type Job = (
    PreparedTask,
    oneshot::Sender<Result<CreatedTask, StoreError>>,
);

/// The queue in front of the database.
pub(crate) struct Creator {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A write is in flight (a lone caller's own, or the writer task's).
    writing: bool,
    queue: Vec<Job>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a panic-prone call.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Creator {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Writes `task`, alone or in the next batch, and returns its own result.
    pub(crate) async fn create(&self, task: PreparedTask) -> Result<CreatedTask, EngineError> {
        let waiting = {
            let mut state = self.shared.state();
            if state.writing {
                let (reply, result) = oneshot::channel();
                state.queue.push((task, reply));
                Err(result)
            } else {
                state.writing = true;
                Ok(task)
            }
        };
        match waiting {
            Ok(task) => {
                // Hands the queue to a writer when this caller is done, even if it stops waiting
                // half-way.
                let handoff = Handoff {
                    shared: self.shared.clone(),
                    runtime: Handle::current(),
                };
                // Let callers that are ready to run now queue up behind this one (a yield, not
                // a timed wait: a lone caller goes straight on).
                tokio::task::yield_now().await;
                let joined = {
                    let mut state = self.shared.state();
                    if state.queue.is_empty() {
                        Err(task)
                    } else {
                        let (reply, result) = oneshot::channel();
                        state.queue.insert(0, (task, reply));
                        Ok(result)
                    }
                };
                match joined {
                    // Alone: write it here, with no hand-off to another task.
                    Err(task) => {
                        let mut results = self.shared.store.create_prepared(vec![task]).await;
                        Ok(results.pop().expect("one result per task")?)
                    }
                    // Others are waiting: the writer task writes this one with theirs.
                    Ok(result) => {
                        drop(handoff);
                        match result.await {
                            Ok(result) => Ok(result?),
                            Err(_) => Err(EngineError::ShutDown),
                        }
                    }
                }
            }
            Err(result) => match result.await {
                Ok(result) => Ok(result?),
                // The writer was dropped mid-batch: its runtime is shutting down.
                Err(_) => Err(EngineError::ShutDown),
            },
        }
    }
}

/// Ends a lone caller's write: clears `writing`, or starts a writer for what queued meanwhile.
struct Handoff {
    shared: Arc<Shared>,
    runtime: Handle,
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if state.queue.is_empty() {
            state.writing = false;
        } else {
            drop(state);
            // `writing` stays set: the writer owns it now. The guard is created here, so even a
            // writer that never runs (its runtime shutting down) releases the queue.
            let writer = Writer {
                shared: self.shared.clone(),
                finished: false,
            };
            self.runtime.spawn(write_batches(writer));
        }
    }
}

/// The writer task's hold on `writing`. Dropped before it finished (its runtime shutting down),
/// it fails the queued callers ([`EngineError::ShutDown`]) and clears `writing`.
struct Writer {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.shared.state();
            state.queue.clear();
            state.writing = false;
        }
    }
}

/// The writer: takes what is queued, writes it in one transaction, replies, and repeats until
/// the queue is empty.
async fn write_batches(mut writer: Writer) {
    loop {
        // As above: callers about to queue get to, so batches stay full under load.
        tokio::task::yield_now().await;
        let batch: Vec<Job> = {
            let mut state = writer.shared.state();
            if state.queue.is_empty() {
                state.writing = false;
                writer.finished = true;
                return;
            }
            let take = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..take).collect()
        };
        let (tasks, replies): (Vec<PreparedTask>, Vec<_>) = batch.into_iter().unzip();
        let results = writer.shared.store.create_prepared(tasks).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that stopped waiting still has its task stored, as with a lone create.
            let _ = reply.send(result);
        }
    }
}
