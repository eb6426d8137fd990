//! The engine's one template cache: each catalogue template this engine has met, by its id
//! (what claimed steps and tasks carry) and, for the templates this engine stored in the
//! catalogue itself, by `namespace/name@version` (what a creation request names). The registry
//! stays the record of what this process registered (handlers, hooks, templates by semver);
//! the cache joins a catalogue row to the registered template and hooks, so the facade and the
//! coordinator look templates up in one place.

use std::sync::Arc;

use dashmap::DashMap;
use tasker_domain::TemplateId;
use tasker_persistence::RegisteredTemplate;
use tasker_template::TaskTemplate;

use crate::emit::TemplateNames;
use crate::registry::RegisteredTask;
use tasker_handler::TaskHooks;

/// A catalogue template as the engine uses it.
pub(crate) struct CachedTemplate {
    /// The catalogue row: the template's id and named step ids, for creating tasks.
    pub(crate) stored: RegisteredTemplate,
    /// The template to run: the one registered here (environment overrides applied) when there
    /// is one, else the catalogue's.
    pub(crate) template: Arc<TaskTemplate>,
    /// The task hooks registered here for it, if any.
    pub(crate) hooks: Option<Arc<dyn TaskHooks>>,
    /// Its names, as events and spans label them.
    pub(crate) names: TemplateNames,
}

impl CachedTemplate {
    fn new(stored: RegisteredTemplate, registered: Option<&RegisteredTask>) -> Self {
        let (template, hooks) = match registered {
            Some(registered) => (registered.template.clone(), registered.hooks.clone()),
            None => (stored.template.clone(), None),
        };
        Self {
            names: TemplateNames::of(&template),
            stored,
            template,
            hooks,
        }
    }

    pub(crate) fn id(&self) -> TemplateId {
        self.stored.named_task_id
    }
}

#[derive(Default)]
pub(crate) struct TemplateCache {
    by_id: DashMap<TemplateId, Arc<CachedTemplate>>,
    /// `namespace/name@version` to id, only for templates this engine stored in the catalogue
    /// (a template met only by id may differ from the one registered here under its name).
    by_name: DashMap<String, TemplateId>,
}

impl TemplateCache {
    /// The template stored as `id`, if met.
    pub(crate) fn by_id(&self, id: TemplateId) -> Option<Arc<CachedTemplate>> {
        self.by_id.get(&id).map(|entry| entry.clone())
    }

    /// The template this engine stored as `full_name` (`namespace/name@version`).
    pub(crate) fn by_name(&self, full_name: &str) -> Option<Arc<CachedTemplate>> {
        let id = *self.by_name.get(full_name)?;
        self.by_id(id)
    }

    /// `registered` was just stored in the catalogue as `stored`: found by id and by name.
    pub(crate) fn stored(
        &self,
        stored: RegisteredTemplate,
        registered: &RegisteredTask,
    ) -> Arc<CachedTemplate> {
        let cached = Arc::new(CachedTemplate::new(stored, Some(registered)));
        self.by_id.insert(cached.id(), cached.clone());
        self.by_name
            .insert(registered.template.full_name(), cached.id());
        cached
    }

    /// A template read from the catalogue by id (`registered`: the same one registered here,
    /// with its hooks): found by id only.
    pub(crate) fn learned(
        &self,
        stored: RegisteredTemplate,
        registered: Option<&RegisteredTask>,
    ) -> Arc<CachedTemplate> {
        let cached = Arc::new(CachedTemplate::new(stored, registered));
        self.by_id.insert(cached.id(), cached.clone());
        cached
    }

    /// Whether the template stored as `id` is known to have no task hooks.
    pub(crate) fn known_without_hooks(&self, id: TemplateId) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|cached| cached.hooks.is_none())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn template(version: &str) -> TaskTemplate {
        let mut t = TaskTemplate::new("refund");
        t.namespace_name = "payments".into();
        t.version = version.parse().unwrap();
        t
    }

    fn row(id: i64, template: &TaskTemplate) -> RegisteredTemplate {
        RegisteredTemplate {
            named_task_id: TemplateId(id),
            template: Arc::new(template.clone()),
            named_step_ids: HashMap::new(),
        }
    }

    struct Hooks;
    impl TaskHooks for Hooks {}

    #[test]
    fn a_stored_template_is_found_by_id_and_by_name_with_its_hooks() {
        let cache = TemplateCache::default();
        let registered = RegisteredTask {
            template: Arc::new(template("1.0.0")),
            hooks: Some(Arc::new(Hooks)),
        };
        cache.stored(row(7, &registered.template), &registered);
        let by_name = cache.by_name("payments/refund@1.0.0").unwrap();
        assert_eq!(by_name.id(), TemplateId(7));
        assert!(by_name.hooks.is_some());
        assert_eq!(&*by_name.names.version, "1.0.0");
        assert!(Arc::ptr_eq(&by_name, &cache.by_id(TemplateId(7)).unwrap()));
        assert!(!cache.known_without_hooks(TemplateId(7)));
        assert!(cache.by_name("payments/refund@2.0.0").is_none());
    }

    #[test]
    fn a_template_met_only_by_id_is_not_found_by_name() {
        let cache = TemplateCache::default();
        let other = template("1.0.0");
        cache.learned(row(3, &other), None);
        assert!(cache.by_name("payments/refund@1.0.0").is_none());
        assert!(cache.known_without_hooks(TemplateId(3)));
        // Unknown ids are not "known without hooks": their hooks are unknown.
        assert!(!cache.known_without_hooks(TemplateId(4)));
        // Storing it here later makes it found by name, the registered one replacing it.
        let registered = RegisteredTask {
            template: Arc::new(template("1.0.0")),
            hooks: Some(Arc::new(Hooks)),
        };
        cache.stored(row(3, &registered.template), &registered);
        assert!(
            cache
                .by_name("payments/refund@1.0.0")
                .unwrap()
                .hooks
                .is_some()
        );
        assert!(cache.by_id(TemplateId(3)).unwrap().hooks.is_some());
    }
}
