//! The soak's verdicts, computed from plain data (what the ledger saw and what the database
//! holds) so each rule is tested on constructed cases: overlapping calls, lost successes,
//! duplicate attempts and tasks that did not end as planned.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One call the ledger received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// The `idempotency-key` header: the step id.
    pub step: String,
    /// Which call of this step it was, from 1.
    pub number: u32,
    /// Milliseconds since the soak started.
    pub begin_ms: u64,
    pub end_ms: u64,
    /// The status answered (or that would have been answered, for a cut call).
    pub status: u16,
    /// Whether the whole response was written; `false` when the caller went away first (a
    /// killed worker, a timed-out attempt).
    pub delivered: bool,
}

impl Call {
    fn delivered_success(&self) -> bool {
        self.delivered && (200..300).contains(&self.status)
    }
}

/// A step as the database holds it at the end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub step: String,
    pub task: String,
    pub name: String,
    pub state: String,
    /// Whether its handler calls the ledger (`tasker::http`).
    pub calls_ledger: bool,
}

/// A task as the database holds it at the end, with the state its template plans.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Task {
    pub task: String,
    pub template: String,
    pub state: String,
    pub expected: &'static str,
}

/// One row of a step's transition history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transition {
    pub step: String,
    pub sort_key: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    /// `metadata.attempt_number`, where the row has one.
    pub attempt: Option<i64>,
    /// `metadata.reason`, where the row has one.
    pub reason: Option<String>,
}

/// A violation, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Finding {
    pub kind: Kind,
    /// The step (or, for a task's final state, the task) it is about.
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// Work lost: a task not in its planned final state, a delivered success neither recorded
    /// nor followed by another call, or a completion with no delivered success behind it.
    Lost,
    /// One attempt number started or ended twice for a step.
    Duplicate,
    /// Two calls of one step ran at once and both ran to the end.
    Overlap,
}

/// Tasks whose final state is not the one their template plans.
pub(crate) fn unexpected_tasks(tasks: &[Task]) -> Vec<Finding> {
    tasks
        .iter()
        .filter(|t| t.state != t.expected)
        .map(|t| Finding {
            kind: Kind::Lost,
            subject: t.task.clone(),
            detail: format!(
                "task {} ({}) ended {}, expected {}",
                t.task, t.template, t.state, t.expected
            ),
        })
        .collect()
}

/// Pairs of calls of one step that overlapped in time where both were delivered in full: two
/// attempts that ran at once with neither cut off.
pub(crate) fn overlaps(calls: &[Call]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (step, mut calls) in by_step(calls) {
        calls.retain(|c| c.delivered);
        calls.sort_by_key(|c| (c.begin_ms, c.number));
        for (i, earlier) in calls.iter().enumerate() {
            for later in &calls[i + 1..] {
                if later.begin_ms >= earlier.end_ms {
                    break;
                }
                findings.push(Finding {
                    kind: Kind::Overlap,
                    subject: step.to_owned(),
                    detail: format!(
                        "step {step}: call {} ({}..{} ms, {}) and call {} ({}..{} ms, {}) ran at once, both delivered",
                        earlier.number,
                        earlier.begin_ms,
                        earlier.end_ms,
                        earlier.status,
                        later.number,
                        later.begin_ms,
                        later.end_ms,
                        later.status
                    ),
                });
            }
        }
    }
    findings
}

/// Successes the ledger delivered that the database did not keep: the step is not complete and
/// no call of it began after the success was delivered. And the converse: a step calling the
/// ledger that is complete with no delivered success at all.
pub(crate) fn lost_successes(calls: &[Call], steps: &[Step]) -> Vec<Finding> {
    let calls_of = by_step(calls);
    let mut findings = Vec::new();
    for step in steps.iter().filter(|s| s.calls_ledger) {
        let calls = calls_of
            .get(step.step.as_str())
            .map_or(&[][..], Vec::as_slice);
        if step.state == "complete" {
            if !calls.iter().any(|c| c.delivered_success()) {
                findings.push(Finding {
                    kind: Kind::Lost,
                    subject: step.step.clone(),
                    detail: format!(
                        "step {} ({}) of task {} is complete but the ledger delivered no success for it ({} calls)",
                        step.step,
                        step.name,
                        step.task,
                        calls.len()
                    ),
                });
            }
            continue;
        }
        for success in calls.iter().filter(|c| c.delivered_success()) {
            if !calls.iter().any(|c| c.begin_ms >= success.end_ms) {
                findings.push(Finding {
                    kind: Kind::Lost,
                    subject: step.step.clone(),
                    detail: format!(
                        "step {} ({}) of task {}: call {} delivered {} at {} ms, but the step ended {} and never ran again",
                        step.step,
                        step.name,
                        step.task,
                        success.number,
                        success.status,
                        success.end_ms,
                        step.state
                    ),
                });
            }
        }
    }
    findings
}

