//! Integration tests for `tasker-blog-examples`: every shipped template validates with the shape
//! the blog posts describe, and realistic mistakes in them are rejected with a precise message.

mod graph_exports;
mod rejected_templates;
mod valid_templates;

use tasker_blog_examples::TEMPLATES;

/// The YAML of the embedded template at `path` (relative to `templates/`).
fn fixture(path: &str) -> &'static str {
    TEMPLATES
        .iter()
        .find(|t| t.path == path)
        .unwrap_or_else(|| panic!("no embedded template `{path}`"))
        .yaml
}
