//! Recording finished attempts (group commit, one by one after a failed batch, kept with
//! backoff while the database is unavailable) and publishing their events.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tasker_domain::codes;
use tasker_domain::{StepError, StepErrorKind, StepId, StepState, TaskId, TaskState};
use tasker_events::names::{observability, workflow};
use tasker_events::{Event, Payload, TaskLabels, WorkflowPayload};
use tasker_persistence::{
    ClaimBatch, ClaimedStep, FollowingClaim, RecordReport, StepFailure, StepOutcome, TaskRecord,
};

use crate::emit::{StepEvent, StepIdentity, TaskEvent, distinct_tasks, labels_of};

use super::Coordinator;
use super::{Alongside, AttemptInfo, AttemptResult, Finished, identity, millis_since};

impl Coordinator {
    /// After a commit that recorded outcomes: publishes their events (`step.completed` /
    /// `step.failed`, with `observability.step.backoff` or
    /// `observability.step.max_retries_reached`, then the final event of each task the commit
    /// finalized), then runs the finalization hooks of those tasks and forgets them. Attempts
    /// and tasks this engine does not know (a reclaimed lease of another process) are looked up
    /// once and shared by both.
    pub(super) async fn after_record(
        &mut self,
        report: &RecordReport,
        attempts: &HashMap<StepId, AttemptInfo>,
        now: DateTime<Utc>,
    ) {
        let engine = &self.engine.clone();
        let mut stored: HashMap<TaskId, TaskRecord> = HashMap::new();
        // Hooks first (they run on tasks of their own), so a waiter woken by a final event finds
        // them tracked.
        for (task_id, state) in &report.finalized {
            let named_task_id = match self.tasks.get(task_id) {
                Some(info) => Some(info.named_task_id),
                None => match engine.inner.store.task(*task_id).await {
                    Ok(task) => {
                        let named_task_id = task.named_task_id;
                        stored.insert(*task_id, task);
                        Some(named_task_id)
                    }
                    Err(_) => None,
                },
            };
            if let Some(named_task_id) = named_task_id {
                engine.finalized(*task_id, named_task_id, *state);
            }
        }
        if engine.inner.bus.has_subscribers() {
            self.publish_report(report, attempts, &mut stored, now)
                .await;
        }
        for (task_id, _) in &report.finalized {
            self.tasks.remove(task_id);
        }
    }

