//! Configuration: defaults, then `tasker.toml` (or `--config FILE`), then `TASKER_*`
//! environment variables (`TASKER_DATABASE_URL`, the client's `TASKER_SERVER`, `TASKER_TOKEN`
//! and `TASKER_API_KEY`, and `TASKER_<SECTION>__<KEY>` for the rest), then command-line flags.
//! See docs/configuration.md.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tasker_engine::EngineConfig;
use tasker_persistence::{ConnectOptions, LeaseClock};

/// Everything the binary reads from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    /// Where tasks are stored.
    pub database: DatabaseSettings,
    /// How the engine claims, runs and records steps.
    pub engine: EngineConfig,
    /// Log lines: the filter, the format and what is redacted.
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
    /// GraphQL beside REST: GraphiQL, introspection and the guardrails.
    pub graphql: tasker_api::GraphqlSettings,
    /// Where the built-in `tasker::http` handler may connect and how much it reads.
    pub http_handler: tasker_engine::HttpPolicy,
}

/// `[templates]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSettings {
    /// The address `tasker serve` listens on (`--bind` overrides it).
    pub bind: String,
    /// `development` (the default), `test` or `production`: each has its own defaults, and
    /// production refuses open access unless `auth.allow_open_in_production` says otherwise.
    /// `TASKER_PROFILE` sets it too.
    pub profile: tasker_auth::Profile,
    /// How many `tasker` processes the deployment runs on this database (1 unless set). The
    /// profile rules use it: several replicas need a database they can share.
    pub replicas: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            profile: tasker_auth::Profile::Development,
            replicas: 1,
        }
    }
}

impl Settings {
    /// The defaults of `profile`. Development is permissive; test makes runs repeatable (no
    /// backoff jitter); production logs JSON, hides the Swagger UI page, serves smaller pages
    /// and answers slow requests sooner (and `/metrics` asks for credentials).
    pub(crate) fn for_profile(profile: tasker_auth::Profile) -> Self {
        let mut settings = Settings::default();
        settings.server.profile = profile;
        match profile {
            tasker_auth::Profile::Development => {}
            tasker_auth::Profile::Test => {
                settings.engine.backoff.jitter = 0.0;
            }
            tasker_auth::Profile::Production => {
                settings.log.level = "info".into();
                settings.log.format = LogFormat::Json;
                settings.api.swagger_ui = false;
                settings.api.max_page_size = 100;
                settings.api.request_timeout = 15.0;
            }
        }
        settings
    }

    /// The profile's rules that involve several sections; each error names the settings.
    /// (Authentication's own rule, no `open` in production, is checked where auth is built.)
    pub(crate) fn profile_rules(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.server.replicas == 0 {
            errors.push("server.replicas must be at least 1".to_owned());
        }
        if self.server.profile == tasker_auth::Profile::Production
            && self.server.replicas > 1
            && self.database.url.starts_with("sqlite:")
        {
            errors.push(format!(
                "server.replicas = {} in the production profile needs a shared database: database.url is SQLite, which one process at a time may run the engine on; use postgres://",
                self.server.replicas
            ));
        }
        if self.server.profile == tasker_auth::Profile::Production
            && self.server.replicas > 1
            && self.database.lease_clock == LeaseClockSetting::Process
        {
            errors.push(format!(
                "server.replicas = {} in the production profile needs database.lease_clock = \"database\": on each process's own clock, a replica whose clock is ahead takes back the others' live claims; remove database.lease_clock = \"process\"",
                self.server.replicas
            ));
        }
        if self.server.profile == tasker_auth::Profile::Production
            && self.server.replicas > 1
            && self.cache.redis().is_none()
        {
            errors.push(format!(
                "server.replicas = {} in the production profile needs a shared cache: without cache.redis_url each replica caches alone, so a revoked token stays accepted elsewhere for up to cache.ttl; set cache.redis_url",
                self.server.replicas
            ));
        }
        errors
    }

