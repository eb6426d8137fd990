//! The task machine (the Rails engine's task machine, less its cancellation of finished tasks).
//!
//! | from | to |
//! |---|---|
//! | pending | in_progress, error, cancelled |
//! | in_progress | pending (reset for re-enqueue), complete, error, cancelled |
//! | error | pending (retry), resolved_manually |
//! | complete, cancelled, resolved_manually | — (terminal) |
//!
//! The Rails table also lets a complete or manually resolved task be cancelled (an "admin
//! override"). Here a finished task stays finished: cancelling it would record work that was
//! done as not done, and its steps (all complete or resolved) would say otherwise.
//!
//! Guard: → complete only when every step of the task is done.

use tasker_domain::TaskState;
use tasker_domain::event_names::task as events;

use crate::transition::{Refusal, Transition, TransitionError, TransitionOutcome};

/// What the task → complete guard needs: how many of the task's steps are done
/// (complete or resolved manually).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskGuard {
    /// Steps of the task.
    pub total_steps: usize,
    /// Steps that are complete or resolved manually.
    pub done_steps: usize,
}

impl TaskGuard {
    /// Every step is done; a task with no steps trivially is. Inconsistent facts (more done
    /// than total) do not pass.
    pub const fn all_steps_done(self) -> bool {
        self.done_steps == self.total_steps
    }
}

/// The states a task may move to from `from`, in declaration order. Empty for the terminal
/// states (`complete`, `cancelled`, `resolved_manually`).
pub const fn targets(from: TaskState) -> &'static [TaskState] {
    use TaskState::*;
    match from {
        Pending => &[InProgress, Error, Cancelled],
        InProgress => &[Pending, Complete, Error, Cancelled],
        Error => &[Pending, ResolvedManually],
        Complete | Cancelled | ResolvedManually => &[],
    }
}

/// The table allows `from → to`. A same-state pair is never in the table (see [`transition`]).
pub fn allowed(from: TaskState, to: TaskState) -> bool {
    targets(from).contains(&to)
}

/// The event `from → to` emits, or `None` when the table does not allow it.
pub fn event(from: TaskState, to: TaskState) -> Option<&'static str> {
    if !allowed(from, to) {
        return None;
    }
    Some(if (from, to) == (TaskState::Error, TaskState::Pending) {
        events::RETRY_REQUESTED
    } else {
        event_reaching(to)
    })
}

/// The event of a change that ends in `to`, other than a retry (`error → pending`): what an
/// entity publishes on arriving in `to` when there is no table transition to name it (creation,
/// or a change the store made in several steps).
pub fn event_reaching(to: TaskState) -> &'static str {
    match to {
        TaskState::Pending => events::INITIALIZE_REQUESTED,
        TaskState::InProgress => events::START_REQUESTED,
        TaskState::Complete => events::COMPLETED,
        TaskState::Error => events::FAILED,
        TaskState::Cancelled => events::CANCELLED,
        TaskState::ResolvedManually => events::RESOLVED_MANUALLY,
    }
}

/// `from → to` is allowed and has a guard, so [`transition`] needs a [`TaskGuard`] for it.
/// Only `in_progress → complete`.
pub fn is_guarded(from: TaskState, to: TaskState) -> bool {
    to == TaskState::Complete && allowed(from, to)
}

