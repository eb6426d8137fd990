//! `tasker events`: the event catalog — every Rails event name and Tasker's own `runtime.*`,
//! with what Tasker publishes for each (or why it deliberately publishes nothing) — and the
//! custom events templates declare.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use tasker_events::catalog::{self, Category, EventSpec, Publication};
use tasker_template::TaskTemplate;

/// What to list.
pub(crate) struct Query {
    /// One event, described in full.
    pub name: Option<String>,
    /// Only this category.
    pub category: Option<Category>,
    /// Only names or descriptions containing this (case-insensitive).
    pub search: Option<String>,
    /// Only the events Tasker publishes.
    pub published: bool,
    /// Extra template files whose custom events to list.
    pub templates: Vec<PathBuf>,
    /// JSON instead of text.
    pub json: bool,
}

/// A custom event and who declares it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
struct Custom {
    name: String,
    description: Option<String>,
    declared_by: Vec<String>,
}

#[derive(Serialize)]
struct Listing<'a> {
    catalog: Vec<&'a EventSpec>,
    custom: Vec<Custom>,
}

fn customs(query: &Query) -> anyhow::Result<Vec<Custom>> {
    let mut templates: Vec<TaskTemplate> = builtin_templates();
    for path in &query.templates {
        templates.push(crate::read_template(path)?);
    }
    let mut out: Vec<Custom> = Vec::new();
    for template in &templates {
        for (event, by) in template.declared_custom_events() {
            match out.iter_mut().find(|c| c.name == event.name) {
                Some(known) => known.declared_by.push(by),
                None => out.push(Custom {
                    name: event.name.clone(),
                    description: event.description.clone(),
                    declared_by: vec![by],
                }),
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(feature = "blog-examples")]
fn builtin_templates() -> Vec<TaskTemplate> {
    tasker_blog_examples::TEMPLATES
        .iter()
        .filter_map(|t| TaskTemplate::from_yaml_str(t.yaml, Some(t.path)).ok())
        .collect()
}

#[cfg(not(feature = "blog-examples"))]
fn builtin_templates() -> Vec<TaskTemplate> {
    Vec::new()
}

fn publication(spec: &EventSpec) -> String {
    match spec.publication {
        Publication::Yes { when } => format!("published {when}"),
        Publication::No { why } => format!("not published: {why}"),
    }
}

pub(crate) fn run(query: &Query) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    let code = render(query, &mut out)?;
    crate::print_stdout(&out);
    Ok(code)
}

fn render(query: &Query, out: &mut String) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    let custom = customs(query)?;
    if let Some(name) = &query.name {
        return describe(name, &custom, query.json, out);
    }
    let wanted = |spec: &&EventSpec| {
        query.category.is_none_or(|c| spec.category == c)
            && (!query.published || spec.is_published())
            && query
                .search
                .as_ref()
                .is_none_or(|q| catalog::text_matches(q, spec.name, Some(spec.description)))
    };
    let listed: Vec<&EventSpec> = catalog::all().iter().filter(wanted).collect();
    let custom: Vec<Custom> = custom
        .into_iter()
        .filter(|_| query.category.is_none_or(|cat| cat == Category::Custom))
        .filter(|c| {
            query
                .search
                .as_ref()
                .is_none_or(|q| catalog::text_matches(q, &c.name, c.description.as_deref()))
        })
        .collect();
    if query.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&Listing {
                catalog: listed,
                custom
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let published = listed.iter().filter(|s| s.is_published()).count();
    let width = listed.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut category = None;
    for spec in &listed {
        if category != Some(spec.category) {
            category = Some(spec.category);
            let _ = writeln!(out, "\n{}", spec.category);
        }
        let _ = writeln!(out, "  {:width$}  {}", spec.name, publication(spec));
    }
    if !custom.is_empty() {
        let _ = writeln!(
            out,
            "\ncustom (declared by templates; published by their handlers as written)"
        );
        let width = custom.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &custom {
            let _ = writeln!(
                out,
                "  {:width$}  {} [{}]",
                c.name,
                c.description.as_deref().unwrap_or("-"),
                c.declared_by.join("; ")
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} catalog events listed, {published} published by Tasker; {} custom",
        listed.len(),
        custom.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(
    name: &str,
    custom: &[Custom],
    json: bool,
    out: &mut String,
) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    if let Some(spec) = catalog::describe(name) {
        if json {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(spec)?);
        } else {
            let _ = writeln!(out, "{}", spec.name);
            let _ = writeln!(out, "  category:    {}", spec.category);
            let _ = writeln!(out, "  description: {}", spec.description);
            let _ = writeln!(out, "  {}", publication(spec));
            if spec.is_published() {
                let _ = writeln!(out, "  payload:     {}", spec.payload.fields().join(", "));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(c) = custom.iter().find(|c| c.name == name) {
        if json {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(c)?);
        } else {
            let _ = writeln!(out, "{}", c.name);
            let _ = writeln!(out, "  category:    custom");
            let _ = writeln!(
                out,
                "  description: {}",
                c.description.as_deref().unwrap_or("-")
            );
            let _ = writeln!(out, "  declared by: {}", c.declared_by.join("; "));
            let _ = writeln!(
                out,
                "  payload:     {}",
                catalog::PayloadKind::Custom.fields().join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let names = catalog::all()
        .iter()
        .map(|s| s.name)
        .chain(custom.iter().map(|c| c.name.as_str()));
    let suggestion = names
        .map(|n| (strsim::jaro_winkler(name, n), n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    anyhow::bail!("no event named `{name}` in the catalog or the templates{suggestion}")
}