    /// What startup checks without connecting anywhere (authentication is checked where it is
    /// built): every error, each naming its setting. Empty when these are valid.
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            errors.push(format!(
                "database.url must start with sqlite:, postgres:// or postgresql://, got `{}`",
                tasker_persistence::redact_url(url)
            ));
        }
        if let Err(err) = self.database.connect_options() {
            errors.push(err.to_string());
        }
        if let Err(err) = self.engine.validate() {
            errors.push(format!("engine: {err}"));
        }
        if let Err(err) = self.api.validate() {
            errors.push(err.to_string());
        }
        if let Err(err) = self.health.validate() {
            errors.push(err.to_string());
        }
        if let Err(err) = self.graphql.validate() {
            errors.push(err.to_string());
        }
        if let Err(err) = self.cache.validate() {
            errors.push(err.to_string());
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(format!("log.level `{}`: {err}", self.log.level));
        }
        if self.bind_address().is_none() {
            errors.push(format!(
                "server.bind must be HOST:PORT, got `{}`",
                self.server.bind
            ));
        }
        errors.extend(self.profile_rules());
        errors
    }

    fn bind_address(&self) -> Option<u16> {
        let (host, port) = self.server.bind.rsplit_once(':')?;
        (!host.is_empty()).then_some(())?;
        port.parse().ok()
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DatabaseSettings {
    /// `sqlite://tasker.db?mode=rwc` (the default) or `postgres://...`.
    pub url: String,
    /// Largest connection pool (on SQLite the pool for reads; writes have one connection more).
    pub max_connections: u32,
    /// Connections kept open.
    pub min_connections: u32,
    /// Seconds to wait for a pooled connection (at most 3600).
    #[schemars(extend("x-unit" = "seconds"))]
    pub acquire_timeout: f64,
    /// Whose clock decides when a claim's lease expires: `database` (the default; every process
    /// on the database agrees, whatever its own clock says) or `process` (each process's own
    /// clock: only for a single process, since one with a skewed clock would take back the
    /// others' live claims or leave lapsed ones).
    pub lease_clock: LeaseClockSetting,
}

/// `database.lease_clock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LeaseClockSetting {
    /// The database's clock.
    Database,
    /// This process's clock.
    Process,
}

impl From<LeaseClockSetting> for LeaseClock {
    fn from(setting: LeaseClockSetting) -> Self {
        match setting {
            LeaseClockSetting::Database => LeaseClock::Database,
            LeaseClockSetting::Process => LeaseClock::Caller,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://tasker.db?mode=rwc".into(),
            max_connections: 16,
            min_connections: 1,
            acquire_timeout: 30.0,
            lease_clock: LeaseClockSetting::Database,
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
            lease_clock: self.lease_clock.into(),
            ..ConnectOptions::default()
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable.
    Text,
    /// JSON lines.
    Json,
}

/// The JSON Schema (draft 2020-12) of `tasker.toml`, from the settings types and their doc
/// comments: unknown keys are refused, as the loader refuses them, and each key's default is
/// the development profile's. `tasker config schema` prints it; docs/reference/configuration.md
/// is generated from it.
pub(crate) fn json_schema() -> serde_json::Value {
    schemars::schema_for!(Settings).to_value()
}

/// Loads settings from `config` (or `./tasker.toml` when present) and the environment.
pub(crate) fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
    Ok(load_layers(config, &environment())?.settings)
}

/// The process's environment variables (those that are valid UTF-8).
pub(crate) fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Settings with where each value came from.
pub(crate) struct Loaded {
    /// The effective settings.
    pub settings: Settings,
    figment: Figment,
}

impl Loaded {
    /// Where the value at `key` (`database.url`) came from: `default (production profile)`,
    /// `file tasker.toml`, `env TASKER_DATABASE_URL`, `file /run/secrets/db_url (from
    /// TASKER_DATABASE_URL_FILE)`.
    pub(crate) fn source_of(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(metadata) => match &metadata.source {
                Some(figment::Source::File(path)) => format!("file {}", path.display()),
                _ => metadata.name.to_string(),
            },
            None => self.default_source(),
        }
    }

