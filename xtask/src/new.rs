//! `cargo xtask new <kind> NAME [options]`: Rust and YAML for an application built on Tasker,
//! from the templates under `xtask/templates/` (placeholders `{{name}}` filled by plain
//! replacement). `cargo xtask new --selftest` generates every kind into a scratch crate that
//! depends on this workspace's crates by path, and runs clippy (warnings denied) and its tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// What a generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// A workflow: a YAML template, a module with its step handlers, and a test
    Task,
    /// One step handler with unit tests
    Handler,
    /// A subscriber for chosen events (--events), or a metrics subscriber (--metrics)
    Subscriber,
    /// A custom authenticator with tests
    Authenticator,
    /// A custom authorization coordinator with per-resource rules and a test
    Authorization,
    /// Custom event declarations (--events) plus a subscriber for them
    Events,
    /// A binary crate serving the engine, the API and auth, with a route of its own and a test
    Server,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Task,
        Kind::Handler,
        Kind::Subscriber,
        Kind::Authenticator,
        Kind::Authorization,
        Kind::Events,
        Kind::Server,
    ];
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// What to generate
    #[arg(required_unless_present = "selftest")]
    kind: Option<Kind>,
    /// snake_case name: the module (file) name; types are named after it
    #[arg(required_unless_present = "selftest")]
    name: Option<String>,
    /// Folder to write into (default: ./src; for `server`, the current folder)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// task: the template's namespace
    #[arg(long, default_value = "default")]
    namespace: String,
    /// task: the template's semver version
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// task: steps, `a,b,c` (a chain) or with dependencies `a,b:a,c:a+b` (`b:` has none)
    #[arg(long, default_value = "validate,process,finish")]
    steps: String,
    /// subscriber: catalog events or patterns (`task.completed,step.*`); events: custom names
    /// (`orders.fulfilled,orders.refunded`)
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// subscriber: a metrics subscriber (task and step counts) instead of chosen events
    #[arg(long)]
    metrics: bool,
    /// Generate every kind into a scratch crate and run clippy and its tests there
    #[arg(long, conflicts_with_all = ["kind", "name"])]
    selftest: bool,
}

/// One file a generator writes, relative to the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generated {
    pub(crate) file: String,
    pub(crate) contents: String,
}

fn template(name: &str) -> &'static str {
    match name {
        "handler" => include_str!("../templates/handler.rs.tmpl"),
        "task" => include_str!("../templates/task.rs.tmpl"),
        "task_step" => include_str!("../templates/task_step.rs.tmpl"),
        "task_yaml" => include_str!("../templates/task.yaml.tmpl"),
        "subscriber" => include_str!("../templates/subscriber.rs.tmpl"),
        "metrics_subscriber" => include_str!("../templates/metrics_subscriber.rs.tmpl"),
        "authenticator" => include_str!("../templates/authenticator.rs.tmpl"),
        "authorization" => include_str!("../templates/authorization.rs.tmpl"),
        "events" => include_str!("../templates/events.rs.tmpl"),
        "server_manifest" => include_str!("../templates/server/Cargo.toml.tmpl"),
        "server_lib" => include_str!("../templates/server/lib.rs.tmpl"),
        "server_main" => include_str!("../templates/server/main.rs.tmpl"),
        "server_test" => include_str!("../templates/server/test.rs.tmpl"),
        other => unreachable!("no template {other}"),
    }
}

/// Fills `{{key}}` placeholders; a placeholder left unfilled is a bug in the generator.
fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    debug_assert!(!out.contains("{{"), "unfilled placeholder in:\n{out}");
    out
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "typeof", "unsized", "virtual", "yield", "try", "tests",
];

/// A snake_case identifier that can be a module name.
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__");
    if !snake {
        bail!(
            "{what} `{name}` must be snake_case: lowercase letters, digits and single `_`, starting with a letter (e.g. `charge_card`)"
        );
    }
    if KEYWORDS.contains(&name) {
        bail!("{what} `{name}` is a Rust keyword; choose another name");
    }
    Ok(())
}

fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// One step of `--steps`: its name and the steps it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StepSpec {
    name: String,
    depends_on: Vec<String>,
}

