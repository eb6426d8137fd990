//! The coordinator's decisions that need no database: how many steps to claim, which claimed
//! steps may start, when upkeep and the switch refresh are due, which claims a renewal lost,
//! when to record kept outcomes again, when to wake, and when the engine turned idle. Plain
//! data in, plain data out, so each is unit-tested without a database or a runtime.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tasker_domain::duration::saturating_add;
use tasker_domain::{StepId, TaskId};

/// How many steps a claim may take: the room left under `max_concurrent` once `busy` attempts
/// (running here, or claimed and held back) are counted, at most `batch`; none while draining.
pub(crate) fn claim_room(
    max_concurrent: usize,
    batch: usize,
    busy: usize,
    draining: bool,
) -> usize {
    if draining {
        return 0;
    }
    max_concurrent.saturating_sub(busy).min(batch)
}

/// Whether a claim of its own is worth a transaction. A claim that took fewer steps than it
/// asked for saw nothing else ready, and the steps our own outcomes release are claimed in the
/// outcomes' transaction; so after such a claim another is wanted only once something may have
/// made steps ready that no claim of ours saw: a wake-up (a new task, an operator, the clock:
/// the poll for other processes, a backoff expiring), upkeep (reclaimed leases, a refreshed
/// claim filter), a failed claim, or a claim cut short by the room it had.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimNeed {
    wanted: bool,
}

impl Default for ClaimNeed {
    fn default() -> Self {
        Self { wanted: true }
    }
}

impl ClaimNeed {
    pub(crate) fn wanted(self) -> bool {
        self.wanted
    }

    /// A claim asked for `asked` steps and took `took`.
    pub(crate) fn claimed(&mut self, took: usize, asked: usize) {
        self.wanted = took >= asked;
    }

    /// Steps may have become ready unseen.
    pub(crate) fn maybe_ready(&mut self) {
        self.wanted = true;
    }
}

/// Which of `queue` (claimed steps, in claim order) start now: a step starts while its task has
/// fewer than `per_task_limit` attempts running (counting the ones started before it in this
/// call); a step that would start but was cancelled by an operator meanwhile (`revoked`, which
/// consumes the mark) is dropped and takes no room; the rest stay held, in order.
pub(crate) struct Admission<T> {
    /// Start these, in order.
    pub(crate) start: Vec<T>,
    /// Keep these held back.
    pub(crate) held: VecDeque<T>,
    /// Never start these (cancelled while held).
    pub(crate) revoked: Vec<T>,
}

pub(crate) fn admit<T>(
    queue: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> (TaskId, StepId),
    running_per_task: &HashMap<TaskId, usize>,
    per_task_limit: usize,
    mut revoked: impl FnMut(StepId) -> bool,
) -> Admission<T> {
    let mut started: HashMap<TaskId, usize> = HashMap::new();
    let mut admission = Admission {
        start: Vec::new(),
        held: VecDeque::new(),
        revoked: Vec::new(),
    };
    for item in queue {
        let (task_id, step_id) = key(&item);
        let running = running_per_task.get(&task_id).copied().unwrap_or(0)
            + started.get(&task_id).copied().unwrap_or(0);
        if running >= per_task_limit {
            admission.held.push_back(item);
        } else if revoked(step_id) {
            admission.revoked.push(item);
        } else {
            *started.entry(task_id).or_default() += 1;
            admission.start.push(item);
        }
    }
    admission
}

/// What a pass's upkeep slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Renew leases, reclaim expired ones, refresh the claim filter (every `lease / 3`).
    Upkeep,
    /// Re-read the runtime switches (every `switch_refresh`, between upkeeps).
    SwitchRefresh,
    Nothing,
}

/// When upkeep and the switch refresh are next due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub(crate) next_upkeep: DateTime<Utc>,
    pub(crate) next_switch_refresh: DateTime<Utc>,
    pub(crate) last_upkeep: Option<DateTime<Utc>>,
    /// When leases were last renewed (or there were none to renew).
    pub(crate) last_renewed: DateTime<Utc>,
    upkeep_every: Duration,
    switch_refresh: Duration,
}

