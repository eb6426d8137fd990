//! Every Rails engine test shape completes, each step starting only after its parents completed.

use tasker_domain::{StepState, TaskState};
use tasker_engine::ManualClock;
use tasker_persistence::testing::on_each_database;
use tasker_template::TaskTemplate;

use crate::support::*;

const SHAPES: &[(&str, &str)] = &[
    (
        "linear",
        include_str!("../../../tasker-blog-examples/templates/engine_shapes/linear.yaml"),
    ),
    (
        "diamond",
        include_str!("../../../tasker-blog-examples/templates/engine_shapes/diamond.yaml"),
    ),
    (
        "parallel_merge",
        include_str!("../../../tasker-blog-examples/templates/engine_shapes/parallel_merge.yaml"),
    ),
    (
        "tree",
        include_str!("../../../tasker-blog-examples/templates/engine_shapes/tree.yaml"),
    ),
    (
        "mixed",
        include_str!("../../../tasker-blog-examples/templates/engine_shapes/mixed.yaml"),
    ),
];

fn check_order(template: &TaskTemplate, log: &[String]) {
    let position = |entry: &str| log.iter().position(|l| l == entry);
    for step in &template.step_templates {
        let started = log
            .iter()
            .position(|l| l.starts_with(&format!("started:{}#", step.name)))
            .expect("every step starts");
        for parent in &step.depends_on_steps {
            let completed = log
                .iter()
                .position(|l| l.starts_with(&format!("completed:{parent}#")))
                .unwrap_or_else(|| panic!("{parent} never completed: {log:?}"));
            assert!(
                completed < started,
                "{} started before {parent} completed: {log:?}",
                step.name
            );
        }
        let planned_failures = step
            .handler_config
            .get("times")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let final_attempt = planned_failures + 1;
        assert!(
            position(&format!("completed:{}#{final_attempt}", step.name)).is_some(),
            "{}: {log:?}",
            step.name
        );
    }
}

#[tokio::test]
async fn every_rails_test_shape_completes_in_dependency_order() {
    on_each_database(|db| async move {
        for (shape, yaml) in SHAPES {
            let clock = ManualClock::new(t0());
            let engine = engine(&db.store, &clock);
            let template = template(yaml);
            engine
                .register_template(template.clone(), false)
                .await
                .unwrap();
            let mut events = engine.subscribe();
            let created = engine.create_task(request(&template)).await.unwrap();
            let task = drive(&engine, &clock, created.task_id).await;
            assert_eq!(task.state, TaskState::Complete, "{shape}");
            check_order(&template, &step_log(&drain(&mut events)));
            let steps = db.store.steps(created.task_id).await.unwrap();
            assert!(
                steps.iter().all(|s| s.state == StepState::Complete),
                "{shape}"
            );
            let attempts: u32 = steps.iter().map(|s| s.attempts).sum();
            let planned: u64 = template
                .step_templates
                .iter()
                .map(|s| {
                    s.handler_config
                        .get("times")
                        .and_then(|t| t.as_u64())
                        .unwrap_or(0)
                })
                .sum();
            assert_eq!(
                u64::from(attempts),
                template.step_templates.len() as u64 + planned,
                "{shape}: one extra attempt per planned failure"
            );
            engine.shutdown().await;
        }
    })
    .await;
}
