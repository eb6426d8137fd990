//! [`ConfigError`]: a setting whose value is out of range or malformed, named by its dotted
//! path in `tasker.toml`, so callers can tell which setting failed without parsing a message.

/// A configuration value that is out of range or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting's dotted path in `tasker.toml`: `engine.lease`, `cache.ttl`, ...
    pub setting: String,
    /// The whole explanation, naming the setting, what was given and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`; `message` is the whole sentence users read.
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_a_field_and_the_message_is_shown_whole() {
        let err = ConfigError::new("engine.lease", "engine.lease must be at least 0.1 s");
        assert_eq!(err.setting, "engine.lease");
        assert_eq!(err.to_string(), "engine.lease must be at least 0.1 s");
    }
}
