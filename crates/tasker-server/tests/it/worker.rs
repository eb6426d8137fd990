//! `tasker worker` as an operator runs it: a real process on a shared database, running a task
//! another process created, then draining on SIGTERM and exiting 0.

use std::process::{Command, Stdio};

use tasker_domain::{DefaultIdentity, TaskRequest, TaskState};
use tasker_persistence::testing::on_each_database;
use tasker_persistence::{CreateTaskOptions, Store};
use tasker_template::TaskTemplate;

const REMOTE: &str = "name: remote_job\nnamespace_name: remote\nstep_templates:\n  \
                      - name: a\n    handler_class: tasker::noop\n  \
                      - name: b\n    handler_class: tasker::noop\n    depends_on_step: a\n";

#[tokio::test]
async fn worker_runs_tasks_created_elsewhere_and_drains_on_sigterm() {
    on_each_database(|db| async move {
        let mut worker = Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args(["worker", "--namespace", "remote", "--database", &db.url])
            .env_remove("TASKER_DATABASE_URL")
            // Upkeep (which refreshes what the worker may claim) every 0.1 s, polling every 50 ms.
            .env("TASKER_ENGINE__LEASE", "0.3")
            .env("TASKER_ENGINE__POLL_INTERVAL", "0.05")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the tasker binary runs");
        // This test process is the other process: it registers the template and creates the
        // task through its own store.
        let template = TaskTemplate::from_yaml_str(REMOTE, None).unwrap();
        let now = chrono::Utc::now();
        let stored = db.store.register_template(&template, now).await.unwrap();
        let options = CreateTaskOptions {
            now,
            identity: &DefaultIdentity,
            correlation_id: None,
            trace_parent: None,
        };
        let request = TaskRequest::new("remote_job").namespace("remote");
        let prepared = Store::prepare_task(&stored, &request, &options).unwrap();
        let created = db
            .store
            .create_prepared(vec![prepared])
            .await
            .remove(0)
            .unwrap();
        let mut state = TaskState::Pending;
        for _ in 0..500_000 {
            state = db.store.task(created.task_id).await.unwrap().state;
            if state.is_finished() || worker.try_wait().unwrap().is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            worker.try_wait().unwrap().is_none(),
            "the worker is still running"
        );
        assert_eq!(state, TaskState::Complete, "the worker ran the task");
        let steps = db.store.steps(created.task_id).await.unwrap();
        assert!(steps.iter().all(|s| s.attempts == 1), "{steps:?}");
        let sent = Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let out = worker.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("(namespaces remote)"), "{stderr}");
        assert!(stderr.contains("drained; stopped"), "{stderr}");
        // The store's counters: it claimed and completed a task, so it sent statements.
        let sent: Vec<u64> = stderr
            .lines()
            .find_map(|l| l.strip_prefix("sent "))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            sent.len() == 2 && sent[0] > sent[1] && sent[1] > 0,
            "{stderr}"
        );
    })
    .await;
}
