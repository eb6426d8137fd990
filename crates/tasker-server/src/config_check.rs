//! `tasker config check`: validates the configuration as startup does and prints the effective
//! settings, each with where its value came from, secrets redacted. Exit 0 when valid, 2 with
//! the reasons when not.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tasker_auth::{ApiKeyHash, ApiKeyStore, ApiKeyStoreError, StoredApiKey};

use crate::settings::{Loaded, Settings};

/// Settings whose values are never printed.
const SECRETS: &[&str] = &["auth.jwt.secret", "client.token", "client.api_key"];

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Entry {
    /// `database.url`.
    pub key: String,
    /// The value, secrets as `"[redacted]"` and passwords in URLs as `***`.
    pub value: Value,
    /// `default (development profile)`, `file tasker.toml`, `env TASKER_...`, or
    /// `file /run/secrets/... (from TASKER_..._FILE)`.
    pub source: String,
}

/// What `tasker config check` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    /// No errors.
    pub valid: bool,
    /// Every problem, each naming its setting.
    pub errors: Vec<String>,
    /// Warnings startup would log.
    pub warnings: Vec<String>,
    /// The effective settings, sorted by key (empty when the configuration could not be read).
    pub settings: Vec<Entry>,
}

/// The command a configuration is checked for (`--for`): each checks what that command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CheckedCommand {
    /// `tasker serve`: everything, authentication included.
    Serve,
    /// `tasker worker`: serves no HTTP, so builds no authentication.
    Worker,
    /// `tasker migrate`: serves no HTTP, so builds no authentication.
    Migrate,
}

impl CheckedCommand {
    fn builds_authentication(self) -> bool {
        self == CheckedCommand::Serve
    }
}

/// Checks the configuration that `config` and `env` make for `command`, with `--database`
/// applied.
pub(crate) async fn check(
    config: Option<&Path>,
    env: &[(String, String)],
    database: Option<&str>,
    command: CheckedCommand,
) -> Report {
    let loaded = match crate::settings::load_layers(config, env) {
        Ok(loaded) => loaded,
        Err(err) => {
            return Report {
                valid: false,
                errors: vec![crate::error_text(&err)],
                warnings: Vec::new(),
                settings: Vec::new(),
            };
        }
    };
    let mut settings = loaded.settings.clone();
    if let Some(url) = database {
        settings.database.url = url.to_owned();
    }
    let mut errors = settings.validate();
    let mut warnings = Vec::new();
    if command.builds_authentication() {
        match auth_check(&settings).await {
            Ok(found) => warnings = found,
            Err(err) => errors.push(format!("auth: {}", crate::error_text(&err))),
        }
    }
    Report {
        valid: errors.is_empty(),
        errors,
        warnings,
        settings: entries(&loaded, &settings, database.is_some()),
    }
}

/// Builds authentication as `tasker serve` does (fetching `auth.jwt.jwks_url` when set).
async fn auth_check(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let jwks = crate::auth_cli::start_jwks(settings).await?;
    let built = settings.auth.build_with_jwks(
        settings.server.profile,
        Some(Arc::new(Unconnected)),
        jwks.as_ref().map(|fetcher| fetcher.keys()),
    )?;
    Ok(built.warnings)
}

/// Stands in for the database's API keys: the check builds authentication without connecting,
/// and building never looks a key up.
struct Unconnected;

#[async_trait::async_trait]
impl ApiKeyStore for Unconnected {
    async fn find_by_hash(
        &self,
        _hash: &ApiKeyHash,
    ) -> Result<Option<StoredApiKey>, ApiKeyStoreError> {
        Ok(None)
    }

    async fn record_use(&self, _id: &str, _at: DateTime<Utc>) -> Result<(), ApiKeyStoreError> {
        Ok(())
    }
}

fn entries(loaded: &Loaded, settings: &Settings, database_flag: bool) -> Vec<Entry> {
    let value = serde_json::to_value(settings).unwrap_or(Value::Null);
    let mut leaves = Vec::new();
    flatten("", &value, &mut leaves);
    leaves
        .into_iter()
        .map(|(key, value)| {
            let source = if database_flag && key == "database.url" {
                "--database flag".to_owned()
            } else {
                loaded.source_of(&key)
            };
            let value = if SECRETS.contains(&key.as_str()) && !value.is_null() {
                Value::String("[redacted]".into())
            } else if key == "database.url" {
                Value::String(tasker_persistence::redact_url(value.as_str().unwrap_or("")))
            } else {
                value
            };
            Entry { key, value, source }
        })
        .collect()
}

/// Leaves of a JSON document as dotted keys; lists are leaves.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        _ => out.push((prefix.to_owned(), value.clone())),
    }
}

/// The report as text: the settings, then warnings and errors.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::new();
    let width = report
        .settings
        .iter()
        .map(|e| e.key.len() + 3 + e.value.to_string().len())
        .max()
        .unwrap_or(0);
    for entry in &report.settings {
        let line = format!("{} = {}", entry.key, entry.value);
        out.push_str(&format!("{line:<width$}  # {}\n", entry.source));
    }
    for warning in &report.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    if report.valid {
        out.push_str("configuration is valid\n");
    } else {
        for error in &report.errors {
            out.push_str(&format!("error: {error}\n"));
        }
        out.push_str(&format!(
            "configuration is invalid: {} error(s)\n",
            report.errors.len()
        ));
    }
    out
}

