//! The TOML examples of docs/auth.md, docs/configuration.md and docs/observability.md cannot
//! drift: each loads with the server's settings loader and passes `AuthConfig` validation.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use tasker_auth::jwt::{FetchedKeySet, KeySet};

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

/// The ```toml blocks of a markdown file, each with the line its fence is on.
pub(crate) fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
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
