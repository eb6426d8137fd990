//! Namespace limits in a claim: the running attempts each limited namespace has, counted under
//! a lock per namespace, and the candidates each may still take.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, QueryResult};
use tasker_domain::TemplateId;

use super::super::changes::State;
use super::super::sql::{Db, get, stmt, template_id};
use super::{CLAIM, ClaimFilter, named_tasks_clause, select_candidates};
use crate::error::StoreError;

/// On PostgreSQL, serializes claims that count a limited namespace's running attempts: one
/// transaction-scoped advisory lock per namespace, in name order, taken before any row lock.
/// (SQLite has one writer at a time already.)
pub(super) async fn lock_limits<C: ConnectionTrait>(
    txn: &C,
    filter: &ClaimFilter,
) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    if backend != DbBackend::Postgres {
        return Ok(());
    }
    let mut namespaces: Vec<&str> = filter.limits.iter().map(|l| l.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    for namespace in namespaces {
        txn.exec(stmt(
            backend,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            vec![format!("tasker.namespace_limit:{namespace}").into()],
        ))
        .await?;
    }
    Ok(())
}

/// Step attempts in progress (any process) per named task of the limited namespaces.
async fn running_per_named_task<C: ConnectionTrait>(
    txn: &C,
    filter: &ClaimFilter,
) -> Result<HashMap<TemplateId, i64>, StoreError> {
    let ids: Vec<TemplateId> = filter
        .limits
        .iter()
        .flat_map(|l| l.named_task_ids.iter().copied())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = txn
        .rows(stmt(
            txn.get_database_backend(),
            format!(
                "SELECT t.named_task_id AS named_task_id, COUNT(*) AS running \
                 FROM tasker_workflow_steps s JOIN tasker_tasks t ON t.task_id = s.task_id \
                 WHERE s.lease_expires_at IS NOT NULL AND s.state = {} \
                 AND t.named_task_id IN ({}) GROUP BY t.named_task_id",
                CLAIM.to().sql(),
                ids.iter()
                    .map(TemplateId::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![],
        ))
        .await?;
    let mut running = HashMap::with_capacity(rows.len());
    for row in &rows {
        running.insert(
            template_id(row, "named_task_id")?,
            get::<i64>(row, "running")?,
        );
    }
    Ok(running)
}

/// The candidates of a claim when some namespaces have a limit on running attempts: each
/// limited namespace takes at most its room, then the rest take what is left.
pub(super) async fn limited_candidates<C: ConnectionTrait>(
    txn: &C,
    filter: &ClaimFilter,
    only: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<QueryResult>, StoreError> {
    lock_limits(txn, filter).await?;
    let running = running_per_named_task(txn, filter).await?;
    let mut excluded = filter.paused_named_task_ids.clone();
    let mut with_room = Vec::new();
    for cap in &filter.limits {
        let used: i64 = cap
            .named_task_ids
            .iter()
            .filter_map(|id| running.get(id))
            .sum();
        let room = i64::from(cap.max_running).saturating_sub(used);
        excluded.extend(&cap.named_task_ids);
        if room > 0 {
            with_room.push((&cap.named_task_ids, usize::try_from(room).unwrap_or(0)));
        }
    }
    let paused = named_tasks_clause(&filter.paused_named_task_ids, false);
    let mut candidates = Vec::new();
    for (ids, room) in with_room {
        let wanted = room.min(limit - candidates.len());
        if wanted == 0 || ids.is_empty() {
            continue;
        }
        let clause = format!("{only}{paused}{}", named_tasks_clause(ids, true));
        candidates.extend(select_candidates(txn, &clause, now, wanted).await?);
    }
    let rest = limit - candidates.len();
    if rest > 0 {
        let clause = format!("{only}{}", named_tasks_clause(&excluded, false));
        candidates.extend(select_candidates(txn, &clause, now, rest).await?);
    }
    Ok(candidates)
}