    fn default_source(&self) -> String {
        format!("default ({} profile)", self.settings.server.profile)
    }
}

/// One setting from one environment variable (or the file it names), with that as its source.
struct EnvSetting {
    key: String,
    value: figment::value::Value,
    source: String,
}

impl figment::Provider for EnvSetting {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.source.clone())
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let nested = figment::util::nest(&self.key, self.value.clone());
        let dict = nested
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("{} is not a setting", self.key)))?;
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// The setting an environment variable sets: `TASKER_DATABASE_URL` and `TASKER_PROFILE`, the
/// client's `TASKER_SERVER`, `TASKER_TOKEN` and `TASKER_API_KEY`, and `TASKER_<SECTION>__<KEY>`.
/// The second value orders the layers: the short names first, so the nested form wins.
fn setting_for(name: &str) -> Option<(String, u8)> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix("TASKER_")?;
    match rest {
        "DATABASE_URL" => Some(("database.url".into(), 0)),
        "PROFILE" => Some(("server.profile".into(), 0)),
        "SERVER" | "TOKEN" | "API_KEY" => {
            Some((format!("client.{}", rest.to_ascii_lowercase()), 0))
        }
        _ if rest.contains("__") => Some((rest.to_ascii_lowercase().replace("__", "."), 1)),
        _ => None,
    }
}

