//! Operator calls: cancel, resolve and retry tasks and steps; pause, resume and limit.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_domain::{StepId, StepState, TaskId, TaskState};
use tasker_events::{SwitchAction, TaskLabels};
use tasker_persistence::{RuntimeSwitch, SwitchChange, SwitchTarget, TaskRecord};
use tasker_state_machine::{TransitionOutcome, step as step_machine, task as task_machine};

use crate::emit::{StepEvent, StepIdentity, TaskEvent, labels_of};
use crate::error::EngineError;
use crate::operator::{Operator, refuse_step, refuse_step_of_finished_task, refuse_task};

use super::Engine;

impl Engine {
    /// Cancels a task and its unfinished steps; running handlers see their cancellation token.
    pub async fn cancel_task(&self, task_id: TaskId) -> Result<TaskState, EngineError> {
        self.cancel_task_as(task_id, &Operator::system()).await
    }

    /// [`cancel_task`](Self::cancel_task), recording who asked and why in the history.
    pub async fn cancel_task_as(
        &self,
        task_id: TaskId,
        operator: &Operator,
    ) -> Result<TaskState, EngineError> {
        let _gate = self.inner.gate.lock().await;
        let task = self.inner.store.task(task_id).await?;
        // Cancelling a cancelled task changes nothing and succeeds; a finished one stays so.
        if task.state != TaskState::Cancelled
            && !task_machine::allowed(task.state, TaskState::Cancelled)
        {
            let allowed: Vec<TaskState> = TaskState::ALL
                .into_iter()
                .filter(|s| task_machine::allowed(*s, TaskState::Cancelled))
                .collect();
            return Err(refuse_task(task_id, task.state, "cancel", &allowed));
        }
        let now = self.inner.clock.now();
        let (outcome, cancelled) = self
            .inner
            .store
            .transition_task_with_steps(
                task_id,
                task.state,
                TaskState::Cancelled,
                operator.metadata("cancel_requested"),
                now,
            )
            .await?;
        for changed in &cancelled {
            self.inner.revoked.insert(changed.step_id, ());
        }
        for entry in self.inner.running.iter() {
            if entry.value().0 == task_id {
                entry.value().1.cancel();
            }
        }
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            self.finalized(task_id, task.named_task_id, TaskState::Cancelled);
            let labels = labels_of(&task);
            let bus = &self.inner.bus;
            TaskEvent::new(task_id, &labels, Some(task.state), TaskState::Cancelled)
                .total_steps(task.total_steps as usize)
                .duration_since(task.created_at, now)
                .reason("cancel_requested")
                .publish(bus, now);
            self.publish_changed(task_id, &labels, &cancelled, "task_cancelled", now);
        }
        self.inner.wake.notify_one();
        Ok(TaskState::Cancelled)
    }

    /// Resolves a task in error by hand: it ends `resolved_manually` as it stands.
    pub async fn resolve_task(&self, task_id: TaskId) -> Result<(), EngineError> {
        self.resolve_task_as(task_id, &Operator::system()).await
    }

    /// [`resolve_task`](Self::resolve_task), recording who asked and why in the history.
    pub async fn resolve_task_as(
        &self,
        task_id: TaskId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        let _gate = self.inner.gate.lock().await;
        let task = self.inner.store.task(task_id).await?;
        if task.state != TaskState::Error {
            return Err(refuse_task(
                task_id,
                task.state,
                "resolve",
                &[TaskState::Error],
            ));
        }
        let now = self.inner.clock.now();
        let outcome = self
            .inner
            .store
            .transition_task(
                task_id,
                TaskState::Error,
                TaskState::ResolvedManually,
                operator.metadata("resolved_manually"),
                now,
            )
            .await?;
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            self.finalized(task_id, task.named_task_id, TaskState::ResolvedManually);
            TaskEvent::new(
                task_id,
                &labels_of(&task),
                Some(TaskState::Error),
                TaskState::ResolvedManually,
            )
            .total_steps(task.total_steps as usize)
            .duration_since(task.created_at, now)
            .reason("resolved_manually")
            .publish(&self.inner.bus, now);
        }
        Ok(())
    }

    /// Publishes the step events of steps an operator's task transition moved.
    fn publish_changed(
        &self,
        task_id: TaskId,
        labels: &TaskLabels,
        steps: &[tasker_persistence::ChangedStep],
        reason: &str,
        now: DateTime<Utc>,
    ) {
        for changed in steps {
            let who = StepIdentity {
                task_id,
                step_id: changed.step_id,
                step_name: changed.name.as_str().into(),
                labels: labels.clone(),
                retry_limit: changed.retry_limit,
            };
            // A reset step's event names the attempt it is reset for.
            let attempt = if changed.to_state == StepState::Pending {
                changed.attempts + 1
            } else {
                changed.attempts
            };
            StepEvent::transition(&who, attempt, changed.from_state, changed.to_state)
                .reason(reason)
                .publish(&self.inner.bus, now);
        }
    }

    /// Cancels one step; its dependants will not run, and the task ends in error once nothing
    /// else can progress.
    pub async fn cancel_step(&self, step_id: StepId) -> Result<(), EngineError> {
        self.cancel_step_as(step_id, &Operator::system()).await
    }

    /// [`cancel_step`](Self::cancel_step), recording who asked and why in the history.
    pub async fn cancel_step_as(
        &self,
        step_id: StepId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        self.operator_step_transition(
            step_id,
            StepState::Cancelled,
            None,
            ("cancel", "cancel_requested"),
            operator,
        )
        .await?;
        self.inner.revoked.insert(step_id, ());
        for entry in self.inner.running.iter() {
            if entry.key().0 == step_id {
                entry.value().1.cancel();
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Resolves a step by hand with `results`; it counts as done for its dependants. A task in
    /// error is reopened in the same transaction (its other failed steps stay as they are) and
    /// finishes at once if nothing is left to run.
    pub async fn resolve_step(&self, step_id: StepId, results: Value) -> Result<(), EngineError> {
        self.resolve_step_as(step_id, results, &Operator::system())
            .await
    }

    /// [`resolve_step`](Self::resolve_step), recording who asked and why in the history.
    pub async fn resolve_step_as(
        &self,
        step_id: StepId,
        results: Value,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        self.operator_step_transition(
            step_id,
            StepState::ResolvedManually,
            Some(results),
            ("resolve", "resolved_manually"),
            operator,
        )
        .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Sends one step in `error` back to `pending` for another attempt (its earlier attempts
    /// still count against its limit), reopening its task if the task ended in error.
    pub async fn retry_step_as(
        &self,
        step_id: StepId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        self.operator_step_transition(
            step_id,
            StepState::Pending,
            None,
            ("retry", "retry_requested"),
            operator,
        )
        .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// An operator's step transition with its events; returns the step's task as it was before.
    /// `action` is what the operator asked (`cancel`) and the reason the history records
    /// (`cancel_requested`). Asking for the state the step is in succeeds and changes nothing,
    /// except a retry: a step that is not in error has no failure to retry.
    async fn operator_step_transition(
        &self,
        step_id: StepId,
        to: StepState,
        results: Option<Value>,
        (action, reason): (&'static str, &str),
        operator: &Operator,
    ) -> Result<TaskRecord, EngineError> {
        let _gate = self.inner.gate.lock().await;
        let step = self.inner.store.step(step_id).await?;
        let task = self.inner.store.task(step.task_id).await?;
        if step.state != to || to == StepState::Pending {
            if task.state.is_finished() {
                return Err(refuse_step_of_finished_task(
                    task.task_id,
                    task.state,
                    action,
                ));
            }
            let allowed: Vec<StepState> = StepState::ALL
                .into_iter()
                .filter(|s| step_machine::allowed(*s, to))
                .collect();
            if !allowed.contains(&step.state) {
                return Err(refuse_step(
                    step_id, &step.name, step.state, action, &allowed,
                ));
            }
        }
        let now = self.inner.clock.now();
        let (outcome, report) = self
            .inner
            .store
            .transition_step(
                step_id,
                step.state,
                to,
                results,
                operator.metadata(reason),
                now,
            )
            .await?;
        if matches!(outcome, TransitionOutcome::Transitioned(_)) {
            let who = StepIdentity {
                task_id: step.task_id,
                step_id,
                step_name: step.name.as_str().into(),
                labels: labels_of(&task),
                retry_limit: step.retry_limit,
            };
            StepEvent::transition(&who, step.attempts, step.state, to)
                .reason(reason)
                .publish(&self.inner.bus, now);
        }
        let mut from = task.state;
        if report.reopened.contains(&task.task_id) {
            TaskEvent::new(
                task.task_id,
                &labels_of(&task),
                Some(from),
                TaskState::Pending,
            )
            .reason("reopened_by_resolution")
            .publish(&self.inner.bus, now);
            from = TaskState::Pending;
        }
        for (task_id, state) in &report.finalized {
            self.finalized(*task_id, task.named_task_id, *state);
            TaskEvent::new(*task_id, &labels_of(&task), Some(from), *state)
                .total_steps(task.total_steps as usize)
                .duration_since(task.created_at, now)
                .publish(&self.inner.bus, now);
        }
        Ok(task)
    }

    /// Sends a task that ended in error back to work, resetting its exhausted steps.
    pub async fn retry_task(&self, task_id: TaskId) -> Result<(), EngineError> {
        self.retry_task_as(task_id, &Operator::system()).await
    }

    /// The runtime switches in force (pauses and namespace limits), from the database.
    pub async fn runtime_switches(&self) -> Result<Vec<RuntimeSwitch>, EngineError> {
        Ok(self.inner.store.runtime_switches().await?)
    }

    /// The latest `limit` runtime switch changes, newest first.
    pub async fn runtime_switch_changes(
        &self,
        limit: u64,
    ) -> Result<Vec<SwitchChange>, EngineError> {
        Ok(self.inner.store.runtime_switch_changes(limit).await?)
    }

    /// Pauses a namespace or template: no process claims its ready steps until it is resumed
    /// (each within `engine.switch_refresh`; this one at once). Running attempts finish, and
    /// tasks can still be created. Logged with `operator` and its note as the reason, and
    /// published as `runtime.switch_changed` once committed (so are the changes below).
    pub async fn pause(
        &self,
        target: &SwitchTarget,
        operator: &Operator,
    ) -> Result<SwitchChange, EngineError> {
        let change = self
            .inner
            .store
            .pause(
                target,
                operator.note.as_deref().unwrap_or(""),
                &operator.actor,
                self.inner.clock.now(),
            )
            .await?;
        self.switched(SwitchAction::Pause, Some(&change)).await;
        Ok(change)
    }

    /// Lifts a pause; `None` when `target` was not paused (then nothing is published).
    pub async fn resume(
        &self,
        target: &SwitchTarget,
        operator: &Operator,
    ) -> Result<Option<SwitchChange>, EngineError> {
        let change = self
            .inner
            .store
            .resume(
                target,
                operator.note.as_deref().unwrap_or(""),
                &operator.actor,
                self.inner.clock.now(),
            )
            .await?;
        self.switched(SwitchAction::Resume, change.as_ref()).await;
        Ok(change)
    }

    /// Caps `namespace`'s step attempts running at once across every process (`None` lifts the
    /// cap; then `None` comes back when there was none).
    pub async fn limit_namespace(
        &self,
        namespace: &str,
        max_running: Option<u32>,
        operator: &Operator,
    ) -> Result<Option<SwitchChange>, EngineError> {
        let change = self
            .inner
            .store
            .limit_namespace(
                namespace,
                max_running,
                operator.note.as_deref().unwrap_or(""),
                &operator.actor,
                self.inner.clock.now(),
            )
            .await?;
        let action = if max_running.is_some() {
            SwitchAction::Limit
        } else {
            SwitchAction::Unlimit
        };
        self.switched(action, change.as_ref()).await;
        Ok(change)
    }

    /// After a switch changed here (`change`, committed; `None`: nothing changed): this engine
    /// applies it at once, and subscribers hear of it.
    async fn switched(&self, action: SwitchAction, change: Option<&SwitchChange>) {
        self.refresh_claim_filter().await;
        self.inner.wake.notify_one();
        if let Some(change) = change {
            crate::emit::publish_switch_change(&self.inner.bus, action, change);
        }
    }

    /// [`retry_task`](Self::retry_task), recording who asked and why in the history.
    pub async fn retry_task_as(
        &self,
        task_id: TaskId,
        operator: &Operator,
    ) -> Result<(), EngineError> {
        let _gate = self.inner.gate.lock().await;
        let state = self.inner.store.task(task_id).await?.state;
        if state != TaskState::Error {
            return Err(refuse_task(task_id, state, "retry", &[TaskState::Error]));
        }
        let now = self.inner.clock.now();
        let (_, reset) = self
            .inner
            .store
            .transition_task_with_steps(
                task_id,
                TaskState::Error,
                TaskState::Pending,
                operator.metadata("retry_requested"),
                now,
            )
            .await?;
        let task = self.inner.store.task(task_id).await?;
        let labels = labels_of(&task);
        TaskEvent::new(task_id, &labels, Some(TaskState::Error), TaskState::Pending)
            .reason("retry_requested")
            .publish(&self.inner.bus, now);
        self.publish_changed(task_id, &labels, &reset, "task_retry", now);
        self.inner.wake.notify_one();
        Ok(())
    }
}
