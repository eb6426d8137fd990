//! `cargo xtask lint-layers`: the three dependency rules of design.md §2.
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
pub struct Workspace {
    pub packages: Vec<Package>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    /// The package name, not the `rename`d one.
    pub name: String,
    pub kind: DepKind,
    pub source: DepSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DepKind {
    Normal,
    Dev,
    Build,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DepSource {
    /// Another member of this workspace.
    Workspace,
    /// Anything else: crates.io, git, or a path outside the workspace.
    ThirdParty,
}

/// One broken rule, with enough data to say which package, which dependency and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
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
}

/// The third-party placement rules (design.md §2 rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrateRule {
    SeaOrm,
    HttpStack,
    Tokio,
    TelemetrySdk,
    Anyhow,
}

const DOMAIN: &str = "tasker-domain";
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

/// The layer table of design.md §2: package → the workspace packages it may depend on.
const LAYERS: &[(&str, MayDependOn)] = &[
    (DOMAIN, MayDependOn::Listed(&[])),
    (STATE_MACHINE, MayDependOn::Listed(&[any(DOMAIN)])),
    (EVENTS, MayDependOn::Listed(&[any(DOMAIN)])),
    (AUTH, MayDependOn::Listed(&[any(DOMAIN)])),
    (MIGRATIONS, MayDependOn::Listed(&[])),
    (
        PERSISTENCE,
        MayDependOn::Listed(&[any(DOMAIN), any(STATE_MACHINE), any(MIGRATIONS)]),
    ),
    (
        ENGINE,
        MayDependOn::Listed(&[
            any(DOMAIN),
            any(STATE_MACHINE),
            any(EVENTS),
            any(PERSISTENCE),
        ]),
    ),
    (
        API,
        MayDependOn::Listed(&[
            any(DOMAIN),
            any(AUTH),
            any(EVENTS),
            any(PERSISTENCE),
            any(ENGINE),
        ]),
    ),
    (
        BLOG_EXAMPLES,
        MayDependOn::Listed(&[any(DOMAIN), any(EVENTS), any(ENGINE), dev(PERSISTENCE)]),
    ),
    (SERVER, MayDependOn::AnyExcept(&[TESTS, XTASK])),
    (TESTS, MayDependOn::AnyExcept(&[XTASK])),
    // xtask's commands (migrate, codegen, bench) reach into the layers; nothing reaches into it.
    (XTASK, MayDependOn::AnyExcept(&[TESTS])),
];

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

