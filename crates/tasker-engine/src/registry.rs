//! The registry: step handlers by class name, task hooks by class name, and task templates by
//! namespace, name and semver version. Safe for concurrent use.

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use tasker_template::TaskTemplate;

use crate::builtin;
use crate::error::EngineError;
use tasker_handler::{StepHandler, TaskHooks};

/// A registered template with its hooks.
#[derive(Clone)]
pub struct RegisteredTask {
    /// The validated template (environment overrides applied).
    pub template: Arc<TaskTemplate>,
    /// Hooks from `task_handler_class`, if the template names one.
    pub hooks: Option<Arc<dyn TaskHooks>>,
}

impl std::fmt::Debug for RegisteredTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredTask")
            .field("template", &self.template.full_name())
            .field("hooks", &self.hooks.is_some())
            .finish()
    }
}

/// Handlers and templates known to one engine.
#[derive(Default)]
pub struct Registry {
    step_handlers: DashMap<String, Arc<dyn StepHandler>>,
    task_hooks: DashMap<String, Arc<dyn TaskHooks>>,
    templates: DashMap<(String, String), BTreeMap<semver::Version, RegisteredTask>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the built-in handlers: `tasker::noop`, `tasker::echo`, `tasker::sleep`,
    /// `tasker::fail` and `tasker::http`.
    pub fn with_builtins() -> Self {
        let registry = Self::new();
        builtin::register_all(&registry);
        registry
    }

    /// Registers a step handler under `class`; a second registration of the same class fails.
    pub fn register_step_handler(
        &self,
        class: impl Into<String>,
        handler: Arc<dyn StepHandler>,
    ) -> Result<(), EngineError> {
        use dashmap::mapref::entry::Entry;
        match self.step_handlers.entry(class.into()) {
            Entry::Occupied(entry) => Err(EngineError::DuplicateHandler(entry.key().clone())),
            Entry::Vacant(entry) => {
                entry.insert(handler);
                Ok(())
            }
        }
    }

    /// Registers or replaces the step handler under `class`.
    pub fn replace_step_handler(&self, class: impl Into<String>, handler: Arc<dyn StepHandler>) {
        self.step_handlers.insert(class.into(), handler);
    }

    /// The step handler registered as `class`.
    pub fn step_handler(&self, class: &str) -> Option<Arc<dyn StepHandler>> {
        self.step_handlers.get(class).map(|h| h.clone())
    }

    /// Every step handler class, sorted.
    pub fn step_handler_classes(&self) -> Vec<String> {
        let mut classes: Vec<String> = self.step_handlers.iter().map(|e| e.key().clone()).collect();
        classes.sort();
        classes
    }

    /// Registers task hooks under `class` (a template's `task_handler_class`), replacing any.
    pub fn register_task_hooks(&self, class: impl Into<String>, hooks: Arc<dyn TaskHooks>) {
        self.task_hooks.insert(class.into(), hooks);
    }

    /// Validates `template` (structure, and that every handler class is registered) and
    /// registers it. The same namespace/name/version twice fails unless `replace`.
    pub fn register_template(
        &self,
        template: TaskTemplate,
        replace: bool,
    ) -> Result<RegisteredTask, EngineError> {
        template.validate()?;
        for step in &template.step_templates {
            if self.step_handler(&step.handler_class).is_none() {
                return Err(EngineError::UnknownHandler {
                    template: template.full_name(),
                    step: step.name.clone(),
                    handler_class: step.handler_class.clone(),
                });
            }
        }
        let hooks = match &template.task_handler_class {
            None => None,
            Some(class) => Some(self.task_hooks.get(class).map(|h| h.clone()).ok_or_else(
                || EngineError::UnknownHandler {
                    template: template.full_name(),
                    step: "(task_handler_class)".into(),
                    handler_class: class.clone(),
                },
            )?),
        };
        let key = (template.namespace_name.clone(), template.name.clone());
        let version = template.version.clone();
        let full_name = template.full_name();
        let registered = RegisteredTask {
            template: Arc::new(template),
            hooks,
        };
        let mut versions = self.templates.entry(key).or_default();
        if versions.contains_key(&version) && !replace {
            return Err(EngineError::DuplicateTemplate(full_name));
        }
        versions.insert(version, registered.clone());
        Ok(registered)
    }

