//! `cargo xtask lint-layers`: the dependency rules of ARCHITECTURE.md's layer table.
//!
//! 1. Workspace edges are a subset of [`LAYERS`].
//! 2. Heavy or runtime-specific third-party crates stay where [`PLACEMENTS`] allows them.
//! 3. No cycles, dev-dependencies included.
//! 4. The resolved dependency closures of the small crates at the bottom ([`CLOSURES`]) hold
//!    none of the crates they promise to spare their users (a handler crate compiles no
//!    database driver, ORM, HTTP client or JSON Schema compiler).
//!
//! [`check`] is a pure function over a [`Workspace`], a small model of the packages and their
//! declared dependencies; [`Workspace::from_metadata`] is the only code that knows about
//! `cargo metadata`. Declared dependencies are checked, not the resolved graph, so an optional
//! dependency that no feature turns on is still held to the rules.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use anyhow::Context as _;

/// The workspace as the rules see it: each member with its declared dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workspace {
    pub packages: Vec<Package>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Package {
    pub name: String,
    pub dependencies: Vec<Dependency>,
    /// The resolved closure of normal and build dependencies: each crate reached, mapped to the
    /// crate it was first reached from (breadth first, so paths are shortest). Empty when the
    /// workspace was read without resolving.
    pub reached_from: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dependency {
    /// The package name, not the `rename`d one.
    pub name: String,
    pub kind: DepKind,
    pub source: DepSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepKind {
    Normal,
    Dev,
    Build,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepSource {
    /// Another member of this workspace.
    Workspace,
    /// Anything else: crates.io, git, or a path outside the workspace.
    ThirdParty,
}

/// One broken rule, with enough data to say which package, which dependency and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// Rule 1: a workspace package the layer table does not know.
    UnknownPackage { package: String },
    /// Rule 1: an edge the layer table does not have.
    ForbiddenEdge {
        package: String,
        dependency: String,
        kind: DepKind,
    },
    /// Rule 1: an edge the layer table allows for dev-dependencies only.
    DevOnlyEdge {
        package: String,
        dependency: String,
        kind: DepKind,
    },
    /// Rule 2: a third-party crate outside the packages it is allowed in.
    MisplacedCrate {
        package: String,
        dependency: String,
        kind: DepKind,
        rule: CrateRule,
    },
    /// Rule 3: a cycle among workspace packages; the first package is repeated at the end.
    Cycle { path: Vec<String> },
    /// Rule 4: a crate a package promises to keep out of its closure; `path` runs from the
    /// package to the crate.
    InClosure { package: String, path: Vec<String> },
}

/// The third-party placement rules (rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrateRule {
    SeaOrm,
    HttpStack,
    Tokio,
    TelemetrySdk,
    Anyhow,
}

const DOMAIN: &str = "tasker-domain";
const TEMPLATE: &str = "tasker-template";
const HANDLER: &str = "tasker-handler";
const HTTP: &str = "tasker-http";
const STATE_MACHINE: &str = "tasker-state-machine";
const EVENTS: &str = "tasker-events";
const AUTH: &str = "tasker-auth";
const MIGRATIONS: &str = "tasker-migrations";
const PERSISTENCE: &str = "tasker-persistence";
const ENGINE: &str = "tasker-engine";
const API: &str = "tasker-api";
const BLOG_EXAMPLES: &str = "tasker-blog-examples";
const SERVER: &str = "tasker-server";
const TESTS: &str = "tasker-tests";
const BENCH: &str = "tasker-bench";
const XTASK: &str = "xtask";

/// Permission to use a package (rule 1) or a crate (rule 2) from one package.
#[derive(Debug, Clone, Copy)]
struct Grant {
    package: &'static str,
    dev_only: bool,
}

const fn any(package: &'static str) -> Grant {
    Grant {
        package,
        dev_only: false,
    }
}

const fn dev(package: &'static str) -> Grant {
    Grant {
        package,
        dev_only: true,
    }
}

impl Grant {
    fn permits(&self, kind: DepKind) -> bool {
        !self.dev_only || kind == DepKind::Dev
    }
}

enum MayDependOn {
    Listed(&'static [Grant]),
    AnyExcept(&'static [&'static str]),
}

/// One row of the layer table.
pub(crate) struct Layer {
    package: &'static str,
    directory: &'static str,
    role: &'static str,
    may_depend_on: MayDependOn,
}

const fn layer(
    package: &'static str,
    directory: &'static str,
    role: &'static str,
    may_depend_on: MayDependOn,
) -> Layer {
    Layer {
        package,
        directory,
        role,
        may_depend_on,
    }
}

/// The layer table: package → the workspace packages it may depend on, bottom layer first.
/// ARCHITECTURE.md's table is generated from it (`cargo xtask codegen`).
pub(crate) const LAYERS: &[Layer] = &[
    layer(
        DOMAIN,
        "crates/tasker-domain",
        "ids, states, requests, step errors and codes, backoff, identity",
        MayDependOn::Listed(&[]),
    ),
    layer(
        TEMPLATE,
        "crates/tasker-template",
        "task templates: parsing, validation, graph, context schemas",
        MayDependOn::Listed(&[any(DOMAIN)]),
    ),
    layer(
        HANDLER,
        "crates/tasker-handler",
        "the step handler contract: `StepHandler`, `StepContext`, `TaskHooks`, `Clock`",
        MayDependOn::Listed(&[any(DOMAIN)]),
    ),
    layer(
        STATE_MACHINE,
        "crates/tasker-state-machine",
        "task and step transition tables",
        MayDependOn::Listed(&[any(DOMAIN)]),
    ),
    layer(
        EVENTS,
        "crates/tasker-events",
        "event catalog, payloads, bus, subscribers",
        MayDependOn::Listed(&[any(DOMAIN)]),
    ),
    layer(
        AUTH,
        "crates/tasker-auth",
        "authenticators and `resource:action` authorization",
        MayDependOn::Listed(&[any(DOMAIN)]),
    ),
    layer(
        HTTP,
        "crates/tasker-http",
        "`tasker::http`, the HTTP step handler",
        MayDependOn::Listed(&[any(DOMAIN), any(HANDLER)]),
    ),
    layer(
        MIGRATIONS,
        "migrations",
        "the schema, one migration per file",
        MayDependOn::Listed(&[]),
    ),
    layer(
        PERSISTENCE,
        "crates/tasker-persistence",
        "the store on SQLite and PostgreSQL",
        MayDependOn::Listed(&[
            any(DOMAIN),
            any(TEMPLATE),
            any(STATE_MACHINE),
            any(MIGRATIONS),
        ]),
    ),
    layer(
        ENGINE,
        "crates/tasker-engine",
        "registry, built-in handlers, the coordinator",
        MayDependOn::Listed(&[
            any(DOMAIN),
            any(TEMPLATE),
            any(HANDLER),
            any(HTTP),
            any(STATE_MACHINE),
            any(EVENTS),
            any(PERSISTENCE),
        ]),
    ),
    layer(
        API,
        "crates/tasker-api",
        "REST and GraphQL as an axum `Router`",
        MayDependOn::Listed(&[
            any(DOMAIN),
            any(TEMPLATE),
            any(HANDLER),
            any(AUTH),
            any(EVENTS),
            any(PERSISTENCE),
            any(ENGINE),
        ]),
    ),
    layer(
        BLOG_EXAMPLES,
        "crates/tasker-blog-examples",
        "the blog example workflows as fixtures",
        MayDependOn::Listed(&[
            any(DOMAIN),
            any(TEMPLATE),
            any(HANDLER),
            any(HTTP),
            any(EVENTS),
            any(ENGINE),
            dev(PERSISTENCE),
        ]),
    ),
    layer(
        SERVER,
        "crates/tasker-server",
        "the `tasker` binary",
        MayDependOn::AnyExcept(&[TESTS, XTASK]),
    ),
    layer(
        BENCH,
        "crates/tasker-bench",
        "the benchmark workloads behind `cargo xtask bench` and the soak behind `cargo xtask soak`",
        MayDependOn::AnyExcept(&[TESTS, XTASK]),
    ),
    layer(
        TESTS,
        "tests",
        "cross-crate tests and the documentation's doctests",
        MayDependOn::AnyExcept(&[XTASK]),
    ),
    // xtask's commands (migrate, codegen, bench) reach into the layers; nothing reaches into it.
    layer(
        XTASK,
        "xtask",
        "`cargo xtask`: checks, code generation, migrations",
        MayDependOn::AnyExcept(&[TESTS]),
    ),
];

/// Rule 4: crates kept out of a package's resolved normal and build dependencies, so that users
/// who pick only that package compile none of them.
pub(crate) const CLOSURES: &[(&str, &[&str])] = &[
    (DOMAIN, BOTTOM_SPARES),
    (STATE_MACHINE, BOTTOM_SPARES),
    (
        HANDLER,
        &[
            "sea-orm",
            "sqlx",
            "reqwest",
            "hyper",
            "jsonschema",
            "yaml_serde",
        ],
    ),
    (
        AUTH,
        &[
            "tokio",
            "sea-orm",
            "sqlx",
            "axum",
            "hyper",
            "tower",
            "async-graphql",
        ],
    ),
];

/// What the bottom crates (ids, states, requests, transitions) never compile.
const BOTTOM_SPARES: &[&str] = &[
    "yaml_serde",
    "jsonschema",
    "regex",
    "strsim",
    "tokio",
    "sea-orm",
    "sqlx",
    "reqwest",
];

impl MayDependOn {
    fn describe(&self) -> String {
        match self {
            MayDependOn::Listed([]) => "none".to_owned(),
            MayDependOn::Listed(grants) => grants
                .iter()
                .map(|grant| {
                    let short = grant
                        .package
                        .strip_prefix("tasker-")
                        .unwrap_or(grant.package);
                    if grant.dev_only {
                        format!("{short} (tests only)")
                    } else {
                        short.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
            MayDependOn::AnyExcept(except) => {
                format!("anything except {}", except.join(" and "))
            }
        }
    }
}

/// ARCHITECTURE.md's layer table, as Markdown.
pub(crate) fn layer_table() -> String {
    let mut out = String::from(
        "| Package (directory) | Role | May depend on (workspace crates) |\n|---|---|---|\n",
    );
    for layer in LAYERS {
        out.push_str(&format!(
            "| `{}` ({}) | {} | {} |\n",
            layer.package,
            layer.directory,
            layer.role,
            layer.may_depend_on.describe()
        ));
    }
    out
}

/// Crates a rule covers: `Family("axum")` is `axum` and every `axum-*`.
enum CratePattern {
    Exact(&'static str),
    Family(&'static str),
}

impl CratePattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            CratePattern::Exact(exact) => name == *exact,
            CratePattern::Family(base) => {
                name == *base
                    || name
                        .strip_prefix(base)
                        .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('_'))
            }
        }
    }
}

enum Scope {
    OnlyIn {
        grants: &'static [Grant],
        /// `anyhow` may be a dev-dependency of any crate.
        dev_anywhere: bool,
    },
    NotIn(&'static [&'static str]),
}

struct Placement {
    rule: CrateRule,
    crates: &'static [CratePattern],
    scope: Scope,
}

/// Rule 2. The wiring crates (server, tests, xtask, bench) may use sea-orm because they run
/// migrations and build stores, or measure the database itself.
const PLACEMENTS: &[Placement] = &[
    Placement {
        rule: CrateRule::SeaOrm,
        crates: &[
            CratePattern::Exact("sea-orm"),
            CratePattern::Exact("sea-orm-migration"),
            CratePattern::Exact("sea-query-sqlx"),
        ],
        scope: Scope::OnlyIn {
            grants: &[
                any(PERSISTENCE),
                any(MIGRATIONS),
                any(SERVER),
                any(TESTS),
                any(XTASK),
                any(BENCH),
            ],
            dev_anywhere: false,
        },
    },
    Placement {
        rule: CrateRule::HttpStack,
        crates: &[
            CratePattern::Family("axum"),
            CratePattern::Family("tower"),
            CratePattern::Family("hyper"),
            CratePattern::Family("async-graphql"),
            CratePattern::Family("utoipa"),
        ],
        scope: Scope::OnlyIn {
            grants: &[any(API), any(SERVER), any(BENCH), dev(TESTS)],
            dev_anywhere: false,
        },
    },
    Placement {
        rule: CrateRule::Tokio,
        crates: &[CratePattern::Family("tokio")],
        scope: Scope::NotIn(&[DOMAIN, TEMPLATE, STATE_MACHINE, AUTH]),
    },
    Placement {
        rule: CrateRule::TelemetrySdk,
        // Libraries use `tracing` and the `opentelemetry` API; only the binary picks exporters.
        crates: &[
            CratePattern::Exact("opentelemetry_sdk"),
            CratePattern::Exact("opentelemetry-sdk"),
            CratePattern::Exact("opentelemetry-otlp"),
            CratePattern::Exact("opentelemetry-prometheus"),
            CratePattern::Exact("opentelemetry-stdout"),
            CratePattern::Exact("opentelemetry-jaeger"),
            CratePattern::Exact("opentelemetry-zipkin"),
            CratePattern::Exact("prometheus"),
        ],
        // A dev-dependency does not ship: tests read metrics back through the SDK's in-memory
        // exporter.
        scope: Scope::OnlyIn {
            grants: &[any(SERVER)],
            dev_anywhere: true,
        },
    },
    Placement {
        rule: CrateRule::Anyhow,
        crates: &[CratePattern::Exact("anyhow")],
        scope: Scope::OnlyIn {
            grants: &[any(SERVER), any(TESTS), any(XTASK), any(BENCH)],
            dev_anywhere: true,
        },
    },
];

impl Placement {
    fn permits(&self, package: &str, kind: DepKind) -> bool {
        match &self.scope {
            Scope::OnlyIn {
                grants,
                dev_anywhere,
            } => {
                (*dev_anywhere && kind == DepKind::Dev)
                    || grants
                        .iter()
                        .any(|grant| grant.package == package && grant.permits(kind))
            }
            Scope::NotIn(packages) => !packages.contains(&package),
        }
    }
}

impl CrateRule {
    fn placement(self) -> &'static Placement {
        PLACEMENTS
            .iter()
            .find(|placement| placement.rule == self)
            .expect("every CrateRule has a placement")
    }
}