impl Schedule {
    /// Upkeep at once, the switch refresh `switch_refresh` from `now`.
    pub(crate) fn new(now: DateTime<Utc>, lease: Duration, switch_refresh: Duration) -> Self {
        Self {
            next_upkeep: now,
            next_switch_refresh: saturating_add(now, switch_refresh),
            last_upkeep: None,
            last_renewed: now,
            upkeep_every: lease / 3,
            switch_refresh,
        }
    }

    /// What is due at `now` (upkeep first: it refreshes the switches too).
    pub(crate) fn due(&self, now: DateTime<Utc>) -> Due {
        if now >= self.next_upkeep {
            Due::Upkeep
        } else if now >= self.next_switch_refresh {
            Due::SwitchRefresh
        } else {
            Due::Nothing
        }
    }

    /// Upkeep ran at `now`.
    pub(crate) fn upkept(&mut self, now: DateTime<Utc>) {
        self.last_upkeep = Some(now);
        self.next_upkeep = saturating_add(now, self.upkeep_every);
        self.next_switch_refresh = saturating_add(now, self.switch_refresh);
    }

    /// The switches were re-read at `now`.
    pub(crate) fn switches_refreshed(&mut self, now: DateTime<Utc>) {
        self.next_switch_refresh = saturating_add(now, self.switch_refresh);
    }

    /// Upkeep runs on the next pass.
    pub(crate) fn upkeep_now(&mut self, now: DateTime<Utc>) {
        self.next_upkeep = now;
    }
}

/// Which of `ids` (claims this engine holds) are lost after a renewal at `now`: with `kept`
/// (the renewal succeeded), those it did not keep; when it failed (`None`), all of them once no
/// renewal has succeeded for a whole `lease` since `last_renewed`, else none.
pub(crate) fn lost_claims(
    ids: &[StepId],
    kept: Option<&[StepId]>,
    last_renewed: DateTime<Utc>,
    lease: Duration,
    now: DateTime<Utc>,
) -> HashSet<StepId> {
    match kept {
        Some(kept) => {
            let kept: HashSet<StepId> = kept.iter().copied().collect();
            ids.iter()
                .filter(|id| !kept.contains(id))
                .copied()
                .collect()
        }
        None if now >= saturating_add(last_renewed, lease) => ids.iter().copied().collect(),
        None => HashSet::new(),
    }
}

/// The first wait before recording kept outcomes again; it doubles per failure.
pub(crate) const RECORD_RETRY_BASE: Duration = Duration::from_millis(100);
/// The longest wait before recording kept outcomes again.
pub(crate) const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

/// Finished attempts whose outcomes a failed commit could not record. They stay in memory (and
/// in `running`, so their leases are still extended) and are recorded again with backoff until
/// the database takes them or refuses them because their claim is gone.
pub(crate) struct Unrecorded<T> {
    pub(crate) finished: Vec<T>,
    failures: u32,
    pub(crate) retry_at: Option<DateTime<Utc>>,
}

impl<T> Default for Unrecorded<T> {
    fn default() -> Self {
        Self {
            finished: Vec::new(),
            failures: 0,
            retry_at: None,
        }
    }
}

impl<T> Unrecorded<T> {
    /// Keeps `finished` after a failed attempt to record them at `now`.
    pub(crate) fn keep(&mut self, finished: Vec<T>, now: DateTime<Utc>) {
        self.failures = self.failures.saturating_add(1);
        let delay = RECORD_RETRY_BASE
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(RECORD_RETRY_MAX);
        self.retry_at = Some(saturating_add(now, delay));
        self.finished.extend(finished);
    }

    /// The kept outcomes, when their retry is due at `now`.
    pub(crate) fn take_due(&mut self, now: DateTime<Utc>) -> Vec<T> {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            std::mem::take(&mut self.finished)
        } else {
            Vec::new()
        }
    }

    /// After a commit that recorded kept outcomes: the backoff starts over.
    pub(crate) fn recorded(&mut self) {
        if self.finished.is_empty() {
            self.failures = 0;
        }
    }
}

/// The next-attempt times of the failures this engine recorded.
#[derive(Default)]
pub(crate) struct DueTimes(BinaryHeap<Reverse<DateTime<Utc>>>);

impl DueTimes {
    pub(crate) fn extend(&mut self, times: impl IntoIterator<Item = DateTime<Utc>>) {
        self.0.extend(times.into_iter().map(Reverse));
    }

