//! The template as written: strict serde structs (unknown keys rejected), their conversion into
//! [`TaskTemplate`], and a locator that finds a step's line in the source for semantic errors.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{TemplateError, TemplateErrorKind, TemplateErrors, suggest};
use super::{
    CustomEventDecl, DEFAULT_RETRY_LIMIT, DEFAULT_VERSION, EnvironmentOverride, MAX_RETRY_LIMIT,
    StepTemplate, TaskTemplate, deep_merge, empty_object,
};
use tasker_domain::request::DEFAULT_NAMESPACE;

/// A Tasker task template: a workflow of steps and their dependencies.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "TaskTemplate"))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTemplate {
    /// The workflow's name.
    name: String,
    /// Its namespace (`default` when not stated).
    namespace_name: Option<String>,
    /// Its semver version (`0.1.0` when not stated).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "schema::version"))]
    version: Option<Value>,
    /// Accepted for compatibility; no behaviour.
    module_namespace: Option<String>,
    /// A registered task handler providing hooks; optional.
    task_handler_class: Option<String>,
    /// What the workflow does.
    description: Option<String>,
    /// Accepted for compatibility; steps always run concurrently.
    concurrent: Option<bool>,
    /// The dependent system of steps that state none.
    default_dependent_system: Option<String>,
    /// When present, every step and dependency must be listed here.
    named_steps: Option<Vec<String>>,
    /// JSON Schema for the task context.
    schema: Option<Value>,
    /// The steps, in declaration order.
    step_templates: Option<Vec<RawStep>>,
    /// Overrides per environment name (`engine.environment` picks one).
    environments: Option<BTreeMap<String, Option<EnvironmentOverride>>>,
    /// Custom events the workflow may publish.
    custom_events: Option<Vec<CustomEventDecl>>,
    /// Accepted for compatibility; informational only.
    handler_config: Option<Value>,
    /// Free-form configuration stored with the named task.
    configuration: Option<Value>,
}

/// One step of a workflow.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "StepTemplate"))]
#[serde(deny_unknown_fields)]
struct RawStep {
    /// Unique within the template.
    name: String,
    /// What the step does.
    description: Option<String>,
    /// The step handler, resolved through the handler registry (`tasker::noop`, `MyHandler`, ...).
    handler_class: Option<String>,
    /// The outside system the step talks to (the template's default when not stated).
    dependent_system: Option<String>,
    /// The one step this step waits for.
    depends_on_step: Option<String>,
    /// The steps this step waits for.
    depends_on_steps: Option<Vec<String>>,
    /// Whether a failed attempt is retried (default true).
    default_retryable: Option<bool>,
    /// Attempts allowed, the first included (default 3).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1000)))]
    default_retry_limit: Option<i64>,
    /// Whether the step may be bypassed when the task is created.
    skippable: Option<bool>,
    /// How long one attempt may run: seconds, or text such as `500ms`, `30s`, `5m`, `1h`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "schema::timeout"))]
    timeout: Option<TimeoutValue>,
    /// Handler configuration, handed to the handler as `handler_config`.
    handler_config: Option<Value>,
    /// Custom events the step's handler may publish.
    custom_events: Option<Vec<CustomEventDecl>>,
}

pub use tasker_domain::duration::TimeoutValue;

/// One step's overrides inside an environment; every field but `name` is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StepOverride {
    /// The step to override.
    pub name: String,
    /// Replaces the description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replaces the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_class: Option<String>,
    /// Replaces the dependent system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependent_system: Option<String>,
    /// With `depends_on_steps`, replaces the dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on_step: Option<String>,
    /// With `depends_on_step`, replaces the dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on_steps: Option<Vec<String>>,
    /// Replaces retryability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retryable: Option<bool>,
    /// Replaces the attempt limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retry_limit: Option<i64>,
    /// Replaces skippability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skippable: Option<bool>,
    /// Replaces the timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "schema::timeout"))]
    pub timeout: Option<TimeoutValue>,
    /// Deep-merged into the handler config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_config: Option<Value>,
    /// Replaces the custom events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_events: Option<Vec<CustomEventDecl>>,
}

