//! Starting one attempt: its handler, context, span and deadline, on a task of its own.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use tasker_domain::codes;
use tasker_domain::duration::{MAX_STEP_TIMEOUT, saturating_add};
use tasker_domain::{StepError, StepState};
use tasker_persistence::{ClaimedStep, StepInputs};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::emit::{BusSink, StepEvent};
use crate::trace_context;
use tasker_handler::{StepContext, StepEvents, StepHandler};

use super::Coordinator;
use super::{AttemptResult, Finished, TaskInfo, identity};
use crate::engine::Engine;

impl Coordinator {
    /// Starts an attempt of a claimed step on a task of its own; its end comes back on the
    /// coordinator's channel.
    pub(super) async fn spawn_attempt(&mut self, step: ClaimedStep, inputs: StepInputs) {
        let engine = &self.engine;
        let inner = &engine.inner;
        let token = inner.shutdown.child_token();
        inner
            .running
            .insert((step.step_id, step.attempt), (step.task_id, token.clone()));
        inner
            .metrics
            .gauges
            .running
            .store(inner.running.len() as u64, Ordering::Relaxed);
        *self.per_task.entry(step.task_id).or_default() += 1;
        let tx = self.tx.clone();
        let started = inner.clock.now();
        let info = self.tasks.get(&step.task_id);
        let trace_parent = inputs.trace_parent.clone();
        let (handler, context, timeout) =
            match prepare(engine, &step, inputs, info, token.clone()).await {
                Ok(prepared) => prepared,
                Err(error) => {
                    let _ = tx.send(Finished {
                        step,
                        started,
                        result: AttemptResult::Failed(error),
                    });
                    return;
                }
            };
        if let Some(info) = info
            && inner.bus.has_subscribers()
        {
            StepEvent::new(
                tasker_events::names::step::BEFORE_HANDLE,
                &identity(&step, &info.labels),
                step.attempt,
                None,
                StepState::InProgress,
            )
            .publish(&inner.bus, started);
        }
        let parent = info.map_or_else(Span::none, |info| info.span.clone());
        let span = tracing::info_span!(
            parent: &parent,
            "step_attempt",
            task_id = %step.task_id,
            step_id = %step.step_id,
            namespace = %context.namespace,
            template = %context.task_name,
            version = %context.version,
            step = %step.name,
            attempt = step.attempt,
            correlation_id = %context.correlation_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        // The attempt is a child of the task's creation, wherever that happened: the same trace
        // in every process.
        if let Some(parent) = &trace_parent {
            trace_context::set_parent(&span, parent);
        }
        trace_context::record_ids(&span);
        let clock = inner.clock.clone();
        // The deadline is fixed now, at claim time, so it does not depend on when the task starts.
        let deadline = saturating_add(inner.clock.now(), timeout);
        tokio::spawn(
            async move {
                let attempt = AssertUnwindSafe(handler.handle(context)).catch_unwind();
                let outcome = tokio::select! {
                    outcome = attempt => Some(outcome),
                    () = clock.sleep_until(deadline) => None,
                };
                let result = match outcome {
                    _ if token.is_cancelled() => AttemptResult::Cancelled,
                    Some(Ok(Ok(results))) => AttemptResult::Completed(results),
                    Some(Ok(Err(error))) => AttemptResult::Failed(error),
                    Some(Err(panic)) => {
                        let message = crate::hooks::panic_message(&*panic);
                        tracing::error!(%message, "step handler panicked");
                        AttemptResult::Failed(
                            StepError::retryable(format!("handler panicked: {message}"))
                                .with_code(codes::HANDLER_PANIC),
                        )
                    }
                    None => AttemptResult::Failed(
                        StepError::retryable(format!("attempt timed out after {timeout:?}"))
                            .with_code(codes::TIMEOUT),
                    ),
                };
                let _ = tx.send(Finished {
                    step,
                    started,
                    result,
                });
            }
            .instrument(span),
        );
    }
}

async fn prepare(
    engine: &Engine,
    step: &ClaimedStep,
    inputs: StepInputs,
    info: Option<&TaskInfo>,
    token: CancellationToken,
) -> Result<(Arc<dyn StepHandler>, StepContext, Duration), StepError> {
    let known = engine.known(step.named_task_id).await.map_err(|e| {
        StepError::retryable(format!("loading the task template failed: {e}"))
            .with_code(codes::TEMPLATE_UNAVAILABLE)
    })?;
    let template = &known.template;
    let step_template = template.step(&step.name).ok_or_else(|| {
        StepError::permanent(
            format!(
                "template {} has no step `{}`",
                template.full_name(),
                step.name
            ),
            codes::STEP_NOT_IN_TEMPLATE,
        )
    })?;
    let handler = engine
        .inner
        .registry
        .step_handler(&step_template.handler_class)
        .ok_or_else(|| {
            StepError::retryable(format!(
                "no step handler is registered as `{}` in this process",
                step_template.handler_class
            ))
            .with_code(codes::HANDLER_NOT_FOUND)
        })?;
    let labels = info.map_or_else(
        || known.names.labels(&inputs.correlation_id),
        |info| info.labels.clone(),
    );
    let context = StepContext {
        task_id: step.task_id,
        step_id: step.step_id,
        step_name: step.name.clone(),
        namespace: template.namespace_name.clone(),
        task_name: template.name.clone(),
        version: template.version.clone(),
        task_context: Arc::new(inputs.task_context),
        config: step_template.handler_config.clone(),
        inputs: inputs.inputs,
        parent_results: inputs.parent_results,
        attempt: step.attempt,
        retry_limit: step.retry_limit,
        idempotency_key: step.step_id.to_string(),
        correlation_id: inputs.correlation_id,
        cancellation: token,
        events: StepEvents::new(Arc::new(BusSink {
            bus: engine.inner.bus.clone(),
            clock: engine.inner.clock.clone(),
            task_id: step.task_id,
            step_id: step.step_id,
            step_name: step.name.as_str().into(),
            labels,
        })),
    };
    // Capped again here: a template stored before the cap existed (or written to the catalogue
    // by another tool) must not make the deadline overflow.
    let timeout = step_template
        .timeout
        .unwrap_or(engine.inner.config.default_step_timeout)
        .min(MAX_STEP_TIMEOUT);
    Ok((handler, context, timeout))
}
