//! Engine settings. Durations are seconds (fractions allowed) in configuration files.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasker_domain::duration::{MAX_STEP_TIMEOUT, describe};
use tasker_domain::{BackoffPolicy, ConfigError};

/// The longest `engine.lease`: 1 hour. A longer lease only delays recovery from a crash.
pub const MAX_LEASE: Duration = Duration::from_secs(60 * 60);
/// The longest `engine.poll_interval`: 1 minute.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The longest `engine.shutdown_grace`: 1 hour.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(60 * 60);
/// The default `engine.default_step_timeout`: 5 minutes.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// How an engine claims, runs and records work.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Step attempts running at once in this process.
    pub max_concurrent_steps: usize,
    /// Step attempts of one task running at once in this process.
    pub max_concurrent_steps_per_task: usize,
    /// Most steps claimed per claim statement.
    pub claim_batch_size: usize,
    /// Most outcomes recorded per transaction (group commit).
    pub record_batch_size: usize,
    /// How long a claim holds before another engine may take the step over.
    #[serde(with = "tasker_domain::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "tasker_domain::serde_secs::secs::schema")
    )]
    pub lease: Duration,
    /// Fallback wake-up for work created by other processes.
    #[serde(with = "tasker_domain::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "tasker_domain::serde_secs::secs::schema")
    )]
    pub poll_interval: Duration,
    /// How often the runtime switches (pauses, namespace limits) are read from the database:
    /// every process honours a change within this (at most 1 min).
    #[serde(with = "tasker_domain::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "tasker_domain::serde_secs::secs::schema")
    )]
    pub switch_refresh: Duration,
    /// Timeout for steps whose template sets none (at most 24 h).
    #[serde(with = "tasker_domain::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "tasker_domain::serde_secs::secs::schema")
    )]
    pub default_step_timeout: Duration,
    /// How long a draining engine lets running attempts finish before it gives their claims
    /// back (at most 1 h; 0 gives them back at once).
    #[serde(with = "tasker_domain::serde_secs::secs")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "tasker_domain::serde_secs::secs::schema")
    )]
    pub shutdown_grace: Duration,
    /// Backoff between attempts.
    pub backoff: BackoffPolicy,
    /// Template environment whose overrides apply (`environments:` in templates).
    pub environment: Option<String>,
    /// Most bytes of a task's context (compact JSON), checked when the task is created.
    pub max_context_bytes: usize,
    /// Most bytes of one attempt's results (compact JSON); larger results fail the step with
    /// the permanent `RESULT_TOO_LARGE`.
    pub max_result_bytes: usize,
    /// Most bytes of one step's `handler_config` (compact JSON), checked at registration.
    pub max_handler_config_bytes: usize,
    /// Most steps in one template, checked at registration.
    pub max_steps_per_template: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent_steps: 128,
            max_concurrent_steps_per_task: 64,
            claim_batch_size: 128,
            record_batch_size: 256,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            switch_refresh: Duration::from_secs(1),
            default_step_timeout: DEFAULT_STEP_TIMEOUT,
            shutdown_grace: Duration::from_secs(30),
            backoff: BackoffPolicy::default(),
            environment: None,
            max_context_bytes: 1024 * 1024,
            max_result_bytes: 1024 * 1024,
            max_handler_config_bytes: 64 * 1024,
            max_steps_per_template: 10_000,
        }
    }
}

