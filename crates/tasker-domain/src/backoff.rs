//! Backoff between step attempts, as pure functions.
//!
//! Exponential with a base, a multiplier, a cap and jitter. The jitter's random sample and the
//! current time are arguments, so the engine injects them and tests never sleep.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest backoff `base` or `max` a policy may set: 24 hours. Every delay, a handler's
/// explicit `retry_after` included, is at most the policy's `max`, so no failed step waits longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 60 * 60);

/// How long to wait before the next attempt of a failed step.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    #[serde(with = "crate::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::serde_secs::secs::schema")
    )]
    pub base: Duration,
    /// Growth factor per further failure.
    pub multiplier: f64,
    /// No delay exceeds this, explicit `retry_after` included.
    #[serde(with = "crate::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::serde_secs::secs::schema")
    )]
    pub max: Duration,
    /// Jitter as a fraction of the delay: 0.1 spreads delays over ±10%.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

/// Why a policy is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffPolicyError {
    /// The multiplier must be at least 1.
    #[error("backoff multiplier must be at least 1.0, got {0}")]
    Multiplier(f64),
    /// Jitter must be a fraction in [0, 1].
    #[error("backoff jitter must be between 0.0 and 1.0, got {0}")]
    Jitter(f64),
    /// `base` or `max` is longer than [`MAX_BACKOFF`].
    #[error("backoff {field} of {} exceeds the maximum of {} (24 h)", crate::duration::describe(*.value), crate::duration::describe(MAX_BACKOFF))]
    TooLong {
        /// `base` or `max`.
        field: &'static str,
        /// The configured value.
        value: Duration,
    },
    /// The cap must not be below the base.
    #[error("backoff max ({max:?}) is below its base ({base:?})")]
    MaxBelowBase {
        /// The configured base.
        base: Duration,
        /// The configured cap.
        max: Duration,
    },
}

