//! Tests of the layer rules: the checks on a made-up and the real workspace, and the table.

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
        ..Package::default()
    };
    Workspace {
        packages: vec![
            package(DOMAIN, vec![third_party("serde", Normal)]),
            package(TEMPLATE, vec![member(DOMAIN, Normal)]),
            package(
                HANDLER,
                vec![member(DOMAIN, Normal), third_party("tokio", Normal)],
            ),
            package(
                HTTP,
                vec![
                    member(DOMAIN, Normal),
                    member(HANDLER, Normal),
                    third_party("reqwest", Normal),
                ],
            ),
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
    for layer in LAYERS {
        assert!(
            names.contains(layer.package),
            "{} missing from cargo metadata",
            layer.package
        );
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

/// The promise handler authors rely on, proved from the real resolved graph: implementing
/// a step handler compiles no database, ORM, HTTP client or JSON Schema compiler.
#[test]
fn handler_contract_closure_is_free_of_storage_and_http() {
    let workspace = Workspace::load().unwrap();
    let closure = |name: &str| {
        workspace
            .packages
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .reached_from
            .clone()
    };
    let handler = closure(HANDLER);
    assert!(handler.contains_key(DOMAIN), "the closure was resolved");
    assert!(handler.contains_key("tokio"), "the closure was resolved");
    for heavy in ["sea-orm", "sqlx", "reqwest", "jsonschema", "yaml_serde"] {
        assert!(
            !handler.contains_key(heavy),
            "tasker-handler reaches {heavy}"
        );
    }
    let domain = closure(DOMAIN);
    for heavy in ["yaml_serde", "jsonschema", "regex", "tokio"] {
        assert!(!domain.contains_key(heavy), "tasker-domain reaches {heavy}");
    }
    // The engine does link them: the check is not vacuous.
    let engine = closure(ENGINE);
    for heavy in ["sea-orm", "sqlx", "reqwest", "jsonschema"] {
        assert!(
            engine.contains_key(heavy),
            "tasker-engine should reach {heavy}"
        );
    }
}

#[test]
fn a_spared_crate_in_the_closure_is_reported_with_its_path() {
    let mut workspace = layered_workspace();
    let handler = workspace
        .packages
        .iter_mut()
        .find(|p| p.name == HANDLER)
        .unwrap();
    handler.reached_from = BTreeMap::from([
        ("tasker-persistence".to_owned(), HANDLER.to_owned()),
        ("sea-orm".to_owned(), "tasker-persistence".to_owned()),
        ("sqlx".to_owned(), "sea-orm".to_owned()),
        ("serde".to_owned(), HANDLER.to_owned()),
    ]);
    assert_eq!(
        messages(&check(&workspace)),
        [
            "tasker-handler must not compile sea-orm, but reaches it through tasker-handler -> tasker-persistence -> sea-orm (layer rule 4)",
            "tasker-handler must not compile sqlx, but reaches it through tasker-handler -> tasker-persistence -> sea-orm -> sqlx (layer rule 4)",
        ]
    );
}

#[test]
fn the_generated_table_lists_every_layer() {
    let table = layer_table();
    assert_eq!(table.lines().count(), LAYERS.len() + 2);
    assert!(table.contains(
        "| `tasker-http` (crates/tasker-http) | `tasker::http`, the HTTP step handler | domain, handler |"
    ));
    assert!(table.contains("| `tasker-domain` (crates/tasker-domain) | ids, states, requests, step errors and codes, backoff, identity | none |"));
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
            "tasker-domain depends on tasker-engine: tasker-domain may not depend on tasker-engine (layer rule 1)",
            "dependency cycle tasker-domain -> tasker-engine -> tasker-domain (dev-dependencies included; layer rule 3)",
        ]
    );
}

#[test]
fn edge_to_a_sibling_layer_is_forbidden() {
    let violations = check(&with(AUTH, member(EVENTS, Build)));
    assert_eq!(
        messages(&violations),
        [
            "tasker-auth has a build-dependency on tasker-events: tasker-auth may not depend on tasker-events (layer rule 1)"
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
            "tasker-blog-examples depends on tasker-persistence: tasker-blog-examples may depend on tasker-persistence only as a dev-dependency (layer rule 1)"
        ]
    );
}

#[test]
fn unknown_package_is_reported() {
    let mut workspace = layered_workspace();
    workspace.packages.push(Package {
        name: "tasker-cache".to_owned(),
        dependencies: vec![member(DOMAIN, Normal)],
        ..Package::default()
    });
    assert_eq!(
        messages(&check(&workspace)),
        ["tasker-cache is a workspace package missing from the layer table (layer rule 1)"]
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
        ["tasker-domain depends on tokio: tokio is not allowed in tasker-domain (layer rule 2)"]
    );
}

#[test]
fn tokio_family_in_state_machine_tests() {
    let violations = check(&with(STATE_MACHINE, third_party("tokio-util", Dev)));
    assert_eq!(
        messages(&violations),
        [
            "tasker-state-machine has a dev-dependency on tokio-util: tokio-util is not allowed in tasker-state-machine (layer rule 2)"
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
            "tasker-engine depends on anyhow: anyhow is not allowed in tasker-engine, only in tasker-server, tasker-tests, xtask, tasker-bench and dev-dependencies (layer rule 2)"
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
            "tasker-engine depends on axum: axum is not allowed in tasker-engine, only in tasker-api, tasker-server, tasker-bench and tasker-tests (dev-dependencies only) (layer rule 2)"
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
            "tasker-engine depends on sea-orm: sea-orm is not allowed in tasker-engine, only in tasker-persistence, tasker-migrations, tasker-server, tasker-tests, xtask and tasker-bench (layer rule 2)"
        ]
    );
}

#[test]
fn telemetry_sdk_outside_server() {
    let violations = check(&with(API, third_party("prometheus", Normal)));
    assert_eq!(
        messages(&violations),
        [
            "tasker-api depends on prometheus: prometheus is not allowed in tasker-api, only in tasker-server and dev-dependencies (layer rule 2)"
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
            "tasker-engine has a dev-dependency on tasker-blog-examples: tasker-engine may not depend on tasker-blog-examples (layer rule 1)",
            "dependency cycle tasker-blog-examples -> tasker-engine -> tasker-blog-examples (dev-dependencies included; layer rule 3)",
        ]
    );
}

#[test]
fn one_cycle_per_component_shortest_first() {
    let package = |name: &str, deps: &[&str]| Package {
        name: name.to_owned(),
        dependencies: deps.iter().map(|d| member(d, Dev)).collect(),
        ..Package::default()
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
