//! Sensitive-key redaction for what leaves a workflow's own storage: log fields and event
//! payloads. A key is sensitive when, compared case-insensitively, it CONTAINS one of the
//! configured names (a substring match: `db_password`, `X-Api-Key`-style `api_key_id` and
//! `refresh_token` all match), and its value is replaced by [`REDACTED`] wherever it sits in a
//! JSON document (objects nested in objects and arrays included). Task contexts and step results
//! are stored as given: workflows need them; only the copies that go to logs and events are
//! redacted.

use std::sync::Arc;

use serde_json::Value;

/// What a sensitive value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// The names redacted when none are configured.
pub const DEFAULT_SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credentials",
];

/// Decides which keys are sensitive and blanks their values. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redactor {
    /// Lower-cased names; a key matches when it contains one of them.
    names: Arc<[String]>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_SENSITIVE_KEYS)
    }
}

impl Redactor {
    /// A redactor for `names` (matched case-insensitively, as substrings). Empty names are
    /// ignored; no names at all redacts nothing.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let names: Vec<String> = names
            .into_iter()
            .map(|name| name.as_ref().trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        Self {
            names: names.into(),
        }
    }

    /// The configured names, lower-cased.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether a value under `key` must not be shown.
    pub fn is_sensitive(&self, key: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let key = key.to_ascii_lowercase();
        self.names.iter().any(|name| key.contains(name.as_str()))
    }

    /// Replaces, in place, the value of every sensitive key in `value` (at any depth) by
    /// [`REDACTED`]. Returns whether anything changed.
    pub fn redact(&self, value: &mut Value) -> bool {
        if self.names.is_empty() {
            return false;
        }
        match value {
            Value::Object(map) => {
                let mut changed = false;
                for (key, item) in map.iter_mut() {
                    if self.is_sensitive(key) {
                        if item.as_str() != Some(REDACTED) {
                            *item = Value::String(REDACTED.to_owned());
                            changed = true;
                        }
                    } else {
                        changed |= self.redact(item);
                    }
                }
                changed
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact(item) | changed),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sensitive_keys_match_case_insensitively_as_substrings() {
        let redactor = Redactor::default();
        for key in [
            "password",
            "DB_PASSWORD",
            "Authorization",
            "set-cookie",
            "refresh_token",
            "X_API_KEY",
            "apiKey",
            "aws_credentials",
            "private_key_pem",
            "client_secret",
        ] {
            assert!(redactor.is_sensitive(key), "{key}");
        }
        for key in ["user", "order_id", "amount", "passenger", "keys"] {
            assert!(!redactor.is_sensitive(key), "{key}");
        }
        assert!(!Redactor::new(Vec::<String>::new()).is_sensitive("password"));
        assert!(Redactor::new(["  SSN "]).is_sensitive("customer_ssn"));
    }

    #[test]
    fn values_are_replaced_at_any_depth_and_the_rest_kept() {
        let mut value = json!({
            "user": "ada",
            "password": {"nested": "object is replaced whole"},
            "headers": {"Authorization": "Bearer x", "accept": "json"},
            "items": [{"token": "t1", "id": 1}, "plain"],
        });
        assert!(Redactor::default().redact(&mut value));
        assert_eq!(
            value,
            json!({
                "user": "ada",
                "password": REDACTED,
                "headers": {"Authorization": REDACTED, "accept": "json"},
                "items": [{"token": REDACTED, "id": 1}, "plain"],
            })
        );
        assert!(!Redactor::default().redact(&mut value), "already redacted");
    }
}
