//! The two-database harness, a fixed clock, and template helpers.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, Database};
use tasker_domain::{DefaultIdentity, TaskRequest};
use tasker_persistence::{
    ConnectOptions, CreateTaskOptions, CreatedTask, LeaseClock, RegisteredTemplate, Store,
};
use tasker_template::TaskTemplate;

/// A fixed "now"; tests move time by adding to it, never by sleeping.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub(crate) fn at(secs: f64) -> DateTime<Utc> {
    t0() + Duration::from_secs_f64(secs)
}

/// Runs `test` against a fresh SQLite database, then a fresh PostgreSQL database when
/// `TASKER_TEST_DATABASE_URL` is set. The label names the backend in assertion messages. The
/// store's leases run on the tests' fixed clock ([`LeaseClock::Caller`]).
pub(crate) async fn on_each_database<F, Fut>(test: F)
where
    F: Fn(Store, &'static str) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    on_each_database_url(|url, backend| {
        let test = &test;
        async move {
            let mut options = ConnectOptions {
                lease_clock: LeaseClock::Caller,
                ..Default::default()
            };
            if backend == "postgres" {
                options.max_connections = 12;
            }
            let store = Store::connect(&url, &options).await?;
            let result = test(store.clone(), backend).await;
            store.close().await;
            result
        }
    })
    .await;
}

/// [`on_each_database`] for a test that opens its own connections: it gets the URL of a fresh
/// database with no schema yet.
pub(crate) async fn on_each_database_url<F, Fut>(test: F)
where
    F: Fn(String, &'static str) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tasker.db").display()
    );
    test(url, "sqlite")
        .await
        .unwrap_or_else(|e| panic!("sqlite: {e:?}"));
    if let Ok(admin_url) = std::env::var("TASKER_TEST_DATABASE_URL") {
        let name = format!("tasker_it_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url.as_str()).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
        let result = test(format!("{base}/{name}"), "postgres").await;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .ok();
        result.unwrap_or_else(|e| panic!("postgres: {e:?}"));
    }
}

/// Tasks and steps stored, in all.
pub(crate) async fn counts(store: &Store) -> (u64, u64) {
    let health = store.health_counts(t0()).await.unwrap();
    (
        health.tasks_by_state.values().sum(),
        health.steps_by_state.values().sum(),
    )
}

pub(crate) fn template(yaml: &str) -> TaskTemplate {
    TaskTemplate::from_yaml_str(yaml, Some("test.yaml")).unwrap()
}

/// A template from `(name, dependencies)` pairs with the given retry limit.
pub(crate) fn shape(name: &str, steps: &[(&str, &[&str])], retry_limit: u32) -> TaskTemplate {
    let mut yaml = format!("name: {name}\nstep_templates:\n");
    for (step, deps) in steps {
        yaml.push_str(&format!(
            "  - name: {step}\n    handler_class: tasker::noop\n    default_retry_limit: {retry_limit}\n    depends_on_steps: [{}]\n",
            deps.join(", ")
        ));
    }
    template(&yaml)
}

/// A template of independent steps named `names` (no dependencies), with the given retry limit.
pub(crate) fn flat(name: &str, names: &[String], retry_limit: u32) -> TaskTemplate {
    let steps: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    shape(name, &steps, retry_limit)
}

pub(crate) fn diamond() -> TaskTemplate {
    shape(
        "diamond",
        &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])],
        3,
    )
}

pub(crate) async fn register(store: &Store, template: &TaskTemplate) -> RegisteredTemplate {
    store.register_template(template, t0()).await.unwrap()
}

pub(crate) async fn create(
    store: &Store,
    registered: &RegisteredTemplate,
    request: TaskRequest,
) -> CreatedTask {
    store
        .create_task(
            registered,
            &request,
            &CreateTaskOptions {
                now: t0(),
                identity: &DefaultIdentity,
                correlation_id: None,
                trace_parent: None,
            },
        )
        .await
        .unwrap()
}

pub(crate) fn request_for(template: &TaskTemplate) -> TaskRequest {
    TaskRequest::new(template.name.clone()).namespace(template.namespace_name.clone())
}

pub(crate) fn step_id(created: &CreatedTask, name: &str) -> tasker_domain::StepId {
    created
        .steps
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, id)| *id)
        .unwrap()
}

/// The success of `claimed`'s attempt with `results`.
pub(crate) fn success(
    claimed: &tasker_persistence::ClaimedStep,
    results: serde_json::Value,
) -> tasker_persistence::StepOutcome {
    tasker_persistence::StepOutcome::Success {
        step_id: claimed.step_id,
        attempt: claimed.attempt,
        results,
    }
}

/// A history as `(to_state, most_recent)` pairs, oldest first.
pub(crate) fn states(rows: &[tasker_persistence::TransitionRecord]) -> Vec<(&str, bool)> {
    rows.iter()
        .map(|t| (t.to_state.as_str(), t.most_recent))
        .collect()
}