    /// The events of [`after_record`]; tasks looked up land in `stored`.
    async fn publish_report(
        &self,
        report: &RecordReport,
        attempts: &HashMap<StepId, AttemptInfo>,
        stored: &mut HashMap<TaskId, TaskRecord>,
        now: DateTime<Utc>,
    ) {
        let inner = &self.engine.inner;
        let tasks = &self.tasks;
        let bus = &inner.bus;
        let mut labels_for = async |task_id: TaskId| -> Option<(TaskLabels, DateTime<Utc>)> {
            if let Some(info) = tasks.get(&task_id) {
                return Some((info.labels.clone(), info.created_at));
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = stored.entry(task_id) {
                slot.insert(inner.store.task(task_id).await.ok()?);
            }
            stored
                .get(&task_id)
                .map(|task| (labels_of(task), task.created_at))
        };
        for recorded in &report.recorded {
            let looked_up;
            let info = match attempts.get(&recorded.step_id) {
                Some(info) => info,
                None => {
                    let Ok(step) = inner.store.step(recorded.step_id).await else {
                        continue;
                    };
                    let Some((labels, _)) = labels_for(recorded.task_id).await else {
                        continue;
                    };
                    looked_up = AttemptInfo {
                        who: StepIdentity {
                            task_id: recorded.task_id,
                            step_id: recorded.step_id,
                            step_name: step.name.as_str().into(),
                            labels,
                            retry_limit: step.retry_limit,
                        },
                        attempt: recorded.attempts,
                        started: step.last_attempted_at,
                        error: step
                            .last_error
                            .and_then(|e| serde_json::from_value::<StepError>(e).ok()),
                    };
                    &looked_up
                }
            };
            let mut event = StepEvent::transition(
                &info.who,
                info.attempt,
                StepState::InProgress,
                recorded.state,
            );
            if let Some(started) = info.started {
                event = event.duration(started, now);
            }
            if recorded.state == StepState::Complete {
                event.publish(bus, now);
                continue;
            }
            event
                .error(info.error.clone())
                .next_attempt_at(recorded.next_attempt_at)
                .publish(bus, now);
            if recorded.next_attempt_at.is_some() {
                StepEvent::new(
                    observability::STEP_BACKOFF,
                    &info.who,
                    info.attempt,
                    None,
                    recorded.state,
                )
                .next_attempt_at(recorded.next_attempt_at)
                .publish(bus, now);
            } else if recorded.state == StepState::Error
                && info
                    .error
                    .as_ref()
                    .is_some_and(|e| e.kind == StepErrorKind::Retryable)
            {
                StepEvent::new(
                    observability::STEP_MAX_RETRIES_REACHED,
                    &info.who,
                    info.attempt,
                    None,
                    recorded.state,
                )
                .error(info.error.clone())
                .publish(bus, now);
            }
        }
        for (task_id, state) in &report.finalized {
            if let Some((labels, created_at)) = labels_for(*task_id).await {
                TaskEvent::new(*task_id, &labels, Some(TaskState::InProgress), *state)
                    .duration_since(created_at, now)
                    .publish(bus, now);
            }
        }
    }

    /// Finished attempts whose outcomes a failed commit could not record. They stay in memory (and
    /// in `running`, so their leases are still extended) and are recorded again with backoff until
    /// the database takes them or refuses them because their claim is gone.
    /// An attempt no longer runs here: forget it in the running set and its task's count.
    pub(super) fn release(&mut self, step: &ClaimedStep) {
        let inner = &self.engine.inner;
        inner.running.remove(&(step.step_id, step.attempt));
        // Before the recorded outcome's events are published, so a scrape that follows them
        // sees it.
        inner
            .metrics
            .gauges
            .running
            .store(inner.running.len() as u64, Ordering::Relaxed);
        if let Some(count) = self.per_task.get_mut(&step.task_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_task.remove(&step.task_id);
            }
        }
    }

