//! `cargo xtask validate-docs`: the documentation cannot drift from the code.
//!
//! 1. Every YAML template in README.md and docs/*.md (a fenced `yaml` block with
//!    `step_templates`), every `.yaml` file under docs/, every template shipped in
//!    `tasker-blog-examples`, and the example `tasker init` writes parses and validates.
//! 2. Every Rust block in README.md and docs/*.md compiles and runs as a doctest
//!    (`cargo test --doc -p tasker-tests`, wired with `include_str!`).
//! 3. Every GraphQL example in docs/graphql.md parses and validates against the schema (a test
//!    of `tasker-api`).
//! 4. Each blog post's sample workflow runs end to end (a test of `tasker-blog-examples`, on
//!    SQLite, and on PostgreSQL when `TASKER_TEST_DATABASE_URL` is set).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use tasker_template::TaskTemplate;

fn root() -> PathBuf {
    crate::workspace_root()
}

/// The YAML templates embedded in one markdown document (fenced `yaml` blocks with
/// `step_templates`), each with an origin naming the document and the line its block opens at.
pub(crate) fn markdown_templates(origin: &str, markdown: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let fence = line.trim_start();
        if !(fence.starts_with("```yaml") || fence.starts_with("```yml")) {
            continue;
        }
        let mut block = String::new();
        for (_, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            block.push_str(line);
            block.push('\n');
        }
        if !block.contains("step_templates") {
            continue;
        }
        // Block lines count from the line after the fence.
        found.push((
            format!("{origin} (yaml block opening at line {})", number + 1),
            block,
        ));
    }
    found
}

/// Errors of the YAML templates embedded in one markdown document, each naming the document and
/// the line where its block starts.
#[cfg(test)]
fn check_markdown(origin: &str, markdown: &str) -> (usize, Vec<String>) {
    let blocks = markdown_templates(origin, markdown);
    let mut errors = Vec::new();
    for (block_origin, block) in &blocks {
        if let Err(problems) = TaskTemplate::from_yaml_str(block, Some(block_origin)) {
            errors.extend(problems.errors().iter().map(ToString::to_string));
        }
    }
    (blocks.len(), errors)
}

/// The folders whose `.yaml` files are all templates: docs/, the blog examples, and the
/// example `tasker init` writes.
pub(crate) const TEMPLATE_DIRS: &[&str] = &[
    "docs",
    "crates/tasker-blog-examples/templates",
    "crates/tasker-server/src/init",
];

/// Every template in the repository: markdown blocks, then the files under [`TEMPLATE_DIRS`],
/// each as (origin, source).
pub(crate) fn repository_templates(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut templates = Vec::new();
    for file in markdown_files(root)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        templates.extend(markdown_templates(&relative(root, &file), &text));
    }
    let mut files = Vec::new();
    for dir in TEMPLATE_DIRS {
        yaml_files(&root.join(dir), &mut files)?;
    }
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        templates.push((relative(root, &file), text));
    }
    Ok(templates)
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn markdown_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).context("reading docs/")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
    Ok(())
}

/// Step 1: every template in the docs and the blog crate.
pub(crate) fn check_templates(root: &Path) -> anyhow::Result<(usize, Vec<String>)> {
    let templates = repository_templates(root)?;
    let mut errors = Vec::new();
    for (origin, source) in &templates {
        if let Err(problems) = TaskTemplate::from_yaml_str(source, Some(origin)) {
            errors.extend(problems.errors().iter().map(ToString::to_string));
        }
    }
    Ok((templates.len(), errors))
}

fn cargo(root: &Path, args: &[&str], what: &str) -> anyhow::Result<()> {
    println!("+ cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed");
    }
    Ok(())
}

pub(crate) fn run() -> anyhow::Result<()> {
    let root = root();
    let (checked, errors) = check_templates(&root)?;
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("{error}");
        }
        bail!("{} template error(s) in the documentation", errors.len());
    }
    println!("validate-docs: {checked} templates valid");
    cargo(
        &root,
        &["test", "--doc", "-p", "tasker-tests"],
        "the documentation doctests",
    )?;
    cargo(
        &root,
        &[
            "test",
            "-p",
            "tasker-api",
            "--test",
            "it",
            "graphql_docs_examples_validate_against_the_schema",
        ],
        "the GraphQL examples of docs/graphql.md against the schema",
    )?;
    // Step 4 is a test of the blog crate, so xtask never compiles the engine.
    cargo(
        &root,
        &[
            "test",
            "-p",
            "tasker-blog-examples",
            "--test",
            "it",
            "every_sample_runs_to_completion",
        ],
        "the blog sample workflows",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_documentation_validates() {
        let (checked, errors) = check_templates(&root()).unwrap();
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(
            checked >= 13,
            "README, docs and the blog crate hold at least 13 templates, found {checked}"
        );
    }

    #[test]
    fn a_broken_template_in_the_docs_is_caught() {
        let markdown = "# Guide\n\nSome text.\n\n```yaml\nname: demo\nstep_templates:\n  - name: a\n    handler_class: X\n    retry_limit: 2\n```\n\n```yaml\n# not a template\nkey: value\n```\n";
        let (checked, errors) = check_markdown("docs/guide.md", markdown);
        assert_eq!(checked, 1, "only blocks with step_templates are templates");
        assert_eq!(
            errors,
            [
                "docs/guide.md (yaml block opening at line 5):5:5: step `a`: unknown key `retry_limit` in step template (did you mean `default_retry_limit`?)"
            ]
        );
        let fixed = markdown.replace("retry_limit", "default_retry_limit");
        assert_eq!(check_markdown("docs/guide.md", &fixed), (1, Vec::new()));
    }
}