/// Checks the rules. Violations come in rule order, packages in name order within a rule.
pub(crate) fn check(workspace: &Workspace) -> Vec<Violation> {
    let mut packages: Vec<&Package> = workspace.packages.iter().collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name));

    let mut violations = Vec::new();
    for package in &packages {
        violations.extend(check_edges(package));
    }
    for package in &packages {
        violations.extend(check_placements(package));
    }
    violations.extend(
        find_cycles(workspace)
            .into_iter()
            .map(|path| Violation::Cycle { path }),
    );
    for package in &packages {
        violations.extend(check_closure(package));
    }
    violations
}

/// Rule 4, from the resolved graph: the shortest path to each spared crate that is reachable.
fn check_closure(package: &Package) -> Vec<Violation> {
    let Some((_, spared)) = CLOSURES.iter().find(|(name, _)| *name == package.name) else {
        return Vec::new();
    };
    spared
        .iter()
        .filter_map(|crate_name| {
            let mut path = vec![(*crate_name).to_owned()];
            let mut at = package.reached_from.get(*crate_name)?;
            while at != &package.name {
                path.push(at.clone());
                at = package.reached_from.get(at)?;
            }
            path.push(package.name.clone());
            path.reverse();
            Some(Violation::InClosure {
                package: package.name.clone(),
                path,
            })
        })
        .collect()
}