/// Parses `--steps`: `a,b,c` chains; `name:x+y` depends on x and y; `name:` on nothing.
fn parse_steps(spec: &str) -> anyhow::Result<Vec<StepSpec>> {
    let mut steps: Vec<StepSpec> = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        if entry.is_empty() {
            bail!("--steps `{spec}` has an empty entry");
        }
        let (name, depends_on) = match entry.split_once(':') {
            Some((name, deps)) => {
                let deps: Vec<String> = deps
                    .split('+')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned)
                    .collect();
                (name.trim(), deps)
            }
            None => (
                entry,
                steps
                    .last()
                    .map(|s| vec![s.name.clone()])
                    .unwrap_or_default(),
            ),
        };
        check_name("step name", name)?;
        if steps.iter().any(|s| s.name == name) {
            bail!("--steps: step `{name}` appears twice");
        }
        for dep in &depends_on {
            if !steps.iter().any(|s| &s.name == dep) {
                bail!(
                    "--steps: step `{name}` depends on `{dep}`, which is not listed before it (known: {})",
                    if steps.is_empty() {
                        "none".to_owned()
                    } else {
                        steps
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                );
            }
        }
        let unique: BTreeSet<&String> = depends_on.iter().collect();
        if unique.len() != depends_on.len() {
            bail!("--steps: step `{name}` lists a dependency twice");
        }
        steps.push(StepSpec {
            name: name.to_owned(),
            depends_on,
        });
    }
    Ok(steps)
}

fn task(name: &str, namespace: &str, version: &str, steps: &str) -> anyhow::Result<Vec<Generated>> {
    check_name("namespace", namespace)?;
    let parsed: semver::Version = version
        .parse()
        .with_context(|| format!("--version `{version}` is not a semver version like 1.0.0"))?;
    let version = parsed.to_string();
    let steps = parse_steps(steps)?;
    let class = |step: &str| format!("{namespace}::{name}::{step}");
    let mut register = String::new();
    let mut handlers = String::new();
    let mut yaml_steps = String::new();
    for step in &steps {
        let step_type = camel(&step.name);
        register.push_str(&format!(
            "    engine\n        .registry()\n        .replace_step_handler(\"{}\", Arc::new({step_type}Handler));\n",
            class(&step.name)
        ));
        let parents = if step.depends_on.is_empty() {
            "nothing (no dependencies)".to_owned()
        } else {
            step.depends_on
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(" and ")
                + "'s results"
        };
        handlers.push_str(&fill(
            template("task_step"),
            &[
                ("class", &class(&step.name)),
                ("step", &step.name),
                ("Step", &step_type),
                ("parents", &parents),
            ],
        ));
        yaml_steps.push_str(&format!(
            "  - name: {}\n    handler_class: \"{}\"\n",
            step.name,
            class(&step.name)
        ));
        match step.depends_on.as_slice() {
            [] => {}
            [one] => yaml_steps.push_str(&format!("    depends_on_step: {one}\n")),
            many => yaml_steps.push_str(&format!("    depends_on_steps: [{}]\n", many.join(", "))),
        }
    }
    let values = [
        ("name", name),
        ("namespace", namespace),
        ("version", version.as_str()),
        ("module", name),
        ("register_handlers", register.as_str()),
        ("handlers", handlers.as_str()),
        ("steps", yaml_steps.trim_end()),
    ];
    let mut yaml = fill(template("task_yaml"), &values);
    yaml.push('\n');
    Ok(vec![
        Generated {
            file: format!("{name}.rs"),
            contents: fill(template("task"), &values),
        },
        Generated {
            file: format!("{name}.yaml"),
            contents: yaml,
        },
    ])
}

/// Whether `--events` entry `interest` (a name or a `*` pattern) matches a catalog event.
fn matches(interest: &str, spec: &tasker_events::EventSpec) -> bool {
    tasker_events::Interest::Pattern(interest.to_owned()).matches(spec.name, spec.category)
}

/// A catalog event name, or a pattern (`step.*`) that matches at least one.
fn check_catalog_event(event: &str) -> anyhow::Result<()> {
    let names = tasker_events::catalog::all();
    let known = if event.contains('*') {
        names.iter().any(|spec| matches(event, spec))
    } else {
        tasker_events::catalog::describe(event).is_some()
    };
    if !known {
        let closest = names
            .iter()
            .map(|spec| (strsim::jaro_winkler(event, spec.name), spec.name))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| format!(" (did you mean `{name}`?)"))
            .unwrap_or_default();
        bail!(
            "--events: `{event}` is not an event in Tasker's catalog{closest}; `tasker events` lists them"
        );
    }
    Ok(())
}