    /// Records a batch of finished attempts and, in the same transaction, claims what there is room
    /// for (into `claimed`). When the batch's commit fails, each outcome is recorded on its own, so
    /// one the database refuses fails only its own step (permanently, `UNSTORABLE_RESULT`) and the
    /// others are recorded; outcomes that still cannot be recorded (the database is unavailable)
    /// come back in [`Recorded::kept`].
    pub(super) async fn record_batch(
        &mut self,
        batch: Vec<Finished>,
        claimed: &mut Option<(ClaimBatch, usize)>,
        alongside: &mut Option<Alongside>,
    ) -> Recorded {
        let engine = &self.engine.clone();
        let inner = &engine.inner;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut steps = Vec::with_capacity(batch.len());
        // Kept whether or not anyone listens yet: a subscriber that comes before the commit
        // gets the events, and an attempt missing here would be read back from the store.
        let mut attempts = HashMap::with_capacity(batch.len());
        for Finished {
            step,
            started,
            result,
        } in batch
        {
            // Results the database cannot hold fail their own step, permanently, before the batch
            // is written, so they never cost the other outcomes of the group commit theirs.
            let result = match result {
                AttemptResult::Completed(results) => {
                    match crate::limits::unstorable_results(&results, inner.config.max_result_bytes)
                    {
                        Some(error) => AttemptResult::Failed(error),
                        None => AttemptResult::Completed(results),
                    }
                }
                other => other,
            };
            let error = match result {
                AttemptResult::Completed(results) => {
                    outcomes.push(StepOutcome::Success {
                        step_id: step.step_id,
                        attempt: step.attempt,
                        results,
                    });
                    None
                }
                AttemptResult::Failed(error) => {
                    let error = crate::limits::storable_error(error);
                    let sample = (inner.random.lock().expect("random lock"))();
                    let retry_delay =
                        inner
                            .config
                            .backoff
                            .delay_for(step.attempt, error.retry_after, sample);
                    tracing::info!(task_id = %step.task_id, step = %step.name, attempt = step.attempt, error = %error, "step attempt failed");
                    outcomes.push(StepOutcome::Failure(StepFailure {
                        step_id: step.step_id,
                        attempt: step.attempt,
                        error: error.clone(),
                        retry_delay,
                    }));
                    Some(error)
                }
                // Cancelled with its task or step: the store already holds the final word.
                AttemptResult::Cancelled => {
                    self.release(&step);
                    continue;
                }
            };
            if let Some(info) = self.tasks.get(&step.task_id) {
                attempts.insert(
                    step.step_id,
                    AttemptInfo {
                        who: identity(&step, &info.labels),
                        attempt: step.attempt,
                        started: Some(started),
                        error,
                    },
                );
            }
            steps.push((step, started));
        }
        if outcomes.is_empty() {
            return Recorded::default();
        }
        let commit_started = std::time::Instant::now();
        let config = &inner.config;
        // The attempts of this batch count as running until they are recorded, but the claim
        // in the same transaction may take their places.
        let room = if inner.drain.is_cancelled() {
            0
        } else {
            self.reserve_room(inner.running.len().saturating_sub(steps.len()))
        };
        let filter = engine.current_claim_filter();
        let wanted = self.claim_need.wanted();
        // When more may be ready than these outcomes release, and their recording's claim
        // takes only the children it releases in its own statement (PostgreSQL, successes:
        // the store says), the claim of the rest runs on a connection of its own while the
        // outcomes are written, so the two statements overlap instead of queueing in one
        // transaction: the recording claims in half the room, the claim alongside in the
        // other half. Neither waits on the other's locks: a claim skips locked rows, and
        // takes none of the rows a recording writes (steps in progress, children not ready
        // yet, tasks already started). A failure's recording claims from the whole ready
        // set, where the two would skip each other's rows and both come back short with
        // steps left ready: it keeps the one transaction.
        let split = wanted
            && room >= 2
            && inner
                .store
                .hand_off_claims_only_released(&outcomes, &filter);
        let (record_room, head_room) = if split {
            let own = room.div_ceil(2);
            (own, room - own)
        } else {
            (room, 0)
        };
        let claim = FollowingClaim {
            limit: record_room,
            lease: config.lease,
            filter: &filter,
            // The last claim found nothing more ready and nothing woke this coordinator since:
            // only these outcomes can have readied a step, so the store claims only if they
            // did (a task's last outcome is recorded without a claim that would find nothing).
            only_if_readied: split || !wanted,
        };
        let now = inner.clock.now();
        let record = timed(inner.store.record_outcomes_and_claim_with(
            &inner.owner,
            &outcomes,
            now,
            claim,
        ));
        let (recorded, record_seconds) = if head_room > 0 {
            let head = timed(inner.store.claim_ready_steps_where(
                &inner.owner,
                head_room,
                config.lease,
                now,
                &filter,
            ));
            let (recorded, (head, seconds)) = tokio::join!(record, head);
            *alongside = Some(Alongside {
                claimed: head,
                asked: head_room,
                seconds,
            });
            recorded
        } else {
            record.await
        };
        let (report, kept) = match recorded {
            Ok((report, batch)) => {
                inner.metrics.record_duration.record(record_seconds, &[]);
                for (step, _) in &steps {
                    self.release(step);
                }
                // Steps these outcomes readied that the claim left (a claim after the
                // recording that failed, a task to start): another claim is wanted, as after a
                // claim that took all it asked for.
                let left_ready = report
                    .newly_ready
                    .iter()
                    .any(|id| !batch.steps().any(|step| step.step_id == *id));
                let asked = if left_ready { batch.len() } else { record_room };
                *claimed = (record_room > 0).then_some((batch, asked));
                (report, Vec::new())
            }
            Err(err) => {
                // Nothing was claimed: the room goes back for the pass's own claim.
                inner.release_slots(record_room);
                self.reserved -= record_room;
                tracing::warn!(error = %err, outcomes = outcomes.len(), "recording a batch of outcomes failed; recording them one by one");
                self.record_one_by_one(steps, outcomes, &mut attempts).await
            }
        };
        if !report.rejected.is_empty() {
            tracing::warn!(
                steps = report.rejected.len(),
                "outcomes refused: the claims no longer held"
            );
        }
        if report.recorded.is_empty() && report.finalized.is_empty() {
            return Recorded {
                due: Vec::new(),
                kept,
            };
        }
        let now = inner.clock.now();
        if inner.bus.has_subscribers() {
            let task_ids = distinct_tasks(report.recorded.iter().map(|r| r.task_id));
            inner.bus.publish(Event::new(
                workflow::STEPS_EXECUTION_COMPLETED,
                now,
                Payload::Workflow(WorkflowPayload {
                    owner: inner.owner.as_str().into(),
                    step_count: report.recorded.len(),
                    task_ids,
                    duration_ms: Some(millis_since(commit_started)),
                }),
            ));
        }
        self.after_record(&report, &attempts, now).await;
        Recorded {
            due: report
                .recorded
                .iter()
                .filter_map(|r| r.next_attempt_at)
                .collect(),
            kept,
        }
    }