/// A `*_FILE` variable's contents, without trailing line breaks.
fn read_secret_file(variable: &str, path: &str) -> anyhow::Result<String> {
    if path.is_empty() {
        anyhow::bail!("{variable} is set but empty: it must name a file");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{variable}: cannot read {path}"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// The environment's settings, in the order they are merged. `NAME_FILE=/path` sets what
/// `NAME` would, from the file's contents; setting both is an error.
fn env_settings(env: &[(String, String)]) -> anyhow::Result<Vec<EnvSetting>> {
    let mut found: Vec<(u8, String, EnvSetting)> = Vec::new();
    let set: std::collections::HashSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for (name, value) in env {
        if let Some(base) = name.strip_suffix("_FILE")
            && let Some((key, order)) = setting_for(base)
        {
            if set.contains(base) {
                anyhow::bail!(
                    "both {base} and {name} are set; set only one of them (the value or the file holding it)"
                );
            }
            let text = read_secret_file(name, value)?;
            found.push((
                order,
                name.clone(),
                EnvSetting {
                    key,
                    value: text.parse().unwrap_or_else(|never| match never {}),
                    source: format!("file {value} (from {name})"),
                },
            ));
        } else if let Some((key, order)) = setting_for(name) {
            found.push((
                order,
                name.clone(),
                EnvSetting {
                    key,
                    value: value.parse().unwrap_or_else(|never| match never {}),
                    source: format!("env {name}"),
                },
            ));
        }
    }
    // A stable order: the short names, then the nested ones, each sorted by variable name.
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(found.into_iter().map(|(_, _, setting)| setting).collect())
}

/// Built-in defaults of `profile`'s settings.
struct Defaults(Settings);

impl figment::Provider for Defaults {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("default ({} profile)", self.0.server.profile))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// Loads the layers: `profile`'s defaults, the file, the environment (with `*_FILE`). The
/// profile is read from the same layers first (`TASKER_PROFILE` or `server.profile`).
pub(crate) fn load_layers(
    config: Option<&Path>,
    env: &[(String, String)],
) -> anyhow::Result<Loaded> {
    let file = match config {
        Some(path) => {
            if !path.exists() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            path.to_path_buf()
        }
        None => "tasker.toml".into(),
    };
    let env = env_settings(env)?;
    let layered = |defaults: Settings| {
        let mut figment = Figment::from(Defaults(defaults)).merge(Toml::file(&file));
        for setting in &env {
            figment = figment.merge(EnvSetting {
                key: setting.key.clone(),
                value: setting.value.clone(),
                source: setting.source.clone(),
            });
        }
        figment
    };
    let profile: tasker_auth::Profile = layered(Settings::default())
        .extract_inner("server.profile")
        .map_err(|err| anyhow::anyhow!("invalid configuration: {err}"))?;
    let figment = layered(Settings::for_profile(profile));
    let settings = figment
        .extract()
        .map_err(|err| anyhow::anyhow!("invalid configuration: {err}"))?;
    Ok(Loaded { settings, figment })
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
            let settings = load_layers(Some(&path), &[])
                .unwrap_or_else(|err| panic!("{file}: {err:#}"))
                .settings;
            assert!(settings.metrics.enabled, "{file}");
            assert_eq!(
                settings.metrics.auth,
                Some(tasker_api::EndpointAuth::None),
                "{file}: Prometheus scrapes without credentials"
            );
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn any_setting_can_come_from_a_file_named_by_a_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("db_url");
        std::fs::write(&url, "postgres://tasker:pw@db/tasker\r\n").unwrap();
        let secret = dir.path().join("jwt");
        std::fs::write(&secret, "s3cret-s3cret-s3cret-s3cret-s3cret\n").unwrap();
        let lease = dir.path().join("lease");
        std::fs::write(&lease, "7.5\n").unwrap();
        let config = dir.path().join("none.toml");
        std::fs::write(&config, "").unwrap();
        for variable in ["TASKER_DATABASE__URL_FILE", "TASKER_DATABASE_URL_FILE"] {
            let loaded = load_layers(
                Some(&config),
                &env(&[
                    (variable, url.to_str().unwrap()),
                    ("TASKER_AUTH__JWT__SECRET_FILE", secret.to_str().unwrap()),
                    ("TASKER_ENGINE__LEASE_FILE", lease.to_str().unwrap()),
                ]),
            )
            .unwrap();
            let settings = &loaded.settings;
            assert_eq!(
                settings.database.url, "postgres://tasker:pw@db/tasker",
                "{variable}"
            );
            assert_eq!(
                settings.auth.jwt.secret.as_ref().map(|s| s.expose()),
                Some("s3cret-s3cret-s3cret-s3cret-s3cret")
            );
            assert_eq!(settings.engine.lease, Duration::from_millis(7_500));
            assert_eq!(
                loaded.source_of("database.url"),
                format!("file {} (from {variable})", url.display())
            );
        }
    }

    #[test]
    fn a_file_variable_that_cannot_be_read_or_doubles_a_value_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("none.toml");
        std::fs::write(&config, "").unwrap();
        let missing = dir.path().join("missing");
        let err = load_layers(
            Some(&config),
            &env(&[("TASKER_AUTH__JWT__SECRET_FILE", missing.to_str().unwrap())]),
        )
        .err()
        .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!(
                "TASKER_AUTH__JWT__SECRET_FILE: cannot read {}:",
                missing.display()
            )),
            "{text}"
        );
        let present = dir.path().join("url");
        std::fs::write(&present, "sqlite://x.db").unwrap();
        let err = load_layers(
            Some(&config),
            &env(&[
                ("TASKER_DATABASE_URL", "sqlite://y.db"),
                ("TASKER_DATABASE_URL_FILE", present.to_str().unwrap()),
            ]),
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "both TASKER_DATABASE_URL and TASKER_DATABASE_URL_FILE are set; set only one of them (the value or the file holding it)"
        );
        let err = load_layers(Some(&config), &env(&[("TASKER_TOKEN_FILE", "")]))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "TASKER_TOKEN_FILE is set but empty: it must name a file"
        );
    }

    #[test]
    fn each_profile_has_its_defaults_and_explicit_settings_win() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tasker.toml");
        std::fs::write(&config, "[api]\nswagger_ui = true\n").unwrap();
        let development = load_layers(Some(&config), &[]).unwrap().settings;
        assert_eq!(
            development.server.profile,
            tasker_auth::Profile::Development
        );
        assert_eq!(development.log.format, LogFormat::Text);
        assert!(development.engine.backoff.jitter > 0.0);
        let test = load_layers(Some(&config), &env(&[("TASKER_PROFILE", "test")]))
            .unwrap()
            .settings;
        assert_eq!(test.engine.backoff.jitter, 0.0, "no jitter: repeatable");
        let production = load_layers(
            Some(&config),
            &env(&[("TASKER_SERVER__PROFILE", "production")]),
        )
        .unwrap();
        assert_eq!(production.settings.log.format, LogFormat::Json);
        assert_eq!(production.settings.api.max_page_size, 100);
        assert!(
            production.settings.api.swagger_ui,
            "the file's explicit value wins over the profile's default"
        );
        assert_eq!(
            production.source_of("api.max_page_size"),
            "default (production profile)"
        );
        let err = load_layers(Some(&config), &env(&[("TASKER_PROFILE", "staging")]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("staging") && err.contains("server.profile"),
            "{err}"
        );
    }

    #[test]
    fn production_replicas_need_a_shared_database_and_a_shared_cache() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tasker.toml");
        std::fs::write(
            &config,
            "[server]\nprofile = \"production\"\nreplicas = 3\n[database]\nurl = \"postgres://db/tasker\"\n",
        )
        .unwrap();
        let settings = load_layers(Some(&config), &[]).unwrap().settings;
        let rules = settings.profile_rules();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert!(
            rules[0]
                .starts_with("server.replicas = 3 in the production profile needs a shared cache"),
            "{rules:?}"
        );
        let shared = load_layers(
            Some(&config),
            &env(&[("TASKER_CACHE__REDIS_URL", "redis://cache:6379/0")]),
        )
        .unwrap()
        .settings;
        assert_eq!(shared.profile_rules(), Vec::<String>::new());
        let bad = load_layers(
            Some(&config),
            &env(&[
                ("TASKER_CACHE__TTL", "soon"),
                ("TASKER_HEALTH__MAX_POOL_UTILISATION", "2"),
            ]),
        )
        .unwrap()
        .settings
        .validate();
        assert!(bad.iter().any(|e| e.starts_with("cache.ttl")), "{bad:?}");
        assert!(
            bad.iter()
                .any(|e| e.starts_with("health.max_pool_utilisation")),
            "{bad:?}"
        );
    }

    #[test]
    fn the_lease_clock_is_the_database_s_unless_set_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tasker.toml");
        std::fs::write(&config, "[database]\nurl = \"postgres://db/tasker\"\n").unwrap();
        let settings = load_layers(Some(&config), &[]).unwrap().settings;
        assert_eq!(settings.database.lease_clock, LeaseClockSetting::Database);
        assert_eq!(
            settings.database.connect_options().unwrap().lease_clock,
            LeaseClock::Database
        );
        let settings = load_layers(
            Some(&config),
            &env(&[("TASKER_DATABASE__LEASE_CLOCK", "process")]),
        )
        .unwrap()
        .settings;
        assert_eq!(
            settings.database.connect_options().unwrap().lease_clock,
            LeaseClock::Caller
        );
        let err = load_layers(
            Some(&config),
            &env(&[("TASKER_DATABASE__LEASE_CLOCK", "wall")]),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("wall") && err.contains("database.lease_clock"),
            "{err}"
        );

        // Several production replicas on their own clocks are refused.
        std::fs::write(
            &config,
            "[server]\nprofile = \"production\"\nreplicas = 2\n[database]\nurl = \"postgres://db/tasker\"\nlease_clock = \"process\"\n[cache]\nredis_url = \"redis://cache:6379/0\"\n",
        )
        .unwrap();
        let rules = load_layers(Some(&config), &[])
            .unwrap()
            .settings
            .profile_rules();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert!(
            rules[0].starts_with(
                "server.replicas = 2 in the production profile needs database.lease_clock = \"database\""
            ),
            "{rules:?}"
        );
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
