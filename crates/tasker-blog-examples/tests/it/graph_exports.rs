//! The diamond shape's graph exports, as a reader would paste them into docs.

use expect_test::expect;
use tasker_template::TaskTemplate;

use crate::fixture;

fn diamond() -> TaskTemplate {
    TaskTemplate::from_yaml_str(fixture("engine_shapes/diamond.yaml"), None).unwrap()
}

#[test]
fn diamond_as_mermaid() {
    expect![[r#"
        graph TD
            s0["start_workflow"]
            s1["branch_one_process"]
            s2["branch_one_validate"]
            s3["branch_two_process"]
            s4["branch_two_validate"]
            s5["merge_branches"]
            s6["end_workflow"]
            s0 --> s1
            s1 --> s2
            s0 --> s3
            s3 --> s4
            s2 --> s5
            s4 --> s5
            s5 --> s6
    "#]]
    .assert_eq(&diamond().graph().to_mermaid());
}

#[test]
fn diamond_as_dot() {
    expect![[r#"
        digraph workflow {
            rankdir=TB;
            node [shape=box];
            "start_workflow";
            "branch_one_process";
            "branch_one_validate";
            "branch_two_process";
            "branch_two_validate";
            "merge_branches";
            "end_workflow";
            "start_workflow" -> "branch_one_process";
            "branch_one_process" -> "branch_one_validate";
            "start_workflow" -> "branch_two_process";
            "branch_two_process" -> "branch_two_validate";
            "branch_one_validate" -> "merge_branches";
            "branch_two_validate" -> "merge_branches";
            "merge_branches" -> "end_workflow";
        }
    "#]]
    .assert_eq(&diamond().graph().to_dot());
}
