//! What callers say about the calls they make: who performs an operator action and why (kept
//! in the transition history), and how a task is created (its correlation id and idempotency
//! key).

use serde_json::{Value, json};

/// Who performs an operator action (cancel, retry, resolve) and why. The transition that
/// records the action carries both in its metadata, beside the engine's own reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The authenticated subject, or `system` for calls made from code.
    pub actor: String,
    /// The operator's own words, if any.
    pub note: Option<String>,
}

impl Operator {
    /// An action taken by code, not by a person.
    pub fn system() -> Self {
        Self {
            actor: "system".into(),
            note: None,
        }
    }

    /// An action by `actor`, with an optional note.
    pub fn new(actor: impl Into<String>, note: Option<String>) -> Self {
        Self {
            actor: actor.into(),
            note,
        }
    }

    /// The transition metadata for an action whose engine reason is `reason`.
    pub(crate) fn metadata(&self, reason: &str) -> Value {
        let mut metadata = json!({"reason": reason, "actor": self.actor});
        if let Some(note) = &self.note {
            metadata["note"] = note.as_str().into();
        }
        metadata
    }
}

/// How to create a task beyond what its request says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// The correlation id to store (a new one is generated when absent).
    pub correlation_id: Option<String>,
    /// A caller's idempotency key: the same key for the same workflow is the same task.
    pub idempotency_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_actor_and_keeps_the_engine_reason() {
        assert_eq!(
            Operator::system().metadata("cancel_requested"),
            json!({"reason": "cancel_requested", "actor": "system"})
        );
        assert_eq!(
            Operator::new("alice", Some("customer asked".into())).metadata("retry_requested"),
            json!({"reason": "retry_requested", "actor": "alice", "note": "customer asked"})
        );
    }
}
