//! Task templates: the Rails engine's YAML (or JSON) format, parsed strictly and validated.
//!
//! Every key the Rails format defines is accepted. Keys kept only for compatibility, with no
//! behaviour in Tasker: `module_namespace` (a Ruby module), `concurrent` (steps always run
//! concurrently), top-level `handler_config` (documentation for humans), `description`. An
//! unknown key is an error with a did-you-mean suggestion, so `retry_limit` for
//! `default_retry_limit` cannot pass silently.
//!
//! Tasker's additions: a per-step `timeout`, `task_handler_class` being optional (a template
//! that uses only built-in handlers needs none), and semver-checked versions.

mod error;
mod raw;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use error::suggest;
pub use error::{TemplateError, TemplateErrorKind, TemplateErrors};

use crate::context::ContextSchema;
use crate::graph::DependencyGraph;
use tasker_domain::request::DEFAULT_NAMESPACE;

/// The version a template gets when it states none (the Rails default).
pub const DEFAULT_VERSION: semver::Version = semver::Version::new(0, 1, 0);
/// The largest `default_retry_limit` accepted.
pub const MAX_RETRY_LIMIT: u32 = 1_000;
/// The retry limit of a step that states none (the Rails default).
pub const DEFAULT_RETRY_LIMIT: u32 = 3;

/// A custom event a template or step declares it may publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomEventDecl {
    /// The event name, published and subscribed to as written.
    pub name: String,
    /// What the event means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTemplate {
    /// Unique within the template.
    pub name: String,
    /// What the step does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The step handler, resolved through the handler registry (`tasker::noop`, `MyHandler`, ...).
    pub handler_class: String,
    /// The outside system the step talks to (the template's default when not stated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependent_system: Option<String>,
    /// Every step this one waits for: the union of `depends_on_step` and `depends_on_steps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on_steps: Vec<String>,
    /// Whether a failed attempt may be retried. The first attempt always runs.
    pub default_retryable: bool,
    /// The maximum number of attempts, the first one included.
    pub default_retry_limit: u32,
    /// Whether a task request may bypass this step.
    #[serde(default)]
    pub skippable: bool,
    /// How long one attempt may run before it counts as a retryable failure.
    #[serde(
        default,
        with = "tasker_domain::serde_secs::optional_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Configuration handed to the step handler.
    #[serde(default = "empty_object")]
    pub handler_config: Value,
    /// Custom events the step's handler may publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_events: Vec<CustomEventDecl>,
}

impl StepTemplate {
    /// A step with the Rails defaults.
    pub fn new(name: impl Into<String>, handler_class: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            handler_class: handler_class.into(),
            dependent_system: None,
            depends_on_steps: Vec::new(),
            default_retryable: true,
            default_retry_limit: DEFAULT_RETRY_LIMIT,
            skippable: false,
            timeout: None,
            handler_config: empty_object(),
            custom_events: Vec::new(),
        }
    }

    /// Adds dependencies.
    pub fn depends_on<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on_steps
            .extend(steps.into_iter().map(Into::into));
        self
    }
}

/// Per-environment overrides, deep-merged into the template by [`TaskTemplate::for_environment`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvironmentOverride {
    /// Step overrides, matched to steps by name.
    #[serde(default)]
    pub step_templates: Vec<raw::StepOverride>,
    /// Deep-merged into the top-level `handler_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_config: Option<Value>,
    /// Deep-merged into `configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
}

#[cfg(feature = "schema")]
pub use raw::json_schema;
pub use raw::{StepOverride, TimeoutValue};

/// A validated workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTemplate {
    /// The workflow's name.
    pub name: String,
    /// Its namespace (`default` when not stated).
    pub namespace_name: String,
    /// Its semver version (`0.1.0` when not stated).
    pub version: semver::Version,
    /// Accepted for compatibility; no behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_namespace: Option<String>,
    /// A registered task handler providing hooks; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_handler_class: Option<String>,
    /// What the workflow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Accepted for compatibility; steps always run concurrently.
    #[serde(default = "yes")]
    pub concurrent: bool,
    /// The dependent system of steps that state none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_dependent_system: Option<String>,
    /// When present, every step and dependency must be listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_steps: Option<Vec<String>>,
    /// JSON Schema for the task context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// The steps, in declaration order.
    pub step_templates: Vec<StepTemplate>,
    /// Overrides per environment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, EnvironmentOverride>,
    /// Custom events the workflow may publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_events: Vec<CustomEventDecl>,
    /// Accepted for compatibility; informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_config: Option<Value>,
    /// Free-form configuration stored with the named task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
}

fn yes() -> bool {
    true
}

