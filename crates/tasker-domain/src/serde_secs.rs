//! Durations as seconds (fractions allowed) in configuration and templates: use with
//! `#[serde(with = "tasker_domain::serde_secs::secs")]` or `...::optional_secs`.

/// A `Duration` as a non-negative number of seconds.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes seconds as a float.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }

    /// Reads seconds; negative or non-finite values are errors.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            D::Error::custom(format!(
                "expected a non-negative number of seconds, got {secs}"
            ))
        })
    }

    /// The JSON Schema of such a field (`#[schemars(schema_with = "...::secs::schema")]`): a
    /// non-negative number, annotated `"x-unit": "seconds"`.
    #[cfg(feature = "schema")]
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "number", "minimum": 0, "x-unit": "seconds" })
    }
}

/// An `Option<Duration>` as seconds or null.
pub mod optional_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes seconds as a float, or null.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    /// Reads seconds or null; negative or non-finite values are errors.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| {
                Duration::try_from_secs_f64(secs).map_err(|_| {
                    D::Error::custom(format!(
                        "expected a non-negative number of seconds, got {secs}"
                    ))
                })
            })
            .transpose()
    }
}