/// Checks a request to move a task from `from` to `to`.
///
/// Same state: [`TransitionOutcome::AlreadyInState`], whatever the guard facts. Otherwise the pair
/// must be in the table and, when [`is_guarded`], `guard` must be given and show every step done.
/// Unguarded transitions ignore `guard`, so `None` is enough for them.
pub fn transition(
    from: TaskState,
    to: TaskState,
    guard: Option<TaskGuard>,
) -> Result<TransitionOutcome<TaskState>, TransitionError> {
    if from == to {
        return Ok(TransitionOutcome::AlreadyInState(from));
    }
    let refuse = |reason| TransitionError::Task {
        from_state: from,
        to_state: to,
        reason,
    };
    let event = event(from, to).ok_or(refuse(Refusal::NotAllowed))?;
    if is_guarded(from, to) {
        let facts = guard.ok_or(refuse(Refusal::GuardFactsMissing))?;
        if !facts.all_steps_done() {
            return Err(refuse(Refusal::StepsNotDone {
                done_steps: facts.done_steps,
                total_steps: facts.total_steps,
            }));
        }
    }
    Ok(TransitionOutcome::Transitioned(Transition {
        from_state: from,
        to_state: to,
        event,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    /// The task machine, written out: every allowed pair and its event. Any pair not listed
    /// (other than same-state) must be refused.
    const TABLE: [(TaskState, TaskState, &str); 9] = [
        (Pending, InProgress, "task.start_requested"),
        (Pending, Error, "task.failed"),
        (Pending, Cancelled, "task.cancelled"),
        (InProgress, Pending, "task.initialize_requested"),
        (InProgress, Complete, "task.completed"),
        (InProgress, Error, "task.failed"),
        (InProgress, Cancelled, "task.cancelled"),
        (Error, Pending, "task.retry_requested"),
        (Error, ResolvedManually, "task.resolved_manually"),
    ];

    const ALL_DONE: TaskGuard = TaskGuard {
        total_steps: 5,
        done_steps: 5,
    };
    const NOT_DONE: TaskGuard = TaskGuard {
        total_steps: 5,
        done_steps: 4,
    };

    fn expected_event(from: TaskState, to: TaskState) -> Option<&'static str> {
        TABLE
            .iter()
            .find(|(f, t, _)| (*f, *t) == (from, to))
            .map(|(_, _, event)| *event)
    }

    fn check(
        from: TaskState,
        to: TaskState,
        guard: Option<TaskGuard>,
        expected: Result<TransitionOutcome<TaskState>, Refusal>,
    ) {
        let expected = expected.map_err(|reason| TransitionError::Task {
            from_state: from,
            to_state: to,
            reason,
        });
        assert_eq!(
            transition(from, to, guard),
            expected,
            "{from} -> {to} with {guard:?}"
        );
    }

    fn moved(from: TaskState, to: TaskState, event: &'static str) -> TransitionOutcome<TaskState> {
        TransitionOutcome::Transitioned(Transition {
            from_state: from,
            to_state: to,
            event,
        })
    }

    #[test]
    fn every_pair_matches_the_table() {
        let (mut same, mut accepted, mut refused) = (0, 0, 0);
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let expected = expected_event(from, to);
                assert_eq!(
                    allowed(from, to),
                    expected.is_some(),
                    "allowed({from}, {to})"
                );
                assert_eq!(event(from, to), expected, "event({from}, {to})");
                match expected {
                    _ if from == to => {
                        same += 1;
                        check(
                            from,
                            to,
                            Some(ALL_DONE),
                            Ok(TransitionOutcome::AlreadyInState(from)),
                        );
                    }
                    Some(event) => {
                        accepted += 1;
                        check(from, to, Some(ALL_DONE), Ok(moved(from, to, event)));
                    }
                    None => {
                        refused += 1;
                        check(from, to, Some(ALL_DONE), Err(Refusal::NotAllowed));
                        check(from, to, None, Err(Refusal::NotAllowed));
                    }
                }
            }
        }
        assert_eq!((same, accepted, refused), (6, 9, 21));
    }

    #[test]
    fn same_state_is_idempotent_whatever_the_guard() {
        for state in TaskState::ALL {
            assert!(!allowed(state, state), "{state} is not in the table");
            assert_eq!(event(state, state), None);
            for guard in [None, Some(ALL_DONE), Some(NOT_DONE)] {
                check(
                    state,
                    state,
                    guard,
                    Ok(TransitionOutcome::AlreadyInState(state)),
                );
            }
        }
    }

    #[test]
    fn targets_of_every_state() {
        assert_eq!(targets(Pending), [InProgress, Error, Cancelled]);
        assert_eq!(targets(InProgress), [Pending, Complete, Error, Cancelled]);
        assert_eq!(targets(Error), [Pending, ResolvedManually]);
        for terminal in [Complete, Cancelled, ResolvedManually] {
            assert_eq!(targets(terminal), [], "{terminal}");
        }
        for from in TaskState::ALL {
            let listed: Vec<_> = TABLE
                .iter()
                .filter(|(f, _, _)| *f == from)
                .map(|(_, to, _)| *to)
                .collect();
            assert_eq!(targets(from), listed, "targets({from})");
        }
    }

    #[test]
    fn only_in_progress_to_complete_is_guarded() {
        let guarded: Vec<_> = TaskState::ALL
            .into_iter()
            .flat_map(|from| TaskState::ALL.map(|to| (from, to)))
            .filter(|&(from, to)| is_guarded(from, to))
            .collect();
        assert_eq!(guarded, [(InProgress, Complete)]);
    }

    #[test]
    fn complete_needs_every_step_done() {
        check(
            InProgress,
            Complete,
            Some(NOT_DONE),
            Err(Refusal::StepsNotDone {
                done_steps: 4,
                total_steps: 5,
            }),
        );
        check(
            InProgress,
            Complete,
            Some(ALL_DONE),
            Ok(moved(InProgress, Complete, "task.completed")),
        );
    }

    #[test]
    fn complete_with_no_steps_is_allowed() {
        let no_steps = TaskGuard {
            total_steps: 0,
            done_steps: 0,
        };
        check(
            InProgress,
            Complete,
            Some(no_steps),
            Ok(moved(InProgress, Complete, "task.completed")),
        );
    }

    #[test]
    fn complete_refuses_inconsistent_facts() {
        let too_many = TaskGuard {
            total_steps: 5,
            done_steps: 6,
        };
        check(
            InProgress,
            Complete,
            Some(too_many),
            Err(Refusal::StepsNotDone {
                done_steps: 6,
                total_steps: 5,
            }),
        );
    }

    #[test]
    fn complete_without_guard_facts_is_refused() {
        check(InProgress, Complete, None, Err(Refusal::GuardFactsMissing));
    }

    #[test]
    fn table_refusal_comes_before_the_guard() {
        for from in [Pending, Error, Cancelled, ResolvedManually] {
            check(from, Complete, Some(NOT_DONE), Err(Refusal::NotAllowed));
            check(from, Complete, None, Err(Refusal::NotAllowed));
        }
    }

    #[test]
    fn unguarded_transitions_ignore_guard_facts() {
        for (from, to, event) in TABLE {
            if (from, to) == (InProgress, Complete) {
                continue;
            }
            check(from, to, None, Ok(moved(from, to, event)));
            check(from, to, Some(NOT_DONE), Ok(moved(from, to, event)));
        }
    }

    #[test]
    fn guard_facts() {
        let cases = [
            ((0, 0), true),
            ((5, 5), true),
            ((5, 4), false),
            ((1, 0), false),
            ((5, 6), false),
        ];
        for ((total_steps, done_steps), done) in cases {
            let guard = TaskGuard {
                total_steps,
                done_steps,
            };
            assert_eq!(guard.all_steps_done(), done, "{guard:?}");
        }
    }

    #[test]
    fn a_finished_task_cannot_be_cancelled() {
        for finished in [Complete, ResolvedManually] {
            check(
                finished,
                Cancelled,
                Some(ALL_DONE),
                Err(Refusal::NotAllowed),
            );
        }
        check(
            Cancelled,
            Cancelled,
            None,
            Ok(TransitionOutcome::AlreadyInState(Cancelled)),
        );
    }

    #[test]
    fn refusal_message() {
        let err = transition(Cancelled, Pending, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task cannot move from cancelled to pending: not allowed"
        );
        let err = transition(InProgress, Complete, Some(NOT_DONE)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task cannot move from in_progress to complete: 4 of 5 steps done"
        );
    }
}