impl BackoffPolicy {
    /// Checks the policy's numbers.
    pub fn validate(&self) -> Result<(), BackoffPolicyError> {
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(BackoffPolicyError::Multiplier(self.multiplier));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(BackoffPolicyError::Jitter(self.jitter));
        }
        for (field, value) in [("base", self.base), ("max", self.max)] {
            if value > MAX_BACKOFF {
                return Err(BackoffPolicyError::TooLong { field, value });
            }
        }
        if self.max < self.base {
            return Err(BackoffPolicyError::MaxBelowBase {
                base: self.base,
                max: self.max,
            });
        }
        Ok(())
    }

    /// The delay after the `failures`-th failed attempt (1 for the first failure), without jitter.
    pub fn nominal_delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.multiplier.powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay after the `failures`-th failure, with jitter from `unit_random` (a sample in
    /// `[0, 1)`, 0.5 meaning no jitter), never above `max`.
    pub fn delay(&self, failures: u32, unit_random: f64) -> Duration {
        let nominal = self.nominal_delay(failures).as_secs_f64();
        let spread = (unit_random.clamp(0.0, 1.0) * 2.0 - 1.0) * self.jitter;
        let secs = (nominal * (1.0 + spread)).clamp(0.0, self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// The delay for a failure that may carry an explicit `retry_after`: the explicit wait wins,
    /// clamped to `max` (any handler may ask, not only HTTP, and an absurd `Retry-After` such as
    /// `99999999999999` waits `max`, never longer); otherwise the jittered exponential delay.
    pub fn delay_for(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        unit_random: f64,
    ) -> Duration {
        match retry_after {
            Some(explicit) => explicit.min(self.max),
            None => self.delay(failures, unit_random),
        }
    }
}

/// A `Retry-After` value that is neither delay-seconds nor an HTTP date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Retry-After value `{value}` is neither a number of seconds nor an HTTP date")]
pub struct RetryAfterError {
    /// The header value as received.
    pub value: String,
}

/// Parses an HTTP `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
/// A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Result<Duration, RetryAfterError> {
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| RetryAfterError {
                value: value.to_owned(),
            });
    }
    let at: SystemTime = httpdate::parse_http_date(trimmed).map_err(|_| RetryAfterError {
        value: value.to_owned(),
    })?;
    let at: DateTime<Utc> = at.into();
    Ok((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn secs(d: Duration) -> f64 {
        (d.as_secs_f64() * 1000.0).round() / 1000.0
    }

    #[test]
    fn exponential_growth_is_capped() {
        let policy = BackoffPolicy {
            max: Duration::from_secs(10),
            ..Default::default()
        };
        let delays: Vec<f64> = (0..7).map(|n| secs(policy.nominal_delay(n))).collect();
        assert_eq!(delays, [0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        assert_eq!(policy.nominal_delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_spreads_around_the_nominal_delay() {
        let policy = BackoffPolicy::default();
        assert_eq!(secs(policy.delay(3, 0.5)), 4.0);
        assert_eq!(secs(policy.delay(3, 0.0)), 3.6);
        assert_eq!(secs(policy.delay(3, 1.0)), 4.4);
        // Jitter never pushes a delay over the cap.
        assert_eq!(policy.delay(30, 1.0), policy.max);
    }

    #[test]
    fn explicit_retry_after_wins_but_is_capped() {
        let policy = BackoffPolicy::default();
        assert_eq!(
            policy.delay_for(1, Some(Duration::from_secs(30)), 0.9),
            Duration::from_secs(30)
        );
        assert_eq!(
            policy.delay_for(1, Some(Duration::from_secs(3600)), 0.9),
            policy.max
        );
        assert_eq!(secs(policy.delay_for(2, None, 0.5)), 2.0);
        // An absurd Retry-After (from a header or any handler) is clamped, not overflowed.
        assert_eq!(
            policy.delay_for(1, Some(Duration::from_secs(99_999_999_999_999)), 0.5),
            policy.max
        );
        assert_eq!(policy.delay_for(1, Some(Duration::MAX), 0.5), policy.max);
    }

    #[test]
    fn policies_are_validated() {
        assert!(BackoffPolicy::default().validate().is_ok());
        let bad = BackoffPolicy {
            multiplier: 0.5,
            ..Default::default()
        };
        assert_eq!(bad.validate(), Err(BackoffPolicyError::Multiplier(0.5)));
        let bad = BackoffPolicy {
            jitter: 2.0,
            ..Default::default()
        };
        assert_eq!(bad.validate(), Err(BackoffPolicyError::Jitter(2.0)));
        let bad = BackoffPolicy {
            max: Duration::ZERO,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(BackoffPolicyError::MaxBelowBase { .. })
        ));
        let bad = BackoffPolicy {
            max: Duration::from_secs(10_000_000_000_000),
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "backoff max of 10000000000000 s exceeds the maximum of 86400 s (24 h)"
        );
        let bad = BackoffPolicy {
            base: Duration::from_secs(90_000),
            max: Duration::from_secs(90_000),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(BackoffPolicyError::TooLong { field: "base", .. })
        ));
        let at_cap = BackoffPolicy {
            base: MAX_BACKOFF,
            max: MAX_BACKOFF,
            ..Default::default()
        };
        assert!(at_cap.validate().is_ok());
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        assert_eq!(parse_retry_after("120", now), Ok(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Ok(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Ok(Duration::from_secs(30))
        );
        // A date in the past means retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Ok(Duration::ZERO)
        );
        let err = parse_retry_after("soon", now).unwrap_err();
        assert_eq!(err.value, "soon");
        assert!(parse_retry_after("-5", now).is_err());
    }

    #[test]
    fn policy_reads_from_json_seconds() {
        let policy: BackoffPolicy =
            serde_json::from_str(r#"{"base": 0.5, "max": 60, "jitter": 0}"#).unwrap();
        assert_eq!(policy.base, Duration::from_millis(500));
        assert_eq!(policy.multiplier, 2.0);
        assert!(serde_json::from_str::<BackoffPolicy>(r#"{"bse": 1}"#).is_err());
        assert!(serde_json::from_str::<BackoffPolicy>(r#"{"base": -1}"#).is_err());
    }
}
