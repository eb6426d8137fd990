//! Unit tests of template parsing and validation: accepted templates, and each error as authors read it.

use std::time::Duration;

use expect_test::{Expect, expect};
use serde_json::json;

use super::*;

/// Parses `source` as `t.yaml` and compares the rendered errors (or `ok`) with `expected`.
fn check(source: &str, expected: Expect) {
    let actual = match TaskTemplate::from_yaml_str(source, Some("t.yaml")) {
        Ok(_) => "ok".to_owned(),
        Err(errors) => errors.to_string(),
    };
    expected.assert_eq(&actual);
}

const MINIMAL: &str = "\
name: demo
step_templates:
  - name: a
    handler_class: tasker::noop
";

#[test]
fn minimal_template_gets_the_rails_defaults() {
    let template = TaskTemplate::from_yaml_str(MINIMAL, None).unwrap();
    assert_eq!(template.namespace_name, "default");
    assert_eq!(template.version, semver::Version::new(0, 1, 0));
    assert_eq!(template.task_handler_class, None);
    let step = &template.step_templates[0];
    assert_eq!(step, &StepTemplate::new("a", "tasker::noop"));
    assert_eq!(template.full_name(), "default/demo@0.1.0");
}

#[test]
fn every_rails_key_is_accepted() {
    let source = r#"
name: full
namespace_name: ops
version: 2.3.4
module_namespace: Ops
task_handler_class: FullHandler
description: every key
concurrent: false
default_dependent_system: crm
named_steps: [a, b]
schema: { type: object }
custom_events: [{ name: ops.thing_happened, description: a thing }]
handler_config: { informational: true }
configuration: { owner: ops-team }
step_templates:
  - name: a
    description: first
    handler_class: A
    dependent_system: billing
    default_retryable: false
    default_retry_limit: 1
    skippable: true
    timeout: 1500ms
    handler_config: { url: "http://x" }
    custom_events: [{ name: ops.a_done }]
  - name: b
    handler_class: B
    depends_on_step: a
    depends_on_steps: [a]
environments:
  test:
    step_templates: [{ name: a, handler_config: { url: "http://test" } }]
"#;
    let template = TaskTemplate::from_yaml_str(source, None).unwrap();
    let a = template.step("a").unwrap();
    assert_eq!(a.dependent_system.as_deref(), Some("billing"));
    assert!(!a.default_retryable && a.skippable);
    assert_eq!(a.timeout, Some(Duration::from_millis(1500)));
    let b = template.step("b").unwrap();
    assert_eq!(
        b.dependent_system.as_deref(),
        Some("crm"),
        "the template default applies"
    );
    assert_eq!(
        b.depends_on_steps,
        ["a"],
        "depends_on_step and depends_on_steps are unioned"
    );
    assert_eq!(template.configuration, Some(json!({"owner": "ops-team"})));
    assert_eq!(template.version, semver::Version::new(2, 3, 4));
}

#[test]
fn json_templates_parse_and_serialization_round_trips() {
    let template = TaskTemplate::from_yaml_str(MINIMAL, None).unwrap();
    let json = serde_json::to_string(&template).unwrap();
    let again = TaskTemplate::from_yaml_str(&json, Some("t.json")).unwrap();
    assert_eq!(again, template);
}

#[test]
fn unknown_keys_are_rejected_with_a_suggestion_and_a_line() {
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    retry_limit: 5\n",
        expect![
            "t.yaml:5:5: step `a`: unknown key `retry_limit` in step template (did you mean `default_retry_limit`?)"
        ],
    );
    check(
        "name: demo\nsteps: []\n",
        expect![
            "t.yaml:2:1: unknown key `steps` in task template (did you mean `step_templates`?)"
        ],
    );
    check(
        "name: demo\nnamespace_nme: x\nstep_templates: []\n",
        expect![
            "t.yaml:2:1: unknown key `namespace_nme` in task template (did you mean `namespace_name`?)"
        ],
    );
    check(
        "name: d\nstep_templates: [{name: a, handler_class: X}]\nenvironments:\n  test:\n    step_templates: [{name: a, retryable: false}]\n",
        expect![
            "t.yaml:5:32: unknown key `retryable` in environment step override (did you mean `default_retryable`?)"
        ],
    );
}