fn subscriber(name: &str, events: &[String], metrics: bool) -> anyhow::Result<Vec<Generated>> {
    let camel_name = camel(name);
    if metrics {
        if !events.is_empty() {
            bail!(
                "--metrics and --events exclude each other: a metrics subscriber listens to task and step events"
            );
        }
        return Ok(vec![Generated {
            file: format!("{name}.rs"),
            contents: fill(
                template("metrics_subscriber"),
                &[("name", name), ("Name", &camel_name)],
            ),
        }]);
    }
    if events.is_empty() {
        bail!(
            "subscriber needs --events task.completed,step.failed (catalog names or patterns) or --metrics"
        );
    }
    for event in events {
        check_catalog_event(event)?;
    }
    let interests = events
        .iter()
        .map(|e| {
            if e.contains('*') {
                format!("Interest::Pattern(\"{e}\".into())")
            } else {
                format!("Interest::name(\"{e}\")")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The test publishes one concrete name per interest, and one name none of them matches.
    let catalog = tasker_events::catalog::all();
    let concrete: Vec<&str> = events
        .iter()
        .filter_map(|e| {
            catalog
                .iter()
                .find(|spec| matches(e, spec))
                .map(|spec| spec.name)
        })
        .collect();
    let other = catalog
        .iter()
        .map(|spec| spec.name)
        .find(|n| {
            !events.iter().any(|e| {
                catalog
                    .iter()
                    .any(|spec| spec.name == *n && matches(e, spec))
            })
        })
        .context("--events matches every catalog event; nothing is left to leave out")?;
    let mut publish = String::new();
    let mut asserts = String::new();
    for event in concrete.iter().collect::<BTreeSet<_>>() {
        publish.push_str(&format!("        bus.publish(event(\"{event}\"));\n"));
        asserts.push_str(&format!(
            "        assert_eq!(seen.get(\"{event}\"), Some(&1), \"{{seen:?}}\");\n"
        ));
    }
    let event_list = events
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(vec![Generated {
        file: format!("{name}.rs"),
        contents: fill(
            template("subscriber"),
            &[
                ("name", name),
                ("Name", &camel_name),
                ("event_list", &event_list),
                ("interests", &interests),
                ("publish", &publish),
                ("asserts", &asserts),
                ("other", other),
            ],
        ),
    }])
}

fn events(name: &str, events: &[String]) -> anyhow::Result<Vec<Generated>> {
    if events.is_empty() {
        bail!(
            "events needs --events with custom names, e.g. --events orders.fulfilled,orders.refunded"
        );
    }
    let mut declarations = String::new();
    for event in events {
        tasker_domain::event_names::check_custom_name(event)
            .map_err(|e| anyhow::anyhow!("--events: `{event}`: {e}"))?;
        if tasker_events::catalog::describe(event).is_some() {
            bail!("--events: `{event}` is a catalog event; custom events need names of their own");
        }
        declarations.push_str(&format!(
            "    (\"{event}\", \"Say when `{event}` is published and what its data holds.\"),\n"
        ));
    }
    let event_list = events
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(vec![Generated {
        file: format!("{name}.rs"),
        contents: fill(
            template("events"),
            &[
                ("name", name),
                ("Name", &camel(name)),
                ("event_list", &event_list),
                ("declarations", &declarations),
            ],
        ),
    }])
}

/// A binary crate in the folder `name`, depending on the Tasker checkout at `root` by path.
fn server(name: &str, root: &Path) -> Vec<Generated> {
    let package = name.replace('_', "-");
    let root = root.display().to_string();
    let mut dependencies = String::new();
    for krate in [
        "tasker-api",
        "tasker-auth",
        "tasker-engine",
        "tasker-persistence",
        "tasker-template",
    ] {
        dependencies.push_str(&format!(
            "{krate} = {{ path = \"{root}/crates/{krate}\" }}\n"
        ));
    }
    let values = [
        ("name", name),
        ("package", package.as_str()),
        ("crate_name", name),
        ("tasker_root", root.as_str()),
        ("tasker_dependencies", dependencies.as_str()),
    ];
    [
        ("Cargo.toml", "server_manifest"),
        ("src/lib.rs", "server_lib"),
        ("src/main.rs", "server_main"),
        ("tests/route.rs", "server_test"),
    ]
    .into_iter()
    .map(|(file, template_name)| Generated {
        file: format!("{name}/{file}"),
        contents: fill(template(template_name), &values),
    })
    .collect()
}

/// The files one generator run writes.
pub(crate) fn generate(kind: Kind, name: &str, args: &NewArgs) -> anyhow::Result<Vec<Generated>> {
    check_name("name", name)?;
    let simple = |template_name: &str, extra: &[(&str, &str)]| {
        let camel_name = camel(name);
        let mut values = vec![("name", name), ("Name", camel_name.as_str())];
        values.extend_from_slice(extra);
        vec![Generated {
            file: format!("{name}.rs"),
            contents: fill(template(template_name), &values),
        }]
    };
    if !matches!(kind, Kind::Subscriber | Kind::Events) && !args.events.is_empty() {
        bail!("--events applies to `subscriber` and `events` only");
    }
    match kind {
        Kind::Task => task(name, &args.namespace, &args.version, &args.steps),
        Kind::Handler => {
            let class = format!("{}::{name}", args.namespace);
            Ok(simple("handler", &[("class", &class)]))
        }
        Kind::Subscriber => subscriber(name, &args.events, args.metrics),
        Kind::Events => events(name, &args.events),
        Kind::Authenticator => {
            let header = format!("x-{}-token", name.replace('_', "-"));
            Ok(simple("authenticator", &[("header", &header)]))
        }
        Kind::Authorization => Ok(simple("authorization", &[])),
        Kind::Server => Ok(server(name, &crate::workspace_root())),
    }
}

/// Writes `files` into `dir`, refusing to overwrite anything.
fn write(dir: &Path, files: &[Generated]) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(&file.file);
        if path.exists() {
            bail!(
                "{} already exists; choose another name or --dir",
                path.display()
            );
        }
    }
    let mut rust = Vec::new();
    for file in files {
        let path = dir.join(&file.file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
        if file.file.ends_with(".rs") {
            rust.push(path);
        }
    }
    // Line breaks depend on the names filled in, so the house format is applied afterwards.
    match Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&rust)
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => bail!("rustfmt failed on the generated files ({status})"),
        Err(error) => eprintln!("note: rustfmt did not run ({error}); run `cargo fmt` yourself"),
    }
    Ok(())
}

