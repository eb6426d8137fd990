//! Engine settings. Durations are seconds (fractions allowed) in configuration files.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasker_domain::BackoffPolicy;

/// How an engine claims, runs and records work.
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
    pub lease: Duration,
    /// Fallback wake-up for work created by other processes.
    #[serde(with = "tasker_domain::serde_secs::secs")]
    pub poll_interval: Duration,
    /// Timeout for steps whose template sets none (`None`: no limit).
    #[serde(with = "tasker_domain::serde_secs::optional_secs")]
    pub default_step_timeout: Option<Duration>,
    /// Backoff between attempts.
    pub backoff: BackoffPolicy,
    /// Template environment whose overrides apply (`environments:` in templates).
    pub environment: Option<String>,
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
            default_step_timeout: None,
            backoff: BackoffPolicy::default(),
            environment: None,
        }
    }
}

impl EngineConfig {
    /// Checks the numbers make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_concurrent_steps", self.max_concurrent_steps),
            (
                "max_concurrent_steps_per_task",
                self.max_concurrent_steps_per_task,
            ),
            ("claim_batch_size", self.claim_batch_size),
            ("record_batch_size", self.record_batch_size),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("engine.{name} must be at least 1"));
            }
        }
        if self.lease < Duration::from_millis(100) {
            return Err(format!(
                "engine.lease must be at least 0.1 s, got {:?}",
                self.lease
            ));
        }
        if self.poll_interval.is_zero() {
            return Err("engine.poll_interval must be positive".into());
        }
        self.backoff
            .validate()
            .map_err(|e| format!("engine.backoff: {e}"))
    }
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
        assert_eq!(
            bad.validate().unwrap_err(),
            "engine.claim_batch_size must be at least 1"
        );
        assert!(EngineConfig::default().validate().is_ok());
    }
}
