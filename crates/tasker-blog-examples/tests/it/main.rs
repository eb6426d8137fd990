//! Integration tests for `tasker-blog-examples`: every shipped template validates with the shape
//! the blog posts describe, realistic mistakes in them are rejected with a precise message, and
//! each post's workflow runs to completion through the real engine on SQLite (and PostgreSQL
//! when `TASKER_TEST_DATABASE_URL` is set) with a ManualClock and per-test mock services.

mod docs;
mod graph_exports;
mod post_01;
mod post_02;
mod post_03;
mod post_04;
mod post_05;
mod registration;
mod rejected_templates;
mod support;
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
