//! The machine-readable codes Tasker itself puts on a failed attempt ([`StepError::error_code`]).
//!
//! Handlers choose their own codes (`PAYMENT_DECLINED`, ...); these are the ones the engine, the
//! store and the built-in handlers use, listed once so that a subscriber or an operator can match
//! on a constant, and so that `docs/errors.md` is generated from [`ALL`].
//!
//! [`StepError::error_code`]: crate::StepError::error_code

use crate::outcome::StepErrorKind;

/// The attempt ran past its step's `timeout`.
pub const TIMEOUT: &str = "TIMEOUT";
/// The step handler panicked.
pub const HANDLER_PANIC: &str = "HANDLER_PANIC";
/// The attempt's lease expired before it reported an outcome (its process died or stalled).
pub const LEASE_EXPIRED: &str = "LEASE_EXPIRED";
/// No step handler is registered under the step's `handler_class` in the process that claimed it.
pub const HANDLER_NOT_FOUND: &str = "HANDLER_NOT_FOUND";
/// The task's template could not be loaded when the step was claimed.
pub const TEMPLATE_UNAVAILABLE: &str = "TEMPLATE_UNAVAILABLE";
/// The stored step names a step its template does not have.
pub const STEP_NOT_IN_TEMPLATE: &str = "STEP_NOT_IN_TEMPLATE";
/// The attempt's results are larger than `engine.max_result_bytes`.
pub const RESULT_TOO_LARGE: &str = "RESULT_TOO_LARGE";
/// The database refused to store the attempt's results (a NUL character, `\u0000`, which
/// PostgreSQL's `jsonb` cannot hold; or any other value the database rejects).
pub const UNSTORABLE_RESULT: &str = "UNSTORABLE_RESULT";
/// A built-in handler's `handler_config` is invalid.
pub const INVALID_CONFIG: &str = "INVALID_CONFIG";
/// The attempt was cancelled while it ran.
pub const CANCELLED: &str = "CANCELLED";
/// `tasker::fail` failed as its configuration asked.
pub const PLANNED_FAILURE: &str = "PLANNED_FAILURE";
/// `tasker::http` could not complete the request (connection, TLS, body).
pub const HTTP_TRANSPORT: &str = "HTTP_TRANSPORT";
/// `tasker::http` refused to connect: the address is not public and the policy does not allow
/// private networks.
pub const HTTP_ADDRESS_REFUSED: &str = "HTTP_ADDRESS_REFUSED";
/// `tasker::http` read a response body larger than its policy allows.
pub const HTTP_BODY_TOO_LARGE: &str = "HTTP_BODY_TOO_LARGE";
/// The prefix of `tasker::http`'s status codes: `HTTP_404`, `HTTP_503`, ...
pub const HTTP_STATUS_PREFIX: &str = "HTTP_";

/// One entry of the code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The code (or, for `HTTP_`, its prefix).
    pub code: &'static str,
    /// Who sets it.
    pub origin: &'static str,
    /// Whether the failed attempt may be retried.
    pub kind: StepErrorKind,
    /// What it means, in one sentence.
    pub meaning: &'static str,
}

const fn info(
    code: &'static str,
    origin: &'static str,
    kind: StepErrorKind,
    meaning: &'static str,
) -> CodeInfo {
    CodeInfo {
        code,
        origin,
        kind,
        meaning,
    }
}

/// Every code Tasker sets, in the order `docs/errors.md` lists them.
pub const ALL: &[CodeInfo] = {
    use StepErrorKind::{Permanent, Retryable};
    &[
        info(
            TIMEOUT,
            "engine",
            Retryable,
            "the attempt ran past its step's `timeout`",
        ),
        info(
            HANDLER_PANIC,
            "engine",
            Retryable,
            "the step handler panicked",
        ),
        info(
            LEASE_EXPIRED,
            "store",
            Retryable,
            "the attempt's lease expired before it reported an outcome (its process died or stalled)",
        ),
        info(
            HANDLER_NOT_FOUND,
            "engine",
            Retryable,
            "no step handler is registered under the step's `handler_class` in the claiming process",
        ),
        info(
            TEMPLATE_UNAVAILABLE,
            "engine",
            Retryable,
            "the task's template could not be loaded when the step was claimed",
        ),
        info(
            STEP_NOT_IN_TEMPLATE,
            "engine",
            Permanent,
            "the stored step names a step its template does not have",
        ),
        info(
            RESULT_TOO_LARGE,
            "engine",
            Permanent,
            "the attempt's results are larger than `engine.max_result_bytes`",
        ),
        info(
            UNSTORABLE_RESULT,
            "engine",
            Permanent,
            "the database cannot store the attempt's results (a NUL character `\\u0000`, or another value it rejects)",
        ),
        info(
            INVALID_CONFIG,
            "built-in handlers",
            Permanent,
            "a built-in handler's `handler_config` is invalid",
        ),
        info(
            CANCELLED,
            "built-in handlers",
            Retryable,
            "the attempt was cancelled while it ran",
        ),
        info(
            PLANNED_FAILURE,
            "`tasker::fail`",
            Retryable,
            "`tasker::fail` failed as configured (permanent when `permanent: true`)",
        ),
        info(
            HTTP_TRANSPORT,
            "`tasker::http`",
            Retryable,
            "the request could not be completed (connection, TLS, body, timeout)",
        ),
        info(
            HTTP_ADDRESS_REFUSED,
            "`tasker::http`",
            Permanent,
            "the URL (or a redirect) leads to a loopback, private or link-local address and \
             `http_handler.allow_private_networks` is off",
        ),
        info(
            HTTP_BODY_TOO_LARGE,
            "`tasker::http`",
            Permanent,
            "the response body exceeds `http_handler.max_response_bytes`",
        ),
        info(
            HTTP_STATUS_PREFIX,
            "`tasker::http`",
            Retryable,
            "`HTTP_<status>`: the response's status; 4xx other than 408 and 429 are permanent",
        ),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_upper_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for entry in ALL {
            assert!(seen.insert(entry.code), "{} listed twice", entry.code);
            assert!(
                entry
                    .code
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{} is not UPPER_SNAKE_CASE",
                entry.code
            );
        }
    }
}