fn check_edges(package: &Package) -> Vec<Violation> {
    let Some(Layer { may_depend_on, .. }) =
        LAYERS.iter().find(|layer| layer.package == package.name)
    else {
        return vec![Violation::UnknownPackage {
            package: package.name.clone(),
        }];
    };
    sorted_dependencies(package, DepSource::Workspace)
        .filter_map(|dependency| {
            let make: Option<fn(String, String, DepKind) -> Violation> = match may_depend_on {
                MayDependOn::AnyExcept(forbidden) => forbidden
                    .contains(&dependency.name.as_str())
                    .then_some(forbidden_edge),
                MayDependOn::Listed(grants) => {
                    match grants.iter().find(|grant| grant.package == dependency.name) {
                        None => Some(forbidden_edge),
                        Some(grant) if !grant.permits(dependency.kind) => Some(dev_only_edge),
                        Some(_) => None,
                    }
                }
            };
            make.map(|make| {
                make(
                    package.name.clone(),
                    dependency.name.clone(),
                    dependency.kind,
                )
            })
        })
        .collect()
}

fn forbidden_edge(package: String, dependency: String, kind: DepKind) -> Violation {
    Violation::ForbiddenEdge {
        package,
        dependency,
        kind,
    }
}

fn dev_only_edge(package: String, dependency: String, kind: DepKind) -> Violation {
    Violation::DevOnlyEdge {
        package,
        dependency,
        kind,
    }
}