    /// The earliest time still ahead of `now`; the ones passed are forgotten.
    pub(crate) fn next_after(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        while self.0.peek().is_some_and(|Reverse(at)| *at <= now) {
            self.0.pop();
        }
        self.0.peek().map(|Reverse(at)| *at)
    }
}

/// What decides when a coordinator that did nothing in its pass wakes by itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WakeInputs {
    pub(crate) now: DateTime<Utc>,
    pub(crate) poll_interval: Duration,
    /// The earliest next attempt of a failure recorded here that is still ahead.
    pub(crate) known_due: Option<DateTime<Utc>>,
    /// When kept outcomes are recorded again.
    pub(crate) record_retry: Option<DateTime<Utc>>,
    /// When a drain's grace ends.
    pub(crate) drain_deadline: Option<DateTime<Utc>>,
    /// The next switch refresh, while runtime switches are in force (a pause or limit may be
    /// hiding ready work).
    pub(crate) switch_refresh: Option<DateTime<Utc>>,
    /// Nothing runs or is held here: then the database's next attempt and lease expiry count
    /// (they cover other processes' backoffs and leases); otherwise the next upkeep does.
    pub(crate) idle: bool,
    pub(crate) next_attempt_due: Option<DateTime<Utc>>,
    pub(crate) next_lease_expiry: Option<DateTime<Utc>>,
    pub(crate) schedule: Schedule,
}

/// When to wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    At(DateTime<Utc>),
    /// A lease expired since the last upkeep: run upkeep now instead of sleeping.
    UpkeepNow,
}

/// When a coordinator with nothing to do wakes by itself: the first of `poll_interval`, the
/// known next attempts, the record retry, the drain deadline, the switch refresh while switches
/// are in force, and, when idle, the database's next attempt and lease expiry (see
/// [`lease_wake`]) or, when busy, the next upkeep.
pub(crate) fn wake_at(inputs: &WakeInputs) -> Wake {
    let now = inputs.now;
    let mut at = saturating_add(now, inputs.poll_interval);
    for candidate in [
        inputs.known_due,
        inputs.record_retry,
        inputs.drain_deadline,
        inputs.switch_refresh,
    ]
    .into_iter()
    .flatten()
    {
        at = at.min(candidate);
    }
    if inputs.idle {
        if let Some(due) = inputs.next_attempt_due {
            at = at.min(due);
        }
        if let Some(expiry) = inputs.next_lease_expiry {
            let schedule = &inputs.schedule;
            let lease = lease_wake(expiry, now, schedule.last_upkeep, schedule.next_upkeep);
            if lease <= now {
                return Wake::UpkeepNow;
            }
            at = at.min(lease);
        }
    } else {
        at = at.min(inputs.schedule.next_upkeep);
    }
    Wake::At(at)
}

/// When an idle coordinator should next look at the earliest lease, which expires at `expiry`:
/// just after it expires (`reclaim_expired` takes leases that expired strictly before its
/// "now"); at once (`now`) when it has become reclaimable since the last upkeep; otherwise at the
/// next upkeep, so a lease the last upkeep could not reclaim is no reason to wake any sooner.
pub(crate) fn lease_wake(
    expiry: DateTime<Utc>,
    now: DateTime<Utc>,
    last_upkeep: Option<DateTime<Utc>>,
    next_upkeep: DateTime<Utc>,
) -> DateTime<Utc> {
    let reclaimable = saturating_add(expiry, Duration::from_millis(1));
    if reclaimable > now {
        reclaimable
    } else if last_upkeep.is_none_or(|at| at < reclaimable) {
        now
    } else {
        next_upkeep.max(saturating_add(now, Duration::from_millis(1)))
    }
}

/// Whether the engine is idle, and whether it just became so.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleState {
    /// Continues a restarted coordinator's count, so waiters compare against later reports.
    pub(crate) epoch: u64,
    was_idle: bool,
}

impl IdleState {
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            epoch,
            was_idle: true,
        }
    }

    /// A pass did work.
    pub(crate) fn busy(&mut self) {
        self.was_idle = false;
    }

    /// A pass did nothing, with `running` attempts running and `held` held back here: whether
    /// the engine is idle, and whether it just became so (`workflow.no_viable_steps`, once per
    /// stretch of idleness).
    pub(crate) fn settle(&mut self, running: usize, held: usize) -> (bool, bool) {
        let idle = running == 0 && held == 0;
        let became = idle && !self.was_idle;
        self.was_idle = idle;
        (idle, became)
    }

    /// The next report's epoch.
    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }
}

