//! SQLite: the write-ahead log checkpointed off the writer's path.
//!
//! SQLite copies the WAL back into the database file (a checkpoint) in whichever connection
//! commits past `wal_autocheckpoint` pages, inside that commit and with its fsyncs: one write
//! transaction in some hundreds took ten times as long as the others, and B2's p99 was seven
//! times its p50. So the store's writer connection checkpoints by itself only as a safety net
//! ([`WRITER_THRESHOLD`] pages), and a task of the store's own runs a passive checkpoint on a
//! pool connection every [`EVERY_WRITES`] write transactions and every [`EVERY`]: commits do not
//! wait for the copying and its fsyncs. A passive checkpoint copies what no reader still needs and waits for nobody;
//! the writer's next transaction after a complete one starts the WAL afresh.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// Write transactions between two checkpoints: a hand-off writes a few pages, so the WAL stays
/// near 20 MB. Each complete checkpoint costs the writer's next transaction an fsync (it starts
/// the WAL afresh and syncs its header), so checkpoints are kept rarer than SQLite's default
/// of one per 1,000 pages: with one per 128 transactions B2's p99 was six times its p50.
pub(super) const EVERY_WRITES: u64 = 1024;

/// The longest time between two checkpoints, for a store whose transactions are few and large.
const EVERY: Duration = Duration::from_secs(1);

/// The writer's own `wal_autocheckpoint`, in pages (4 KiB each): reached only if the
/// checkpointer falls behind.
pub(super) const WRITER_THRESHOLD: &str = "20000";

/// The checkpointing task of a store and its clones, stopped when the last clone is dropped or
/// the store closed.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: Arc<Notify>,
    runs: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing on `db`, a pool that is not the writer.
    pub(super) fn start(db: DatabaseConnection) -> Self {
        let wake = Arc::new(Notify::new());
        let (ran, runs) = watch::channel(0_u64);
        let woken = wake.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + EVERY, EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = woken.notified() => {}
                    _ = tick.tick() => {}
                }
                match db
                    .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                    .await
                {
                    Ok(_) => ran.send_modify(|n| *n += 1),
                    Err(err) => {
                        tracing::debug!(error = %err, "WAL checkpoint failed; the next one tries again");
                    }
                }
            }
        });
        Self { wake, runs, task }
    }

    /// The store began its `n`-th write transaction: every [`EVERY_WRITES`]-th wakes the task.
    pub(super) fn wrote(&self, n: u64) {
        if n.is_multiple_of(EVERY_WRITES) {
            self.wake.notify_one();
        }
    }

    /// How many checkpoints have run, as they run.
    pub(crate) fn runs(&self) -> watch::Receiver<u64> {
        self.runs.clone()
    }

    /// Stops the task.
    pub(super) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
