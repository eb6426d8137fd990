//! Measures the store's cost per step of claim + record on a wide task (one root, N-2 parallel
//! steps, one join) of 100 and of 10,000 steps, in batches of 100, on SQLite and (when
//! `TASKER_TEST_DATABASE_URL` is set) PostgreSQL. The full benchmark suite is `cargo xtask
//! bench`; this example isolates the storage hot path.
//!
//! Run: `cargo run --release -p tasker-persistence --example claim_cost`

use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{ConnectionTrait, Database};
use tasker_domain::{DefaultIdentity, TaskRequest};
use tasker_persistence::{ConnectOptions, CreateTaskOptions, StepOutcome, Store};
use tasker_template::{StepTemplate, TaskTemplate};

fn wide(n: usize) -> TaskTemplate {
    let mut template = TaskTemplate::new(format!("wide_{n}"));
    template
        .step_templates
        .push(StepTemplate::new("root", "tasker::noop"));
    let middle: Vec<String> = (0..n - 2).map(|i| format!("s{i}")).collect();
    for name in &middle {
        template
            .step_templates
            .push(StepTemplate::new(name.clone(), "tasker::noop").depends_on(["root"]));
    }
    template
        .step_templates
        .push(StepTemplate::new("join", "tasker::noop").depends_on(middle));
    template.validate().expect("valid");
    template
}

async fn per_step(store: &Store, n: usize) -> Duration {
    let template = wide(n);
    let registered = store
        .register_template(&template, Utc::now())
        .await
        .unwrap();
    let request = TaskRequest::new(template.name.clone());
    let options = CreateTaskOptions {
        now: Utc::now(),
        identity: &DefaultIdentity,
        correlation_id: None,
        trace_parent: None,
    };
    store
        .create_task(&registered, &request, &options)
        .await
        .unwrap();
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let batch = store
            .claim_ready_steps("bench", 100, Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        assert!(!batch.is_empty(), "work remains");
        let outcomes = batch
            .steps()
            .map(|s| StepOutcome::Success {
                step_id: s.step_id,
                attempt: s.attempt,
                results: serde_json::json!({}),
            })
            .collect::<Vec<_>>();
        done += outcomes.len();
        store
            .record_outcomes("bench", outcomes, Utc::now())
            .await
            .unwrap();
    }
    started.elapsed() / u32::try_from(n).unwrap()
}

async fn measure(label: &str, store: Store) {
    let small = per_step(&store, 100).await;
    let large = per_step(&store, 10_000).await;
    println!(
        "{label}: 100 steps {:.1} µs/step, 10,000 steps {:.1} µs/step, ratio {:.2}",
        small.as_secs_f64() * 1e6,
        large.as_secs_f64() * 1e6,
        large.as_secs_f64() / small.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    measure(
        "sqlite",
        Store::connect(&url, &ConnectOptions::default())
            .await
            .unwrap(),
    )
    .await;
    if let Ok(admin_url) = std::env::var("TASKER_TEST_DATABASE_URL") {
        let name = format!("tasker_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url.as_str()).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
        let store = Store::connect(&format!("{base}/{name}"), &ConnectOptions::default())
            .await
            .unwrap();
        measure("postgres", store.clone()).await;
        store.close().await;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .ok();
    }
}