/// What a drain does after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainStep {
    /// Nothing runs here any more: stop.
    Done,
    /// The grace is over: cancel what still runs, give its claims back, stop.
    GraceOver,
    /// Wait for the running attempts until the deadline.
    Wait(DateTime<Utc>),
}

pub(crate) fn drain_step(running: usize, now: DateTime<Utc>, deadline: DateTime<Utc>) -> DrainStep {
    if running == 0 {
        DrainStep::Done
    } else if now >= deadline {
        DrainStep::GraceOver
    } else {
        DrainStep::Wait(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000 + secs, 0).unwrap()
    }

    fn ms(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_000_000 + n).unwrap()
    }

    #[test]
    fn the_claim_takes_the_room_left_capped_by_the_batch_and_nothing_while_draining() {
        assert_eq!(claim_room(10, 4, 0, false), 4);
        assert_eq!(claim_room(10, 4, 8, false), 2);
        assert_eq!(claim_room(10, 4, 10, false), 0);
        // More busy than allowed (a limit lowered at runtime) is no room, not an underflow.
        assert_eq!(claim_room(10, 4, 12, false), 0);
        assert_eq!(claim_room(10, 4, 0, true), 0);
    }

    fn task(n: u128) -> TaskId {
        TaskId(uuid::Uuid::from_u128(n))
    }

    fn step(n: u128) -> StepId {
        StepId(uuid::Uuid::from_u128(n))
    }

    fn key(item: &(u128, u128)) -> (TaskId, StepId) {
        (task(item.0), step(item.1))
    }

    #[test]
    fn held_steps_start_up_to_the_per_task_limit_in_claim_order() {
        let running = HashMap::from([(task(1), 1)]);
        let queue = vec![(1, 10), (1, 11), (2, 20), (2, 21), (2, 22), (1, 12)];
        let admission = admit(queue, key, &running, 2, |_| false);
        // Task 1 has one running: one more starts; task 2 starts two of three.
        assert_eq!(admission.start, vec![(1, 10), (2, 20), (2, 21)]);
        assert_eq!(
            admission.held,
            VecDeque::from(vec![(1, 11), (2, 22), (1, 12)])
        );
        assert!(admission.revoked.is_empty());
    }

    #[test]
    fn a_revoked_step_never_starts_and_takes_no_room() {
        let mut marks: HashSet<StepId> = HashSet::from([step(10)]);
        let queue = vec![(1, 10), (1, 11), (1, 12)];
        let admission = admit(queue, key, &HashMap::new(), 1, |id| marks.remove(&id));
        assert_eq!(admission.revoked, vec![(1, 10)]);
        assert_eq!(admission.start, vec![(1, 11)]);
        assert_eq!(admission.held, VecDeque::from(vec![(1, 12)]));
        // The mark is consumed.
        assert!(marks.is_empty());
    }

    #[test]
    fn a_revoked_step_of_a_full_task_stays_held_with_its_mark() {
        let running = HashMap::from([(task(1), 1)]);
        let mut marks: HashSet<StepId> = HashSet::from([step(10)]);
        let admission = admit(vec![(1, 10)], key, &running, 1, |id| marks.remove(&id));
        assert_eq!(admission.held, VecDeque::from(vec![(1, 10)]));
        assert!(marks.contains(&step(10)));
    }

    #[test]
    fn upkeep_comes_every_third_of_a_lease_and_the_switch_refresh_between() {
        let mut schedule = Schedule::new(t(0), Duration::from_secs(30), Duration::from_secs(4));
        assert_eq!(schedule.due(t(0)), Due::Upkeep);
        schedule.upkept(t(0));
        assert_eq!(schedule.last_upkeep, Some(t(0)));
        assert_eq!(schedule.due(t(3)), Due::Nothing);
        assert_eq!(schedule.due(t(4)), Due::SwitchRefresh);
        schedule.switches_refreshed(t(4));
        assert_eq!(schedule.due(t(7)), Due::Nothing);
        assert_eq!(schedule.due(t(8)), Due::SwitchRefresh);
        // Upkeep is due at 10 s and wins over a switch refresh due at the same time.
        assert_eq!(schedule.due(t(10)), Due::Upkeep);
        schedule.upkept(t(10));
        assert_eq!(schedule.next_upkeep, t(20));
        assert_eq!(schedule.next_switch_refresh, t(14));
        schedule.upkeep_now(t(11));
        assert_eq!(schedule.due(t(11)), Due::Upkeep);
    }

    #[test]
    fn a_failed_renewal_loses_claims_only_after_a_whole_lease() {
        let ids = [step(1), step(2), step(3)];
        let lease = Duration::from_secs(30);
        let kept = [step(1), step(3)];
        assert_eq!(
            lost_claims(&ids, Some(&kept), t(0), lease, t(5)),
            HashSet::from([step(2)])
        );
        assert!(lost_claims(&ids, None, t(0), lease, t(29)).is_empty());
        assert_eq!(
            lost_claims(&ids, None, t(0), lease, t(30)),
            HashSet::from(ids)
        );
    }

    #[test]
    fn unrecorded_outcomes_back_off_doubling_to_a_cap_and_start_over_once_recorded() {
        let mut kept: Unrecorded<u32> = Unrecorded::default();
        kept.keep(vec![1, 2], ms(0));
        assert_eq!(kept.retry_at, Some(ms(100)));
        assert!(kept.take_due(ms(99)).is_empty());
        assert_eq!(kept.take_due(ms(100)), vec![1, 2]);
        assert_eq!(kept.retry_at, None);
        // Failing again doubles the wait: 200 ms, 400 ms, ... up to 5 s.
        kept.keep(vec![1, 2], ms(100));
        assert_eq!(kept.retry_at, Some(ms(300)));
        let mut at = 300;
        for _ in 0..10 {
            let taken = kept.take_due(ms(at));
            kept.keep(taken, ms(at));
            at = (kept.retry_at.unwrap() - ms(0)).num_milliseconds();
        }
        let last = kept.take_due(ms(at));
        kept.keep(last, ms(at));
        assert_eq!(kept.retry_at, Some(ms(at + 5_000)));
        // Recorded: the next failure waits the base delay again.
        let taken = kept.take_due(ms(at + 5_000));
        assert_eq!(taken, vec![1, 2]);
        kept.recorded();
        kept.keep(vec![3], ms(0));
        assert_eq!(kept.retry_at, Some(ms(100)));
    }

    #[test]
    fn the_backoff_does_not_start_over_while_outcomes_are_still_kept() {
        let mut kept: Unrecorded<u32> = Unrecorded::default();
        kept.keep(vec![1], ms(0));
        kept.keep(vec![2], ms(0));
        assert_eq!(kept.retry_at, Some(ms(200)));
        kept.recorded();
        kept.keep(vec![3], ms(0));
        assert_eq!(kept.retry_at, Some(ms(400)));
    }

    #[test]
    fn passed_due_times_are_forgotten() {
        let mut due = DueTimes::default();
        due.extend([t(5), t(2), t(9)]);
        assert_eq!(due.next_after(t(0)), Some(t(2)));
        assert_eq!(due.next_after(t(2)), Some(t(5)));
        assert_eq!(due.next_after(t(9)), None);
    }

    fn inputs(idle: bool) -> WakeInputs {
        let mut schedule = Schedule::new(t(0), Duration::from_secs(30), Duration::from_secs(5));
        schedule.upkept(t(0));
        WakeInputs {
            now: t(1),
            poll_interval: Duration::from_secs(60),
            known_due: None,
            record_retry: None,
            drain_deadline: None,
            switch_refresh: None,
            idle,
            next_attempt_due: None,
            next_lease_expiry: None,
            schedule,
        }
    }

    #[test]
    fn a_busy_coordinator_wakes_for_upkeep_and_its_own_backoffs_not_the_database() {
        let mut busy = inputs(false);
        assert_eq!(wake_at(&busy), Wake::At(t(10)));
        busy.known_due = Some(t(3));
        assert_eq!(wake_at(&busy), Wake::At(t(3)));
        // The database's times are not even asked for while busy.
        busy.next_attempt_due = Some(t(2));
        busy.next_lease_expiry = Some(t(0));
        assert_eq!(wake_at(&busy), Wake::At(t(3)));
        busy.record_retry = Some(t(2));
        assert_eq!(wake_at(&busy), Wake::At(t(2)));
    }

    #[test]
    fn an_idle_coordinator_wakes_at_the_first_of_poll_backoff_lease_and_switches() {
        let mut idle = inputs(true);
        assert_eq!(wake_at(&idle), Wake::At(t(61)));
        idle.switch_refresh = Some(t(5));
        assert_eq!(wake_at(&idle), Wake::At(t(5)));
        idle.next_attempt_due = Some(t(4));
        assert_eq!(wake_at(&idle), Wake::At(t(4)));
        idle.next_lease_expiry = Some(t(2));
        assert_eq!(
            wake_at(&idle),
            Wake::At(saturating_add(t(2), Duration::from_millis(1)))
        );
        idle.drain_deadline = Some(t(1));
        assert_eq!(wake_at(&idle), Wake::At(t(1)));
    }

    #[test]
    fn a_lease_expired_since_the_last_upkeep_runs_upkeep_instead_of_sleeping() {
        let mut idle = inputs(true);
        idle.now = t(3);
        // Expired at 2 s, after the upkeep at 0 s: upkeep now.
        idle.next_lease_expiry = Some(t(2));
        assert_eq!(wake_at(&idle), Wake::UpkeepNow);
        // The upkeep at 0 s ran after it expired (and left it): wait for the next upkeep.
        idle.next_lease_expiry = Some(t(-5));
        assert_eq!(wake_at(&idle), Wake::At(t(10)));
    }

    #[test]
    fn an_expired_lease_wakes_the_coordinator_once_not_every_millisecond() {
        let ms = Duration::from_millis(1);
        // Not expired yet: wake just after it expires.
        assert_eq!(
            lease_wake(t(5), t(1), Some(t(0)), t(10)),
            saturating_add(t(5), ms)
        );
        // Expired since the last upkeep: reclaim now.
        assert_eq!(lease_wake(t(5), t(6), Some(t(0)), t(10)), t(6));
        assert_eq!(lease_wake(t(5), t(6), None, t(10)), t(6));
        // The last upkeep already ran after it expired (and left it): the next upkeep, not now.
        assert_eq!(lease_wake(t(5), t(7), Some(t(6)), t(16)), t(16));
        assert!(lease_wake(t(5), t(7), Some(t(6)), t(7)) > t(7));
    }

    #[test]
    fn the_idle_event_comes_once_per_stretch_of_idleness() {
        let mut state = IdleState::new(7);
        // A fresh coordinator counts as idle already: no event for starting idle.
        assert_eq!(state.settle(0, 0), (true, false));
        state.busy();
        assert_eq!(state.settle(1, 0), (false, false));
        assert_eq!(state.settle(0, 0), (true, true));
        assert_eq!(state.settle(0, 0), (true, false));
        // A held step is not idle.
        assert_eq!(state.settle(0, 1), (false, false));
        assert_eq!(state.next_epoch(), 8);
        assert_eq!(state.next_epoch(), 9);
    }

    #[test]
    fn a_drain_waits_for_running_attempts_until_its_deadline() {
        assert_eq!(drain_step(0, t(0), t(10)), DrainStep::Done);
        assert_eq!(drain_step(2, t(5), t(10)), DrainStep::Wait(t(10)));
        assert_eq!(drain_step(2, t(10), t(10)), DrainStep::GraceOver);
        assert_eq!(drain_step(0, t(11), t(10)), DrainStep::Done);
    }

    #[test]
    fn a_claim_is_wanted_until_one_comes_back_short_and_again_after_a_wake_up() {
        let mut need = ClaimNeed::default();
        assert!(need.wanted(), "a new coordinator claims");
        need.claimed(3, 8);
        assert!(!need.wanted(), "nothing else was ready");
        need.maybe_ready();
        assert!(need.wanted(), "a wake-up may have brought work");
        need.claimed(8, 8);
        assert!(need.wanted(), "a full claim may have left more");
        need.claimed(0, 0);
        assert!(need.wanted(), "a claim with no room saw nothing");
    }
}
