//! Configuration: defaults, then `tasker.toml` (or `--config FILE`), then `TASKER_*`
//! environment variables (`TASKER_DATABASE_URL`, the client's `TASKER_SERVER`, `TASKER_TOKEN`
//! and `TASKER_API_KEY`, and `TASKER_<SECTION>__<KEY>` for the rest), then command-line flags.
//! See docs/configuration.md.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tasker_engine::EngineConfig;
use tasker_persistence::ConnectOptions;

/// Everything the binary reads from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    /// Where tasks are stored.
    pub database: DatabaseSettings,
    /// How the engine runs them.
    pub engine: EngineConfig,
    /// Logging.
    pub log: LogSettings,
    /// `tasker serve`: where it listens and which profile's rules apply.
    pub server: ServerSettings,
    /// The HTTP API's limits, CORS and documentation page.
    pub api: tasker_api::ApiSettings,
    /// Who may call the API, and what they may do.
    pub auth: tasker_auth::AuthConfig,
    /// `tasker tasks` and `tasker steps`: which server they call, with which credentials.
    pub client: ClientSettings,
    /// `tasker serve`'s `/metrics`: whether it is served and who may read it.
    pub metrics: crate::metrics::MetricsSettings,
    /// `/health/status`: who may read it at the root, and its verdict's thresholds.
    pub health: tasker_api::HealthSettings,
    /// The cache of computed reports: in-process, or Redis shared by replicas.
    pub cache: tasker_api::CacheSettings,
    /// OTLP export of traces and metrics (off by default).
    pub telemetry: crate::telemetry::TelemetrySettings,
    /// Template files registered at start-up.
    pub templates: TemplatesSettings,
}

/// `[templates]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TemplatesSettings {
    /// A folder whose `.yaml`, `.yml` and `.json` templates `tasker run`, `tasker serve` and
    /// `tasker worker` register at start-up (relative to the working directory). Unset: the
    /// `templates` folder of the working directory, when there is one.
    pub dir: Option<std::path::PathBuf>,
}

/// The folder `[templates] dir` defaults to, when it exists.
pub(crate) const DEFAULT_TEMPLATES_DIR: &str = "templates";

/// The server the client commands call when `--server` is not given.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// `[client]`. `Debug` never prints the credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClientSettings {
    /// The server's base URL (`--server` overrides it).
    pub server: String,
    /// A JWT sent as `Authorization: Bearer`.
    pub token: Option<tasker_auth::Secret>,
    /// An API key sent as `X-API-Key`.
    pub api_key: Option<tasker_auth::Secret>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            server: DEFAULT_SERVER.into(),
            token: None,
            api_key: None,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSettings {
    /// The address `tasker serve` listens on (`--bind` overrides it).
    pub bind: String,
    /// `development` (the default) or `production`: production refuses open access unless
    /// `auth.allow_open_in_production` says otherwise.
    pub profile: tasker_auth::Profile,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            profile: tasker_auth::Profile::Development,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DatabaseSettings {
    /// `sqlite://tasker.db?mode=rwc` (the default) or `postgres://...`.
    pub url: String,
    /// Largest connection pool.
    pub max_connections: u32,
    /// Connections kept open.
    pub min_connections: u32,
    /// Seconds to wait for a pooled connection.
    pub acquire_timeout: f64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://tasker.db?mode=rwc".into(),
            max_connections: 16,
            min_connections: 1,
            acquire_timeout: 30.0,
        }
    }
}

/// The longest `database.acquire_timeout`: 1 hour.
const MAX_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

