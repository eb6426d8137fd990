//! What the `tasker` binary relies on: one call registers everything, and every run name has a
//! sample context that creates a task.

use std::collections::BTreeSet;
use std::sync::Arc;

use tasker_blog_examples::{BlogServices, SAMPLES, TEMPLATES, register, sample};
use tasker_domain::TaskState;
use tasker_engine::{Engine, EngineError};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

#[test]
fn every_blog_template_has_a_sample_and_run_names_are_unique() {
    let names: BTreeSet<&str> = SAMPLES.iter().map(|s| s.run_name).collect();
    assert_eq!(names.len(), SAMPLES.len());
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "blog_examples/customer_analytics",
            "blog_examples/monitored_checkout",
            "blog_examples/process_order",
            "blog_examples/user_registration",
            "customer_success/process_refund",
            "payments/process_refund",
        ]
    );
    let blog_templates = TEMPLATES
        .iter()
        .filter(|t| t.path.starts_with("post_"))
        .count();
    assert_eq!(blog_templates, SAMPLES.len());
    let sample = sample("blog_examples/process_order").unwrap();
    assert_eq!(sample.context()["payment_info"]["amount"], 124.76);
    assert_eq!(sample.request().version.unwrap().to_string(), "1.0.0");
    assert!(tasker_blog_examples::sample("blog_examples/nope").is_none());
}

#[tokio::test]
async fn every_sample_creates_a_pending_task_and_registering_twice_is_refused() {
    on_each_database(|db| async move {
        let h = harness(&db.store).await;
        for sample in SAMPLES {
            let created = h
                .engine
                .create_task(sample.request())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", sample.run_name));
            assert_eq!(created.state, TaskState::Pending, "{}", sample.run_name);
        }
        let listed = h.engine.registry().list(None);
        assert_eq!(listed.len(), TEMPLATES.len());
        let err = register(&h.engine, &BlogServices::new(Arc::new(h.clock.clone())))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::DuplicateHandler(_)), "{err}");
        h.engine.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_binary_path_runs_a_sample_on_the_wall_clock() {
    on_each_database(|db| async move {
        // The binary's path: default services on the wall clock, then run a sample by name.
        let engine = Engine::builder(db.store.clone())
            .config(config())
            .build()
            .unwrap();
        let services = tasker_blog_examples::register_with_default_services(&engine)
            .await
            .unwrap();
        let task = engine
            .run_task(sample("blog_examples/process_order").unwrap().request())
            .await
            .unwrap();
        assert_eq!(task.state, TaskState::Complete);
        assert_eq!(services.post_01.payment.call_count("process_payment"), 1);
        engine.shutdown().await;
    })
    .await;
}

/// What `cargo xtask validate-docs` runs: every sample the docs point readers at completes with
/// the default services.
#[tokio::test]
async fn every_sample_runs_to_completion_with_the_default_services() {
    on_each_database(|db| async move {
        let engine = Engine::builder(db.store.clone())
            .config(config())
            .build()
            .unwrap();
        tasker_blog_examples::register_with_default_services(&engine)
            .await
            .unwrap();
        let mut ended = Vec::new();
        for sample in SAMPLES {
            let task = engine.run_task(sample.request()).await.unwrap();
            ended.push((sample.run_name, task.state));
        }
        let expected: Vec<_> = SAMPLES
            .iter()
            .map(|sample| (sample.run_name, TaskState::Complete))
            .collect();
        assert_eq!(ended, expected);
        engine.shutdown().await;
    })
    .await;
}