impl StepOverride {
    pub(super) fn apply(&self, step: &mut StepTemplate) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        let replace = |target: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                target.clone_from(value);
            }
        };
        replace(&mut step.description, &self.description);
        replace(&mut step.dependent_system, &self.dependent_system);
        if let Some(handler) = &self.handler_class {
            step.handler_class.clone_from(handler);
        }
        if self.depends_on_step.is_some() || self.depends_on_steps.is_some() {
            step.depends_on_steps = union(&self.depends_on_step, &self.depends_on_steps);
        }
        if let Some(retryable) = self.default_retryable {
            step.default_retryable = retryable;
        }
        if let Some(limit) = self.default_retry_limit {
            match retry_limit(limit) {
                Ok(limit) => step.default_retry_limit = limit,
                Err(kind) => errors.push(TemplateError::new(kind).in_step(step.name.clone())),
            }
        }
        if let Some(skippable) = self.skippable {
            step.skippable = skippable;
        }
        if let Some(timeout) = &self.timeout {
            match timeout.to_duration() {
                Ok(timeout) => step.timeout = Some(timeout),
                Err(invalid) => {
                    errors.push(TemplateError::new(invalid.into()).in_step(step.name.clone()))
                }
            }
        }
        if let Some(config) = &self.handler_config {
            deep_merge(&mut step.handler_config, config);
        }
        if let Some(events) = &self.custom_events {
            step.custom_events.clone_from(events);
        }
        errors
    }
}

fn union(single: &Option<String>, many: &Option<Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for name in single.iter().chain(many.iter().flatten()) {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    all
}

fn retry_limit(value: i64) -> Result<u32, TemplateErrorKind> {
    if value < 1 {
        Err(TemplateErrorKind::RetryLimitBelowOne { value })
    } else if value > i64::from(MAX_RETRY_LIMIT) {
        Err(TemplateErrorKind::RetryLimitTooLarge {
            value,
            max: MAX_RETRY_LIMIT,
        })
    } else {
        Ok(value as u32)
    }
}

/// Parses the source into a template, with syntax, key and value-conversion errors located.
/// Value-conversion errors come back unlocated beside the template, so that the caller can add
/// the semantic errors and locate them all at once.
pub(super) fn parse(
    source: &str,
    origin: Option<&str>,
) -> Result<(TaskTemplate, Vec<TemplateError>), TemplateErrors> {
    let located = |kind, line: Option<usize>, column: Option<usize>, step: Option<String>| {
        let mut error = TemplateError::new(kind);
        error.file = origin.map(str::to_owned);
        error.line = line;
        error.column = column;
        error.step = step;
        TemplateErrors::from(error)
    };
    // A lenient read first: it tells an empty or non-mapping document apart, and it lets errors
    // deep inside `step_templates[i]` name the step.
    let lenient: Option<Value> = yaml_serde::from_str(source).ok();
    match &lenient {
        Some(Value::Null) => {
            return Err(located(TemplateErrorKind::EmptyDocument, None, None, None));
        }
        Some(Value::Object(_)) | None => {}
        Some(other) => {
            let found = match other {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a scalar",
            };
            let message = format!("a task template must be a mapping of keys, found {found}");
            return Err(located(
                TemplateErrorKind::Syntax { message },
                Some(1),
                Some(1),
                None,
            ));
        }
    }
    let deserializer = yaml_serde::Deserializer::from_str(source);
    let raw: RawTemplate = match serde_path_to_error::deserialize(deserializer) {
        Ok(raw) => raw,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let (line, column) = inner
                .location()
                .map_or((None, None), |l| (Some(l.line()), Some(l.column())));
            let step = step_of_path(&path, lenient.as_ref());
            let message = strip_location(&inner.to_string(), line.zip(column));
            return Err(located(classify(&path, &message), line, column, step));
        }
    };
    let mut errors = Vec::new();
    let template = convert(raw, &mut errors);
    Ok((template, errors))
}

