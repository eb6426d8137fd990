//! Identity strategies: how a task request maps to an identity hash, which the store keeps
//! unique, so that a strategy decides what counts as a duplicate request (the
//! Rails engine hashed a fresh value into every key, so nothing was ever a duplicate).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::request::TaskRequest;

/// Computes the identity of a task request. Two requests with the same identity are the same
/// task: the store refuses the second.
pub trait IdentityStrategy: Send + Sync {
    /// The identity of `request`, resolved to `version` and requested at `requested_at`.
    fn identity(
        &self,
        request: &TaskRequest,
        version: &semver::Version,
        requested_at: DateTime<Utc>,
    ) -> String;
}

/// Every request is a new task: the identity is a fresh random UUID.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultIdentity;

impl IdentityStrategy for DefaultIdentity {
    fn identity(&self, _: &TaskRequest, _: &semver::Version, _: DateTime<Utc>) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// A caller-chosen idempotency key (an API's `Idempotency-Key` header): the identity is a
/// SHA-256 of the template's namespace and name and the key, so the same key for the same
/// workflow is the same task, whatever the rest of the request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl IdentityStrategy for IdempotencyKey {
    fn identity(&self, request: &TaskRequest, _: &semver::Version, _: DateTime<Utc>) -> String {
        let mut hasher = Sha256::new();
        for part in [
            "idempotency-key",
            &request.namespace,
            &request.name,
            &self.0,
        ] {
            hasher.update(part.len().to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A stable SHA-256 of namespace, name, version, context and the request's other fields, so an
/// identical request is refused. With a `window`, identical requests in different windows
/// (by `requested_at`) are different tasks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashIdentity {
    /// Bucket width in seconds; `None` ignores `requested_at` entirely.
    pub window_secs: Option<u32>,
}

impl HashIdentity {
    /// Identical requests are duplicates forever.
    pub fn new() -> Self {
        Self { window_secs: None }
    }

    /// Identical requests are duplicates within the same `secs`-wide window (Rails: 60).
    pub fn windowed(secs: u32) -> Self {
        Self {
            window_secs: Some(secs.max(1)),
        }
    }
}

impl IdentityStrategy for HashIdentity {
    fn identity(
        &self,
        request: &TaskRequest,
        version: &semver::Version,
        requested_at: DateTime<Utc>,
    ) -> String {
        let mut fields = serde_json::json!({
            "namespace": request.namespace,
            "name": request.name,
            "version": version.to_string(),
            "context": request.context,
            "initiator": request.initiator,
            "source_system": request.source_system,
            "reason": request.reason,
            "bypass_steps": request.bypass_steps,
            "tags": request.tags,
        });
        if let Some(window) = self.window_secs {
            fields["window"] = requested_at
                .timestamp()
                .div_euclid(i64::from(window))
                .into();
        }
        let mut canonical = String::new();
        write_canonical(&fields, &mut canonical);
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// JSON with object keys sorted at every level, so equal values hash equally whatever the key
/// order they arrived in.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn idempotency_key_sees_only_the_workflow_and_the_key() {
        let v = semver::Version::new(1, 0, 0);
        let key = IdempotencyKey("order-17".into());
        let a = TaskRequest::new("t").context(json!({"a": 1}));
        let b = TaskRequest::new("t").context(json!({"a": 2}));
        assert_eq!(key.identity(&a, &v, at(0)), key.identity(&b, &v, at(50)));
        assert_ne!(
            key.identity(&a, &v, at(0)),
            key.identity(&a.clone().namespace("other"), &v, at(0))
        );
        assert_ne!(
            key.identity(&a, &v, at(0)),
            IdempotencyKey("order-18".into()).identity(&a, &v, at(0))
        );
        // Length-prefixed parts: moving a character between name and key changes the hash.
        let ab = IdempotencyKey("b".into()).identity(&TaskRequest::new("a"), &v, at(0));
        let a_b = IdempotencyKey("".into()).identity(&TaskRequest::new("ab"), &v, at(0));
        assert_ne!(ab, a_b);
    }

    #[test]
    fn hash_identity_ignores_key_order_and_sees_every_field() {
        let v = semver::Version::new(1, 0, 0);
        let strategy = HashIdentity::new();
        let a = TaskRequest::new("t").context(json!({"a": 1, "b": {"x": 1, "y": 2}}));
        let b = TaskRequest::new("t").context(json!({"b": {"y": 2, "x": 1}, "a": 1}));
        assert_eq!(
            strategy.identity(&a, &v, at(0)),
            strategy.identity(&b, &v, at(9999))
        );
        assert_eq!(strategy.identity(&a, &v, at(0)).len(), 64);

        let other_context = TaskRequest::new("t").context(json!({"a": 2}));
        let other_namespace = a.clone().namespace("payments");
        let mut other_reason = a.clone();
        other_reason.reason = "retry".into();
        let base = strategy.identity(&a, &v, at(0));
        for changed in [other_context, other_namespace, other_reason] {
            assert_ne!(strategy.identity(&changed, &v, at(0)), base);
        }
        assert_ne!(
            strategy.identity(&a, &semver::Version::new(1, 0, 1), at(0)),
            base
        );
    }

    #[test]
    fn windowed_identity_buckets_requested_at() {
        let v = semver::Version::new(1, 0, 0);
        let strategy = HashIdentity::windowed(60);
        let request = TaskRequest::new("t");
        let window_start = 60 - (1_700_000_000 % 60);
        assert_eq!(
            strategy.identity(&request, &v, at(window_start)),
            strategy.identity(&request, &v, at(window_start + 59))
        );
        assert_ne!(
            strategy.identity(&request, &v, at(window_start)),
            strategy.identity(&request, &v, at(window_start + 60))
        );
    }

    #[test]
    fn default_identity_never_repeats() {
        let v = semver::Version::new(1, 0, 0);
        let request = TaskRequest::new("t");
        assert_ne!(
            DefaultIdentity.identity(&request, &v, at(0)),
            DefaultIdentity.identity(&request, &v, at(0))
        );
    }
}