impl DatabaseSettings {
    /// Pool settings for the store.
    pub(crate) fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let acquire_timeout =
            Duration::try_from_secs_f64(self.acquire_timeout).with_context(|| {
                format!(
                    "database.acquire_timeout must be a non-negative number of seconds, got {}",
                    self.acquire_timeout
                )
            })?;
        // The pool adds it to an `Instant`, which panics on overflow.
        if acquire_timeout > MAX_ACQUIRE_TIMEOUT {
            anyhow::bail!(
                "database.acquire_timeout of {} s exceeds the maximum of {} s (1 h)",
                self.acquire_timeout,
                MAX_ACQUIRE_TIMEOUT.as_secs()
            );
        }
        if self.max_connections == 0 {
            anyhow::bail!("database.max_connections must be at least 1");
        }
        Ok(ConnectOptions {
            max_connections: self.max_connections,
            min_connections: self.min_connections.min(self.max_connections),
            acquire_timeout,
            ..ConnectOptions::default()
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSettings {
    /// A tracing filter (`warn`, `tasker_engine=debug`, ...); `RUST_LOG` wins when set.
    pub level: String,
    /// `text` or `json` (one JSON object per line, with the correlation id, trace id and span
    /// id at the top level).
    pub format: LogFormat,
    /// Keys whose values are written as `[REDACTED]` in log fields and in event payloads
    /// (case-insensitive; a key matches when it contains one of these). An empty list turns
    /// redaction off.
    pub redact_keys: Vec<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "warn".into(),
            format: LogFormat::Text,
            redact_keys: tasker_domain::redact::DEFAULT_SENSITIVE_KEYS
                .iter()
                .map(|key| (*key).to_owned())
                .collect(),
        }
    }
}

impl LogSettings {
    /// The redactor `redact_keys` describe.
    pub(crate) fn redactor(&self) -> tasker_domain::Redactor {
        tasker_domain::Redactor::new(&self.redact_keys)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable.
    Text,
    /// JSON lines.
    Json,
}

/// Loads settings from `config` (or `./tasker.toml` when present) and the environment.
pub(crate) fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
    load_from(config, Env::raw())
}

fn load_from(config: Option<&Path>, env: Env) -> anyhow::Result<Settings> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    match config {
        Some(path) => {
            if !path.exists() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        None => figment = figment.merge(Toml::file("tasker.toml")),
    }
    let database_url = env
        .clone()
        .only(&["TASKER_DATABASE_URL"])
        .map(|_| "database.url".into());
    // The client's short names; `TASKER_CLIENT__*` (merged after them) wins when both are set.
    let client = env
        .clone()
        .only(&["TASKER_SERVER", "TASKER_TOKEN", "TASKER_API_KEY"]);
    let client = client.map(|key| {
        let key = key.as_str().to_ascii_lowercase();
        format!("client.{}", key.trim_start_matches("tasker_")).into()
    });
    let nested = env.filter(|key| {
        let key = key.as_str().to_ascii_uppercase();
        key.starts_with("TASKER_") && key.contains("__")
    });
    let nested = nested.map(|key| {
        key.as_str()
            .to_ascii_lowercase()
            .trim_start_matches("tasker_")
            .replace("__", ".")
            .into()
    });
    figment
        .merge(database_url)
        .merge(client)
        .merge(nested)
        .extract()
        .map_err(|err| anyhow::anyhow!("invalid configuration: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn layers_apply_in_order_and_typos_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tasker.toml", "[engine]\nlease = 12.5\nmax_concurrent_steps = 4\n[database]\nurl = \"sqlite://from-file.db\"\n")?;
            jail.set_env("TASKER_ENGINE__MAX_CONCURRENT_STEPS", "9");
            let settings = load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.engine.lease, Duration::from_millis(12_500));
            assert_eq!(
                settings.engine.max_concurrent_steps, 9,
                "the environment wins over the file"
            );
            assert_eq!(settings.database.url, "sqlite://from-file.db");
            jail.set_env("TASKER_DATABASE_URL", "postgres://db/x");
            assert_eq!(
                load(None).map_err(|e| e.to_string())?.database.url,
                "postgres://db/x"
            );
            jail.create_file("typo.toml", "[engine]\nleese = 1\n")?;
            let err = load(Some(Path::new("typo.toml"))).unwrap_err().to_string();
            assert!(err.contains("leese"), "{err}");
            let err = load(Some(Path::new("missing.toml")))
                .unwrap_err()
                .to_string();
            assert_eq!(err, "configuration file missing.toml does not exist");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn client_settings_come_from_the_file_and_the_short_variables_and_stay_secret() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                load(None).map_err(|e| e.to_string())?.client,
                ClientSettings::default()
            );
            jail.create_file(
                "tasker.toml",
                "[client]\nserver = \"http://tasker.internal:9000\"\napi_key = \"from-file\"\n",
            )?;
            jail.set_env("TASKER_TOKEN", "a.jwt.token");
            let client = load(None).map_err(|e| e.to_string())?.client;
            assert_eq!(client.server, "http://tasker.internal:9000");
            assert_eq!(
                client.token.as_ref().map(|t| t.expose()),
                Some("a.jwt.token")
            );
            assert_eq!(
                client.api_key.as_ref().map(|k| k.expose()),
                Some("from-file")
            );
            let debug = format!("{client:?}");
            assert!(
                !debug.contains("a.jwt.token") && !debug.contains("from-file"),
                "{debug}"
            );
            jail.set_env("TASKER_SERVER", "http://from-env:1");
            jail.set_env("TASKER_CLIENT__API_KEY", "nested");
            let client = load(None).map_err(|e| e.to_string())?.client;
            assert_eq!(client.server, "http://from-env:1");
            assert_eq!(client.api_key.as_ref().map(|k| k.expose()), Some("nested"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn metrics_settings_load_and_a_bad_auth_names_the_key() {
        figment::Jail::expect_with(|jail| {
            let settings = load(None).map_err(|e| e.to_string())?;
            assert!(settings.metrics.enabled);
            assert_eq!(settings.metrics.auth, None);
            jail.create_file(
                "tasker.toml",
                "[metrics]\nenabled = false\nauth = \"api\"\n",
            )?;
            let settings = load(None).map_err(|e| e.to_string())?;
            assert!(!settings.metrics.enabled);
            assert_eq!(settings.metrics.auth, Some(tasker_api::EndpointAuth::Api));
            jail.set_env("TASKER_METRICS__AUTH", "basic");
            let err = load(None).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains("metrics.auth") && err.contains("basic"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_deployment_configs_load_and_open_metrics_to_their_scraper() {
        for file in ["deploy/k8s/base/tasker.toml", "deploy/compose/tasker.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(file);
            let settings = load_from(Some(&path), Env::prefixed("TASKER_TEST_NOTHING_"))
                .unwrap_or_else(|err| panic!("{file}: {err:#}"));
            assert!(settings.metrics.enabled, "{file}");
            assert_eq!(
                settings.metrics.auth,
                Some(tasker_api::EndpointAuth::None),
                "{file}: Prometheus scrapes without credentials"
            );
        }
    }

    #[test]
    fn a_hostile_acquire_timeout_is_refused_with_the_cap() {
        let settings = DatabaseSettings {
            acquire_timeout: 1e13,
            ..Default::default()
        };
        assert_eq!(
            settings.connect_options().unwrap_err().to_string(),
            "database.acquire_timeout of 10000000000000 s exceeds the maximum of 3600 s (1 h)"
        );
        let settings = DatabaseSettings {
            acquire_timeout: 3600.0,
            ..Default::default()
        };
        assert!(settings.connect_options().is_ok());
    }
}
