//! Runtime switches with two engines on one database: a pause stops new claims in both while a
//! running attempt finishes, a resume restarts them, and a namespace limit holds across both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, StepState, TaskState};
use tasker_engine::{ManualClock, Operator, Registry, StepContext, StepHandler};
use tasker_persistence::SwitchTarget;
use tasker_persistence::testing::on_each_database;
use tokio::sync::{mpsc, oneshot};

use crate::support::*;

/// Tells the test it started (with which engine), then finishes when the test says so.
struct Gate {
    engine: &'static str,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    started: mpsc::UnboundedSender<(&'static str, oneshot::Sender<()>)>,
}

#[async_trait::async_trait]
impl StepHandler for Gate {
    async fn handle(&self, _: StepContext) -> Result<Value, StepError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let (release, released) = oneshot::channel();
        self.started.send((self.engine, release)).ok();
        released.await.ok();
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({"by": self.engine}))
    }
}

struct Gates {
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    started: mpsc::UnboundedReceiver<(&'static str, oneshot::Sender<()>)>,
    tx: mpsc::UnboundedSender<(&'static str, oneshot::Sender<()>)>,
}

impl Gates {
    fn new() -> Self {
        let (tx, started) = mpsc::unbounded_channel();
        Self {
            running: Arc::default(),
            most: Arc::default(),
            started,
            tx,
        }
    }

    fn registry(&self, engine: &'static str) -> Arc<Registry> {
        let registry = Arc::new(Registry::with_builtins());
        let gate = Gate {
            engine,
            running: self.running.clone(),
            most: self.most.clone(),
            started: self.tx.clone(),
        };
        registry
            .register_step_handler("test::gate", Arc::new(gate))
            .unwrap();
        registry
    }
}

fn operator(reason: &str) -> Operator {
    Operator::new("ops-test", Some(reason.to_owned()))
}

const GATED: &str = "name: gated\nnamespace_name: billing\nstep_templates:\n  - name: gate\n    handler_class: test::gate\n  - name: after\n    handler_class: tasker::noop\n    depends_on_steps: [gate]\n";
const PLAIN: &str = "name: plain\nnamespace_name: billing\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n";
const ELSEWHERE: &str =
    "name: elsewhere\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n";

#[tokio::test]
async fn a_pause_stops_claims_in_both_engines_lets_running_attempts_finish_and_a_resume_restarts_them()
 {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let mut gates = Gates::new();
        // Only `a` can run the gate step, so the running attempt is a's; `b` runs the rest.
        let a = engine_with(&db.store, &clock, gates.registry("a"));
        let b = engine(&db.store, &clock);
        for yaml in [GATED, PLAIN, ELSEWHERE] {
            a.register_template(template(yaml), false).await.unwrap();
        }
        for yaml in [PLAIN, ELSEWHERE] {
            b.register_template(template(yaml), false).await.unwrap();
        }
        a.start();
        b.start();
        let gated = a.create_task(request(&template(GATED))).await.unwrap();
        let (ran_on, release) = gates.started.recv().await.unwrap();
        assert_eq!(ran_on, "a");

        a.pause(&SwitchTarget::namespace("billing"), &operator("incident 7"))
            .await
            .unwrap();
        // b sees the pause at its next refresh, on its clock.
        clock.advance(Duration::from_millis(1500));
        b.wait_until_idle().await;
        // Tasks can still be created; b is told at once and would claim them unpaused.
        let plain = b.create_task(request(&template(PLAIN))).await.unwrap();
        let elsewhere = b.create_task(request(&template(ELSEWHERE))).await.unwrap();
        b.wait_until_idle().await;
        let plain_step = &db.store.steps(plain.task_id).await.unwrap()[0];
        assert_eq!(
            (plain_step.state, plain_step.attempts),
            (StepState::Pending, 0),
            "b claims nothing of a paused namespace"
        );

        // The running attempt finishes; the step it unblocks is not claimed (a is paused too).
        release.send(()).unwrap();
        a.wait_until_idle().await;
        b.wait_until_idle().await;
        let steps = db.store.steps(gated.task_id).await.unwrap();
        let state = |name: &str| {
            let step = steps.iter().find(|s| s.name == name).unwrap();
            (step.state, step.attempts)
        };
        assert_eq!(
            state("gate"),
            (StepState::Complete, 1),
            "the running attempt finished"
        );
        assert_eq!(state("after"), (StepState::Pending, 0), "ready, but paused");
        assert_eq!(
            db.store.task(plain.task_id).await.unwrap().state,
            TaskState::Pending
        );

        // Resumed through b; a sees it within a refresh.
        let change = b
            .resume(&SwitchTarget::namespace("billing"), &operator("fixed"))
            .await
            .unwrap()
            .expect("it was paused");
        assert_eq!(
            (change.action.as_str(), change.changed_by.as_str()),
            ("resume", "ops-test")
        );
        for task in [gated.task_id, plain.task_id, elsewhere.task_id] {
            let mut state = TaskState::Pending;
            for _ in 0..10 {
                clock.advance(Duration::from_millis(1500));
                a.wait_until_idle().await;
                b.wait_until_idle().await;
                state = db.store.task(task).await.unwrap().state;
                if state == TaskState::Complete {
                    break;
                }
            }
            assert_eq!(state, TaskState::Complete, "{task} runs after the resume");
        }
        let log = a.runtime_switch_changes(10).await.unwrap();
        let actions: Vec<(&str, &str)> = log
            .iter()
            .map(|c| (c.action.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(actions, vec![("resume", "fixed"), ("pause", "incident 7")]);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

const BATCH: &str = "name: batch\nnamespace_name: batch\nstep_templates:\n  - name: gate\n    handler_class: test::gate\n";

#[tokio::test]
async fn a_namespace_limit_holds_across_two_engines() {
    on_each_database(|db| async move {
        let clock = ManualClock::new(t0());
        let mut gates = Gates::new();
        let a = engine_with(&db.store, &clock, gates.registry("a"));
        let b = engine_with(&db.store, &clock, gates.registry("b"));
        a.register_template(template(BATCH), false).await.unwrap();
        a.limit_namespace("batch", Some(1), &operator("one at a time"))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for n in 0..3 {
            let mut request = request(&template(BATCH));
            request.context = json!({"n": n});
            tasks.push(a.create_task(request).await.unwrap().task_id);
        }
        a.start();
        b.start();
        for _ in 0..3 {
            let (ran_on, release) = gates.started.recv().await.unwrap();
            // The other engine has room and ready steps: it claims nothing while one runs.
            let other = if ran_on == "a" { &b } else { &a };
            clock.advance(Duration::from_millis(1500));
            other.wait_until_idle().await;
            assert!(
                gates.started.try_recv().is_err(),
                "a second attempt started beside the one on {ran_on}"
            );
            release.send(()).unwrap();
        }
        for engine in [&a, &b] {
            engine.wait_until_idle().await;
        }
        assert_eq!(gates.most.load(Ordering::SeqCst), 1, "never two at once");
        for task in tasks {
            assert_eq!(
                db.store.task(task).await.unwrap().state,
                TaskState::Complete
            );
        }
        // Lifting the limit is logged too.
        assert!(
            a.limit_namespace("batch", None, &operator("done"))
                .await
                .unwrap()
                .is_some()
        );
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
