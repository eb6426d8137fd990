//! Realistic mistakes made in the real fixtures are rejected with the specific error, located
//! at the file and line an author would need to fix.

use expect_test::expect;
use tasker_template::{TaskTemplate, TemplateErrorKind, TemplateErrors};

use crate::fixture;

/// The fixture at `path` with `from`, which must occur exactly once, replaced by `to`.
fn edited(path: &str, from: &str, to: &str) -> String {
    let source = fixture(path);
    assert_eq!(
        source.matches(from).count(),
        1,
        "`{from}` should occur once in {path}"
    );
    source.replacen(from, to, 1)
}

fn rejected(path: &str, source: &str) -> TemplateErrors {
    match TaskTemplate::from_yaml_str(source, Some(path)) {
        Ok(template) => panic!("{path} was accepted: {}", template.full_name()),
        Err(errors) => errors,
    }
}

/// The 1-based line of the only line of `source` containing `needle`.
fn line_containing(source: &str, needle: &str) -> usize {
    let lines: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "`{needle}` should be on one line");
    lines[0]
}

fn lines(errors: &TemplateErrors) -> Vec<Option<usize>> {
    errors.errors().iter().map(|e| e.line).collect()
}

#[test]
fn misspelled_retry_limit_suggests_the_real_key() {
    let path = "post_04_team_scaling/payments_process_refund.yaml";
    let source = edited(path, "    default_retry_limit: 2\n", "    retry_limit: 2\n");
    let errors = rejected(path, &source);
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::UnknownKey {
            key: "retry_limit".into(),
            context: "step template".into(),
            suggestion: Some("default_retry_limit".into()),
        }]
    );
    assert_eq!(
        lines(&errors),
        [Some(line_containing(&source, " retry_limit: 2"))]
    );
    expect!["post_04_team_scaling/payments_process_refund.yaml:23:5: step `process_gateway_refund`: unknown key `retry_limit` in step template (did you mean `default_retry_limit`?)"].assert_eq(&errors.to_string());
}

#[test]
fn a_dependency_loop_lists_the_steps_on_it() {
    let path = "engine_shapes/diamond.yaml";
    let source = edited(
        path,
        "  - name: start_workflow\n",
        "  - name: start_workflow\n    depends_on_step: end_workflow\n",
    );
    let errors = rejected(path, &source);
    let cycle = [
        "start_workflow",
        "branch_one_process",
        "branch_one_validate",
        "merge_branches",
        "end_workflow",
        "start_workflow",
    ];
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::Cycle {
            steps: cycle.map(String::from).to_vec(),
        }]
    );
    assert_eq!(
        lines(&errors),
        [Some(line_containing(&source, "name: start_workflow"))]
    );
    expect!["engine_shapes/diamond.yaml:6: step `start_workflow`: dependency cycle: start_workflow -> branch_one_process -> branch_one_validate -> merge_branches -> end_workflow -> start_workflow"].assert_eq(&errors.to_string());
}

#[test]
fn a_dependency_typo_suggests_the_step() {
    let path = "post_02_data_pipeline_resilience/customer_analytics.yaml";
    let source = edited(
        path,
        "depends_on_step: generate_insights",
        "depends_on_step: generate_insight",
    );
    let errors = rejected(path, &source);
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::UnknownDependency {
            dependency: "generate_insight".into(),
            suggestion: Some("generate_insights".into()),
        }]
    );
    assert_eq!(
        lines(&errors),
        [Some(line_containing(&source, "name: update_dashboard"))]
    );
    expect!["post_02_data_pipeline_resilience/customer_analytics.yaml:59: step `update_dashboard`: depends on unknown step `generate_insight` (did you mean `generate_insights`?)"].assert_eq(&errors.to_string());

    // The same mistake inside a flow list.
    let path = "engine_shapes/tree.yaml";
    let source = edited(path, "a_task_two, b_task_one", "a_task_tow, b_task_one");
    expect!["engine_shapes/tree.yaml:28: step `aggregate_results`: depends on unknown step `a_task_tow` (did you mean `a_task_two`?)"].assert_eq(&rejected(path, &source).to_string());
}