#[test]
fn structural_errors_name_the_step_and_its_line() {
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n  - name: a\n    handler_class: Y\n",
        expect!["t.yaml:3: step `a`: duplicate step name `a`"],
    );
    check(
        "name: demo\nstep_templates:\n  - name: fetch\n    handler_class: X\n  - name: load\n    handler_class: Y\n    depends_on_step: fetchh\n",
        expect!["t.yaml:5: step `load`: depends on unknown step `fetchh` (did you mean `fetch`?)"],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    depends_on_step: c\n  - name: b\n    handler_class: X\n    depends_on_step: a\n  - name: c\n    handler_class: X\n    depends_on_step: b\n",
        expect!["t.yaml:3: step `a`: dependency cycle: a -> b -> c -> a"],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n",
        expect!["t.yaml:3: step `a`: missing required key `handler_class`"],
    );
    check(
        "name: demo\nstep_templates:\n  - handler_class: X\n",
        expect!["t.yaml:3:5: missing required key `name`"],
    );
}

#[test]
fn hostile_timeouts_are_refused_with_the_cap() {
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    timeout: 10000000000000\n",
        expect![
            "t.yaml:3: step `a`: timeout of 10000000000000 s in template default/demo@0.1.0 exceeds the maximum step timeout of 86400 s (24 h)"
        ],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    timeout: 86401\n",
        expect![
            "t.yaml:3: step `a`: timeout of 86401 s in template default/demo@0.1.0 exceeds the maximum step timeout of 86400 s (24 h)"
        ],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    timeout: 24h\n",
        expect!["ok"],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\nenvironments:\n  prod:\n    step_templates:\n      - name: a\n        timeout: 100000h\n",
        expect![
            "t.yaml:3: environment `prod`: step `a`: timeout of 360000000 s in template default/demo@0.1.0 exceeds the maximum step timeout of 86400 s (24 h)"
        ],
    );
    // Built in code, not parsed: the same check at validation.
    let mut template = TaskTemplate::from_yaml_str(MINIMAL, None).unwrap();
    template.step_templates[0].timeout = Some(Duration::MAX);
    assert!(matches!(
        template.validate().unwrap_err().0[0].kind,
        TemplateErrorKind::TimeoutTooLong { .. }
    ));
}

