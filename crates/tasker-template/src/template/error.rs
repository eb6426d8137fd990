//! Template errors: each names what is wrong and where (file, line where known, step).

use std::fmt;

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateErrorKind {
    /// Not valid YAML, or a value of the wrong type.
    #[error("{message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// A key the format does not define (typos such as `retry_limit` land here).
    #[error("unknown key `{key}` in {context}{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it appeared (`task template`, `step template`, `environment override`, ...).
        context: String,
        /// The closest key the format defines.
        suggestion: Option<String>,
    },
    /// A required key is absent.
    #[error("missing required key `{key}`")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// The document has no content.
    #[error("template is empty")]
    EmptyDocument,
    /// No step templates are declared.
    #[error("template declares no step_templates")]
    NoSteps,
    /// A name field is blank.
    #[error("`{field}` must not be blank")]
    BlankName {
        /// Which field.
        field: &'static str,
    },
    /// Two step templates share a name.
    #[error("duplicate step name `{name}`")]
    DuplicateStep {
        /// The repeated name.
        name: String,
    },
    /// A dependency names no step of the template.
    #[error("depends on unknown step `{dependency}`{}", did_you_mean(.suggestion))]
    UnknownDependency {
        /// The missing step's name.
        dependency: String,
        /// The closest step name.
        suggestion: Option<String>,
    },
    /// Dependencies loop back on themselves.
    #[error("dependency cycle: {}", .steps.join(" -> "))]
    Cycle {
        /// The steps on the cycle, the first repeated at the end.
        steps: Vec<String>,
    },
    /// The version is not `MAJOR.MINOR.PATCH` semver.
    #[error("version `{value}` is not a semver version (MAJOR.MINOR.PATCH): {reason}")]
    InvalidVersion {
        /// The version as written.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `default_retry_limit` is below 1: a step always gets its first attempt.
    #[error("default_retry_limit must be at least 1 (it counts the first attempt), got {value}")]
    RetryLimitBelowOne {
        /// The limit as written.
        value: i64,
    },
    /// `default_retry_limit` is absurdly large.
    #[error("default_retry_limit must be at most {max}, got {value}")]
    RetryLimitTooLarge {
        /// The limit as written.
        value: i64,
        /// The largest accepted limit.
        max: u32,
    },
    /// A `timeout` that is not a positive duration.
    #[error(
        "invalid timeout `{value}`: expected a positive number of seconds or a duration such as `500ms`, `30s`, `5m`, `1h`"
    )]
    InvalidTimeout {
        /// The timeout as written.
        value: String,
    },
    /// A `timeout` longer than [`tasker_domain::duration::MAX_STEP_TIMEOUT`].
    #[error(
        "timeout of {} in template {template} exceeds the maximum step timeout of {} (24 h)",
        tasker_domain::duration::describe(*.value),
        tasker_domain::duration::describe(tasker_domain::duration::MAX_STEP_TIMEOUT)
    )]
    TimeoutTooLong {
        /// The template, `namespace/name@version`.
        template: String,
        /// The timeout as given.
        value: std::time::Duration,
    },
    /// A step or dependency is missing from `named_steps`.
    #[error("`{name}` is not listed in named_steps")]
    NotInNamedSteps {
        /// The unlisted step name.
        name: String,
    },
    /// The context `schema` is not a usable JSON Schema.
    #[error("invalid context schema: {message}")]
    InvalidSchema {
        /// The schema compiler's description.
        message: String,
    },
    /// An environment overrides a step the template does not declare.
    #[error("overrides unknown step `{step}`{}", did_you_mean(.suggestion))]
    UnknownEnvironmentStep {
        /// The environment.
        environment: String,
        /// The overridden step name.
        step: String,
        /// The closest step name.
        suggestion: Option<String>,
    },
    /// A declared custom event name breaks the naming rules.
    #[error("{reason}")]
    InvalidCustomEvent {
        /// The name as written.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The input is not UTF-8.
    #[error("template is not valid UTF-8: {message}")]
    NotUtf8 {
        /// Where the bad byte is.
        message: String,
    },
}

