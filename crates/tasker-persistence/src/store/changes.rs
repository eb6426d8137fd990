//! The state changes the store's own SQL writes, declared as data next to the statements.
//!
//! An operator's transition ([`Store::transition_step`], [`Store::transition_task`]) asks the
//! state machine at run time and writes what it allowed. The hot paths (claims, outcomes,
//! releases, finalization, cancellation, reopening, creation with bypassed steps) move many rows
//! in one statement and never ask: their states are written into the SQL. So that this SQL and
//! the machine cannot disagree, every such site declares its changes with [`changes!`] right
//! next to the statement, renders the states of its SQL and of its history rows from those
//! constants, and the test below holds every declared `(from, to)` pair against the tables of
//! `tasker_state_machine`: a change is in the machine's table (and meets its guard, saying how),
//! or it is one of the machine's listed internal changes and declared as such (a claim given
//! back). A history row ([`TransitionRow`]) can only be made from a declared change or from a
//! transition the machine allowed.
//!
//! [`Store::transition_step`]: super::Store::transition_step
//! [`Store::transition_task`]: super::Store::transition_task

use tasker_domain::{StepState, TaskState};
use tasker_state_machine::Transition;
use uuid::Uuid;

/// A task or step state as the store writes it.
pub(crate) trait State: Copy + Eq + std::fmt::Debug {
    /// The stored name (`in_progress`).
    fn name(self) -> &'static str;

    /// The stored name as an SQL string literal (`'in_progress'`), for statements that compare
    /// or set a state written into their text (so the planner sees it, and partial indexes on a
    /// state apply).
    fn sql(self) -> String {
        format!("'{}'", self.name())
    }
}

impl State for StepState {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl State for TaskState {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// One state change: the state column moves `from → to` and a history row says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change<S> {
    from: S,
    to: S,
}

/// A change of a step's state.
pub(crate) type StepChange = Change<StepState>;
/// A change of a task's state.
pub(crate) type TaskChange = Change<TaskState>;

impl<S: State> Change<S> {
    /// A change a statement writes without asking the machine; only [`changes!`] calls this,
    /// so every such change is in a list the test checks.
    #[doc(hidden)]
    pub(crate) const fn declared(from: S, to: S) -> Self {
        Self { from, to }
    }

    /// A change the state machine allowed just now.
    pub(crate) fn checked(transition: &Transition<S>) -> Self {
        Self {
            from: transition.from_state,
            to: transition.to_state,
        }
    }

    /// The state before.
    pub(crate) fn from(self) -> S {
        self.from
    }

    /// The state after.
    pub(crate) fn to(self) -> S {
        self.to
    }

    /// The history row of this change for the task or step `id`.
    pub(crate) fn row(
        self,
        id: Uuid,
        sort_key: i32,
        most_recent: bool,
        metadata: serde_json::Value,
    ) -> TransitionRow {
        TransitionRow {
            id,
            from_state: self.from.name(),
            to_state: self.to.name(),
            sort_key,
            most_recent,
            metadata,
        }
    }

    /// The history row of this change as an SQL select list, for a statement that writes its
    /// history itself: `owner`, `sort_key`, `metadata` and `now` are SQL expressions over the
    /// rows the statement changed, in the column order of [`TransitionRow::into_values`].
    pub(crate) fn select(
        self,
        owner: &str,
        sort_key: &str,
        most_recent: bool,
        metadata: &str,
        now: &str,
    ) -> String {
        format!(
            "SELECT {owner}, {}, {}, {sort_key}, {most_recent}, {metadata}, {now}",
            self.from.sql(),
            self.to.sql()
        )
    }
}

/// One history row to write, made only by [`Change::row`].
#[derive(Debug, Clone)]
pub(crate) struct TransitionRow {
    id: Uuid,
    from_state: &'static str,
    to_state: &'static str,
    sort_key: i32,
    most_recent: bool,
    metadata: serde_json::Value,
}

impl TransitionRow {
    /// The task or step the row belongs to.
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    /// Marks the row as its owner's current one, or not.
    pub(crate) fn set_most_recent(&mut self, most_recent: bool) {
        self.most_recent = most_recent;
    }

