//! Claims made by creation: a task's root steps written already claimed for the engine that
//! creates it, so its first steps start without a claim of their own (one commit fewer per
//! task: the creating engine would otherwise claim them in the next statement).
//!
//! A claim at creation is what [`Store::claim_ready_steps`] would have done right after the
//! write: the root steps go `pending → in_progress` with attempt 1, the creating engine as
//! their owner and a lease on the store's clock, the task goes `pending → in_progress`, and
//! both transitions are in the history. The write returns the claims
//! ([`CreatedTask::claimed`](super::CreatedTask::claimed)) with the inputs an attempt needs.
//! A task whose identity already exists is not written, and nothing of it is claimed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use sea_orm::{ConnectionTrait, DbBackend, Value};
use serde_json::json;
use tasker_domain::{TaskState, TemplateId};
use uuid::Uuid;

use super::changes::State;
use super::claims::{CLAIM, START};
use super::create::{PreparedTask, STEP_COLUMNS};
use super::sql::{MAX_LEASE_MICROS, database_now, get, micros, query_in_chunks};
use super::{Claim, ClaimBatch, ClaimedStep, LeaseClock, StepInputs, Store};
use crate::error::StoreError;
use crate::time::{from_micros, to_micros};

/// The claim a prepared task makes as it is written ([`Store::claim_at_creation`]).
#[derive(Debug, Clone)]
pub(super) struct CreationClaim {
    /// When the claim was made (microseconds): its attempt's start, and on the caller's clock
    /// its lease's.
    at: i64,
    /// The lease, in microseconds.
    lease: i64,
    clock: LeaseClock,
    /// The claimed steps' positions in the template.
    roots: Vec<usize>,
}

/// How many of [`STEP_COLUMNS`], the last, are left out (to their default, NULL) by a write
/// without claims at creation: the claim's owner, lease and attempt time.
const CLAIM_ONLY_COLUMNS: usize = 3;

/// How many of [`STEP_COLUMNS`] a write without claims at creation sets.
const UNCLAIMED_COLUMNS: usize = STEP_COLUMNS.len() - CLAIM_ONLY_COLUMNS;

/// The values a step record carries beyond [`STEP_COLUMNS`] in a one-statement write with
/// claims, from which [`StepLayout::select`] sets the lease: `lease_on_db` true, `lease` is
/// the lease's length (added to the database's clock); false, `lease` is the expiry itself
/// (the caller's clock); both NULL for a step not claimed.
const STEP_RECORD_EXTRA: &[&str] = &["lease", "lease_on_db"];

/// How a one-statement write lays out its step records: without claims at creation, as
/// before claims existed (the claim columns left to their defaults, NULL); with them, every
/// column and [`STEP_RECORD_EXTRA`].
#[derive(Debug, Clone, Copy)]
pub(super) struct StepLayout {
    claims: bool,
}

impl StepLayout {
    /// The layout for writing `tasks`.
    pub(super) fn of(tasks: &[PreparedTask]) -> Self {
        Self {
            claims: tasks.iter().any(|t| t.claim.is_some()),
        }
    }

    /// Whether any step is claimed (the write answers their leases).
    pub(super) fn claims(self) -> bool {
        self.claims
    }

