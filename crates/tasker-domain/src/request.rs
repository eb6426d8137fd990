//! [`TaskRequest`]: what a caller asks for when it creates a task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Initiator, source system and reason when a request names none (the Rails default).
pub const UNKNOWN: &str = "unknown";

/// A request to create one task from a registered template.
///
/// `version: None` means "the highest registered semver version".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// The template's name.
    pub name: String,
    /// The template's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// An exact semver version, or none for the latest.
    #[serde(default)]
    pub version: Option<semver::Version>,
    /// The task's input, validated against the template's schema.
    #[serde(default = "empty_object")]
    pub context: serde_json::Value,
    /// Who asked for the task.
    #[serde(default = "unknown")]
    pub initiator: String,
    /// Which system asked for the task.
    #[serde(default = "unknown")]
    pub source_system: String,
    /// Why the task was requested.
    #[serde(default = "unknown")]
    pub reason: String,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Steps to skip; only steps the template marks `skippable` may be named.
    #[serde(default)]
    pub bypass_steps: Vec<String>,
    /// When the request was made; the store fills in "now" when absent.
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}
fn unknown() -> String {
    UNKNOWN.to_owned()
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl TaskRequest {
    /// A request for the latest version of `name` in the default namespace, with an empty context.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: default_namespace(),
            version: None,
            context: empty_object(),
            initiator: unknown(),
            source_system: unknown(),
            reason: unknown(),
            tags: Vec::new(),
            bypass_steps: Vec::new(),
            requested_at: None,
        }
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Pins an exact version.
    pub fn version(mut self, version: semver::Version) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the context.
    pub fn context(mut self, context: serde_json::Value) -> Self {
        self.context = context;
        self
    }

    /// Names steps to skip.
    pub fn bypass_steps<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.bypass_steps = steps.into_iter().map(Into::into).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_gets_the_rails_defaults() {
        let request: TaskRequest = serde_json::from_str(r#"{"name": "process_order"}"#).unwrap();
        assert_eq!(request, TaskRequest::new("process_order"));
        assert_eq!(request.namespace, "default");
        assert_eq!(request.initiator, "unknown");
        assert_eq!(request.context, serde_json::json!({}));
    }

    #[test]
    fn unknown_request_fields_are_rejected() {
        let err = serde_json::from_str::<TaskRequest>(r#"{"name": "x", "contxt": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `contxt`"), "{err}");
    }

    #[test]
    fn version_must_be_semver() {
        let err = serde_json::from_str::<TaskRequest>(r#"{"name": "x", "version": "1.0"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version"), "{err}");
    }
}