#[test]
fn value_errors_are_collected_together() {
    check(
        "name: demo\nversion: 1.0\nstep_templates:\n  - name: a\n    handler_class: X\n    default_retry_limit: 0\n  - name: b\n    handler_class: X\n    timeout: soon\n    depends_on_step: z\n",
        expect![[r#"
            t.yaml:2: version `1.0` is not a semver version (MAJOR.MINOR.PATCH): unexpected end of input while parsing minor version number
            t.yaml:4: step `a`: default_retry_limit must be at least 1 (it counts the first attempt), got 0
            t.yaml:7: step `b`: invalid timeout `soon`: expected a positive number of seconds or a duration such as `500ms`, `30s`, `5m`, `1h`
            t.yaml:7: step `b`: depends on unknown step `z`"#]],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    default_retry_limit: -2\n",
        expect![
            "t.yaml:3: step `a`: default_retry_limit must be at least 1 (it counts the first attempt), got -2"
        ],
    );
}

#[test]
fn empty_and_malformed_documents() {
    check("", expect!["t.yaml: template is empty"]);
    check("# only a comment\n", expect!["t.yaml: template is empty"]);
    check(
        "name: demo\n",
        expect!["t.yaml: template declares no step_templates"],
    );
    check(
        "name: demo\nstep_templates: []\n",
        expect!["t.yaml:2: template declares no step_templates"],
    );
    check(
        "- a\n- b\n",
        expect!["t.yaml:1:1: a task template must be a mapping of keys, found a list"],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: x: y\n",
        expect!["t.yaml:4:21: mapping values are not allowed in this context"],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    default_retryable: sometimes\n",
        expect![[
            r#"t.yaml:5:24: step `a`: step_templates[0].default_retryable: invalid type: string "sometimes", expected a boolean"#
        ]],
    );
    check(
        "name: ' '\nstep_templates: [{name: a, handler_class: X}]\n",
        expect!["t.yaml:1: `name` must not be blank"],
    );
    let bytes = TaskTemplate::from_yaml_slice(b"name: \xff\xfe", Some("bin.yaml")).unwrap_err();
    assert!(
        bytes
            .to_string()
            .starts_with("bin.yaml: template is not valid UTF-8"),
        "{bytes}"
    );
}

#[test]
fn named_steps_must_list_every_step_and_dependency() {
    check(
        "name: d\nnamed_steps: [a]\nstep_templates:\n  - name: a\n    handler_class: X\n  - name: b\n    handler_class: X\n    depends_on_step: a\n",
        expect!["t.yaml:6: step `b`: `b` is not listed in named_steps"],
    );
}

#[test]
fn the_context_schema_must_compile() {
    check(
        "name: d\nschema: { type: 12 }\nstep_templates: [{name: a, handler_class: X}]\n",
        expect![[
            r#"t.yaml:2: invalid context schema: 12 is not valid under any of the schemas listed in the 'anyOf' keyword"#
        ]],
    );
}

#[test]
fn environments_deep_merge_by_step_name() {
    let source = r#"
name: d
handler_config: { a: 1 }
step_templates:
  - name: fetch
    handler_class: tasker::http
    handler_config: { url: "https://prod", headers: { accept: json, x-team: core } }
  - name: store
    handler_class: X
    depends_on_step: fetch
environments:
  test:
    handler_config: { b: 2 }
    step_templates:
      - name: fetch
        default_retry_limit: 1
        timeout: 2
        handler_config: { url: "http://localhost", headers: { x-team: qa } }
  production:
"#;
    let template = TaskTemplate::from_yaml_str(source, None).unwrap();
    let test = template.for_environment("test").unwrap();
    let fetch = test.step("fetch").unwrap();
    assert_eq!(
        fetch.handler_config,
        json!({"url": "http://localhost", "headers": {"accept": "json", "x-team": "qa"}})
    );
    assert_eq!(fetch.default_retry_limit, 1);
    assert_eq!(fetch.timeout, Some(Duration::from_secs(2)));
    assert_eq!(test.handler_config, Some(json!({"a": 1, "b": 2})));
    assert!(test.environments.is_empty());
    // An environment without overrides, or an unknown one, leaves the steps as they are.
    for name in ["production", "staging"] {
        assert_eq!(
            template.for_environment(name).unwrap().step_templates,
            template.step_templates
        );
    }
}

#[test]
fn environment_overrides_are_validated_at_load() {
    check(
        "name: d\nstep_templates:\n  - name: fetch\n    handler_class: X\nenvironments:\n  test:\n    step_templates: [{name: fech, default_retry_limit: 0}]\n",
        expect![
            "t.yaml: environment `test`: overrides unknown step `fech` (did you mean `fetch`?)"
        ],
    );
    check(
        "name: d\nstep_templates:\n  - name: a\n    handler_class: X\n  - name: b\n    handler_class: X\nenvironments:\n  test:\n    step_templates: [{name: a, depends_on_step: b}, {name: b, depends_on_step: a}]\n",
        expect!["t.yaml:3: environment `test`: step `a`: dependency cycle: a -> b -> a"],
    );
}

#[test]
fn code_built_templates_validate_too() {
    let mut template = TaskTemplate::new("built");
    template
        .step_templates
        .push(StepTemplate::new("a", "tasker::noop"));
    template
        .step_templates
        .push(StepTemplate::new("b", "tasker::noop").depends_on(["a", "missing"]));
    let errors = template.validate().unwrap_err();
    assert_eq!(
        errors.to_string(),
        "<template>: step `b`: depends on unknown step `missing`"
    );
    template.step_templates[1].depends_on_steps.pop();
    template.validate().unwrap();
    assert_eq!(template.graph().execution_order().unwrap(), ["a", "b"]);
}

#[test]
fn custom_event_names_are_checked_where_declared() {
    let source = "name: t\nnamespace_name: ops\ncustom_events: [{ name: task.hijacked }, { name: ok.fine }]\nstep_templates:\n  - name: a\n    handler_class: A\n    custom_events: [{ name: nonamespace }]\n";
    let errors = TaskTemplate::from_yaml_str(source, Some("t.yaml")).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 2, "{text}");
    assert!(text.contains("t.yaml:3"), "{text}");
    assert!(text.contains("reserved namespace `task`"), "{text}");
    assert!(text.contains("step `a`"), "{text}");
    assert!(text.contains("`nonamespace` needs a namespace"), "{text}");
}
