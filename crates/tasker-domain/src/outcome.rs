//! What a step attempt can end in besides success: the typed errors a step handler returns.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepErrorKind {
    /// Try again after backoff, while attempts remain.
    Retryable,
    /// Never retry this step: the circuit stays open (the Rails engine retried these anyway).
    Permanent,
}

/// A failed step attempt, as a handler reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind_name} step error: {message}", kind_name = kind_label(*.kind))]
pub struct StepError {
    /// Retryable or permanent.
    pub kind: StepErrorKind,
    /// Human-readable description.
    pub message: String,
    /// A stable, machine-readable code (`PAYMENT_DECLINED`, `HTTP_404`, `TIMEOUT`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// An explicit wait before the next attempt (a handler's own or an HTTP `Retry-After`);
    /// wins over the computed backoff, capped by the policy's maximum.
    #[serde(
        default,
        with = "optional_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
    /// Structured details stored with the step's results.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub context: serde_json::Value,
}

const fn kind_label(kind: StepErrorKind) -> &'static str {
    match kind {
        StepErrorKind::Retryable => "retryable",
        StepErrorKind::Permanent => "permanent",
    }
}

impl StepError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrorKind::Retryable,
            message: message.into(),
            error_code: None,
            retry_after: None,
            context: serde_json::Value::Null,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>, error_code: impl Into<String>) -> Self {
        Self {
            kind: StepErrorKind::Permanent,
            message: message.into(),
            error_code: Some(error_code.into()),
            retry_after: None,
            context: serde_json::Value::Null,
        }
    }

    /// Asks for an explicit wait before the next attempt.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.error_code = Some(code.into());
        self
    }

    /// Attaches structured details.
    pub fn with_context(mut self, context: serde_json::Value) -> Self {
        self.context = context;
        self
    }

    /// True for [`StepErrorKind::Permanent`].
    pub fn is_permanent(&self) -> bool {
        self.kind == StepErrorKind::Permanent
    }
}

mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialize_with_millisecond_retry_after() {
        let err = StepError::retryable("rate limited").with_retry_after(Duration::from_secs(30));
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "retryable", "message": "rate limited", "retry_after": 30000})
        );
        let back: StepError = serde_json::from_value(json).unwrap();
        assert_eq!(back, err);
        assert_eq!(err.to_string(), "retryable step error: rate limited");
    }

    #[test]
    fn permanent_errors_carry_a_code() {
        let err = StepError::permanent("card declined", "PAYMENT_DECLINED");
        assert!(err.is_permanent());
        assert_eq!(err.error_code.as_deref(), Some("PAYMENT_DECLINED"));
    }
}