    /// The table's columns the write sets.
    pub(super) fn columns(self) -> &'static [&'static str] {
        if self.claims {
            STEP_COLUMNS
        } else {
            &STEP_COLUMNS[..UNCLAIMED_COLUMNS]
        }
    }

    /// The columns of a record ([`PreparedTask::step_records`]).
    pub(super) fn record_columns(self) -> Vec<&'static str> {
        let extra: &[&str] = if self.claims { STEP_RECORD_EXTRA } else { &[] };
        self.columns().iter().chain(extra).copied().collect()
    }

    /// The select list that inserts records: each of [`StepLayout::columns`] as `column(name)`
    /// names it, but `lease_expires_at`, set from the record's [`STEP_RECORD_EXTRA`]: the
    /// database's clock plus the lease, or the expiry the record carries (the caller's clock);
    /// NULL for a step not claimed.
    pub(super) fn select(self, backend: DbBackend, column: impl Fn(&str) -> String) -> String {
        self.columns()
            .iter()
            .map(|name| {
                if *name == "lease_expires_at" {
                    format!(
                        "CASE WHEN {on_db} THEN {now} + {lease} ELSE {lease} END",
                        on_db = column("lease_on_db"),
                        now = database_now(backend),
                        lease = column("lease"),
                    )
                } else {
                    column(name)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl PreparedTask {
    /// How many steps [`Store::claim_at_creation`] would claim: the root steps (no parents),
    /// or none for a task with bypassed steps (which is written as before, unclaimed).
    pub fn claimable_at_creation(&self) -> usize {
        if !self.created.skipped.is_empty() || self.claim.is_some() {
            return 0;
        }
        self.roots().count()
    }

    /// The task's template (its catalogue id).
    pub fn named_task_id(&self) -> TemplateId {
        self.described.named_task_id
    }

    fn roots(&self) -> impl Iterator<Item = usize> + '_ {
        self.described
            .template
            .step_templates
            .iter()
            .enumerate()
            .filter(|(_, step)| step.depends_on_steps.is_empty())
            .map(|(position, _)| position)
    }

    /// This task's step records for a one-statement write laid out as `layout` (without
    /// claims, the rows themselves, not copied).
    pub(super) fn step_records(
        &self,
        layout: StepLayout,
    ) -> impl Iterator<Item = Cow<'_, [Value]>> + '_ {
        self.step_rows
            .iter()
            .enumerate()
            .map(move |(position, row)| {
                if !layout.claims {
                    return Cow::Borrowed(&row[..UNCLAIMED_COLUMNS]);
                }
                let mut record = row.clone();
                match &self.claim {
                    Some(claim) if claim.roots.contains(&position) => {
                        let on_db = claim.clock == LeaseClock::Database;
                        let lease = if on_db {
                            claim.lease.min(MAX_LEASE_MICROS)
                        } else {
                            claim.at.saturating_add(claim.lease)
                        };
                        record.push(Some(lease).into());
                        record.push(Some(on_db).into());
                    }
                    _ => {
                        record.push(Option::<i64>::None.into());
                        record.push(Option::<bool>::None.into());
                    }
                }
                Cow::Owned(record)
            })
    }

    /// The ids of the steps this task claims as it is written.
    pub(super) fn claimed_step_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.claim.iter().flat_map(|claim| {
            claim
                .roots
                .iter()
                .map(|&position| self.created.steps[position].1.as_uuid())
        })
    }

    /// The claims of this task, written, with their steps' leases as stored (`leases`, by step
    /// id; every claimed step must have one).
    pub(super) fn claimed(&self, leases: &HashMap<Uuid, i64>) -> Result<ClaimBatch, StoreError> {
        let Some(claim) = &self.claim else {
            return Ok(ClaimBatch::default());
        };
        let template = &self.described.template;
        let mut claims = Vec::with_capacity(claim.roots.len());
        for &position in &claim.roots {
            let step_id = self.created.steps[position].1;
            let lease = leases.get(&step_id.as_uuid()).ok_or_else(|| {
                StoreError::malformed(
                    "creation",
                    format!("no lease came back for the claimed step {step_id}"),
                )
            })?;
            let step = &template.step_templates[position];
            claims.push(Claim {
                step: ClaimedStep {
                    step_id,
                    task_id: self.created.task_id,
                    named_task_id: self.described.named_task_id,
                    name: step.name.clone(),
                    attempt: 1,
                    retry_limit: step.default_retry_limit,
                    retried: false,
                    lease_expires_at: from_micros(*lease),
                },
                inputs: StepInputs {
                    step_id,
                    task_context: self.created.context.clone(),
                    correlation_id: self.created.correlation_id.clone(),
                    trace_parent: self.described.trace_parent.clone(),
                    task_created_at: from_micros(self.now),
                    inputs: json!({}),
                    parent_results: Default::default(),
                },
            });
        }
        Ok(ClaimBatch {
            claims,
            started_tasks: vec![self.created.task_id],
        })
    }
}

impl Store {
    /// Makes `task` claim its root steps for `owner` at `now`, with leases of `lease` on this
    /// store's clock, as it is written (see the module's documentation); returns how many steps
    /// it claims (0, and no change, for a task [`PreparedTask::claimable_at_creation`]
    /// refuses). The caller runs them: they are its claims as if it had claimed them, and lapse
    /// like any other if it does not.
    pub fn claim_at_creation(
        &self,
        task: &mut PreparedTask,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> usize {
        if task.claimable_at_creation() == 0 {
            return 0;
        }
        let roots: Vec<usize> = task.roots().collect();
        let count = roots.len();
        let now = to_micros(now);
        for &position in &roots {
            let step_id = task.created.steps[position].1.as_uuid();
            let row = &mut task.step_rows[position];
            set(row, "state", CLAIM.to().name().into());
            set(row, "attempts", 1i32.into());
            set(row, "in_process", true.into());
            set(row, "claim_owner", Some(owner.to_owned()).into());
            set(row, "last_attempted_at", Some(now).into());
            set(row, "next_attempt_at", Option::<i64>::None.into());
            set(row, "last_sort_key", 10i32.into());
            task.step_transitions.push(CLAIM.row(
                step_id,
                10,
                true,
                json!({"attempt_number": 1, "claim_owner": owner}),
            ));
        }
        set_task(&mut task.task_row, "state", START.to().as_str().into());
        set_task(&mut task.task_row, "last_sort_key", 10i32.into());
        task.task_transitions.push(START.row(
            task.created.task_id.as_uuid(),
            10,
            true,
            json!({"reason": "steps_claimed"}),
        ));
        task.created.state = TaskState::InProgress;
        task.claim = Some(CreationClaim {
            at: now,
            lease: micros(lease),
            clock: self.lease_clock,
            roots,
        });
        count
    }
}

fn set(row: &mut [Value], column: &str, value: Value) {
    set_in(row, STEP_COLUMNS, column, value);
}

fn set_task(row: &mut [Value], column: &str, value: Value) {
    set_in(row, super::create::TASK_COLUMNS, column, value);
}

/// Sets `column` of `row`, laid out as `columns` (both are constants of this crate, and every
/// name asked for is one of the columns).
fn set_in(row: &mut [Value], columns: &[&str], column: &str, value: Value) {
    let at = columns
        .iter()
        .position(|c| *c == column)
        .expect("a column of the creation's rows");
    row[at] = value;
}

/// The transaction path: the steps `tasks` claimed were inserted without leases; this sets
/// them on each claim's clock and returns them by step id. Only the tasks in `inserted` count
/// (the others were duplicates, not written).
pub(super) async fn lease_claims<C: ConnectionTrait>(
    db: &C,
    tasks: &[PreparedTask],
    inserted: &std::collections::HashSet<Uuid>,
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let backend = db.get_database_backend();
    // One statement per lease and clock (one in practice: one engine's).
    let mut groups: HashMap<(LeaseClock, i64, i64), Vec<Value>> = HashMap::new();
    for task in tasks {
        let Some(claim) = &task.claim else { continue };
        if !inserted.contains(&task.created.task_id.as_uuid()) {
            continue;
        }
        groups
            .entry((claim.clock, claim.lease, claim.at))
            .or_default()
            .extend(task.claimed_step_ids().map(Value::from));
    }
    let mut leases = HashMap::new();
    for ((clock, lease, now), ids) in groups {
        let (expiry, value) = clock.expiry(backend, 1, now, lease);
        let rows = query_in_chunks(
            db,
            &format!(
                "UPDATE tasker_workflow_steps SET lease_expires_at = {expiry} \
                 WHERE workflow_step_id IN ({{ids}}) RETURNING workflow_step_id, lease_expires_at"
            ),
            vec![value],
            &ids,
        )
        .await?;
        for row in rows {
            leases.insert(
                get(&row, "workflow_step_id")?,
                get(&row, "lease_expires_at")?,
            );
        }
    }
    Ok(leases)
}