fn check_placements(package: &Package) -> Vec<Violation> {
    sorted_dependencies(package, DepSource::ThirdParty)
        .filter_map(|dependency| {
            let placement = PLACEMENTS.iter().find(|placement| {
                placement
                    .crates
                    .iter()
                    .any(|pattern| pattern.matches(&dependency.name))
            })?;
            (!placement.permits(&package.name, dependency.kind)).then(|| {
                Violation::MisplacedCrate {
                    package: package.name.clone(),
                    dependency: dependency.name.clone(),
                    kind: dependency.kind,
                    rule: placement.rule,
                }
            })
        })
        .collect()
}

fn sorted_dependencies(package: &Package, source: DepSource) -> impl Iterator<Item = &Dependency> {
    package
        .dependencies
        .iter()
        .filter(move |dependency| dependency.source == source)
        .collect::<BTreeSet<_>>()
        .into_iter()
}

/// Rule 3: one cycle per strongly connected component of the workspace graph (every dependency
/// kind counts), each the shortest cycle through the component's first package by name.
pub(crate) fn find_cycles(workspace: &Workspace) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for package in &workspace.packages {
        let successors = graph.entry(package.name.as_str()).or_default();
        for dependency in &package.dependencies {
            if dependency.source == DepSource::Workspace {
                successors.insert(dependency.name.as_str());
            }
        }
    }

    let mut reported: BTreeSet<&str> = BTreeSet::new();
    let mut cycles = Vec::new();
    for &start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        if let Some(cycle) = shortest_cycle_through(&graph, start) {
            let forward = reachable(&graph, start);
            reported.extend(
                forward
                    .into_iter()
                    .filter(|&node| reachable(&graph, node).contains(start)),
            );
            cycles.push(cycle.into_iter().map(str::to_owned).collect());
        }
    }
    cycles
}

