//! Task and step state machines for Tasker.
//!
//! What it is: the two transition tables of the Rails engine (tasks in [`task`], steps in
//! [`step`]; a finished task is terminal here), their guards, idempotent same-state requests,
//! and the lifecycle event each transition emits. Ask [`task::transition`] or [`step::transition`] whether
//! `from → to` may happen: the answer is a [`Transition`] (carrying `from_state`, `to_state` and
//! `event`, ready to persist and publish), [`TransitionOutcome::AlreadyInState`] when nothing needs
//! to change, or a [`TransitionError`] saying why not.
//!
//! Who depends on it: `tasker-persistence`, which checks an operator's transition here before
//! writing it, holds the changes its own statements write against these tables in a test, and
//! records each change's `from_state`; and `tasker-engine`, which publishes the event of each
//! transition. The store's one change outside the tables, a claim given back unfinished, is
//! listed here too ([`step::INTERNAL`]) and never granted to a request.
//!
//! Architecture Invariant: pure: no I/O, no clock, no async. Depends only on `tasker-domain`
//! (plus `serde` and `thiserror`). Guards take plain facts ([`TaskGuard`], [`StepGuard`]) that the
//! caller has counted; this crate never looks anything up.
//!
//! ```
//! use tasker_domain::{StepState, TaskState};
//! use tasker_state_machine::{
//!     Refusal, StepGuard, TaskGuard, Transition, TransitionOutcome, step, task,
//! };
//!
//! // Unguarded transitions need no facts.
//! let started = task::transition(TaskState::Pending, TaskState::InProgress, None).unwrap();
//! assert_eq!(
//!     started,
//!     TransitionOutcome::Transitioned(Transition {
//!         from_state: TaskState::Pending,
//!         to_state: TaskState::InProgress,
//!         event: "task.start_requested",
//!     })
//! );
//!
//! // A step runs only once every parent step is done.
//! let parents = StepGuard { total_parents: 2, done_parents: 1 };
//! let err = step::transition(StepState::Pending, StepState::InProgress, Some(parents))
//!     .unwrap_err();
//! assert_eq!(err.reason(), Refusal::ParentsNotDone { done_parents: 1, total_parents: 2 });
//! assert_eq!(
//!     err.to_string(),
//!     "step cannot move from pending to in_progress: 1 of 2 parent steps done"
//! );
//!
//! // Asking for the state the object is already in is not an error, and emits nothing.
//! let steps = TaskGuard { total_steps: 5, done_steps: 3 };
//! let same = task::transition(TaskState::Complete, TaskState::Complete, Some(steps)).unwrap();
//! assert_eq!(same, TransitionOutcome::AlreadyInState(TaskState::Complete));
//! ```

pub mod step;
pub mod task;
mod transition;

pub use step::StepGuard;
pub use task::TaskGuard;
pub use transition::{Machine, Refusal, Transition, TransitionError, TransitionOutcome};