/// `tasker config check`.
pub(crate) async fn run(
    config: Option<&Path>,
    database: Option<&str>,
    command: CheckedCommand,
    json: bool,
) -> ExitCode {
    let report = check(config, &crate::settings::environment(), database, command).await;
    if json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        crate::print_stdout(&format!("{text}\n"));
    } else {
        crate::print_stdout(&render(&report));
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn entry<'a>(report: &'a Report, key: &str) -> &'a Entry {
        report
            .settings
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} not listed"))
    }

    #[tokio::test]
    async fn sources_are_named_and_secrets_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tasker.toml");
        std::fs::write(&file, "[engine]\nlease = 12.0\n").unwrap();
        let secret = dir.path().join("jwt_secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef-secret\n").unwrap();
        let report = check(
            Some(&file),
            &env(&[
                (
                    "TASKER_DATABASE_URL",
                    "postgres://tasker:hunter2@db:5432/tasker",
                ),
                ("TASKER_AUTH__JWT__SECRET_FILE", secret.to_str().unwrap()),
                ("TASKER_AUTH__JWT__ALGORITHMS", "[HS256]"),
                ("TASKER_AUTH__AUTHENTICATORS", "[jwt]"),
                ("TASKER_PROFILE", "production"),
            ]),
            None,
            CheckedCommand::Serve,
        )
        .await;
        assert!(report.valid, "{:?}", report.errors);
        let lease = entry(&report, "engine.lease");
        assert_eq!(lease.value, serde_json::json!(12.0));
        assert_eq!(lease.source, format!("file {}", file.display()));
        let url = entry(&report, "database.url");
        assert_eq!(url.value, "postgres://tasker:***@db:5432/tasker");
        assert_eq!(url.source, "env TASKER_DATABASE_URL");
        let jwt = entry(&report, "auth.jwt.secret");
        assert_eq!(jwt.value, "[redacted]");
        assert_eq!(
            jwt.source,
            format!(
                "file {} (from TASKER_AUTH__JWT__SECRET_FILE)",
                secret.display()
            )
        );
        assert_eq!(
            entry(&report, "log.format").source,
            "default (production profile)"
        );
        assert_eq!(entry(&report, "log.format").value, "json");
        assert_eq!(
            entry(&report, "server.profile").source,
            "env TASKER_PROFILE"
        );
        let text = render(&report);
        assert!(
            !text.contains("hunter2") && !text.contains("-secret"),
            "{text}"
        );
        assert!(text.ends_with("configuration is valid\n"), "{text}");
    }

    #[tokio::test]
    async fn every_problem_is_reported_with_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tasker.toml");
        std::fs::write(
            &file,
            "[database]\nurl = \"mysql://x\"\n[engine]\nlease = 0.0\n[server]\nprofile = \"production\"\nreplicas = 3\n",
        )
        .unwrap();
        let report = check(Some(&file), &[], None, CheckedCommand::Serve).await;
        assert!(!report.valid);
        let all = report.errors.join("\n");
        for expected in [
            "database.url",
            "lease",
            "auth: ",
            "allow_open_in_production",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
        // The shape check comes first; a SQLite URL with replicas trips the profile rule.
        let report = check(
            Some(&file),
            &[],
            Some("sqlite://tasker.db?mode=rwc"),
            CheckedCommand::Serve,
        )
        .await;
        let all = report.errors.join("\n");
        assert!(all.contains("server.replicas = 3"), "{all}");
        assert_eq!(entry(&report, "database.url").source, "--database flag");
    }

    #[tokio::test]
    async fn a_worker_or_migration_is_checked_without_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tasker.toml");
        std::fs::write(&file, "[server]\nprofile = \"production\"\n").unwrap();
        let env = env(&[("TASKER_DATABASE_URL", "postgres://db/tasker")]);
        let serve = check(Some(&file), &env, None, CheckedCommand::Serve).await;
        assert_eq!(
            serve.errors,
            [
                "auth: auth.authenticators includes `open` in the production profile; set auth.allow_open_in_production = true if that is intended"
            ]
        );
        for command in [CheckedCommand::Worker, CheckedCommand::Migrate] {
            let report = check(Some(&file), &env, None, command).await;
            assert!(report.valid, "{command:?}: {:?}", report.errors);
        }
        // The rules every command starts with still apply.
        let lease = env_with(&env, ("TASKER_ENGINE__LEASE", "0"));
        let report = check(Some(&file), &lease, None, CheckedCommand::Worker).await;
        assert!(
            !report.valid && report.errors[0].starts_with("engine: "),
            "{:?}",
            report.errors
        );
    }

    fn env_with(env: &[(String, String)], (k, v): (&str, &str)) -> Vec<(String, String)> {
        let mut env = env.to_vec();
        env.push((k.to_owned(), v.to_owned()));
        env
    }

    #[tokio::test]
    async fn an_unreadable_configuration_is_an_error_not_a_panic() {
        let report = check(
            None,
            &env(&[("TASKER_DATABASE__URL_FILE", "/nonexistent/db_url")]),
            None,
            CheckedCommand::Serve,
        )
        .await;
        assert!(!report.valid);
        assert!(report.settings.is_empty());
        assert!(
            report.errors[0].contains("TASKER_DATABASE__URL_FILE")
                && report.errors[0].contains("/nonexistent/db_url"),
            "{:?}",
            report.errors
        );
    }
}