/// Rule 2. The wiring crates (server, tests, xtask) may use sea-orm because they run migrations
/// and build stores themselves.
const PLACEMENTS: &[Placement] = &[
    Placement {
        rule: CrateRule::SeaOrm,
        crates: &[
            CratePattern::Exact("sea-orm"),
            CratePattern::Exact("sea-orm-migration"),
        ],
        scope: Scope::OnlyIn {
            grants: &[
                any(PERSISTENCE),
                any(MIGRATIONS),
                any(SERVER),
                any(TESTS),
                any(XTASK),
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
            grants: &[any(API), any(SERVER), dev(TESTS)],
            dev_anywhere: false,
        },
    },
    Placement {
        rule: CrateRule::Tokio,
        crates: &[CratePattern::Family("tokio")],
        scope: Scope::NotIn(&[DOMAIN, STATE_MACHINE, AUTH]),
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
            grants: &[any(SERVER), any(TESTS), any(XTASK)],
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

/// Checks the three rules. Violations come in rule order, packages in name order within a rule.
pub fn check(workspace: &Workspace) -> Vec<Violation> {
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
    violations
}

fn check_edges(package: &Package) -> Vec<Violation> {
    let Some((_, may_depend_on)) = LAYERS.iter().find(|(name, _)| *name == package.name) else {
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
pub fn find_cycles(workspace: &Workspace) -> Vec<Vec<String>> {
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
    pub fn from_metadata(metadata: &cargo_metadata::Metadata) -> Workspace {
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
                }
            })
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Workspace { packages }
    }

    /// Reads this repository's workspace through `cargo metadata`.
    pub fn load() -> anyhow::Result<Workspace> {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(manifest)
            .no_deps()
            .exec()
            .with_context(|| format!("cargo metadata failed for {manifest}"))?;
        Ok(Workspace::from_metadata(&metadata))
    }

    pub fn workspace_edge_count(&self) -> usize {
        self.packages
            .iter()
            .flat_map(|package| &package.dependencies)
            .filter(|dependency| dependency.source == DepSource::Workspace)
            .count()
    }
}

/// `cargo xtask lint-layers`.
pub fn run() -> anyhow::Result<()> {
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
                "{package} is a workspace package missing from the layer table (design.md §2 rule 1)"
            ),
            Violation::ForbiddenEdge {
                package,
                dependency,
                kind,
            } => write!(
                f,
                "{package} {} {dependency}: {package} may not depend on {dependency} (design.md §2 rule 1)",
                kind.verb()
            ),
            Violation::DevOnlyEdge {
                package,
                dependency,
                kind,
            } => write!(
                f,
                "{package} {} {dependency}: {package} may depend on {dependency} only as a dev-dependency (design.md §2 rule 1)",
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
                write!(f, " (design.md §2 rule 2)")
            }
            Violation::Cycle { path } => write!(
                f,
                "dependency cycle {} (dev-dependencies included; design.md §2 rule 3)",
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
mod tests {
    use super::*;
    use DepKind::{Build, Dev, Normal};

    fn member(name: &str, kind: DepKind) -> Dependency {
        Dependency {
            name: name.to_owned(),
            kind,
            source: DepSource::Workspace,
        }
    }

    fn third_party(name: &str, kind: DepKind) -> Dependency {
        Dependency {
            name: name.to_owned(),
            kind,
            source: DepSource::ThirdParty,
        }
    }

    /// Every edge the table allows, and the third-party crates where they belong.
    fn layered_workspace() -> Workspace {
        let package = |name: &str, dependencies: Vec<Dependency>| Package {
            name: name.to_owned(),
            dependencies,
        };
        Workspace {
            packages: vec![
                package(DOMAIN, vec![third_party("serde", Normal)]),
                package(
                    STATE_MACHINE,
                    vec![member(DOMAIN, Normal), third_party("anyhow", Dev)],
                ),
                package(
                    EVENTS,
                    vec![member(DOMAIN, Normal), third_party("tokio", Normal)],
                ),
                package(AUTH, vec![member(DOMAIN, Normal)]),
                package(MIGRATIONS, vec![third_party("sea-orm-migration", Normal)]),
                package(
                    PERSISTENCE,
                    vec![
                        member(DOMAIN, Normal),
                        member(STATE_MACHINE, Normal),
                        member(MIGRATIONS, Normal),
                        third_party("sea-orm", Normal),
                        third_party("tokio", Normal),
                    ],
                ),
                package(
                    ENGINE,
                    vec![
                        member(DOMAIN, Normal),
                        member(STATE_MACHINE, Normal),
                        member(EVENTS, Normal),
                        member(PERSISTENCE, Normal),
                        third_party("opentelemetry", Normal),
                        third_party("tokio-util", Normal),
                    ],
                ),
                package(
                    API,
                    vec![
                        member(DOMAIN, Normal),
                        member(AUTH, Normal),
                        member(EVENTS, Normal),
                        member(PERSISTENCE, Normal),
                        member(ENGINE, Normal),
                        third_party("axum", Normal),
                        third_party("async-graphql-axum", Normal),
                        third_party("tower-http", Normal),
                        third_party("utoipa", Normal),
                    ],
                ),
                package(
                    BLOG_EXAMPLES,
                    vec![
                        member(DOMAIN, Normal),
                        member(EVENTS, Normal),
                        member(ENGINE, Normal),
                        member(PERSISTENCE, Dev),
                    ],
                ),
                package(
                    SERVER,
                    vec![
                        member(API, Normal),
                        member(BLOG_EXAMPLES, Normal),
                        member(MIGRATIONS, Normal),
                        third_party("anyhow", Normal),
                        third_party("axum", Normal),
                        third_party("opentelemetry_sdk", Normal),
                        third_party("opentelemetry-otlp", Normal),
                        third_party("sea-orm", Normal),
                    ],
                ),
                package(
                    TESTS,
                    vec![
                        member(SERVER, Dev),
                        member(API, Dev),
                        third_party("anyhow", Dev),
                        third_party("hyper", Dev),
                        third_party("sea-orm", Dev),
                    ],
                ),
                package(
                    XTASK,
                    vec![
                        member(MIGRATIONS, Normal),
                        member(DOMAIN, Normal),
                        member(API, Normal),
                        third_party("anyhow", Normal),
                        third_party("sea-orm-migration", Normal),
                        third_party("cargo_metadata", Normal),
                    ],
                ),
            ],
        }
    }

    /// `layered_workspace()` plus one dependency.
    fn with(package: &str, dependency: Dependency) -> Workspace {
        let mut workspace = layered_workspace();
        workspace
            .packages
            .iter_mut()
            .find(|p| p.name == package)
            .expect("package in layered_workspace")
            .dependencies
            .push(dependency);
        workspace
    }

    fn messages(violations: &[Violation]) -> Vec<String> {
        violations.iter().map(ToString::to_string).collect()
    }

    fn misplaced(package: &str, dependency: &str, kind: DepKind, rule: CrateRule) -> Violation {
        Violation::MisplacedCrate {
            package: package.to_owned(),
            dependency: dependency.to_owned(),
            kind,
            rule,
        }
    }

    #[test]
    fn real_workspace_passes() {
        let workspace = Workspace::load().unwrap();
        let names: BTreeSet<&str> = workspace.packages.iter().map(|p| p.name.as_str()).collect();
        for (layer, _) in LAYERS {
            assert!(names.contains(layer), "{layer} missing from cargo metadata");
        }
        let engine = workspace
            .packages
            .iter()
            .find(|p| p.name == ENGINE)
            .unwrap();
        assert!(engine.dependencies.contains(&member(DOMAIN, Normal)));

        let violations = check(&workspace);
        assert!(violations.is_empty(), "{:#?}", messages(&violations));
    }

    #[test]
    fn layered_workspace_passes() {
        assert_eq!(check(&layered_workspace()), vec![]);
    }

    #[test]
    fn forbidden_workspace_edge() {
        let violations = check(&with(DOMAIN, member(ENGINE, Normal)));
        assert_eq!(
            violations,
            vec![
                Violation::ForbiddenEdge {
                    package: DOMAIN.to_owned(),
                    dependency: ENGINE.to_owned(),
                    kind: Normal,
                },
                Violation::Cycle {
                    path: vec![DOMAIN.to_owned(), ENGINE.to_owned(), DOMAIN.to_owned()],
                },
            ]
        );
        assert_eq!(
            messages(&violations),
            [
                "tasker-domain depends on tasker-engine: tasker-domain may not depend on tasker-engine (design.md §2 rule 1)",
                "dependency cycle tasker-domain -> tasker-engine -> tasker-domain (dev-dependencies included; design.md §2 rule 3)",
            ]
        );
    }

    #[test]
    fn edge_to_a_sibling_layer_is_forbidden() {
        let violations = check(&with(AUTH, member(EVENTS, Build)));
        assert_eq!(
            messages(&violations),
            [
                "tasker-auth has a build-dependency on tasker-events: tasker-auth may not depend on tasker-events (design.md §2 rule 1)"
            ]
        );
    }

    #[test]
    fn nothing_depends_on_xtask() {
        let violations = check(&with(SERVER, member(XTASK, Dev)));
        assert_eq!(
            violations,
            vec![Violation::ForbiddenEdge {
                package: SERVER.to_owned(),
                dependency: XTASK.to_owned(),
                kind: Dev,
            }]
        );
    }

    #[test]
    fn blog_examples_use_persistence_only_in_tests() {
        let mut workspace = layered_workspace();
        let blog = workspace
            .packages
            .iter_mut()
            .find(|p| p.name == BLOG_EXAMPLES)
            .unwrap();
        blog.dependencies.retain(|d| d.name != PERSISTENCE);
        blog.dependencies.push(member(PERSISTENCE, Normal));
        let violations = check(&workspace);
        assert_eq!(
            messages(&violations),
            [
                "tasker-blog-examples depends on tasker-persistence: tasker-blog-examples may depend on tasker-persistence only as a dev-dependency (design.md §2 rule 1)"
            ]
        );
    }

    #[test]
    fn unknown_package_is_reported() {
        let mut workspace = layered_workspace();
        workspace.packages.push(Package {
            name: "tasker-cache".to_owned(),
            dependencies: vec![member(DOMAIN, Normal)],
        });
        assert_eq!(
            messages(&check(&workspace)),
            [
                "tasker-cache is a workspace package missing from the layer table (design.md §2 rule 1)"
            ]
        );
    }

    #[test]
    fn tokio_in_domain() {
        let violations = check(&with(DOMAIN, third_party("tokio", Normal)));
        assert_eq!(
            violations,
            vec![misplaced(DOMAIN, "tokio", Normal, CrateRule::Tokio)]
        );
        assert_eq!(
            messages(&violations),
            [
                "tasker-domain depends on tokio: tokio is not allowed in tasker-domain (design.md §2 rule 2)"
            ]
        );
    }

    #[test]
    fn tokio_family_in_state_machine_tests() {
        let violations = check(&with(STATE_MACHINE, third_party("tokio-util", Dev)));
        assert_eq!(
            messages(&violations),
            [
                "tasker-state-machine has a dev-dependency on tokio-util: tokio-util is not allowed in tasker-state-machine (design.md §2 rule 2)"
            ]
        );
    }

    #[test]
    fn anyhow_as_normal_dependency_of_library() {
        let violations = check(&with(ENGINE, third_party("anyhow", Normal)));
        assert_eq!(
            violations,
            vec![misplaced(ENGINE, "anyhow", Normal, CrateRule::Anyhow)]
        );
        assert_eq!(
            messages(&violations),
            [
                "tasker-engine depends on anyhow: anyhow is not allowed in tasker-engine, only in tasker-server, tasker-tests, xtask and dev-dependencies (design.md §2 rule 2)"
            ]
        );
    }

    #[test]
    fn anyhow_as_build_dependency_of_library() {
        let violations = check(&with(EVENTS, third_party("anyhow", Build)));
        assert_eq!(
            violations,
            vec![misplaced(EVENTS, "anyhow", Build, CrateRule::Anyhow)]
        );
    }

    #[test]
    fn anyhow_as_dev_dependency_of_library_is_allowed() {
        assert_eq!(check(&with(ENGINE, third_party("anyhow", Dev))), vec![]);
        assert_eq!(check(&with(DOMAIN, third_party("anyhow", Dev))), vec![]);
    }

    #[test]
    fn http_stack_outside_api_and_server() {
        let violations = check(&with(ENGINE, third_party("axum", Normal)));
        assert_eq!(
            messages(&violations),
            [
                "tasker-engine depends on axum: axum is not allowed in tasker-engine, only in tasker-api, tasker-server and tasker-tests (dev-dependencies only) (design.md §2 rule 2)"
            ]
        );
        let violations = check(&with(TESTS, third_party("tower", Normal)));
        assert_eq!(
            violations,
            vec![misplaced(TESTS, "tower", Normal, CrateRule::HttpStack)]
        );
        let violations = check(&with(EVENTS, third_party("utoipa-swagger-ui", Dev)));
        assert_eq!(
            violations,
            vec![misplaced(
                EVENTS,
                "utoipa-swagger-ui",
                Dev,
                CrateRule::HttpStack
            )]
        );
    }

    #[test]
    fn family_patterns_need_a_separator() {
        assert!(CratePattern::Family("tower").matches("tower-http"));
        assert!(CratePattern::Family("tokio").matches("tokio"));
        assert!(!CratePattern::Family("hyper").matches("hyperlocal"));
        assert!(!CratePattern::Family("tokio").matches("tokioish"));
    }

    #[test]
    fn sea_orm_outside_storage_and_wiring() {
        let violations = check(&with(ENGINE, third_party("sea-orm", Normal)));
        assert_eq!(
            messages(&violations),
            [
                "tasker-engine depends on sea-orm: sea-orm is not allowed in tasker-engine, only in tasker-persistence, tasker-migrations, tasker-server, tasker-tests and xtask (design.md §2 rule 2)"
            ]
        );
    }

    #[test]
    fn telemetry_sdk_outside_server() {
        let violations = check(&with(API, third_party("prometheus", Normal)));
        assert_eq!(
            messages(&violations),
            [
                "tasker-api depends on prometheus: prometheus is not allowed in tasker-api, only in tasker-server and dev-dependencies (design.md §2 rule 2)"
            ]
        );
        // Tests may read metrics back through the SDK.
        assert!(check(&with(EVENTS, third_party("opentelemetry_sdk", Dev))).is_empty());
    }

    #[test]
    fn dev_dependency_cycle() {
        let violations = check(&with(ENGINE, member(BLOG_EXAMPLES, Dev)));
        assert_eq!(
            violations,
            vec![
                Violation::ForbiddenEdge {
                    package: ENGINE.to_owned(),
                    dependency: BLOG_EXAMPLES.to_owned(),
                    kind: Dev,
                },
                Violation::Cycle {
                    path: vec![
                        BLOG_EXAMPLES.to_owned(),
                        ENGINE.to_owned(),
                        BLOG_EXAMPLES.to_owned(),
                    ],
                },
            ]
        );
        assert_eq!(
            messages(&violations),
            [
                "tasker-engine has a dev-dependency on tasker-blog-examples: tasker-engine may not depend on tasker-blog-examples (design.md §2 rule 1)",
                "dependency cycle tasker-blog-examples -> tasker-engine -> tasker-blog-examples (dev-dependencies included; design.md §2 rule 3)",
            ]
        );
    }

    #[test]
    fn one_cycle_per_component_shortest_first() {
        let package = |name: &str, deps: &[&str]| Package {
            name: name.to_owned(),
            dependencies: deps.iter().map(|d| member(d, Dev)).collect(),
        };
        let workspace = Workspace {
            packages: vec![
                package("a", &["b"]),
                package("b", &["c", "a"]),
                package("c", &["a"]),
                package("d", &["d"]),
                package("e", &["a"]),
            ],
        };
        assert_eq!(
            find_cycles(&workspace),
            vec![vec!["a", "b", "a"], vec!["d", "d"]]
        );
    }
}
