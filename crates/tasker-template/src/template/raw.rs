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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: String,
    namespace_name: Option<String>,
    version: Option<Value>,
    module_namespace: Option<String>,
    task_handler_class: Option<String>,
    description: Option<String>,
    concurrent: Option<bool>,
    default_dependent_system: Option<String>,
    named_steps: Option<Vec<String>>,
    schema: Option<Value>,
    step_templates: Option<Vec<RawStep>>,
    environments: Option<BTreeMap<String, Option<EnvironmentOverride>>>,
    custom_events: Option<Vec<CustomEventDecl>>,
    handler_config: Option<Value>,
    configuration: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    description: Option<String>,
    handler_class: Option<String>,
    dependent_system: Option<String>,
    depends_on_step: Option<String>,
    depends_on_steps: Option<Vec<String>>,
    default_retryable: Option<bool>,
    default_retry_limit: Option<i64>,
    skippable: Option<bool>,
    timeout: Option<TimeoutValue>,
    handler_config: Option<Value>,
    custom_events: Option<Vec<CustomEventDecl>>,
}

pub use tasker_domain::duration::TimeoutValue;

/// One step's overrides inside an environment; every field but `name` is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