fn convert(raw: RawTemplate, errors: &mut Vec<TemplateError>) -> TaskTemplate {
    let version = match raw.version {
        None | Some(Value::Null) => DEFAULT_VERSION,
        Some(value) => {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            semver::Version::parse(&text).unwrap_or_else(|err| {
                errors.push(TemplateError::new(TemplateErrorKind::InvalidVersion {
                    value: text.clone(),
                    reason: err.to_string(),
                }));
                DEFAULT_VERSION
            })
        }
    };
    let default_system = raw.default_dependent_system.clone();
    let step_templates = raw
        .step_templates
        .unwrap_or_default()
        .into_iter()
        .map(|step| {
            let mut at = |kind| errors.push(TemplateError::new(kind).in_step(step.name.clone()));
            let handler_class = step.handler_class.unwrap_or_else(|| {
                at(TemplateErrorKind::MissingKey {
                    key: "handler_class".into(),
                });
                String::new()
            });
            let default_retry_limit = match step.default_retry_limit.map(retry_limit) {
                None => DEFAULT_RETRY_LIMIT,
                Some(Ok(limit)) => limit,
                Some(Err(kind)) => {
                    at(kind);
                    DEFAULT_RETRY_LIMIT
                }
            };
            let timeout = step
                .timeout
                .as_ref()
                .and_then(|t| t.to_duration().map_err(|e| at(e.into())).ok());
            StepTemplate {
                depends_on_steps: union(&step.depends_on_step, &step.depends_on_steps),
                name: step.name,
                description: step.description,
                handler_class,
                dependent_system: step.dependent_system.or_else(|| default_system.clone()),
                default_retryable: step.default_retryable.unwrap_or(true),
                default_retry_limit,
                skippable: step.skippable.unwrap_or(false),
                timeout,
                handler_config: step
                    .handler_config
                    .filter(|c| !c.is_null())
                    .unwrap_or_else(empty_object),
                custom_events: step.custom_events.unwrap_or_default(),
            }
        })
        .collect();
    TaskTemplate {
        name: raw.name,
        namespace_name: raw
            .namespace_name
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        version,
        module_namespace: raw.module_namespace,
        task_handler_class: raw.task_handler_class,
        description: raw.description,
        concurrent: raw.concurrent.unwrap_or(true),
        default_dependent_system: raw.default_dependent_system,
        named_steps: raw.named_steps,
        schema: raw.schema,
        step_templates,
        environments: raw
            .environments
            .unwrap_or_default()
            .into_iter()
            .map(|(name, overrides)| (name, overrides.unwrap_or_default()))
            .collect(),
        custom_events: raw.custom_events.unwrap_or_default(),
        handler_config: raw.handler_config,
        configuration: raw.configuration,
    }
}

/// Turns a serde error into a kind: unknown and missing keys get their own kinds.
fn classify(path: &str, message: &str) -> TemplateErrorKind {
    let message = message
        .strip_prefix(&format!("{path}: "))
        .unwrap_or(message);
    if let Some(key) = backticked_after(message, "unknown field `") {
        let expected = message.split_once("expected").map_or("", |(_, rest)| rest);
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        return TemplateErrorKind::UnknownKey {
            suggestion: suggest(key, candidates),
            key: key.to_owned(),
            context: context_of_path(path),
        };
    }
    if let Some(key) = backticked_after(message, "missing field `") {
        return TemplateErrorKind::MissingKey {
            key: key.to_owned(),
        };
    }
    let message = if path.is_empty() || path == "." || path.contains('?') {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    };
    TemplateErrorKind::Syntax { message }
}

/// The message without the position the error is already located at. Parser errors carry two
/// positions (`did not find expected ',' or '}' at line 12 column 1, while parsing a flow
/// mapping at line 10 column 21`): only the first repeats the error's location; the second,
/// where the unclosed construct began, is what the author needs, so it stays.
fn strip_location(message: &str, location: Option<(usize, usize)>) -> String {
    let Some((line, column)) = location else {
        return match message.rfind(" at line ") {
            Some(at) if message[at..].contains(" column ") => message[..at].to_owned(),
            _ => message.to_owned(),
        };
    };
    let own = format!(" at line {line} column {column}");
    let end_of_own = |&(at, _): &(usize, &str)| {
        !message[at + own.len()..].starts_with(|c: char| c.is_ascii_digit())
    };
    match message.match_indices(&own).find(end_of_own) {
        Some((at, _)) => format!("{}{}", &message[..at], &message[at + own.len()..]),
        None => message.to_owned(),
    }
}