/// `cargo xtask new`.
pub(crate) fn run(args: &NewArgs) -> anyhow::Result<()> {
    if args.selftest {
        return selftest();
    }
    let (Some(kind), Some(name)) = (args.kind, args.name.as_deref()) else {
        bail!("usage: cargo xtask new <kind> NAME [options], or cargo xtask new --selftest");
    };
    let files = generate(kind, name, args)?;
    let default = if kind == Kind::Server { "." } else { "src" };
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(default));
    write(&dir, &files)?;
    if kind == Kind::Server {
        println!(
            "add `{}` to your workspace's members (or give its Cargo.toml an empty [workspace] table), then `cargo test` and `cargo run` there",
            dir.join(name).display()
        );
    } else {
        println!(
            "add `mod {name};` to the crate root beside {}; dependencies: see docs/generators.md",
            dir.display()
        );
    }
    Ok(())
}

/// The scratch crate's manifest: the workspace crates by path, the rest at the versions the
/// workspace's lock file pins (it is copied beside the manifest).
fn selftest_manifest(root: &Path) -> String {
    let crate_path = |name: &str| root.join("crates").join(name).display().to_string();
    let tasker = |name: &str| format!("{name} = {{ path = \"{}\" }}\n", crate_path(name));
    let mut manifest = String::from(
        "[package]\nname = \"tasker-generated-selftest\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[lib]\npath = \"src/lib.rs\"\n\n[dependencies]\n",
    );
    for name in [
        "tasker-domain",
        "tasker-template",
        "tasker-handler",
        "tasker-events",
        "tasker-auth",
        "tasker-engine",
    ] {
        manifest.push_str(&tasker(name));
    }
    manifest.push_str(
        "async-trait = \"*\"\nserde_json = \"*\"\nhttp = \"*\"\nchrono = { version = \"*\", default-features = false, features = [\"std\", \"clock\", \"serde\"] }\ntokio = { version = \"*\", features = [\"rt-multi-thread\", \"macros\", \"sync\", \"time\", \"signal\", \"net\", \"fs\"] }\n\n[dev-dependencies]\n",
    );
    manifest.push_str(&format!(
        "tasker-persistence = {{ path = \"{}\", features = [\"testing\"] }}\n\n[workspace]\nmembers = [\".\", \"custom_server\"]\n\n{PROFILES}",
        crate_path("tasker-persistence")
    ));
    manifest
}

