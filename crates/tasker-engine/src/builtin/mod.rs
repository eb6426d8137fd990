//! Built-in step handlers, usable from YAML with no Rust code.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::StepError;

use tasker_domain::codes;
use tasker_handler::{StepContext, StepHandler};

use crate::registry::Registry;

pub(crate) fn register_all(registry: &Registry) {
    registry.replace_step_handler("tasker::noop", Arc::new(NoopHandler));
    registry.replace_step_handler("tasker::echo", Arc::new(EchoHandler));
    registry.replace_step_handler("tasker::sleep", Arc::new(SleepHandler));
    registry.replace_step_handler("tasker::fail", Arc::new(FailHandler));
    #[cfg(feature = "http")]
    registry.replace_step_handler("tasker::http", Arc::new(tasker_http::HttpHandler::new()));
}

/// `tasker::noop`: returns `handler_config.result`, or an empty object.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

#[async_trait::async_trait]
impl StepHandler for NoopHandler {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        Ok(step
            .config
            .get("result")
            .cloned()
            .unwrap_or_else(|| json!({})))
    }
}

/// `tasker::echo`: returns the task context and its parents' results.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

#[async_trait::async_trait]
impl StepHandler for EchoHandler {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        Ok(json!({"context": *step.task_context, "parents": step.parent_results}))
    }
}

/// `tasker::sleep`: waits `handler_config.millis` (cancellable), then returns `{slept_ms}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SleepHandler;

#[async_trait::async_trait]
impl StepHandler for SleepHandler {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let millis = step
            .config
            .get("millis")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                StepError::permanent(
                    "tasker::sleep needs handler_config.millis, a whole number",
                    codes::INVALID_CONFIG,
                )
            })?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(millis)) => Ok(json!({"slept_ms": millis})),
            () = step.cancellation.cancelled() => Err(StepError::retryable("cancelled while sleeping").with_code(codes::CANCELLED)),
        }
    }
}

/// `tasker::fail`: fails the first `handler_config.times` attempts (retryable, or permanent when
/// `handler_config.permanent` is true; `retry_after_ms` asks for an explicit wait), then
/// succeeds with `{attempts}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailHandler;

#[async_trait::async_trait]
impl StepHandler for FailHandler {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let times = step
            .config
            .get("times")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if u64::from(step.attempt) > times {
            return Ok(json!({"attempts": step.attempt}));
        }
        let message = format!(
            "tasker::fail: attempt {} of {times} planned failures",
            step.attempt
        );
        let mut error = if step
            .config
            .get("permanent")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            StepError::permanent(message, codes::PLANNED_FAILURE)
        } else {
            StepError::retryable(message).with_code(codes::PLANNED_FAILURE)
        };
        if let Some(ms) = step.config.get("retry_after_ms").and_then(Value::as_u64) {
            error = error.with_retry_after(Duration::from_millis(ms));
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn context(config: Value, attempt: u32) -> StepContext {
        let (mut context, _) = StepContext::standalone(config);
        context.task_context = Arc::new(json!({"order": 7}));
        context.parent_results = BTreeMap::from([("a".to_owned(), json!({"x": 1}))]);
        context.attempt = attempt;
        context
    }

    #[tokio::test]
    async fn noop_and_echo() {
        assert_eq!(
            NoopHandler.handle(context(json!({}), 1)).await.unwrap(),
            json!({})
        );
        assert_eq!(
            NoopHandler
                .handle(context(json!({"result": {"ok": true}}), 1))
                .await
                .unwrap(),
            json!({"ok": true})
        );
        assert_eq!(
            EchoHandler.handle(context(json!({}), 1)).await.unwrap(),
            json!({"context": {"order": 7}, "parents": {"a": {"x": 1}}})
        );
    }

    #[tokio::test]
    async fn fail_fails_the_planned_attempts_then_succeeds() {
        let config = json!({"times": 2, "retry_after_ms": 1500});
        let first = FailHandler
            .handle(context(config.clone(), 1))
            .await
            .unwrap_err();
        assert!(!first.is_permanent());
        assert_eq!(first.retry_after, Some(Duration::from_millis(1500)));
        assert!(
            FailHandler
                .handle(context(config.clone(), 2))
                .await
                .is_err()
        );
        assert_eq!(
            FailHandler.handle(context(config, 3)).await.unwrap(),
            json!({"attempts": 3})
        );
        let permanent = FailHandler
            .handle(context(json!({"permanent": true}), 1))
            .await
            .unwrap_err();
        assert_eq!(
            permanent.error_code.as_deref(),
            Some(codes::PLANNED_FAILURE)
        );
        assert!(permanent.is_permanent());
    }

    #[tokio::test]
    async fn sleep_needs_millis_and_stops_when_cancelled() {
        let err = SleepHandler
            .handle(context(json!({}), 1))
            .await
            .unwrap_err();
        assert_eq!(err.error_code.as_deref(), Some(codes::INVALID_CONFIG));
        let step = context(json!({"millis": 3_600_000}), 1);
        step.cancellation.cancel();
        let err = SleepHandler.handle(step).await.unwrap_err();
        assert_eq!(err.error_code.as_deref(), Some("CANCELLED"));
        assert_eq!(
            SleepHandler
                .handle(context(json!({"millis": 0}), 1))
                .await
                .unwrap(),
            json!({"slept_ms": 0})
        );
    }
}