fn backticked_after<'m>(message: &'m str, marker: &str) -> Option<&'m str> {
    let start = message.find(marker)? + marker.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn context_of_path(path: &str) -> String {
    let parent = path.rsplit_once('.').map_or("", |(parent, _)| parent);
    if parent.starts_with("environments.") {
        if parent.contains("step_templates[") {
            "environment step override".into()
        } else {
            format!(
                "environment `{}`",
                parent.trim_start_matches("environments.")
            )
        }
    } else if parent.contains("custom_events[") {
        "custom event".into()
    } else if parent.starts_with("step_templates[") {
        "step template".into()
    } else {
        "task template".into()
    }
}

fn step_of_path(path: &str, lenient: Option<&Value>) -> Option<String> {
    let rest = path.strip_prefix("step_templates[")?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    let name = lenient?.get("step_templates")?.get(index)?.get("name")?;
    name.as_str().map(str::to_owned)
}

/// Finds lines in the source for errors found after parsing.
pub(super) struct Locator {
    steps: HashMap<String, usize>,
    keys: HashMap<String, usize>,
}

impl Locator {
    pub(super) fn new(source: &str) -> Self {
        let mut steps = HashMap::new();
        let mut keys = HashMap::new();
        let mut in_steps = false;
        for (i, line) in source.lines().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let unquoted = trimmed.trim_start_matches('"');
            if let Some((key, _)) = unquoted.split_once(':') {
                let key = key.trim_end_matches('"');
                if indent == 0 || trimmed.starts_with('"') {
                    keys.entry(key.to_owned()).or_insert(i + 1);
                }
                if key == "step_templates" {
                    in_steps = indent == 0 || trimmed.starts_with('"');
                } else if indent == 0 && !trimmed.starts_with('-') {
                    in_steps = false;
                }
            }
            let item = trimmed.trim_start_matches("- ").trim_start();
            let value = item
                .strip_prefix("name:")
                .or_else(|| item.strip_prefix("\"name\":"));
            if let (true, Some(value)) = (in_steps, value) {
                let name = value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'');
                steps.entry(name.to_owned()).or_insert(i + 1);
            }
        }
        Self { steps, keys }
    }

    pub(super) fn line_of(&self, error: &TemplateError) -> Option<usize> {
        if let Some(step) = &error.step {
            return self.steps.get(step).copied();
        }
        let key = match &error.kind {
            TemplateErrorKind::InvalidVersion { .. } => "version",
            TemplateErrorKind::BlankName { field: "name" } => "name",
            TemplateErrorKind::BlankName {
                field: "namespace_name",
            } => "namespace_name",
            TemplateErrorKind::NoSteps => "step_templates",
            TemplateErrorKind::InvalidSchema { .. } => "schema",
            TemplateErrorKind::InvalidCustomEvent { .. } => "custom_events",
            _ => return None,
        };
        self.keys.get(key).copied()
    }
}

/// Schemas for fields whose Rust type is wider than what a template may hold.
#[cfg(feature = "schema")]
mod schema {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// `version`: a semver string (`1.0.0`); a bare number is accepted and read as text.
    pub(super) fn version(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number"] })
    }

    /// A timeout: a positive number of seconds, or a number with `ms`, `s`, `m` or `h`.
    pub(super) fn timeout(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "number", "exclusiveMinimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h)?\\s*$" }
            ]
        })
    }
}

/// The JSON Schema (draft 2020-12) of the template format, as the parser reads it: unknown keys
/// are refused, as [`TaskTemplate::from_yaml`] refuses them.
#[cfg(feature = "schema")]
pub fn json_schema() -> Value {
    schemars::schema_for!(RawTemplate).to_value()
}