/// The workspace's build profiles: with the same settings, the scratch crate reuses the
/// workspace's compiled dependencies in the shared target directory.
const PROFILES: &str =
    "[profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n";

/// Every kind with the options that exercise it.
fn selftest_cases() -> Vec<(Kind, &'static str, Vec<&'static str>)> {
    vec![
        (Kind::Handler, "greet", vec![]),
        (
            Kind::Task,
            "order_flow",
            vec![
                "--namespace",
                "shop",
                "--version",
                "1.2.0",
                "--steps",
                "validate,charge:validate,pack:validate,ship:charge+pack",
            ],
        ),
        (Kind::Task, "simple_chain", vec![]),
        (
            Kind::Subscriber,
            "failure_alerts",
            vec!["--events", "task.completed,step.failed"],
        ),
        (Kind::Subscriber, "step_watch", vec!["--events", "step.*"]),
        (Kind::Subscriber, "workflow_metrics", vec!["--metrics"]),
        (Kind::Authenticator, "shared_token", vec![]),
        (Kind::Authorization, "namespace_rules", vec![]),
        (
            Kind::Events,
            "order_events",
            vec!["--events", "orders.fulfilled,orders.refunded"],
        ),
        (Kind::Server, "custom_server", vec![]),
    ]
}

fn parse_new_args(kind: Kind, name: &str, options: &[&str]) -> NewArgs {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: NewArgs,
    }
    let kind = kind
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mut argv = vec!["new".to_owned(), kind, name.to_owned()];
    argv.extend(options.iter().map(|s| (*s).to_owned()));
    Wrapper::parse_from(argv).args
}

