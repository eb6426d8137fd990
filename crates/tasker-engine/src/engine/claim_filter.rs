//! Which tasks' steps an engine claims: the claim filter, from the catalogue, the registry,
//! the engine's namespaces and the runtime switches.

use std::sync::atomic::Ordering;

use tasker_domain::TemplateId;
use tasker_persistence::{ClaimFilter, NamespaceLimit, RuntimeSwitch, SwitchKind};
use tasker_template::TaskTemplate;

use super::Engine;

impl Engine {
    /// Recomputes which templates' tasks this engine claims, from the catalogue and the
    /// runtime switches: those whose step handler classes are all registered here, in the
    /// configured namespaces, not paused, with the namespace limits in force.
    pub(crate) async fn refresh_claim_filter(&self) {
        if let Some(switches) = self.read_switches().await {
            self.refresh_claim_filter_with(&switches).await;
        }
    }

    /// The runtime switches, or `None` (logged) when they could not be read: then the claim
    /// filter stays as it is.
    async fn read_switches(&self) -> Option<Vec<RuntimeSwitch>> {
        match self.inner.store.runtime_switches().await {
            Ok(switches) => Some(switches),
            Err(err) => {
                tracing::warn!(error = %err, "reading the runtime switches failed; the claim filter is unchanged");
                None
            }
        }
    }

    pub(crate) async fn refresh_claim_filter_with(&self, switches: &[RuntimeSwitch]) {
        let inner = &self.inner;
        let catalogue = match inner.store.template_catalogue().await {
            Ok(catalogue) => catalogue,
            Err(err) => {
                tracing::warn!(error = %err, "reading the template catalogue failed; the claim filter is unchanged");
                return;
            }
        };
        let filter = claim_filter(
            &catalogue,
            |class| inner.registry.step_handler(class).is_some(),
            inner.namespaces.as_deref(),
            switches,
        );
        inner
            .switches_active
            .store(!switches.is_empty(), Ordering::Relaxed);
        *inner.claim_filter.lock().expect("claim filter lock") = filter;
    }

    /// Reads the runtime switches (every `engine.switch_refresh`, from the coordinator's loop):
    /// the claim filter is rebuilt while any are in force and once after the last is lifted,
    /// so without switches this costs one small query.
    pub(crate) async fn refresh_switches(&self) {
        let Some(switches) = self.read_switches().await else {
            return;
        };
        if !switches.is_empty() || self.inner.switches_active.load(Ordering::Relaxed) {
            self.refresh_claim_filter_with(&switches).await;
        }
    }

    pub(crate) fn current_claim_filter(&self) -> ClaimFilter {
        self.inner
            .claim_filter
            .lock()
            .expect("claim filter lock")
            .clone()
    }
}

/// Which catalogue templates' tasks an engine claims: those whose step handler classes are all
/// `registered`, in `namespaces` when given. No filter at all when that is every template.
pub(crate) fn claim_filter(
    catalogue: &[(TemplateId, TaskTemplate)],
    registered: impl Fn(&str) -> bool,
    namespaces: Option<&[String]>,
    switches: &[RuntimeSwitch],
) -> ClaimFilter {
    let mut paused_named_task_ids = Vec::new();
    let mut limits = Vec::new();
    for switch in switches {
        match switch.kind {
            SwitchKind::Pause => paused_named_task_ids.extend(
                catalogue
                    .iter()
                    .filter(|(_, t)| {
                        switch
                            .target
                            .covers(&t.namespace_name, &t.name, &t.version.to_string())
                    })
                    .map(|(id, _)| *id),
            ),
            SwitchKind::Limit => limits.push(NamespaceLimit {
                namespace: switch.target.namespace.clone(),
                max_running: switch.max_running.unwrap_or(0),
                named_task_ids: catalogue
                    .iter()
                    .filter(|(_, t)| t.namespace_name == switch.target.namespace)
                    .map(|(id, _)| *id)
                    .collect(),
            }),
        }
    }
    paused_named_task_ids.sort_unstable();
    paused_named_task_ids.dedup();
    let allowed: Vec<TemplateId> = catalogue
        .iter()
        .filter(|(_, template)| {
            namespaces.is_none_or(|ns| ns.contains(&template.namespace_name))
                && template
                    .step_templates
                    .iter()
                    .all(|step| registered(&step.handler_class))
        })
        .map(|(id, _)| *id)
        .collect();
    ClaimFilter {
        named_task_ids: (allowed.len() < catalogue.len() || namespaces.is_some())
            .then_some(allowed),
        paused_named_task_ids,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_claims_only_templates_it_has_every_handler_for_in_its_namespaces() {
        let parse = |yaml: &str| TaskTemplate::from_yaml_str(yaml, None).unwrap();
        let catalogue = vec![
            (
                TemplateId(1),
                parse("name: a\nstep_templates:\n  - name: s\n    handler_class: here\n"),
            ),
            (
                TemplateId(2),
                parse(
                    "name: b\nstep_templates:\n  - name: s\n    handler_class: here\n  - name: t\n    handler_class: elsewhere\n",
                ),
            ),
            (
                TemplateId(3),
                parse(
                    "name: c\nnamespace_name: ops\nstep_templates:\n  - name: s\n    handler_class: here\n",
                ),
            ),
        ];
        let here = |class: &str| class == "here";
        assert_eq!(
            claim_filter(&catalogue, here, None, &[]).named_task_ids,
            Some(vec![TemplateId(1), TemplateId(3)])
        );
        let ops = ["ops".to_owned()];
        assert_eq!(
            claim_filter(&catalogue, here, Some(&ops), &[]).named_task_ids,
            Some(vec![TemplateId(3)])
        );
        assert_eq!(
            claim_filter(&catalogue, |_| true, None, &[]),
            ClaimFilter::default()
        );
    }
}