    /// The row's values in the order `owner, from_state, to_state, sort_key, most_recent,
    /// metadata, created_at`.
    pub(crate) fn into_values(self, now: i64) -> Vec<sea_orm::Value> {
        vec![
            self.id.into(),
            Some(self.from_state.to_owned()).into(),
            self.to_state.into(),
            self.sort_key.into(),
            self.most_recent.into(),
            sea_orm::Value::Json(Some(Box::new(self.metadata))),
            now.into(),
        ]
    }
}

/// How a declared change answers to the state machine.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    /// A transition of the machine's table; for a guarded one, how the site meets the guard.
    Table(Option<&'static str>),
    /// One of the machine's internal changes, which nobody may request.
    Internal,
}

/// A declared change as the test sees it, with its constant's name.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Declared {
    /// A step change.
    Step(&'static str, StepChange, Check),
    /// A task change.
    Task(&'static str, TaskChange, Check),
}

/// Declares the state changes a file's statements write:
///
/// ```text
/// changes! {
///     /// What the statement does.
///     step CLAIM: Pending => InProgress, guard "the candidates have unfinished_parents = 0";
///     task START: Pending => InProgress;
///     step RELEASE: InProgress => Pending, internal;
/// }
/// ```
///
/// Each line becomes a `pub(super) const` [`StepChange`] or [`TaskChange`]; the file's
/// `DECLARED` list (for the test) names them all. A change the machine guards must say how the
/// site meets the guard; one of the machine's internal changes must say `internal`.
macro_rules! changes {
    ($($(#[$doc:meta])* $kind:ident $name:ident : $from:ident => $to:ident $(, $mark:ident $($guard:literal)?)?;)*) => {
        $(
            $(#[$doc])*
            pub(super) const $name: changes!(@type $kind) = $crate::store::changes::Change::declared(
                changes!(@state $kind $from),
                changes!(@state $kind $to),
            );
        )*

        /// Every change this file declares.
        #[cfg(test)]
        pub(super) const DECLARED: &[$crate::store::changes::Declared] = &[
            $(changes!(@declared $kind $name (changes!(@check $($mark $($guard)?)?)))),*
        ];
    };
    (@check) => { $crate::store::changes::Check::Table(None) };
    (@check guard $guard:literal) => { $crate::store::changes::Check::Table(Some($guard)) };
    (@check internal) => { $crate::store::changes::Check::Internal };
    (@type step) => { $crate::store::changes::StepChange };
    (@type task) => { $crate::store::changes::TaskChange };
    (@state step $state:ident) => { ::tasker_domain::StepState::$state };
    (@state task $state:ident) => { ::tasker_domain::TaskState::$state };
    (@declared step $name:ident ($check:expr)) => {
        $crate::store::changes::Declared::Step(stringify!($name), $name, $check)
    };
    (@declared task $name:ident ($check:expr)) => {
        $crate::store::changes::Declared::Task(stringify!($name), $name, $check)
    };
}

pub(crate) use changes;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tasker_state_machine::{step, task};

    use super::*;
    use crate::store::{claims, create, outcomes, transitions};

    /// Every file that declares changes, with its list.
    const FILES: &[(&str, &[Declared])] = &[
        ("claims.rs", claims::DECLARED),
        ("create.rs", create::DECLARED),
        ("outcomes.rs", outcomes::DECLARED),
        ("transitions.rs", transitions::DECLARED),
    ];

    fn declared() -> impl Iterator<Item = (&'static str, Declared)> {
        FILES
            .iter()
            .flat_map(|(file, list)| list.iter().map(move |d| (*file, *d)))
    }

    #[test]
    fn every_declared_change_is_allowed_by_the_state_machine() {
        let mut checked = 0;
        for (file, change) in declared() {
            checked += 1;
            match change {
                Declared::Step(name, c, Check::Table(guard)) => {
                    assert!(
                        step::allowed(c.from, c.to),
                        "{file}: {name} writes step {} -> {}, which the step machine does not allow",
                        c.from.name(),
                        c.to.name()
                    );
                    assert!(step::event(c.from, c.to).is_some());
                    assert_eq!(
                        step::is_guarded(c.from, c.to),
                        guard.is_some(),
                        "{file}: {name}: a guarded change names how its site meets the guard, \
                         an unguarded one names none"
                    );
                }
                Declared::Step(name, c, Check::Internal) => assert!(
                    step::is_internal(c.from, c.to),
                    "{file}: {name} writes step {} -> {} as internal, but the step machine \
                     lists no such internal change",
                    c.from.name(),
                    c.to.name()
                ),
                Declared::Task(name, c, Check::Table(guard)) => {
                    assert!(
                        task::allowed(c.from, c.to),
                        "{file}: {name} writes task {} -> {}, which the task machine does not allow",
                        c.from.name(),
                        c.to.name()
                    );
                    assert!(task::event(c.from, c.to).is_some());
                    assert_eq!(
                        task::is_guarded(c.from, c.to),
                        guard.is_some(),
                        "{file}: {name}: a guarded change names how its site meets the guard, \
                         an unguarded one names none"
                    );
                }
                Declared::Task(name, _, Check::Internal) => {
                    panic!("{file}: {name}: the task machine has no internal changes")
                }
            }
        }
        assert!(checked >= 15, "only {checked} declared changes found");
        // Every internal change the machine lists is one the store writes.
        for &(from, to) in step::INTERNAL {
            assert!(
                declared().any(|(_, d)| matches!(d, Declared::Step(_, c, Check::Internal) if (c.from, c.to) == (from, to))),
                "the step machine lists {} -> {} as internal, but no statement writes it",
                from.name(),
                to.name()
            );
        }
    }

    #[test]
    fn the_machine_refuses_what_the_check_would_catch() {
        // The check above is only as good as `allowed`: these pairs must fail it.
        assert!(!step::allowed(StepState::Complete, StepState::Pending));
        assert!(!step::allowed(StepState::Error, StepState::Cancelled));
        assert!(!task::allowed(TaskState::Pending, TaskState::Complete));
        assert!(!task::allowed(TaskState::Complete, TaskState::Cancelled));
    }

    #[test]
    fn multi_step_changes_chain() {
        // A retried claim goes error -> pending -> in_progress in one statement.
        assert_eq!(claims::RETRY.to(), claims::CLAIM.from());
        // A task finished at creation goes pending -> in_progress -> complete.
        assert_eq!(
            create::BYPASSED_START.to(),
            create::BYPASSED_COMPLETE.from()
        );
        assert_eq!(create::BYPASSED_START.from(), TaskState::Pending);
        for from in [TaskState::Pending, TaskState::InProgress] {
            for all_done in [true, false] {
                let path = transitions::finalization(from, all_done);
                assert_eq!(path.first().map(|c| c.from()), Some(from));
                assert!(path.windows(2).all(|w| w[0].to() == w[1].from()));
                let end = if all_done {
                    TaskState::Complete
                } else {
                    TaskState::Error
                };
                assert_eq!(path.last().map(|c| c.to()), Some(end));
            }
        }
        assert!(transitions::finalization(TaskState::Complete, true).is_empty());
    }

    /// The stored state names, quoted as SQL literals.
    fn quoted_states() -> Vec<String> {
        let mut names: Vec<String> = [
            StepState::Pending,
            StepState::InProgress,
            StepState::Complete,
            StepState::Error,
            StepState::Cancelled,
            StepState::ResolvedManually,
        ]
        .iter()
        .map(|s| s.sql())
        .collect();
        names.extend(
            [TaskState::Complete, TaskState::Error, TaskState::Pending]
                .iter()
                .map(|s| s.sql()),
        );
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn no_statement_writes_a_state_written_out_by_hand() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let states = quoted_states();
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).expect("the store's sources") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if file == "changes.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            let declares = text.contains(&["changes", "! {"].concat());
            if declares {
                assert!(
                    FILES.iter().any(|(f, _)| *f == file),
                    "{file} declares changes but is not in this test's FILES"
                );
                // A file that declares its changes writes every state from them.
                for state in &states {
                    assert!(
                        !text.contains(state.as_str()),
                        "{file} writes the state {state} by hand; take it from a declared change"
                    );
                }
            }
            // Elsewhere states may be read, never set: no `SET ... state = '...'`.
            for (at, _) in text.match_indices("SET ") {
                let clause = &text[at..];
                let clause = &clause[..clause.find("WHERE").unwrap_or(clause.len())];
                for state in &states {
                    let set = format!("state = {state}");
                    assert!(
                        !clause.contains(&set),
                        "{file} sets a state by hand ({set}); declare the change with changes!"
                    );
                }
            }
        }
        assert!(files >= 10, "read only {files} store sources");
    }
}