/// Attempts recorded twice: per step, in history order, an attempt number that starts
/// (`→ in_progress`) again after it started and was not handed back (`in_progress → pending`,
/// reason `released`, which keeps the attempt unspent), or that ends (`in_progress → complete`
/// or `→ error`) more than once.
pub(crate) fn duplicate_attempts(transitions: &[Transition]) -> Vec<Finding> {
    let mut per_step: BTreeMap<&str, Vec<&Transition>> = BTreeMap::new();
    for t in transitions {
        per_step.entry(t.step.as_str()).or_default().push(t);
    }
    let mut findings = Vec::new();
    for (step, mut rows) in per_step {
        rows.sort_by_key(|t| t.sort_key);
        let mut started: HashSet<i64> = HashSet::new();
        let mut ended: HashSet<i64> = HashSet::new();
        let mut running: Option<i64> = None;
        for row in rows {
            let from_running = row.from_state.as_deref() == Some("in_progress");
            match (row.to_state.as_str(), row.attempt) {
                ("in_progress", Some(n)) => {
                    if !started.insert(n) {
                        findings.push(Finding {
                            kind: Kind::Duplicate,
                            subject: step.to_owned(),
                            detail: format!(
                                "step {step}: attempt {n} started twice (sort key {})",
                                row.sort_key
                            ),
                        });
                    }
                    running = Some(n);
                }
                ("pending", _) if from_running && row.reason.as_deref() == Some("released") => {
                    if let Some(n) = running.take() {
                        started.remove(&n);
                    }
                }
                ("complete" | "error", Some(n)) if from_running => {
                    if !ended.insert(n) {
                        findings.push(Finding {
                            kind: Kind::Duplicate,
                            subject: step.to_owned(),
                            detail: format!(
                                "step {step}: attempt {n} ended twice (sort key {}, {})",
                                row.sort_key, row.to_state
                            ),
                        });
                    }
                    running = None;
                }
                _ => {}
            }
        }
    }
    findings
}