    /// After a failed batch: records each outcome in a transaction of its own. An outcome the
    /// database refuses for what it holds (not for being unavailable) is replaced by a permanent
    /// `UNSTORABLE_RESULT` failure of its step; what cannot be recorded at all is returned, kept.
    async fn record_one_by_one(
        &mut self,
        steps: Vec<(ClaimedStep, DateTime<Utc>)>,
        outcomes: Vec<StepOutcome>,
        attempts: &mut HashMap<StepId, AttemptInfo>,
    ) -> (RecordReport, Vec<Finished>) {
        let engine = &self.engine.clone();
        let inner = &engine.inner;
        let mut report = RecordReport::default();
        let mut kept = Vec::new();
        for ((step, started), outcome) in steps.into_iter().zip(outcomes) {
            let now = inner.clock.now();
            let refused = match inner
                .store
                .record_outcomes(&inner.owner, std::slice::from_ref(&outcome), now)
                .await
            {
                Ok(one) => {
                    self.release(&step);
                    merge_reports(&mut report, one);
                    continue;
                }
                Err(err) if err.is_transient() => {
                    tracing::warn!(error = %err, step_id = %step.step_id, "recording an outcome failed; keeping it to try again");
                    kept.push(unrecorded(step, started, outcome));
                    continue;
                }
                Err(err) => err,
            };
            let error = crate::limits::storable_error(StepError::permanent(
                format!("the database refused to record the attempt's outcome: {refused}"),
                codes::UNSTORABLE_RESULT,
            ));
            tracing::warn!(error = %refused, step_id = %step.step_id, "the database refused an outcome; failing its step");
            let failure = StepOutcome::Failure(StepFailure {
                step_id: step.step_id,
                attempt: step.attempt,
                error: error.clone(),
                retry_delay: Duration::ZERO,
            });
            match inner
                .store
                .record_outcomes(&inner.owner, std::slice::from_ref(&failure), now)
                .await
            {
                Ok(one) => {
                    self.release(&step);
                    merge_reports(&mut report, one);
                    if let Some(info) = attempts.get_mut(&step.step_id) {
                        info.error = Some(error);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, step_id = %step.step_id, "recording an outcome failed; keeping it to try again");
                    kept.push(unrecorded(step, started, outcome));
                }
            }
        }
        (report, kept)
    }
}

/// What a pass's recording left: the next-attempt times of the failures it recorded, and the
/// finished attempts it could not record, kept to try again.
#[derive(Default)]
pub(super) struct Recorded {
    pub(super) due: Vec<DateTime<Utc>>,
    pub(super) kept: Vec<Finished>,
}

/// An outcome back as the attempt's end, to be recorded again.
fn unrecorded(step: ClaimedStep, started: DateTime<Utc>, outcome: StepOutcome) -> Finished {
    let result = match outcome {
        StepOutcome::Success { results, .. } => AttemptResult::Completed(results),
        StepOutcome::Failure(failure) => AttemptResult::Failed(failure.error),
    };
    Finished {
        step,
        started,
        result,
    }
}

fn merge_reports(into: &mut RecordReport, from: RecordReport) {
    into.recorded.extend(from.recorded);
    into.rejected.extend(from.rejected);
    into.newly_ready.extend(from.newly_ready);
    into.finalized.extend(from.finalized);
    into.reopened.extend(from.reopened);
}

/// `future`'s output and the seconds it took.
async fn timed<T>(future: impl std::future::Future<Output = T>) -> (T, f64) {
    let started = std::time::Instant::now();
    let output = future.await;
    (output, started.elapsed().as_secs_f64())
}