pub(crate) fn selftest() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let scratch = std::env::temp_dir().join(format!("tasker-generators-{}", std::process::id()));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let src = scratch.join("src");
    std::fs::create_dir_all(&src)?;
    std::fs::write(scratch.join("Cargo.toml"), selftest_manifest(&root))?;
    std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))
        .context("copying the workspace's Cargo.lock")?;
    let mut lib = String::from(
        "//! Every generator's output, compiled and tested by `cargo xtask new --selftest`.\n\n",
    );
    let cases = selftest_cases();
    let mut modules = Vec::new();
    for kind in Kind::ALL {
        anyhow::ensure!(
            cases.iter().any(|(k, _, _)| *k == kind),
            "the selftest has no case for {kind:?}"
        );
    }
    for (kind, name, options) in &cases {
        let args = parse_new_args(*kind, name, options);
        let files = generate(*kind, name, &args)?;
        if *kind == Kind::Server {
            write(&scratch, &files)?;
        } else {
            write(&src, &files)?;
            modules.push(*name);
        }
    }
    modules.sort_unstable();
    for name in modules {
        lib.push_str(&format!("pub mod {name};\n"));
    }
    std::fs::write(src.join("lib.rs"), lib)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for args in [
        // Not `--all`: that also checks the path dependencies' whole workspace.
        &[
            "fmt",
            "--check",
            "-p",
            "tasker-generated-selftest",
            "-p",
            "custom-server",
        ][..],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
            "-W",
            "missing_docs",
        ][..],
        &["test", "--workspace"][..],
    ] {
        println!("+ cargo {} (in {})", args.join(" "), scratch.display());
        let status = crate::cargo()
            .args(args)
            .current_dir(&scratch)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .with_context(|| format!("could not start cargo {}", args.join(" ")))?;
        if !status.success() {
            bail!(
                "generated code failed `cargo {}` ({status}); the crate is left in {}",
                args.join(" "),
                scratch.display()
            );
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
    println!(
        "new --selftest: {} generators compile cleanly and pass their tests",
        cases.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: Kind, name: &str, options: &[&str]) -> NewArgs {
        parse_new_args(kind, name, options)
    }

    #[test]
    fn steps_chain_by_default_and_take_explicit_dependencies() {
        let steps = parse_steps("a,b:a,c:a+b,d:,e").unwrap();
        let deps: Vec<(&str, Vec<&str>)> = steps
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.depends_on.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            deps,
            [
                ("a", vec![]),
                ("b", vec!["a"]),
                ("c", vec!["a", "b"]),
                ("d", vec![]),
                ("e", vec!["d"]),
            ]
        );
    }

    #[test]
    fn bad_names_and_options_get_clear_errors() {
        let err = |kind, name: &str, options: &[&str]| {
            generate(kind, name, &args(kind, name, options))
                .unwrap_err()
                .to_string()
        };
        assert!(err(Kind::Handler, "ChargeCard", &[]).contains("must be snake_case"));
        assert!(err(Kind::Handler, "type", &[]).contains("is a Rust keyword"));
        assert_eq!(
            err(Kind::Task, "flow", &["--steps", "a,b:c"]),
            "--steps: step `b` depends on `c`, which is not listed before it (known: a)"
        );
        assert_eq!(
            err(Kind::Task, "flow", &["--steps", "a,a"]),
            "--steps: step `a` appears twice"
        );
        assert!(err(Kind::Task, "flow", &["--version", "1.0"]).contains("is not a semver version"));
        assert_eq!(
            err(Kind::Subscriber, "s", &["--events", "task.complete"]),
            "--events: `task.complete` is not an event in Tasker's catalog (did you mean `task.completed`?); `tasker events` lists them"
        );
        assert!(err(Kind::Subscriber, "s", &[]).contains("needs --events"));
        assert!(
            err(Kind::Events, "e", &["--events", "task.completed"])
                .starts_with("--events: `task.completed`")
        );
        assert!(
            err(Kind::Events, "e", &["--events", "bad name"]).starts_with("--events: `bad name`")
        );
        assert!(err(Kind::Handler, "h", &["--events", "task.completed"]).contains("applies to"));
    }

    #[test]
    fn a_task_template_lists_its_steps_and_validates() {
        let files = generate(
            Kind::Task,
            "order_flow",
            &args(
                Kind::Task,
                "order_flow",
                &["--namespace", "shop", "--steps", "a,b:a,c:a+b"],
            ),
        )
        .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["order_flow.rs", "order_flow.yaml"]);
        let template =
            tasker_template::TaskTemplate::from_yaml_str(&files[1].contents, None).unwrap();
        assert_eq!(template.namespace_name, "shop");
        let c = &template.step_templates[2];
        assert_eq!(c.handler_class, "shop::order_flow::c");
        assert_eq!(c.depends_on_steps, ["a", "b"]);
        assert!(files[0].contents.contains("pub struct CHandler;"));
        assert!(!files[0].contents.contains("{{"));
    }

    #[test]
    fn a_server_is_a_crate_of_its_own_on_this_checkout() {
        let files = generate(
            Kind::Server,
            "ops_console",
            &args(Kind::Server, "ops_console", &[]),
        )
        .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(
            names,
            [
                "ops_console/Cargo.toml",
                "ops_console/src/lib.rs",
                "ops_console/src/main.rs",
                "ops_console/tests/route.rs"
            ]
        );
        let api = format!(
            "tasker-api = {{ path = \"{}/crates/tasker-api\" }}",
            crate::workspace_root().display()
        );
        assert!(files[0].contents.contains("name = \"ops-console\""));
        assert!(files[0].contents.contains(&api), "{}", files[0].contents);
        assert!(files[2].contents.contains("ops_console::build(store)"));
    }

    #[test]
    fn existing_files_are_never_overwritten() {
        let dir = tempfile_dir();
        let files = vec![Generated {
            file: "x.rs".into(),
            contents: "new".into(),
        }];
        std::fs::write(dir.join("x.rs"), "mine").unwrap();
        let err = write(&dir, &files).unwrap_err().to_string();
        assert!(
            err.ends_with("x.rs already exists; choose another name or --dir"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(dir.join("x.rs")).unwrap(), "mine");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
