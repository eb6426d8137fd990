//! Durations in configuration: a number of seconds or a written duration (`"90s"`, `"5m"`,
//! `"1h 30m"`), read by [`parse_duration`] and carried as [`ConfigDuration`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration in configuration: a number of seconds (`300`, `1.5`) or a written duration
/// (`"90s"`, `"5m"`, `"1h 30m"`, `"30d"`). Written back as seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

/// A number of seconds or a written duration, as [`ConfigDuration`] reads them.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for ConfigDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConfigDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "number", "minimum": 0, "x-unit": "seconds" },
                { "type": "string", "description": "a duration such as `90s`, `5m` or `1h 30m`" }
            ]
        })
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration such as \"90s\", \"5m\" or \"1h\"")
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
                Ok(ConfigDuration(Duration::from_secs(value)))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
                u64::try_from(value)
                    .map(|secs| ConfigDuration(Duration::from_secs(secs)))
                    .map_err(|_| E::custom(format!("{value} is negative: expected a duration")))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
                Duration::try_from_secs_f64(value)
                    .map(ConfigDuration)
                    .map_err(|_| {
                        E::custom(format!("{value} is not a non-negative number of seconds"))
                    })
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                parse_duration(value).map(ConfigDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A written duration that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is not a duration (seconds, or a number with a unit: `90s`, `15m`, `1h`, `30d`)"
)]
pub struct InvalidDuration {
    /// The text given.
    pub value: String,
}

/// Reads a duration: a plain number of seconds (`300`, `1.5`), or numbers with units as
/// `humantime` writes them (`90s`, `15m`, `1h 30m`, `30d`).
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration {
        value: text.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = trimmed.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| invalid());
    }
    humantime::parse_duration(trimmed).map_err(|_| invalid())
}