fn successors<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, node: &str) -> Vec<&'a str> {
    graph
        .get(node)
        .map(|set| set.iter().copied().collect())
        .unwrap_or_default()
}

fn reachable<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in successors(graph, node) {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    seen
}

fn shortest_cycle_through<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in successors(graph, node) {
            if next == start {
                let mut between = Vec::new();
                let mut at = node;
                while at != start {
                    between.push(at);
                    at = parent[at];
                }
                between.reverse();
                let mut path = vec![start];
                path.extend(between);
                path.push(start);
                return Some(path);
            }
            if !parent.contains_key(next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

impl Workspace {
    /// The workspace members of `metadata` and their declared dependencies.
    pub(crate) fn from_metadata(metadata: &cargo_metadata::Metadata) -> Workspace {
        let members = metadata.workspace_packages();
        let member_names: BTreeSet<&str> = members.iter().map(|p| p.name.as_ref()).collect();
        let mut packages: Vec<Package> = members
            .iter()
            .map(|package| {
                let dependencies: BTreeSet<Dependency> = package
                    .dependencies
                    .iter()
                    .map(|dependency| Dependency {
                        name: dependency.name.clone(),
                        kind: match dependency.kind {
                            cargo_metadata::DependencyKind::Development => DepKind::Dev,
                            cargo_metadata::DependencyKind::Build => DepKind::Build,
                            // An unknown future kind is held to the strictest rules.
                            _ => DepKind::Normal,
                        },
                        source: if dependency.path.is_some()
                            && member_names.contains(dependency.name.as_str())
                        {
                            DepSource::Workspace
                        } else {
                            DepSource::ThirdParty
                        },
                    })
                    .collect();
                Package {
                    name: package.name.to_string(),
                    dependencies: dependencies.into_iter().collect(),
                    reached_from: resolved_closure(metadata, &package.id),
                }
            })
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Workspace { packages }
    }

    /// Reads this repository's workspace, with its resolved graph, through `cargo metadata`.
    pub(crate) fn load() -> anyhow::Result<Workspace> {
        let manifest = crate::workspace_root().join("Cargo.toml");
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(&manifest)
            // The host's graph only: what the build compiles here, and no download of crates that
            // only other platforms use.
            .other_options(vec!["--filter-platform".to_owned(), host_triple()?])
            .exec()
            .with_context(|| format!("cargo metadata failed for {}", manifest.display()))?;
        Ok(Workspace::from_metadata(&metadata))
    }

    pub(crate) fn workspace_edge_count(&self) -> usize {
        self.packages
            .iter()
            .flat_map(|package| &package.dependencies)
            .filter(|dependency| dependency.source == DepSource::Workspace)
            .count()
    }
}

/// The target triple `rustc` builds for by default.
fn host_triple() -> anyhow::Result<String> {
    let output = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host line")
}

/// Breadth-first over the resolved graph from `root`, following normal and build edges only
/// (a dev-dependency never reaches the crate's users).
fn resolved_closure(
    metadata: &cargo_metadata::Metadata,
    root: &cargo_metadata::PackageId,
) -> BTreeMap<String, String> {
    let Some(resolve) = &metadata.resolve else {
        return BTreeMap::new();
    };
    let nodes: BTreeMap<&cargo_metadata::PackageId, &cargo_metadata::Node> =
        resolve.nodes.iter().map(|node| (&node.id, node)).collect();
    let name_of = |id: &cargo_metadata::PackageId| metadata[id].name.to_string();
    let mut reached_from = BTreeMap::new();
    let mut seen = BTreeSet::from([root.clone()]);
    let mut queue = VecDeque::from([root.clone()]);
    while let Some(id) = queue.pop_front() {
        let Some(node) = nodes.get(&id) else {
            continue;
        };
        for dep in &node.deps {
            let shipped = dep
                .dep_kinds
                .iter()
                .any(|kind| kind.kind != cargo_metadata::DependencyKind::Development);
            if shipped && seen.insert(dep.pkg.clone()) {
                reached_from
                    .entry(name_of(&dep.pkg))
                    .or_insert_with(|| name_of(&id));
                queue.push_back(dep.pkg.clone());
            }
        }
    }
    reached_from
}

/// `cargo xtask lint-layers`.
pub(crate) fn run() -> anyhow::Result<()> {
    let workspace = Workspace::load()?;
    let violations = check(&workspace);
    if violations.is_empty() {
        println!(
            "lint-layers: ok ({} packages, {} workspace edges)",
            workspace.packages.len(),
            workspace.workspace_edge_count()
        );
        return Ok(());
    }
    for violation in &violations {
        eprintln!("lint-layers: {violation}");
    }
    anyhow::bail!("lint-layers: {} violation(s)", violations.len())
}

impl DepKind {
    fn verb(self) -> &'static str {
        match self {
            DepKind::Normal => "depends on",
            DepKind::Dev => "has a dev-dependency on",
            DepKind::Build => "has a build-dependency on",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnknownPackage { package } => write!(
                f,
                "{package} is a workspace package missing from the layer table (layer rule 1)"
            ),
            Violation::ForbiddenEdge {
                package,
                dependency,
                kind,
            } => write!(
                f,
                "{package} {} {dependency}: {package} may not depend on {dependency} (layer rule 1)",
                kind.verb()
            ),
            Violation::DevOnlyEdge {
                package,
                dependency,
                kind,
            } => write!(
                f,
                "{package} {} {dependency}: {package} may depend on {dependency} only as a dev-dependency (layer rule 1)",
                kind.verb()
            ),
            Violation::MisplacedCrate {
                package,
                dependency,
                kind,
                rule,
            } => {
                write!(
                    f,
                    "{package} {} {dependency}: {dependency} is not allowed in {package}",
                    kind.verb()
                )?;
                if let Scope::OnlyIn {
                    grants,
                    dev_anywhere,
                } = &rule.placement().scope
                {
                    let mut places: Vec<String> = grants
                        .iter()
                        .map(|grant| {
                            if grant.dev_only {
                                format!("{} (dev-dependencies only)", grant.package)
                            } else {
                                grant.package.to_owned()
                            }
                        })
                        .collect();
                    if *dev_anywhere {
                        places.push("dev-dependencies".to_owned());
                    }
                    write!(f, ", only in {}", join_with_and(&places))?;
                }
                write!(f, " (layer rule 2)")
            }
            Violation::InClosure { package, path } => write!(
                f,
                "{package} must not compile {}, but reaches it through {} (layer rule 4)",
                path.last().map_or("", String::as_str),
                path.join(" -> ")
            ),
            Violation::Cycle { path } => write!(
                f,
                "dependency cycle {} (dev-dependencies included; layer rule 3)",
                path.join(" -> ")
            ),
        }
    }
}

fn join_with_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests;