    /// The template `namespace/name` at `version`, or the highest semver version.
    pub fn resolve(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&semver::Version>,
    ) -> Option<RegisteredTask> {
        let versions = self
            .templates
            .get(&(namespace.to_owned(), name.to_owned()))?;
        match version {
            Some(v) => versions.get(v).cloned(),
            None => versions.values().next_back().cloned(),
        }
    }

    /// Every registered template as `(namespace, name, version)`, sorted; optionally one namespace.
    pub fn list(&self, namespace: Option<&str>) -> Vec<(String, String, semver::Version)> {
        let mut all: Vec<_> = self
            .templates
            .iter()
            .filter(|e| namespace.is_none_or(|n| e.key().0 == n))
            .flat_map(|e| {
                e.value()
                    .keys()
                    .map(|v| (e.key().0.clone(), e.key().1.clone(), v.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all
    }

    /// The namespaces with at least one template, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.templates.iter().map(|e| e.key().0.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_template::StepTemplate;

    fn template(version: &str, handler: &str) -> TaskTemplate {
        let mut t = TaskTemplate::new("refund");
        t.namespace_name = "payments".into();
        t.version = version.parse().unwrap();
        t.step_templates.push(StepTemplate::new("only", handler));
        t
    }

    #[test]
    fn latest_means_the_highest_semver_not_the_last_string() {
        let registry = Registry::with_builtins();
        for v in ["1.9.0", "1.10.0", "1.2.3"] {
            registry
                .register_template(template(v, "tasker::noop"), false)
                .unwrap();
        }
        let latest = registry.resolve("payments", "refund", None).unwrap();
        assert_eq!(latest.template.version.to_string(), "1.10.0");
        let exact = registry
            .resolve("payments", "refund", Some(&"1.2.3".parse().unwrap()))
            .unwrap();
        assert_eq!(exact.template.version.to_string(), "1.2.3");
        assert!(
            registry
                .resolve("payments", "refund", Some(&"9.9.9".parse().unwrap()))
                .is_none()
        );
        assert_eq!(registry.list(Some("payments")).len(), 3);
        assert_eq!(registry.namespaces(), ["payments"]);
    }

    #[test]
    fn duplicates_are_refused_unless_replaced() {
        let registry = Registry::with_builtins();
        registry
            .register_template(template("1.0.0", "tasker::noop"), false)
            .unwrap();
        let err = registry
            .register_template(template("1.0.0", "tasker::noop"), false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task template payments/refund@1.0.0 is already registered (register with replace to override)"
        );
        registry
            .register_template(template("1.0.0", "tasker::echo"), true)
            .unwrap();
        let err = registry
            .register_step_handler("tasker::noop", Arc::new(builtin::NoopHandler))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a step handler is already registered as `tasker::noop`"
        );
    }

    #[test]
    fn unknown_handler_classes_are_named() {
        let registry = Registry::with_builtins();
        let err = registry
            .register_template(template("1.0.0", "tasker::nope"), false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "step `only` of payments/refund@1.0.0: no step handler is registered as `tasker::nope`"
        );
        let mut t = template("1.0.0", "tasker::noop");
        t.task_handler_class = Some("RefundHooks".into());
        let err = registry.register_template(t, false).unwrap_err();
        assert!(err.to_string().contains("`RefundHooks`"), "{err}");
    }

    #[test]
    fn concurrent_registration_is_safe() {
        let registry = Arc::new(Registry::with_builtins());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    registry.register_template(template(&format!("1.0.{i}"), "tasker::noop"), false)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(registry.list(None).len(), 8);
        assert_eq!(
            registry
                .resolve("payments", "refund", None)
                .unwrap()
                .template
                .version
                .to_string(),
            "1.0.7"
        );
    }
}