impl EngineConfig {
    /// Checks the numbers make sense; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_concurrent_steps", self.max_concurrent_steps),
            (
                "max_concurrent_steps_per_task",
                self.max_concurrent_steps_per_task,
            ),
            ("claim_batch_size", self.claim_batch_size),
            ("record_batch_size", self.record_batch_size),
            ("max_context_bytes", self.max_context_bytes),
            ("max_result_bytes", self.max_result_bytes),
            ("max_handler_config_bytes", self.max_handler_config_bytes),
            ("max_steps_per_template", self.max_steps_per_template),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(invalid(name, format!("engine.{name} must be at least 1")));
            }
        }
        if self.lease < Duration::from_millis(100) {
            return Err(invalid(
                "lease",
                format!("engine.lease must be at least 0.1 s, got {:?}", self.lease),
            ));
        }
        if self.lease > MAX_LEASE {
            return Err(too_long("lease", self.lease, MAX_LEASE, "1 h"));
        }
        if self.poll_interval.is_zero() {
            return Err(invalid(
                "poll_interval",
                "engine.poll_interval must be positive",
            ));
        }
        if self.poll_interval > MAX_POLL_INTERVAL {
            return Err(too_long(
                "poll_interval",
                self.poll_interval,
                MAX_POLL_INTERVAL,
                "1 min",
            ));
        }
        if self.switch_refresh.is_zero() {
            return Err(invalid(
                "switch_refresh",
                "engine.switch_refresh must be positive",
            ));
        }
        if self.switch_refresh > MAX_POLL_INTERVAL {
            return Err(too_long(
                "switch_refresh",
                self.switch_refresh,
                MAX_POLL_INTERVAL,
                "1 min",
            ));
        }
        if self.shutdown_grace > MAX_SHUTDOWN_GRACE {
            return Err(too_long(
                "shutdown_grace",
                self.shutdown_grace,
                MAX_SHUTDOWN_GRACE,
                "1 h",
            ));
        }
        if self.default_step_timeout.is_zero() {
            return Err(invalid(
                "default_step_timeout",
                "engine.default_step_timeout must be positive",
            ));
        }
        if self.default_step_timeout > MAX_STEP_TIMEOUT {
            return Err(too_long(
                "default_step_timeout",
                self.default_step_timeout,
                MAX_STEP_TIMEOUT,
                "24 h",
            ));
        }
        self.backoff
            .validate()
            .map_err(|e| invalid("backoff", format!("engine.backoff: {e}")))
    }
}

/// An error about `engine.{field}`.
fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("engine.{field}"), message)
}

fn too_long(field: &str, value: Duration, max: Duration, human: &str) -> ConfigError {
    invalid(
        field,
        format!(
            "engine.{field} of {} exceeds the maximum of {} ({human})",
            describe(value),
            describe(max)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_seconds_and_rejects_nonsense() {
        let config: EngineConfig =
            serde_json::from_str(r#"{"lease": 2.5, "max_concurrent_steps": 8}"#).unwrap();
        assert_eq!(
            (config.lease, config.max_concurrent_steps),
            (Duration::from_millis(2500), 8)
        );
        assert!(
            serde_json::from_str::<EngineConfig>(r#"{"leese": 2}"#)
                .unwrap_err()
                .to_string()
                .contains("leese")
        );
        let bad = EngineConfig {
            claim_batch_size: 0,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(
            (err.setting.as_str(), err.to_string().as_str()),
            (
                "engine.claim_batch_size",
                "engine.claim_batch_size must be at least 1"
            )
        );
        assert!(EngineConfig::default().validate().is_ok());
    }

    #[test]
    fn hostile_durations_are_refused_with_the_cap() {
        let check = |json: &str| {
            serde_json::from_str::<EngineConfig>(json)
                .unwrap()
                .validate()
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            check(r#"{"lease": 10000000000000}"#).unwrap(),
            "engine.lease of 10000000000000 s exceeds the maximum of 3600 s (1 h)"
        );
        assert_eq!(
            check(r#"{"poll_interval": 61}"#).unwrap(),
            "engine.poll_interval of 61 s exceeds the maximum of 60 s (1 min)"
        );
        assert_eq!(
            check(r#"{"default_step_timeout": 86400.5}"#).unwrap(),
            "engine.default_step_timeout of 86400.500 s exceeds the maximum of 86400 s (24 h)"
        );
        assert_eq!(
            check(r#"{"backoff": {"base": 1, "max": 1e13}}"#).unwrap(),
            "engine.backoff: backoff max of 10000000000000 s exceeds the maximum of 86400 s (24 h)"
        );
        assert_eq!(
            check(r#"{"lease": 3600, "poll_interval": 60, "default_step_timeout": 86400}"#),
            None
        );
        assert_eq!(
            EngineConfig::default().default_step_timeout,
            Duration::from_secs(300)
        );
        assert_eq!(
            check(r#"{"shutdown_grace": 3601}"#).unwrap(),
            "engine.shutdown_grace of 3601 s exceeds the maximum of 3600 s (1 h)"
        );
    }
}
