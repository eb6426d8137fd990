//! What every handler shares, and the API's settings.

use std::time::Duration;
use tasker_domain::ConfigError;

use serde::{Deserialize, Serialize};
use tasker_auth::AccessControl;
use tasker_engine::Engine;

/// The `[api]` section of `tasker.toml`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Largest request body, in bytes (413 above it).
    pub body_limit: usize,
    /// Seconds a request may take before it is answered with 408 (event streams excepted).
    #[cfg_attr(feature = "schema", schemars(extend("x-unit" = "seconds")))]
    pub request_timeout: f64,
    /// Origins allowed to call the API from a browser (CORS); empty (the default) turns CORS
    /// off. `*` allows any origin.
    pub cors_origins: Vec<String>,
    /// Largest page a listing returns.
    pub max_page_size: u64,
    /// Serve Swagger UI at `/docs` beside `/openapi.json`.
    pub swagger_ui: bool,
    /// Gzip responses when the client accepts it.
    pub compression: bool,
    /// Serve the web dashboard at `/ui` (docs/dashboard.md) and accept its sign-in sessions.
    pub ui: bool,
    /// Seconds a dashboard session lasts after sign-in (never longer than the token it was
    /// made from).
    #[cfg_attr(feature = "schema", schemars(extend("x-unit" = "seconds")))]
    pub session_ttl: f64,
    /// Mark the session cookie `Secure` on every response; when off it is marked `Secure`
    /// only when the request came over TLS (`X-Forwarded-Proto: https` from a proxy).
    pub secure_cookies: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            request_timeout: 30.0,
            cors_origins: Vec::new(),
            max_page_size: 200,
            swagger_ui: true,
            compression: true,
            ui: true,
            session_ttl: 8.0 * 3600.0,
            secure_cookies: false,
        }
    }
}

impl ApiSettings {
    /// The request timeout as a duration; errors name the key.
    pub fn request_timeout(&self) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(self.request_timeout)
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                ConfigError::new(
                    "api.request_timeout",
                    format!(
                        "api.request_timeout must be between 0 and 3600 seconds, got {}",
                        self.request_timeout
                    ),
                )
            })
    }

    /// How long a dashboard session lasts; errors name the key.
    pub fn session_ttl(&self) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(self.session_ttl)
            .ok()
            .filter(|d| *d >= Duration::from_secs(60) && *d <= Duration::from_secs(30 * 86_400))
            .ok_or_else(|| {
                ConfigError::new(
                    "api.session_ttl",
                    format!(
                        "api.session_ttl must be between 60 seconds and 30 days, got {}",
                        self.session_ttl
                    ),
                )
            })
    }

    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.request_timeout()?;
        self.session_ttl()?;
        if self.body_limit < 1024 {
            return Err(ConfigError::new(
                "api.body_limit",
                format!(
                    "api.body_limit must be at least 1024 bytes, got {}",
                    self.body_limit
                ),
            ));
        }
        if self.max_page_size == 0 {
            return Err(ConfigError::new(
                "api.max_page_size",
                "api.max_page_size must be at least 1",
            ));
        }
        for origin in &self.cors_origins {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::new(
                    "api.cors_origins",
                    format!("api.cors_origins: `{origin}` is not a valid origin"),
                ));
            }
        }
        Ok(())
    }
}

/// The `[health]` section of `tasker.toml`: who reads `/health/status` at the server's root,
/// and the thresholds of its verdict.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// `none` or `api` for `/health/status` at the root (under the API's prefix it always
    /// needs `tasker.health_status:index`); when absent, `none` in development and `api` in
    /// production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_auth: Option<crate::EndpointAuth>,
    /// The report says unhealthy when this share of the pool's connections, or more, is in
    /// use (0 to 1).
    pub max_pool_utilisation: f64,
    /// The report says unhealthy when more claims than this are past their lease.
    pub max_expired_claims: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            status_auth: None,
            max_pool_utilisation: 0.9,
            max_expired_claims: 10,
        }
    }
}

impl HealthSettings {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.max_pool_utilisation > 0.0 && self.max_pool_utilisation <= 1.0) {
            return Err(ConfigError::new(
                "health.max_pool_utilisation",
                format!(
                    "health.max_pool_utilisation must be more than 0 and at most 1, got {}",
                    self.max_pool_utilisation
                ),
            ));
        }
        Ok(())
    }
}

/// Shared by every handler.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) access: AccessControl,
    pub(crate) settings: ApiSettings,
    pub(crate) health: HealthSettings,
    pub(crate) cache: crate::Cache,
    /// How long computed reports are reused.
    pub(crate) cache_ttl: Duration,
    /// Whether this process runs a coordinator the readiness probe must see alive.
    pub(crate) expects_coordinator: bool,
}