impl From<tasker_domain::duration::InvalidDuration> for TemplateErrorKind {
    fn from(invalid: tasker_domain::duration::InvalidDuration) -> Self {
        TemplateErrorKind::InvalidTimeout {
            value: invalid.value,
        }
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// One template error with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The file (or other origin) the template came from.
    pub file: Option<String>,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// The environment whose overrides produced the error.
    pub environment: Option<String>,
    /// The step the error is about.
    pub step: Option<String>,
    /// What is wrong.
    pub kind: TemplateErrorKind,
}

impl TemplateError {
    /// An error with no location yet.
    pub fn new(kind: TemplateErrorKind) -> Self {
        Self {
            file: None,
            line: None,
            column: None,
            environment: None,
            step: None,
            kind,
        }
    }

    /// Attaches the step the error is about.
    pub fn in_step(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file.as_deref().unwrap_or("<template>"))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(environment) = &self.environment {
            write!(f, "environment `{environment}`: ")?;
        }
        if let Some(step) = &self.step {
            write!(f, "step `{step}`: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for TemplateError {}

/// Every error found in one template, in document order where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateErrors(pub Vec<TemplateError>);

impl TemplateErrors {
    /// The errors.
    pub fn errors(&self) -> &[TemplateError] {
        &self.0
    }

    /// The kinds, for matching in tests and tools.
    pub fn kinds(&self) -> impl Iterator<Item = &TemplateErrorKind> {
        self.0.iter().map(|e| &e.kind)
    }
}

impl From<TemplateError> for TemplateErrors {
    fn from(error: TemplateError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for TemplateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TemplateErrors {}

/// Aliases from the Rails docs and other engines to the keys this format defines.
const ALIASES: &[(&str, &str)] = &[
    ("steps", "step_templates"),
    ("retry_limit", "default_retry_limit"),
    ("retries", "default_retry_limit"),
    ("max_attempts", "default_retry_limit"),
    ("retryable", "default_retryable"),
    ("namespace", "namespace_name"),
    ("depends_on", "depends_on_steps"),
    ("dependencies", "depends_on_steps"),
    ("handler", "handler_class"),
    ("config", "handler_config"),
    ("timeout_seconds", "timeout"),
];

/// The candidate closest to `needle`, if any is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    needle: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    if let Some((_, target)) = ALIASES
        .iter()
        .find(|(alias, target)| *alias == needle && candidates.contains(target))
    {
        return Some((*target).to_owned());
    }
    let best = candidates
        .iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(needle, c), *c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, candidate)) = best {
        return Some(candidate.to_owned());
    }
    if needle.len() >= 4 {
        return candidates
            .iter()
            .filter(|c| c.contains(needle) || needle.contains(*c))
            .min_by_key(|c| c.len())
            .map(|c| (*c).to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_rails_doc_aliases() {
        let step_keys = [
            "name",
            "handler_class",
            "default_retry_limit",
            "default_retryable",
            "depends_on_steps",
        ];
        assert_eq!(
            suggest("retry_limit", step_keys).as_deref(),
            Some("default_retry_limit")
        );
        assert_eq!(
            suggest("retryable", step_keys).as_deref(),
            Some("default_retryable")
        );
        assert_eq!(
            suggest("handler_clas", step_keys).as_deref(),
            Some("handler_class")
        );
        assert_eq!(
            suggest("depends_on_stepz", step_keys).as_deref(),
            Some("depends_on_steps")
        );
        assert_eq!(suggest("zzz", step_keys), None);
    }

    #[test]
    fn display_names_file_line_environment_and_step() {
        let mut error =
            TemplateError::new(TemplateErrorKind::DuplicateStep { name: "a".into() }).in_step("a");
        assert_eq!(
            error.to_string(),
            "<template>: step `a`: duplicate step name `a`"
        );
        error.file = Some("t.yaml".into());
        error.line = Some(7);
        error.column = Some(5);
        error.environment = Some("test".into());
        assert_eq!(
            error.to_string(),
            "t.yaml:7:5: environment `test`: step `a`: duplicate step name `a`"
        );
    }
}
