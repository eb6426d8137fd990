//! docs/blog-examples.md shows each blog workflow's current graph.

use tasker_blog_examples::TEMPLATES;
use tasker_template::TaskTemplate;

#[test]
fn the_guide_shows_every_blog_workflow_graph() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/blog-examples.md");
    let guide = std::fs::read_to_string(path).unwrap();
    let mut missing = Vec::new();
    for embedded in TEMPLATES.iter().filter(|t| t.path.starts_with("post_")) {
        let template = TaskTemplate::from_yaml_str(embedded.yaml, Some(embedded.path)).unwrap();
        let block = format!("```mermaid\n{}```", template.graph().to_mermaid());
        if std::env::var_os("PRINT_GRAPHS").is_some() {
            println!("{}\n{block}\n", template.full_name());
        }
        if !guide.contains(&block) {
            missing.push(format!("{}:\n{block}", template.full_name()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/blog-examples.md lacks the current graphs of\n{}",
        missing.join("\n")
    );
}