fn by_step(calls: &[Call]) -> HashMap<&str, Vec<Call>> {
    let mut map: HashMap<&str, Vec<Call>> = HashMap::new();
    for call in calls {
        map.entry(call.step.as_str())
            .or_default()
            .push(call.clone());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(
        step: &str,
        number: u32,
        begin_ms: u64,
        end_ms: u64,
        status: u16,
        delivered: bool,
    ) -> Call {
        Call {
            step: step.into(),
            number,
            begin_ms,
            end_ms,
            status,
            delivered,
        }
    }

    fn step(id: &str, state: &str) -> Step {
        Step {
            step: id.into(),
            task: "t".into(),
            name: "call_a".into(),
            state: state.into(),
            calls_ledger: true,
        }
    }

    fn transition(
        sort_key: i64,
        from: Option<&str>,
        to: &str,
        attempt: Option<i64>,
        reason: Option<&str>,
    ) -> Transition {
        Transition {
            step: "s".into(),
            sort_key,
            from_state: from.map(Into::into),
            to_state: to.into(),
            attempt,
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn two_delivered_calls_at_once_overlap() {
        let found = overlaps(&[
            call("s", 1, 0, 100, 200, true),
            call("s", 2, 50, 150, 200, true),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, Kind::Overlap);
        assert!(found[0].detail.contains("call 1 (0..100 ms"), "{found:?}");
    }

    #[test]
    fn a_cut_call_a_later_call_or_another_step_is_no_overlap() {
        assert!(
            overlaps(&[
                // Cut off by a kill, then run again while the ledger still held the first.
                call("s", 1, 0, 100, 200, false),
                call("s", 2, 50, 150, 200, true),
                // One after the other.
                call("s", 3, 150, 200, 500, true),
                // Another step at the same time.
                call("other", 1, 0, 200, 200, true),
            ])
            .is_empty()
        );
    }

    #[test]
    fn an_overlap_is_found_past_a_shorter_call_in_between() {
        let found = overlaps(&[
            call("s", 1, 0, 1000, 200, true),
            call("s", 2, 10, 20, 500, false),
            call("s", 3, 30, 40, 200, true),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("call 3"), "{found:?}");
    }

    #[test]
    fn a_delivered_success_neither_recorded_nor_retried_is_lost() {
        let found = lost_successes(&[call("s", 1, 0, 100, 200, true)], &[step("s", "error")]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, Kind::Lost);
        assert!(found[0].detail.contains("never ran again"), "{found:?}");
    }

    #[test]
    fn a_delivered_success_is_kept_by_completion_or_by_a_later_call() {
        let calls = [
            call("done", 1, 0, 100, 200, true),
            call("again", 1, 0, 100, 200, true),
            call("again", 2, 100, 200, 422, true),
            // A success that never reached the worker is not owed to anyone.
            call("cut", 1, 0, 100, 200, false),
        ];
        let steps = [
            step("done", "complete"),
            step("again", "error"),
            step("cut", "error"),
        ];
        assert!(lost_successes(&calls, &steps).is_empty());
    }

    #[test]
    fn a_completion_without_a_delivered_success_is_lost() {
        let found = lost_successes(
            &[
                call("s", 1, 0, 100, 200, false),
                call("s", 2, 0, 100, 500, true),
            ],
            &[step("s", "complete")],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("no success"), "{found:?}");
        // A step that does not call the ledger is not judged by it.
        let mut sleeper = step("s", "complete");
        sleeper.calls_ledger = false;
        assert!(lost_successes(&[], &[sleeper]).is_empty());
    }

    #[test]
    fn an_attempt_started_twice_is_a_duplicate() {
        let found = duplicate_attempts(&[
            transition(10, Some("pending"), "in_progress", Some(1), None),
            transition(20, Some("in_progress"), "error", Some(1), None),
            transition(30, Some("error"), "pending", None, Some("retry")),
            transition(40, Some("pending"), "in_progress", Some(1), None),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, Kind::Duplicate);
        assert!(
            found[0].detail.contains("attempt 1 started twice"),
            "{found:?}"
        );
    }

    #[test]
    fn an_attempt_ended_twice_is_a_duplicate() {
        let found = duplicate_attempts(&[
            transition(10, Some("pending"), "in_progress", Some(1), None),
            transition(20, Some("in_progress"), "error", Some(1), None),
            transition(30, Some("in_progress"), "complete", Some(1), None),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("ended twice"), "{found:?}");
    }

    #[test]
    fn retries_and_released_claims_are_no_duplicates() {
        let rows = [
            transition(0, None, "pending", None, None),
            transition(10, Some("pending"), "in_progress", Some(1), None),
            // Handed back by a draining worker: attempt 1 is not spent and runs again.
            transition(20, Some("in_progress"), "pending", None, Some("released")),
            transition(30, Some("pending"), "in_progress", Some(1), None),
            transition(40, Some("in_progress"), "error", Some(1), None),
            transition(50, Some("error"), "pending", None, Some("retry")),
            transition(60, Some("pending"), "in_progress", Some(2), None),
            transition(70, Some("in_progress"), "complete", Some(2), None),
        ];
        // Order in the input does not matter: the sort key does.
        let mut shuffled = rows.to_vec();
        shuffled.reverse();
        assert!(duplicate_attempts(&shuffled).is_empty());
    }

    #[test]
    fn tasks_are_judged_against_their_plan() {
        let task = |state: &str, expected| Task {
            task: "t1".into(),
            template: "soak_permanent".into(),
            state: state.into(),
            expected,
        };
        assert!(unexpected_tasks(&[task("error", "error")]).is_empty());
        let found = unexpected_tasks(&[task("in_progress", "error")]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .detail
                .contains("ended in_progress, expected error")
        );
    }
}
