//! docs/auth.md cannot drift: its permission table is generated from `Operation::TABLE`, and
//! each of its TOML examples (and docs/configuration.md's) loads with the server's settings
//! loader and passes `AuthConfig` validation.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use tasker_auth::jwt::{FetchedKeySet, KeySet};
use tasker_auth::{Operation, Permission};

const BEGIN: &str = "<!-- BEGIN GENERATED: permission table -->";
const END: &str = "<!-- END GENERATED: permission table -->";

fn docs(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name)
}

fn test_keys(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tasker-auth/tests/keys")
            .join(name),
    )
    .unwrap()
}

/// One row per registered permission: the REST routes and GraphQL fields that need it.
fn permission_table() -> String {
    let mut table = String::from("| Permission | REST (under `/v1`) | GraphQL |\n|---|---|---|\n");
    for permission in Permission::all() {
        let specs: Vec<_> = Operation::TABLE
            .iter()
            .filter(|spec| spec.permission == Some(permission))
            .collect();
        let rest: Vec<String> = specs
            .iter()
            .flat_map(|spec| spec.rest)
            .map(|route| format!("`{} {}`", route.method.to_http(), route.path))
            .collect();
        let graphql: Vec<String> = specs
            .iter()
            .flat_map(|spec| spec.graphql)
            .map(|field| format!("`{field}`"))
            .collect();
        let (rest, graphql) = if specs.is_empty() {
            (
                "none (accepted for compatibility)".to_owned(),
                String::new(),
            )
        } else {
            (rest.join(", "), graphql.join(", "))
        };
        table.push_str(&format!("| `{permission}` | {rest} | {graphql} |\n"));
    }
    table
}

#[test]
fn the_permission_table_is_generated_from_the_operation_table() {
    let path = docs("auth.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(BEGIN).expect("the BEGIN marker") + BEGIN.len();
    let end = text.find(END).expect("the END marker");
    let expected = format!("\n{}", permission_table());
    if std::env::var_os("TASKER_UPDATE_DOCS").is_some() {
        let updated = format!("{}{expected}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &text[start..end],
        expected,
        "docs/auth.md's permission table is stale: run `TASKER_UPDATE_DOCS=1 cargo test -p tasker-server permission_table`"
    );
    // Every operation that needs a permission appears in it.
    for spec in Operation::TABLE.iter().filter(|s| s.permission.is_some()) {
        for route in spec.rest {
            assert!(expected.contains(&format!("`{} {}`", route.method.to_http(), route.path)));
        }
    }
}

/// The ```toml blocks of a markdown file, each with the line its fence is on.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        if line.trim_start() != "```toml" {
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
        blocks.push((number + 1, block));
    }
    blocks
}

/// Each block is the whole `tasker.toml` of a server whose working directory holds the key
/// files the examples name (the committed test keys). A block that says its secret comes from
/// `TASKER_AUTH__JWT__SECRET` gets one there. A JWKS URL is not fetched: the key set is filled
/// from the test JWKS document, as `tasker serve` would after its first fetch.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
fn every_toml_example_loads_and_passes_auth_validation() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = runtime.block_on(tasker_persistence::testing::TestDatabase::sqlite());
    let database_keys: Arc<dyn tasker_auth::ApiKeyStore> =
        Arc::new(tasker_api::DatabaseApiKeys::new(database.store.clone()));
    let mut checked = 0;
    for file in ["auth.md", "configuration.md", "observability.md"] {
        let markdown = std::fs::read_to_string(docs(file)).unwrap();
        for (line, block) in toml_blocks(&markdown) {
            let origin = format!("docs/{file}:{line}");
            let database_keys = Arc::clone(&database_keys);
            figment::Jail::expect_with(|jail| {
                std::fs::create_dir("keys").unwrap();
                std::fs::write("keys/jwt-public.pem", test_keys("rsa-public.pem")).unwrap();
                std::fs::write("keys/jwt-private.pem", test_keys("rsa-private.pem")).unwrap();
                std::fs::write("keys/jwks.json", test_keys("jwks.json")).unwrap();
                jail.create_file("tasker.toml", &block)?;
                if block.contains("TASKER_AUTH__JWT__SECRET") {
                    jail.set_env(
                        "TASKER_AUTH__JWT__SECRET",
                        "docs-example-secret-0123456789abcdef",
                    );
                }
                let settings =
                    crate::settings::load(None).unwrap_or_else(|err| panic!("{origin}: {err:#}"));
                let auth = &settings.auth;
                let fetched = auth
                    .jwks_url_settings()
                    .unwrap_or_else(|err| panic!("{origin}: {err}"))
                    .map(|url| {
                        let set = FetchedKeySet::new(url.url.clone(), url.max_staleness);
                        let (keys, _) =
                            KeySet::from_jwks(&test_keys("jwks.json"), &url.url).unwrap();
                        set.update(keys, Utc::now());
                        Arc::new(set)
                    });
                let built = auth
                    .build_with_jwks(settings.server.profile, Some(database_keys), fetched)
                    .unwrap_or_else(|err| panic!("{origin}: {err}"));
                assert!(built.warnings.is_empty(), "{origin}: {:?}", built.warnings);
                Ok(())
            });
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} TOML blocks found");
}
