//! The JSON Schema of the task template format, `schemas/task-template.schema.json`, written by
//! `cargo xtask codegen` from the parser's own types (`tasker_template::json_schema`). Editors
//! that speak the YAML language server protocol read it from a first-line comment:
//! `# yaml-language-server: $schema=<path or URL of the file>`.

/// Where codegen writes the schema.
pub(crate) const PATH: &str = "schemas/task-template.schema.json";

/// The schema file's contents.
pub(crate) fn render(_: &str) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(&tasker_template::json_schema())?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn validator() -> jsonschema::Validator {
        let text = render("").unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        jsonschema::validator_for(&schema).expect("the generated schema is a valid JSON Schema")
    }

    fn errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
        let instance: Value = yaml_serde::from_str(yaml).expect("fixture is YAML");
        validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    #[test]
    fn the_schema_accepts_every_template_in_the_repository() {
        let validator = validator();
        let templates = crate::docs::repository_templates(&crate::workspace_root()).unwrap();
        assert!(
            templates.len() >= 14,
            "expected the blog, docs and init templates, found {}",
            templates.len()
        );
        let mut refused = Vec::new();
        for (origin, source) in &templates {
            let found = errors(&validator, source);
            if !found.is_empty() {
                refused.push(format!("{origin}: {}", found.join("; ")));
            }
        }
        assert!(refused.is_empty(), "{}", refused.join("\n"));
    }

    #[test]
    fn the_schema_refuses_misspelled_keys_and_malformed_values() {
        let validator = validator();
        let good = "name: t\nversion: 1.0.0\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n    timeout: 30s\n";
        assert_eq!(errors(&validator, good), Vec::<String>::new());
        let bad = [
            (
                "misspelled step key",
                "name: t\nstep_templates:\n  - name: a\n    handler_class: X\n    retry_limit: 2\n",
                "/step_templates/0",
            ),
            (
                "misspelled top-level key",
                "name: t\nnamespace: ns\nstep_templates: []\n",
                "",
            ),
            ("no name", "step_templates: []\n", ""),
            (
                "steps not a list",
                "name: t\nstep_templates: a\n",
                "/step_templates",
            ),
            (
                "retry limit below one",
                "name: t\nstep_templates:\n  - name: a\n    default_retry_limit: 0\n",
                "/step_templates/0/default_retry_limit",
            ),
            (
                "timeout in words",
                "name: t\nstep_templates:\n  - name: a\n    timeout: five minutes\n",
                "/step_templates/0/timeout",
            ),
            (
                "dependency not a name",
                "name: t\nstep_templates:\n  - name: a\n    depends_on_steps: [1]\n",
                "/step_templates/0/depends_on_steps/0",
            ),
            (
                "misspelled environment override key",
                "name: t\nenvironments:\n  test:\n    step_template: []\n",
                "/environments/test",
            ),
        ];
        for (what, yaml, at) in bad {
            let found = errors(&validator, yaml);
            assert!(
                found.iter().any(|e| e.ends_with(&format!(" at {at}"))),
                "{what}: expected an error at `{at}`, got {found:?}"
            );
        }
    }
}