#[test]
fn a_duplicate_step_name_is_rejected() {
    let path = "post_04_team_scaling/payments_process_refund.yaml";
    let source = edited(
        path,
        "  - name: notify_customer\n",
        "  - name: process_gateway_refund\n",
    );
    let errors = rejected(path, &source);
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::DuplicateStep {
            name: "process_gateway_refund".into(),
        }]
    );
    expect!["post_04_team_scaling/payments_process_refund.yaml:20: step `process_gateway_refund`: duplicate step name `process_gateway_refund`"].assert_eq(&errors.to_string());
}

#[test]
fn a_two_part_version_is_not_semver() {
    let path = "engine_shapes/diamond.yaml";
    let source = edited(path, "version: 1.0.0\n", "version: 1.0\n");
    let errors = rejected(path, &source);
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::InvalidVersion {
            value: "1.0".into(),
            reason: "unexpected end of input while parsing minor version number".into(),
        }]
    );
    assert_eq!(lines(&errors), [Some(line_containing(&source, "version:"))]);
    expect!["engine_shapes/diamond.yaml:4: version `1.0` is not a semver version (MAJOR.MINOR.PATCH): unexpected end of input while parsing minor version number"].assert_eq(&errors.to_string());
}

#[test]
fn a_retry_limit_of_zero_is_rejected() {
    let path = "post_04_team_scaling/customer_success_process_refund.yaml";
    let source = edited(
        path,
        "    default_retry_limit: 1\n",
        "    default_retry_limit: 0\n",
    );
    let errors = rejected(path, &source);
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::RetryLimitBelowOne { value: 0 }]
    );
    assert_eq!(
        lines(&errors),
        [Some(line_containing(&source, "name: get_manager_approval"))]
    );
    expect!["post_04_team_scaling/customer_success_process_refund.yaml:29: step `get_manager_approval`: default_retry_limit must be at least 1 (it counts the first attempt), got 0"].assert_eq(&errors.to_string());
}

#[test]
fn truncated_and_malformed_yaml_is_a_syntax_error() {
    let path = "engine_shapes/diamond.yaml";
    let source = fixture(path);
    let cut = source.find("{ times: 1").unwrap() + "{ times: 1".len();
    let errors = rejected(path, &source[..cut]);
    assert!(
        matches!(
            errors.kinds().collect::<Vec<_>>().as_slice(),
            [TemplateErrorKind::Syntax { .. }]
        ),
        "{errors:?}"
    );
    expect!["engine_shapes/diamond.yaml:12:1: did not find expected ',' or '}', while parsing a flow mapping at line 11 column 21"].assert_eq(&errors.to_string());

    let path = "engine_shapes/mixed.yaml";
    let source = edited(
        path,
        "[validate_permissions, setup_environment]",
        "[validate_permissions, setup_environment",
    );
    let errors = rejected(path, &source);
    assert!(
        matches!(
            errors.kinds().collect::<Vec<_>>().as_slice(),
            [TemplateErrorKind::Syntax { .. }]
        ),
        "{errors:?}"
    );
    expect!["engine_shapes/mixed.yaml:22:18: step_templates[5].depends_on_steps: did not find expected ',' or ']', while parsing a flow sequence at line 21 column 23"].assert_eq(&errors.to_string());

    let path = "engine_shapes/linear.yaml";
    let source = edited(
        path,
        "    handler_config: { times: 1 }\n",
        "   handler_config: { times: 1 }\n",
    );
    expect!["engine_shapes/linear.yaml:14:4: step_templates: did not find expected '-' indicator, while parsing a block collection at line 6 column 3"].assert_eq(&rejected(path, &source).to_string());
}

#[test]
fn an_empty_document_is_rejected() {
    let path = "engine_shapes/diamond.yaml";
    let errors = rejected(path, "");
    assert_eq!(
        errors.kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::EmptyDocument]
    );
    expect!["engine_shapes/diamond.yaml: template is empty"].assert_eq(&errors.to_string());

    // Truncated to its header comment, the fixture is still empty.
    let source = fixture(path);
    let header = &source[..source.find('\n').unwrap() + 1];
    assert_eq!(
        rejected(path, header).kinds().collect::<Vec<_>>(),
        [&TemplateErrorKind::EmptyDocument]
    );
}
