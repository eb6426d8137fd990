//! The configurable base every mock outside service is built on: a call log (method, arguments,
//! time), stubbed responses, and failure simulation (fail N times then succeed, or always).
//!
//! Each mock is an ordinary value owned by whoever made it: no global state, so tests that each
//! build their own services run in parallel without seeing each other's calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_engine::{Clock, SystemClock};

/// One recorded call to a mock service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCall {
    /// The service's name (`payment`, `inventory`, ...).
    pub service: &'static str,
    /// The method called.
    pub method: String,
    /// Its arguments, as JSON.
    pub arguments: Value,
    /// When, on the service's clock.
    pub at: DateTime<Utc>,
}

/// A simulated failure of an outside service: what a real client would surface as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service}.{method} failed: {message}")]
pub struct ServiceFailure {
    /// The service's name.
    pub service: &'static str,
    /// The method that failed.
    pub method: String,
    /// The simulated error message (`Database connection timeout`, ...).
    pub message: String,
}

#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// `None` fails forever.
    remaining: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<ServiceCall>,
    stubs: HashMap<String, Value>,
    failures: HashMap<String, Failure>,
}

/// The shared machinery of a mock service.
pub struct MockService {
    name: &'static str,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for MockService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockService")
            .field("name", &self.name)
            .field("calls", &self.state().calls.len())
            .finish_non_exhaustive()
    }
}

impl MockService {
    /// A mock named `name` that timestamps calls with `clock`.
    pub fn new(name: &'static str, clock: Arc<dyn Clock>) -> Self {
        Self {
            name,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// A mock on the wall clock.
    pub fn on_system_clock(name: &'static str) -> Self {
        Self::new(name, Arc::new(SystemClock))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not poison the other assertions on this mock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Records a call to `method`, then applies any simulated failure (consuming one of a
    /// counted failure), then returns the stubbed response for `method`, if any.
    pub fn call(&self, method: &str, arguments: Value) -> Result<Option<Value>, ServiceFailure> {
        let at = self.clock.now();
        let mut state = self.state();
        state.calls.push(ServiceCall {
            service: self.name,
            method: method.to_owned(),
            arguments,
            at,
        });
        if let Some(failure) = state.failures.get_mut(method) {
            let fails = match &mut failure.remaining {
                None => true,
                Some(0) => false,
                Some(n) => {
                    *n -= 1;
                    true
                }
            };
            if fails {
                return Err(ServiceFailure {
                    service: self.name,
                    method: method.to_owned(),
                    message: failure.message.clone(),
                });
            }
        }
        Ok(state.stubs.get(method).cloned())
    }

    /// Makes `method` answer `response` instead of its default.
    pub fn stub_response(&self, method: &str, response: Value) {
        self.state().stubs.insert(method.to_owned(), response);
    }

    /// Makes the next `times` calls to `method` fail with `message`, then succeed.
    pub fn fail_times(&self, method: &str, times: u32, message: impl Into<String>) {
        self.state().failures.insert(
            method.to_owned(),
            Failure {
                message: message.into(),
                remaining: Some(times),
            },
        );
    }

    /// Makes every call to `method` fail with `message`.
    pub fn fail_always(&self, method: &str, message: impl Into<String>) {
        self.state().failures.insert(
            method.to_owned(),
            Failure {
                message: message.into(),
                remaining: None,
            },
        );
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<ServiceCall> {
        self.state().calls.clone()
    }

    /// The calls to `method`, oldest first.
    pub fn calls_to(&self, method: &str) -> Vec<ServiceCall> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// How many times `method` was called.
    pub fn call_count(&self, method: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .count()
    }

    /// Whether `method` was called at all.
    pub fn was_called(&self, method: &str) -> bool {
        self.call_count(method) > 0
    }

    /// The latest call to `method`.
    pub fn last_call(&self, method: &str) -> Option<ServiceCall> {
        self.state()
            .calls
            .iter()
            .rev()
            .find(|c| c.method == method)
            .cloned()
    }

    /// Forgets calls, stubs and simulated failures.
    pub fn reset(&self) {
        *self.state() = State::default();
    }
}

/// Implements `Deref<Target = MockService>` for a mock wrapping one in a field `base`, so tests
/// reach the call log and failure knobs directly on the service.
macro_rules! mock_base {
    ($($ty:ty),* $(,)?) => {$(
        impl std::ops::Deref for $ty {
            type Target = $crate::mock::MockService;
            fn deref(&self) -> &Self::Target {
                &self.base
            }
        }
    )*};
}
pub(crate) use mock_base;

/// A short, deterministic hex id: the service's name and a counter keep ids distinct and
/// repeatable across runs (`pay_0000000000000001`).
pub(crate) fn sequential_id(prefix: &str, n: u64) -> String {
    format!("{prefix}_{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counted_failures_then_success_and_stubs() {
        let mock = MockService::on_system_clock("payment");
        mock.fail_times("charge", 2, "gateway timeout");
        mock.stub_response("charge", json!({"status": "succeeded"}));
        let outcomes: Vec<_> = (0..3)
            .map(|i| mock.call("charge", json!({"n": i})))
            .collect();
        assert_eq!(outcomes[0].as_ref().unwrap_err().message, "gateway timeout");
        assert!(outcomes[1].is_err());
        assert_eq!(outcomes[2], Ok(Some(json!({"status": "succeeded"}))));
        assert_eq!(mock.call_count("charge"), 3);
        assert_eq!(mock.last_call("charge").unwrap().arguments, json!({"n": 2}));
        mock.fail_always("refund", "down");
        assert!((0..5).all(|_| mock.call("refund", Value::Null).is_err()));
        mock.reset();
        assert_eq!(mock.calls(), []);
        assert_eq!(mock.call("refund", Value::Null), Ok(None));
    }
}