pub(crate) fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl TaskTemplate {
    /// An empty template for code-built workflows; add steps, then [`validate`](Self::validate).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace_name: DEFAULT_NAMESPACE.to_owned(),
            version: DEFAULT_VERSION,
            module_namespace: None,
            task_handler_class: None,
            description: None,
            concurrent: true,
            default_dependent_system: None,
            named_steps: None,
            schema: None,
            step_templates: Vec::new(),
            environments: BTreeMap::new(),
            custom_events: Vec::new(),
            handler_config: None,
            configuration: None,
        }
    }

    /// Parses and validates a template from YAML (JSON is YAML too). `origin` names the file in
    /// error messages.
    pub fn from_yaml_str(source: &str, origin: Option<&str>) -> Result<Self, TemplateErrors> {
        let (template, mut errors) = raw::parse(source, origin)?;
        let missing_handlers: Vec<Option<String>> = errors
            .iter()
            .filter(|e| matches!(&e.kind, TemplateErrorKind::MissingKey { key } if key == "handler_class"))
            .map(|e| e.step.clone())
            .collect();
        errors.extend(template.check().into_iter().filter(|e| {
            !(e.kind
                == TemplateErrorKind::BlankName {
                    field: "handler_class",
                }
                && missing_handlers.contains(&e.step))
        }));
        if errors.is_empty() {
            Ok(template)
        } else {
            let locator = raw::Locator::new(source);
            Err(TemplateErrors(
                errors
                    .into_iter()
                    .map(|mut error| {
                        error.file = origin.map(str::to_owned);
                        error.line = locator.line_of(&error);
                        error
                    })
                    .collect(),
            ))
        }
    }

    /// Like [`from_yaml_str`](Self::from_yaml_str), for bytes that may not be UTF-8.
    pub fn from_yaml_slice(source: &[u8], origin: Option<&str>) -> Result<Self, TemplateErrors> {
        match std::str::from_utf8(source) {
            Ok(text) => Self::from_yaml_str(text, origin),
            Err(err) => {
                let mut error = TemplateError::new(TemplateErrorKind::NotUtf8 {
                    message: err.to_string(),
                });
                error.file = origin.map(str::to_owned);
                Err(error.into())
            }
        }
    }

    /// Checks everything about the template that does not need its source text: names,
    /// duplicates, dependencies, cycles, retry limits, `named_steps`, the schema, and that every
    /// environment's overrides apply cleanly.
    pub fn validate(&self) -> Result<(), TemplateErrors> {
        let errors = self.check();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TemplateErrors(errors))
        }
    }

    /// `namespace/name@version`.
    pub fn full_name(&self) -> String {
        format!("{}/{}@{}", self.namespace_name, self.name, self.version)
    }

    /// Every custom event the template declares, top level first, each with who declares it
    /// (`namespace/name@version`, or `namespace/name@version step NAME`).
    pub fn declared_custom_events(&self) -> Vec<(&CustomEventDecl, String)> {
        let full_name = self.full_name();
        let mut declared: Vec<(&CustomEventDecl, String)> = self
            .custom_events
            .iter()
            .map(|e| (e, full_name.clone()))
            .collect();
        for step in &self.step_templates {
            declared.extend(
                step.custom_events
                    .iter()
                    .map(|e| (e, format!("{full_name} step {}", step.name))),
            );
        }
        declared
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&StepTemplate> {
        self.step_templates.iter().find(|s| s.name == name)
    }

    /// The dependency graph of the steps.
    pub fn graph(&self) -> DependencyGraph {
        DependencyGraph::new(self.step_templates.iter().map(|s| {
            (
                s.name.as_str(),
                s.depends_on_steps.iter().map(String::as_str),
            )
        }))
    }

    /// The compiled context schema, if the template has one.
    pub fn context_schema(
        &self,
    ) -> Option<Result<ContextSchema, crate::context::ContextSchemaError>> {
        self.schema.as_ref().map(ContextSchema::compile)
    }

    /// The template with `environment`'s overrides deep-merged in (unchanged when the
    /// environment has none), validated again.
    pub fn for_environment(&self, environment: &str) -> Result<TaskTemplate, TemplateErrors> {
        let mut merged = self.clone();
        merged.environments.clear();
        let Some(overrides) = self.environments.get(environment) else {
            return Ok(merged);
        };
        let mut errors = overrides.apply(&mut merged, environment);
        if errors.is_empty() {
            errors = merged.check();
        }
        for error in &mut errors {
            error.environment = Some(environment.to_owned());
        }
        if errors.is_empty() {
            Ok(merged)
        } else {
            Err(TemplateErrors(errors))
        }
    }

    fn check(&self) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push(TemplateError::new(TemplateErrorKind::BlankName {
                field: "name",
            }));
        }
        if self.namespace_name.trim().is_empty() {
            errors.push(TemplateError::new(TemplateErrorKind::BlankName {
                field: "namespace_name",
            }));
        }
        if self.step_templates.is_empty() {
            errors.push(TemplateError::new(TemplateErrorKind::NoSteps));
        }
        let names: Vec<&str> = self
            .step_templates
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let mut seen = HashSet::new();
        for step in &self.step_templates {
            let at = |kind| TemplateError::new(kind).in_step(step.name.clone());
            if step.name.trim().is_empty() {
                errors.push(TemplateError::new(TemplateErrorKind::BlankName {
                    field: "step name",
                }));
            } else if !seen.insert(step.name.as_str()) {
                errors.push(at(TemplateErrorKind::DuplicateStep {
                    name: step.name.clone(),
                }));
            }
            if step.handler_class.trim().is_empty() {
                errors.push(at(TemplateErrorKind::BlankName {
                    field: "handler_class",
                }));
            }
            if step.default_retry_limit < 1 {
                errors.push(at(TemplateErrorKind::RetryLimitBelowOne { value: 0 }));
            } else if step.default_retry_limit > MAX_RETRY_LIMIT {
                errors.push(at(TemplateErrorKind::RetryLimitTooLarge {
                    value: i64::from(step.default_retry_limit),
                    max: MAX_RETRY_LIMIT,
                }));
            }
            match step.timeout {
                Some(Duration::ZERO) => {
                    errors.push(at(TemplateErrorKind::InvalidTimeout { value: "0".into() }));
                }
                Some(value) if value > tasker_domain::duration::MAX_STEP_TIMEOUT => {
                    errors.push(at(TemplateErrorKind::TimeoutTooLong {
                        template: self.full_name(),
                        value,
                    }));
                }
                _ => {}
            }
            for dependency in &step.depends_on_steps {
                if !names.contains(&dependency.as_str()) {
                    errors.push(at(TemplateErrorKind::UnknownDependency {
                        dependency: dependency.clone(),
                        suggestion: suggest(dependency, names.iter().copied()),
                    }));
                }
            }
        }
        let declared = self.custom_events.iter().map(|e| (e, None)).chain(
            self.step_templates
                .iter()
                .flat_map(|s| s.custom_events.iter().map(|e| (e, Some(s.name.clone())))),
        );
        for (event, step) in declared {
            if let Err(err) = tasker_domain::event_names::check_custom_name(&event.name) {
                let error = TemplateError::new(TemplateErrorKind::InvalidCustomEvent {
                    name: event.name.clone(),
                    reason: err.to_string(),
                });
                errors.push(match step {
                    Some(step) => error.in_step(step),
                    None => error,
                });
            }
        }
        if let Some(listed) = &self.named_steps {
            let mut unlisted: Vec<&str> = Vec::new();
            for step in &self.step_templates {
                for name in std::iter::once(&step.name).chain(&step.depends_on_steps) {
                    if !listed.contains(name) && !unlisted.contains(&name.as_str()) {
                        unlisted.push(name);
                        errors.push(
                            TemplateError::new(TemplateErrorKind::NotInNamedSteps {
                                name: name.clone(),
                            })
                            .in_step(step.name.clone()),
                        );
                    }
                }
            }
        }
        let structural = errors.iter().any(|e| {
            matches!(
                e.kind,
                TemplateErrorKind::DuplicateStep { .. }
                    | TemplateErrorKind::UnknownDependency { .. }
            )
        });
        if !structural && let Some(cycle) = self.graph().find_cycle() {
            let steps: Vec<String> = cycle.iter().map(|s| (*s).to_owned()).collect();
            errors.push(TemplateError::new(TemplateErrorKind::Cycle { steps }).in_step(cycle[0]));
        }
        if let Some(Err(err)) = self.context_schema() {
            errors.push(TemplateError::new(TemplateErrorKind::InvalidSchema {
                message: err.message,
            }));
        }
        for environment in self.environments.keys() {
            if let Err(env_errors) = self.for_environment(environment) {
                errors.extend(env_errors.0);
            }
        }
        errors
    }
}

impl EnvironmentOverride {
    fn apply(&self, template: &mut TaskTemplate, environment: &str) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        for step_override in &self.step_templates {
            let names = template.step_templates.iter().map(|s| s.name.as_str());
            let suggestion = suggest(&step_override.name, names);
            match template
                .step_templates
                .iter_mut()
                .find(|s| s.name == step_override.name)
            {
                Some(step) => errors.extend(step_override.apply(step)),
                None => errors.push(TemplateError::new(
                    TemplateErrorKind::UnknownEnvironmentStep {
                        environment: environment.to_owned(),
                        step: step_override.name.clone(),
                        suggestion,
                    },
                )),
            }
        }
        if let Some(config) = &self.handler_config {
            deep_merge(
                template.handler_config.get_or_insert_with(empty_object),
                config,
            );
        }
        if let Some(config) = &self.configuration {
            deep_merge(
                template.configuration.get_or_insert_with(empty_object),
                config,
            );
        }
        errors
    }
}

/// Merges `overlay` into `base`: objects key by key, recursively; anything else replaces.
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

#[cfg(test)]
mod tests;
