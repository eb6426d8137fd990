//! Parser messages as an author reads them: located once, with the position that helps.

use expect_test::{Expect, expect};
use tasker_template::TaskTemplate;

fn check(source: &str, expected: Expect) {
    let errors = TaskTemplate::from_yaml_str(source, Some("t.yaml")).unwrap_err();
    expected.assert_eq(&errors.to_string());
}

#[test]
fn unclosed_collections_say_where_they_began() {
    // The parser reports two positions; the first is the error's own location (the prefix), the
    // second is where the unclosed bracket opened, which is the line to fix.
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    handler_config: { times: 1\n",
        expect![
            "t.yaml:6:1: did not find expected ',' or '}', while parsing a flow mapping at line 5 column 21"
        ],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    depends_on_steps: [b\n  - name: b\n    handler_class: X\n",
        expect![
            "t.yaml:6:9: step_templates[0].depends_on_steps: did not find expected ',' or ']', while parsing a flow sequence at line 5 column 23"
        ],
    );
    check(
        "name: demo\nstep_templates:\n  - name: a\n    handler_class: X\n   timeout: 2\n",
        expect![
            "t.yaml:5:4: step_templates: did not find expected '-' indicator, while parsing a block collection at line 3 column 3"
        ],
    );
}
