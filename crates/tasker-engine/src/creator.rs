//! Group-committed task creation: concurrent [`crate::Engine::create_task`] calls are written
//! together, one transaction per batch, so creation is not capped at one commit per task.
//!
//! Each caller validates its own request first ([`Store::prepare_task`]); only valid tasks are
//! queued. One writer task takes whatever is queued (at most [`MAX_BATCH`]), writes it with
//! [`Store::create_prepared`], hands each caller its own result, and repeats. There is no
//! waiting for a batch to fill: a lone caller is written at once, and callers that arrive
//! while a write is in flight form the next batch.

use std::sync::Mutex;

use tasker_persistence::{CreatedTask, PreparedTask, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::error::EngineError;

/// The most tasks written in one transaction.
pub(crate) const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<CreatedTask, StoreError>>;

/// The queue in front of the writer task.
pub(crate) struct Creator {
    store: Store,
    queue: Mutex<Option<mpsc::UnboundedSender<(PreparedTask, Reply)>>>,
}

impl Creator {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            queue: Mutex::new(None),
        }
    }

    /// Writes `task` in the next batch and returns its own result.
    pub(crate) async fn create(&self, task: PreparedTask) -> Result<CreatedTask, EngineError> {
        let (reply, result) = oneshot::channel();
        self.enqueue((task, reply));
        match result.await {
            Ok(result) => Ok(result?),
            // The writer went away mid-batch: its runtime is shutting down.
            Err(_) => Err(EngineError::ShutDown),
        }
    }

    fn enqueue(&self, job: (PreparedTask, Reply)) {
        let mut queue = self.queue.lock().expect("creator queue lock");
        let job = match queue.as_ref() {
            Some(sender) => match sender.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        // No writer yet, or its runtime ended (an engine used from several runtimes in turn):
        // start one on the caller's runtime.
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(self.store.clone(), receiver));
        // The receiver is alive: it was just moved into the writer.
        let _ = sender.send(job);
        *queue = Some(sender);
    }
}

/// The writer: takes what is queued, writes it in one transaction, replies, repeats. Ends when
/// the engine (the sender) is dropped.
async fn write_batches(store: Store, mut receiver: mpsc::UnboundedReceiver<(PreparedTask, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (tasks, replies): (Vec<PreparedTask>, Vec<Reply>) = batch.drain(..).unzip();
        let results = store.create_prepared(tasks).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that stopped waiting still has its task stored, as with a lone create.
            let _ = reply.send(result);
        }
    }
}
