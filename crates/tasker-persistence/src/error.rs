//! Store errors: each names what failed and on what.

use tasker_domain::{StepId, TaskId};
use tasker_template::ContextError;

/// Why a store operation failed. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL cannot be opened.
    #[error("cannot open database `{url}`: {source}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: sea_orm::DbErr,
    },
    /// A database statement failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// No task has this id.
    #[error("task {0} not found")]
    TaskNotFound(TaskId),
    /// No step has this id.
    #[error("step {0} not found")]
    StepNotFound(StepId),
    /// No API key has this id.
    #[error("api key {0} not found")]
    ApiKeyNotFound(i64),
    /// No registered template matches.
    #[error("no task template {namespace}/{name}{}", .version.as_ref().map(|v| format!("@{v}")).unwrap_or_default())]
    TemplateNotFound {
        /// The namespace asked for.
        namespace: String,
        /// The name asked for.
        name: String,
        /// The exact version asked for, if any.
        version: Option<semver::Version>,
    },
    /// The state machine does not allow the transition.
    #[error(transparent)]
    InvalidTransition(#[from] tasker_state_machine::TransitionError),
    /// Another writer changed the state first: the expected from-state no longer holds.
    #[error("{entity} {id} is {actual}, not {expected}: another writer changed it first")]
    Conflict {
        /// `task` or `step`.
        entity: &'static str,
        /// The task or step id.
        id: String,
        /// The state the caller expected.
        expected: String,
        /// The state found.
        actual: String,
    },
    /// The task context does not match the template's schema.
    #[error("task context is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidContext(Vec<ContextError>),
    /// `bypass_steps` names a step that does not exist or is not skippable.
    #[error("cannot bypass step `{step}`: {reason}")]
    InvalidBypass {
        /// The step name.
        step: String,
        /// Why.
        reason: &'static str,
    },
    /// A task with the same identity already exists.
    #[error("a task with identity {identity_hash} already exists")]
    DuplicateTask {
        /// The identity hash.
        identity_hash: String,
    },
    /// A stored value does not decode (a corrupt row or a newer schema).
    #[error("stored {what} is malformed: {message}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
}

impl StoreError {
    /// Whether the database could not be reached (no connection, pool exhausted, connection
    /// lost), as opposed to a statement it refused: callers answer "try again later".
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Database(err) => matches!(
                err,
                sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
            ),
            _ => false,
        }
    }

    pub(crate) fn malformed(what: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            message: err.to_string(),
        }
    }
}
