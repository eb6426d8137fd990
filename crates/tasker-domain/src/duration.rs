//! Durations as template and handler authors write them: a number of seconds, or text with a
//! unit (`500ms`, `30s`, `5m`, `1h`).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The longest step `timeout` a template (or `engine.default_step_timeout`) may set: 24 hours.
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// `at + by`, or `None` when the result is not a representable time (a hostile duration).
/// Every time sum in the engine goes through this or [`saturating_add`], never `+`, which
/// panics on overflow.
pub fn checked_add(at: DateTime<Utc>, by: Duration) -> Option<DateTime<Utc>> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
}

/// `at + by`, saturating at the latest representable time instead of panicking.
pub fn saturating_add(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    checked_add(at, by).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A duration for messages: whole seconds when it has no fraction, else seconds with
/// milliseconds (`86400 s`, `1.5 s`).
pub fn describe(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.3} s", duration.as_secs_f64())
    }
}

/// A duration as written: seconds, or text such as `500ms`, `30s`, `5m`, `1h`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeoutValue {
    /// A number of seconds.
    Seconds(f64),
    /// A number with a unit.
    Text(String),
}

/// A written duration that is not a positive, representable duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a positive duration (seconds, or a number with ms, s, m or h)")]
pub struct InvalidDuration {
    /// The value as written.
    pub value: String,
}

impl TimeoutValue {
    /// The positive duration this value names.
    pub fn to_duration(&self) -> Result<Duration, InvalidDuration> {
        let invalid = || InvalidDuration {
            value: self.as_text(),
        };
        let secs = match self {
            TimeoutValue::Seconds(secs) => *secs,
            TimeoutValue::Text(text) => {
                let text = text.trim();
                let split = text
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(text.len());
                let (number, unit) = text.split_at(split);
                let number: f64 = number.parse().map_err(|_| invalid())?;
                let scale = match unit.trim() {
                    "ms" => 0.001,
                    "" | "s" => 1.0,
                    "m" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(invalid()),
                };
                number * scale
            }
        };
        match Duration::try_from_secs_f64(secs) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            _ => Err(invalid()),
        }
    }

    /// The value as written.
    pub fn as_text(&self) -> String {
        match self {
            TimeoutValue::Seconds(secs) => secs.to_string(),
            TimeoutValue::Text(text) => text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: TimeoutValue, expect: Option<Duration>) {
        assert_eq!(value.to_duration().ok(), expect, "{value:?}");
    }

    #[test]
    fn units_and_bad_values() {
        check(
            TimeoutValue::Seconds(1.5),
            Some(Duration::from_millis(1500)),
        );
        check(
            TimeoutValue::Text("500ms".into()),
            Some(Duration::from_millis(500)),
        );
        check(
            TimeoutValue::Text("2m".into()),
            Some(Duration::from_secs(120)),
        );
        check(
            TimeoutValue::Text("1h".into()),
            Some(Duration::from_secs(3600)),
        );
        check(
            TimeoutValue::Text("3 s".into()),
            Some(Duration::from_secs(3)),
        );
        check(TimeoutValue::Seconds(0.0), None);
        check(TimeoutValue::Seconds(-1.0), None);
        check(TimeoutValue::Seconds(f64::NAN), None);
        check(TimeoutValue::Text("5 days".into()), None);
        check(TimeoutValue::Text("".into()), None);
    }

    #[test]
    fn time_sums_never_panic() {
        let at = DateTime::from_timestamp(1_000, 0).unwrap();
        let huge = Duration::from_secs(10_000_000_000_000);
        assert_eq!(checked_add(at, huge), None);
        assert_eq!(checked_add(at, Duration::MAX), None);
        assert_eq!(saturating_add(at, huge), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            saturating_add(at, Duration::from_secs(5)),
            DateTime::from_timestamp(1_005, 0).unwrap()
        );
        assert_eq!(describe(MAX_STEP_TIMEOUT), "86400 s");
        assert_eq!(describe(Duration::from_millis(1500)), "1.500 s");
    }
}
