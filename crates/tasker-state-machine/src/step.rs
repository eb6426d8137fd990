//! The workflow step machine (the Rails engine's step machine).
//!
//! | from | to |
//! |---|---|
//! | pending | in_progress, error, cancelled, resolved_manually |
//! | in_progress | complete, error, cancelled |
//! | error | pending (retry), resolved_manually |
//! | complete, cancelled, resolved_manually | — (terminal) |
//!
//! Guard: → in_progress only when every parent step is done.
//!
//! Not in the table, and never granted by [`transition`]: the changes the store makes on its own
//! ([`INTERNAL`]), today only a claim given back unfinished (`in_progress → pending`).

use tasker_domain::StepState;
use tasker_domain::event_names::step as events;

use crate::transition::{Refusal, Transition, TransitionError, TransitionOutcome};

/// What the step → in_progress guard needs: how many of the step's parent steps are done
/// (complete or resolved manually).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepGuard {
    /// Parent steps of the step.
    pub total_parents: usize,
    /// Parent steps that are complete or resolved manually.
    pub done_parents: usize,
}

impl StepGuard {
    /// Every parent is done; a root step (no parents) trivially is. Inconsistent facts (more
    /// done than total) do not pass.
    pub const fn all_parents_done(self) -> bool {
        self.done_parents == self.total_parents
    }
}

/// The states a step may move to from `from`, in declaration order. Empty for the terminal
/// states (`complete`, `cancelled`, `resolved_manually`).
pub const fn targets(from: StepState) -> &'static [StepState] {
    use StepState::*;
    match from {
        Pending => &[InProgress, Error, Cancelled, ResolvedManually],
        InProgress => &[Complete, Error, Cancelled],
        Error => &[Pending, ResolvedManually],
        Complete | Cancelled | ResolvedManually => &[],
    }
}

/// The table allows `from → to`. A same-state pair is never in the table (see [`transition`]).
pub fn allowed(from: StepState, to: StepState) -> bool {
    targets(from).contains(&to)
}

/// Changes outside the table that the store makes on its own and nobody may request:
/// `in_progress → pending` is an engine giving back a claim it will not finish (a graceful
/// shutdown), which leaves the step as it was before the claim, ready again and its attempt not
/// counted. [`transition`] refuses them, [`event`] has none for them, and no lifecycle event is
/// published for them.
pub const INTERNAL: &[(StepState, StepState)] = &[(StepState::InProgress, StepState::Pending)];

/// `from → to` is one of the store's own changes ([`INTERNAL`]).
pub fn is_internal(from: StepState, to: StepState) -> bool {
    INTERNAL.contains(&(from, to))
}

/// The event `from → to` emits, or `None` when the table does not allow it.
pub fn event(from: StepState, to: StepState) -> Option<&'static str> {
    if !allowed(from, to) {
        return None;
    }
    Some(if (from, to) == (StepState::Error, StepState::Pending) {
        events::RETRY_REQUESTED
    } else {
        event_reaching(to)
    })
}

/// The event of a change that ends in `to`, other than a retry (`error → pending`): what an
/// entity publishes on arriving in `to` when there is no table transition to name it (creation,
/// or a change the store made in several steps).
pub fn event_reaching(to: StepState) -> &'static str {
    match to {
        StepState::Pending => events::INITIALIZE_REQUESTED,
        StepState::InProgress => events::EXECUTION_REQUESTED,
        StepState::Complete => events::COMPLETED,
        StepState::Error => events::FAILED,
        StepState::Cancelled => events::CANCELLED,
        StepState::ResolvedManually => events::RESOLVED_MANUALLY,
    }
}

/// `from → to` is allowed and has a guard, so [`transition`] needs a [`StepGuard`] for it.
/// Only `pending → in_progress`.
pub fn is_guarded(from: StepState, to: StepState) -> bool {
    to == StepState::InProgress && allowed(from, to)
}

