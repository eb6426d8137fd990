//! An engine claims only steps of templates whose handler classes it has registered, and only in
//! the namespaces it was given.

use std::sync::Arc;

use tasker_domain::{StepState, TaskState};
use tasker_engine::{Engine, ManualClock, NoopHandler};
use tasker_persistence::testing::on_each_database;

use crate::support::*;

#[tokio::test]
async fn an_engine_claims_only_what_it_can_run_in_its_namespaces() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        // A process with every handler registers the templates.
        let full = registry_with("test::special", Arc::new(NoopHandler));
        let everything = engine_with(&db.store, &clock, full);
        let special = template("name: special\nstep_templates:\n  - name: a\n    handler_class: test::special\n");
        let elsewhere = template("name: elsewhere\nnamespace_name: other\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        let plain = template("name: plain\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n");
        for t in [&special, &elsewhere, &plain] {
            everything.register_template(t.clone(), false).await.unwrap();
        }
        let special_task = everything.create_task(request(&special)).await.unwrap();
        let elsewhere_task = everything.create_task(request(&elsewhere)).await.unwrap();
        let plain_task = everything.create_task(request(&plain)).await.unwrap();

        // A worker without `test::special`, limited to the `default` namespace.
        let worker = Engine::builder(db.store.clone())
            .config(config())
            .clock(Arc::new(clock.clone()))
            .namespaces(["default"])
            .random(|| 0.5)
            .build()
            .unwrap();
        worker.start();
        worker.wait_until_idle().await;
        assert_eq!(db.store.task(plain_task.task_id).await.unwrap().state, TaskState::Complete);
        for (task, why) in [(special_task.task_id, "no handler here"), (elsewhere_task.task_id, "another namespace")] {
            let step = &db.store.steps(task).await.unwrap()[0];
            assert_eq!((step.state, step.attempts), (StepState::Pending, 0), "{why}: never claimed");
        }
        worker.shutdown().await;

        // The process that can run them does.
        for task in [special_task.task_id, elsewhere_task.task_id] {
            assert_eq!(drive(&everything, &clock, task).await.state, TaskState::Complete);
        }
        everything.shutdown().await;
    })
    .await;
}
