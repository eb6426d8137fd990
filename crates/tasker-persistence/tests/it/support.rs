//! The two-database harness, a fixed clock, and template helpers.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, Database};
use tasker_domain::{DefaultIdentity, TaskRequest};
use tasker_persistence::{
    ConnectOptions, CreateTaskOptions, CreatedTask, RegisteredTemplate, Store,
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
/// `TASKER_TEST_DATABASE_URL` is set. The label names the backend in assertion messages.
pub(crate) async fn on_each_database<F, Fut>(test: F)
where
    F: Fn(Store, &'static str) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tasker.db").display()
    );
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    test(store, "sqlite")
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
        let store = Store::connect(
            &format!("{base}/{name}"),
            &ConnectOptions {
                max_connections: 12,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let result = test(store.clone(), "postgres").await;
        store.connection().clone().close().await.ok();
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .ok();
        result.unwrap_or_else(|e| panic!("postgres: {e:?}"));
    }
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