/// Checks a request to move a step from `from` to `to`.
///
/// Same state: [`TransitionOutcome::AlreadyInState`], whatever the guard facts. Otherwise the pair
/// must be in the table and, when [`is_guarded`], `guard` must be given and show every parent
/// done. Unguarded transitions ignore `guard`, so `None` is enough for them.
pub fn transition(
    from: StepState,
    to: StepState,
    guard: Option<StepGuard>,
) -> Result<TransitionOutcome<StepState>, TransitionError> {
    if from == to {
        return Ok(TransitionOutcome::AlreadyInState(from));
    }
    let refuse = |reason| TransitionError::Step {
        from_state: from,
        to_state: to,
        reason,
    };
    let event = event(from, to).ok_or(refuse(Refusal::NotAllowed))?;
    if is_guarded(from, to) {
        let facts = guard.ok_or(refuse(Refusal::GuardFactsMissing))?;
        if !facts.all_parents_done() {
            return Err(refuse(Refusal::ParentsNotDone {
                done_parents: facts.done_parents,
                total_parents: facts.total_parents,
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
    use StepState::*;

    /// The Rails step machine, written out: every allowed pair and its event. Any pair not listed
    /// (other than same-state) must be refused.
    const TABLE: [(StepState, StepState, &str); 9] = [
        (Pending, InProgress, "step.execution_requested"),
        (Pending, Error, "step.failed"),
        (Pending, Cancelled, "step.cancelled"),
        (Pending, ResolvedManually, "step.resolved_manually"),
        (InProgress, Complete, "step.completed"),
        (InProgress, Error, "step.failed"),
        (InProgress, Cancelled, "step.cancelled"),
        (Error, Pending, "step.retry_requested"),
        (Error, ResolvedManually, "step.resolved_manually"),
    ];

    const ALL_DONE: StepGuard = StepGuard {
        total_parents: 2,
        done_parents: 2,
    };
    const NOT_DONE: StepGuard = StepGuard {
        total_parents: 2,
        done_parents: 1,
    };

    fn expected_event(from: StepState, to: StepState) -> Option<&'static str> {
        TABLE
            .iter()
            .find(|(f, t, _)| (*f, *t) == (from, to))
            .map(|(_, _, event)| *event)
    }

    fn check(
        from: StepState,
        to: StepState,
        guard: Option<StepGuard>,
        expected: Result<TransitionOutcome<StepState>, Refusal>,
    ) {
        let expected = expected.map_err(|reason| TransitionError::Step {
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

    fn moved(from: StepState, to: StepState, event: &'static str) -> TransitionOutcome<StepState> {
        TransitionOutcome::Transitioned(Transition {
            from_state: from,
            to_state: to,
            event,
        })
    }

    #[test]
    fn every_pair_matches_the_table() {
        let (mut same, mut accepted, mut refused) = (0, 0, 0);
        for from in StepState::ALL {
            for to in StepState::ALL {
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
        for state in StepState::ALL {
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
        assert_eq!(
            targets(Pending),
            [InProgress, Error, Cancelled, ResolvedManually]
        );
        assert_eq!(targets(InProgress), [Complete, Error, Cancelled]);
        assert_eq!(targets(Error), [Pending, ResolvedManually]);
        assert_eq!(targets(Complete), []);
        assert_eq!(targets(Cancelled), []);
        assert_eq!(targets(ResolvedManually), []);
        for from in StepState::ALL {
            let listed: Vec<_> = TABLE
                .iter()
                .filter(|(f, _, _)| *f == from)
                .map(|(_, to, _)| *to)
                .collect();
            assert_eq!(targets(from), listed, "targets({from})");
        }
    }

    #[test]
    fn terminal_states_have_no_targets() {
        for state in StepState::ALL {
            assert_eq!(targets(state).is_empty(), state.is_terminal(), "{state}");
        }
    }

    #[test]
    fn internal_changes_are_outside_the_table_and_never_granted() {
        assert_eq!(INTERNAL, [(InProgress, Pending)]);
        for &(from, to) in INTERNAL {
            assert!(is_internal(from, to));
            assert!(!allowed(from, to), "{from} -> {to} is not requestable");
            assert_eq!(event(from, to), None);
            check(from, to, Some(ALL_DONE), Err(Refusal::NotAllowed));
        }
        assert!(
            !is_internal(Error, Pending),
            "a retry is a table transition"
        );
    }

    #[test]
    fn only_pending_to_in_progress_is_guarded() {
        let guarded: Vec<_> = StepState::ALL
            .into_iter()
            .flat_map(|from| StepState::ALL.map(|to| (from, to)))
            .filter(|&(from, to)| is_guarded(from, to))
            .collect();
        assert_eq!(guarded, [(Pending, InProgress)]);
    }

    #[test]
    fn in_progress_needs_every_parent_done() {
        check(
            Pending,
            InProgress,
            Some(NOT_DONE),
            Err(Refusal::ParentsNotDone {
                done_parents: 1,
                total_parents: 2,
            }),
        );
        check(
            Pending,
            InProgress,
            Some(ALL_DONE),
            Ok(moved(Pending, InProgress, "step.execution_requested")),
        );
    }

    #[test]
    fn root_step_runs_with_zero_parents() {
        let root = StepGuard {
            total_parents: 0,
            done_parents: 0,
        };
        check(
            Pending,
            InProgress,
            Some(root),
            Ok(moved(Pending, InProgress, "step.execution_requested")),
        );
    }

    #[test]
    fn in_progress_refuses_inconsistent_facts() {
        let too_many = StepGuard {
            total_parents: 2,
            done_parents: 3,
        };
        check(
            Pending,
            InProgress,
            Some(too_many),
            Err(Refusal::ParentsNotDone {
                done_parents: 3,
                total_parents: 2,
            }),
        );
    }

    #[test]
    fn in_progress_without_guard_facts_is_refused() {
        check(Pending, InProgress, None, Err(Refusal::GuardFactsMissing));
    }

    #[test]
    fn table_refusal_comes_before_the_guard() {
        for from in [Complete, Error, Cancelled, ResolvedManually] {
            check(from, InProgress, Some(NOT_DONE), Err(Refusal::NotAllowed));
            check(from, InProgress, None, Err(Refusal::NotAllowed));
        }
    }

    #[test]
    fn unguarded_transitions_ignore_guard_facts() {
        for (from, to, event) in TABLE {
            if (from, to) == (Pending, InProgress) {
                continue;
            }
            check(from, to, None, Ok(moved(from, to, event)));
            check(from, to, Some(NOT_DONE), Ok(moved(from, to, event)));
        }
    }

    #[test]
    fn retry_goes_through_pending() {
        check(
            Error,
            Pending,
            None,
            Ok(moved(Error, Pending, "step.retry_requested")),
        );
        check(Error, InProgress, Some(ALL_DONE), Err(Refusal::NotAllowed));
    }

    #[test]
    fn guard_facts() {
        let cases = [
            ((0, 0), true),
            ((2, 2), true),
            ((2, 1), false),
            ((1, 0), false),
            ((2, 3), false),
        ];
        for ((total_parents, done_parents), done) in cases {
            let guard = StepGuard {
                total_parents,
                done_parents,
            };
            assert_eq!(guard.all_parents_done(), done, "{guard:?}");
        }
    }

    #[test]
    fn refusal_message() {
        let err = transition(Complete, Pending, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step cannot move from complete to pending: not allowed"
        );
        let err = transition(Pending, InProgress, Some(NOT_DONE)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step cannot move from pending to in_progress: 1 of 2 parent steps done"
        );
    }
}
