//! Identifiers. Tasks and steps use UUIDv7, which is time-ordered (good index locality) and can
//! be generated before anything is stored, so a whole task graph is built in memory and written
//! in a few multi-row statements. A stored template is numbered by the store's catalogue
//! ([`TemplateId`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// Identifies one task (one run of a workflow).
    TaskId
);
id_type!(
    /// Identifies one workflow step of one task.
    StepId
);

/// Identifies one stored template version in the store's catalogue (Rails' "named task"):
/// assigned when the template is first registered and kept when the same namespace, name and
/// version are registered again. Serialized as the bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub i64);

impl TemplateId {
    /// The stored integer.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TemplateId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl From<i64> for TemplateId {
    fn from(value: i64) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_are_time_ordered() {
        let first = TaskId::new();
        let second = TaskId::new();
        assert!(first < second, "UUIDv7 ids sort by creation time");
        assert_eq!(first.to_string().parse::<TaskId>().unwrap(), first);
        assert!("not-a-uuid".parse::<StepId>().is_err());
    }

    #[test]
    fn template_ids_are_bare_integers_in_text_and_json() {
        let id = TemplateId(42);
        assert_eq!(id.to_string(), "42");
        assert_eq!("42".parse::<TemplateId>().unwrap(), id);
        assert!("4x".parse::<TemplateId>().is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<TemplateId>("42").unwrap(), id);
    }
}
