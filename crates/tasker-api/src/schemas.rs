//! Schemas the derives cannot say on their own: closed sets of strings and exact formats. Each
//! is built from the same constants the server checks against, so the OpenAPI document promises
//! exactly what a request may carry and what a response holds.

use tasker_domain::{StepState, TaskState};
use tasker_events::Category;
use utoipa::openapi::{Object, ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A semantic version as the server parses it (`1.0.0`, `2.1.0-rc.1+build.5`). Each number has
/// at most 18 digits, so every string that matches also fits the parser's integers.
pub(crate) const SEMVER_PATTERN: &str = r"^(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})(-(0|[1-9][0-9]{0,17}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,17}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$";

/// A listing cursor: creation time in microseconds since the epoch, `_`, the task id in 32 hex
/// digits. Sixteen digits at most keep every matching time within the calendar.
pub(crate) const CURSOR_PATTERN: &str = r"^-?[0-9]{1,16}_[0-9a-f]{32}$";

/// `X-Correlation-ID`.
pub(crate) const CORRELATION_PATTERN: &str = r"^[A-Za-z0-9_-]{1,100}$";

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub(crate) const IDEMPOTENCY_PATTERN: &str = r"^[\x21-\x7E]{1,255}$";

/// `include` of a task: a comma-separated list of extras.
pub(crate) const INCLUDE_PATTERN: &str = r"^(steps|analysis|graph)(,(steps|analysis|graph))*$";

/// An analytics window: a number and a unit (`15m`, `1h`, `7d`). The server reads any length
/// `humantime` parses; the route refuses lengths over 30 days.
pub(crate) const WINDOW_PATTERN: &str = r"^[1-9][0-9]{0,5}[smhd]$";

/// An annotation filter `type:key=value`.
pub(crate) const ANNOTATION_PATTERN: &str = r"^[^:]+:[^=]+=[\s\S]*$";

fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

fn matching(pattern: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .build()
}

fn described(mut schema: Object, description: &str) -> Object {
    schema.description = Some(description.into());
    schema
}

/// A task's state, as a response field.
pub(crate) fn task_state_field() -> Object {
    described(
        one_of(TaskState::ALL.iter().map(|s| s.as_str())),
        "The task's state.",
    )
}

/// A step's state, as a response field.
pub(crate) fn step_state_field() -> Object {
    described(
        one_of(StepState::ALL.iter().map(|s| s.as_str())),
        "The step's state.",
    )
}

/// Declares a type that stands for a string with the given schema. Fields name it with
/// `value_type = ...` and `inline`, which keeps their doc comments as descriptions.
macro_rules! string_schema {
    ($($(#[$doc:meta])* $name:ident => $schema:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($schema))
            }
        }

        impl ToSchema for $name {}
    )*};
}

/// The data of one Server-Sent Event: a JSON object (a stored transition, or a live event).
pub(crate) struct SseEventData;

impl PartialSchema for SseEventData {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "One event's `data`: a JSON object. `transition` events hold a transition as in the task's history; live events hold the event's name and payload.",
                ))
                .build(),
        ))
    }
}

impl ToSchema for SseEventData {}

string_schema! {
    /// A task state.
    TaskStateName => one_of(TaskState::ALL.iter().map(|s| s.as_str()));
    /// The task listing's sort orders.
    TaskSort => one_of(["-created_at", "created_at"]);
    /// An event category.
    EventCategory => one_of(Category::ALL.iter().map(|c| c.as_str()));
    /// A semantic version.
    Semver => matching(SEMVER_PATTERN);
    /// A listing cursor.
    Cursor => matching(CURSOR_PATTERN);
    /// `include` of a task.
    Include => matching(INCLUDE_PATTERN);
    /// An annotation filter.
    Annotation => matching(ANNOTATION_PATTERN);
    /// An analytics window.
    WindowText => matching(WINDOW_PATTERN);
    /// `X-Correlation-ID`.
    CorrelationIdText => matching(CORRELATION_PATTERN);
    /// `Idempotency-Key`.
    IdempotencyKeyText => matching(IDEMPOTENCY_PATTERN);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns accept what the server accepts and refuse what it refuses.
    #[test]
    fn patterns_agree_with_the_parsers() {
        let semver = regex_lite(SEMVER_PATTERN);
        for good in ["1.0.0", "0.0.1", "2.1.0-rc.1+build.5", "10.20.30-alpha"] {
            assert!(semver(good), "{good}");
            assert!(semver::Version::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1", "1.0", "01.0.0", "1.0.0-", "v1.0.0"] {
            assert!(!semver(bad), "{bad}");
            assert!(semver::Version::parse(bad).is_err(), "{bad}");
        }
        let largest = "999999999999999999.999999999999999999.999999999999999999";
        assert!(semver(largest));
        assert!(semver::Version::parse(largest).is_ok());
    }

    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(pattern).expect("a valid pattern");
        move |s| re.is_match(s)
    }
}
