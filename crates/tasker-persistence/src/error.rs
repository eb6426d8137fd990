//! Store errors: each names what failed and on what.

use std::fmt;

use tasker_domain::{StepId, TaskId};
use tasker_template::ContextError;

/// A failure reported by the database or its driver. Opaque on purpose: its message, its
/// [`std::error::Error::source`] chain, and [`StoreError::database_code`],
/// [`StoreError::is_transient`] and the other classifications are the interface; the driver's
/// own error type is not, so a driver upgrade never changes this crate's API.
#[derive(Debug)]
pub struct DatabaseError(pub(crate) sea_orm::DbErr);

impl DatabaseError {
    /// An error of Tasker's own about a database operation (a refused payload, a lost
    /// listener), carrying `message`.
    pub(crate) fn custom(message: impl Into<String>) -> Self {
        Self(sea_orm::DbErr::Custom(message.into()))
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a store operation failed. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL cannot be opened.
    #[error("cannot open database `{url}`: {source}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: DatabaseError,
    },
    /// A database statement failed.
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),
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
    /// A task in error was sent back to work, but none of its steps can run again: it is in
    /// error because steps were cancelled, and a cancelled step is final. Nothing changed.
    #[error(
        "task {task_id} has no failed step to retry: it is in error because {} cancelled, and a cancelled step is final; resolve the task by hand (resolve_task) instead",
        cancelled_list(.cancelled)
    )]
    NothingToRetry {
        /// The task.
        task_id: TaskId,
        /// The names of its cancelled steps.
        cancelled: Vec<String>,
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
            StoreError::Database(DatabaseError(err)) => matches!(
                err,
                sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
            ),
            _ => false,
        }
    }

    /// A statement or connection failure reported by sea-orm.
    pub(crate) fn db(err: sea_orm::DbErr) -> Self {
        Self::Database(DatabaseError(err))
    }

    /// A failure to take a connection from a pool through sqlx directly, as sea-orm reports
    /// its own: an unreachable database or an exhausted pool reads as unavailable
    /// ([`StoreError::is_unavailable`]), not as a statement the database refused.
    pub(crate) fn acquire(err: sea_orm::sqlx::Error) -> Self {
        use sea_orm::error::ConnAcquireErr;
        use sea_orm::{DbErr, RuntimeErr};
        Self::db(match err {
            sea_orm::sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            sea_orm::sqlx::Error::PoolClosed => {
                DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)
            }
            err => DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(err))),
        })
    }

    pub(crate) fn malformed(what: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            message: err.to_string(),
        }
    }
}

impl StoreError {
    /// The driver's error code for a statement the database refused: the SQLSTATE on
    /// PostgreSQL (`40P01`), the extended result code on SQLite (`5`, `1811`).
    pub fn database_code(&self) -> Option<String> {
        use sea_orm::{DbErr, RuntimeErr};
        let (StoreError::Database(DatabaseError(err))
        | StoreError::Connect {
            source: DatabaseError(err),
            ..
        }) = self
        else {
            return None;
        };
        match err {
            DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e))
            | DbErr::Conn(RuntimeErr::SqlxError(e)) => match &**e {
                sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    /// A deadlock or serialization failure (PostgreSQL SQLSTATE `40P01` or `40001`): the
    /// database rolled the transaction back and running it again may succeed.
    pub fn is_deadlock_or_serialization(&self) -> bool {
        matches!(self.database_code().as_deref(), Some("40P01" | "40001"))
    }

    /// Whether trying again later may succeed: a lost, closed or exhausted connection; a
    /// deadlock, serialization failure, or a server out of resources or shutting down
    /// (PostgreSQL SQLSTATE classes 08, 40, 53, 57); a busy or locked SQLite database. A statement
    /// the database refuses for its data (a constraint, a value it cannot store) is not
    /// transient.
    pub fn is_transient(&self) -> bool {
        use sea_orm::{DbErr, RuntimeErr};
        let StoreError::Database(DatabaseError(err)) = self else {
            return false;
        };
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                match &**e {
                    sea_orm::sqlx::Error::Database(db) => {
                        let code = db.code().unwrap_or_default();
                        if db
                            .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                            .is_some()
                        {
                            // The primary result code is the low byte: BUSY (5), LOCKED (6).
                            code.parse::<u32>()
                                .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
                        } else {
                            ["08", "40", "53", "57"]
                                .iter()
                                .any(|class| code.starts_with(class))
                        }
                    }
                    sea_orm::sqlx::Error::Io(_)
                    | sea_orm::sqlx::Error::PoolTimedOut
                    | sea_orm::sqlx::Error::PoolClosed
                    | sea_orm::sqlx::Error::WorkerCrashed
                    | sea_orm::sqlx::Error::Protocol(_) => true,
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

fn cancelled_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "no step can run".into(),
        1 => format!("step {} was", quoted[0]),
        _ => format!("steps {} were", quoted.join(", ")),
    }
}
