//! How a task looks on a terminal, wherever it comes from: the live progress line and the final
//! table, shared by `tasker run` (records read from the store) and the client commands (views
//! read from a server).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tasker_api::{StepView, TaskView};
use tasker_domain::TaskId;
use tasker_events::names::step;
use tasker_events::{Event, EventStream, Payload};
use tasker_persistence::{StepRecord, TaskRecord};

/// The live progress line: steps done out of total, running steps, retries, backoff waits.
#[derive(Clone)]
pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
    /// Not a terminal (and not `--json`): plain lines instead of a bar.
    plain: bool,
}

/// What the progress line knows so far.
#[derive(Default)]
pub(crate) struct Tracking {
    running: BTreeMap<String, u32>,
    retries: u32,
    waiting: Option<(String, DateTime<Utc>)>,
}

impl Progress {
    /// A progress line for `total` steps; hidden with `--json`.
    pub(crate) fn new(total: u64, json: bool) -> Self {
        use std::io::IsTerminal;
        let plain = !json && !std::io::stderr().is_terminal();
        let bar = if json || plain {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar, plain }
    }

    fn line(&self, text: String) {
        if self.plain {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// Follows the engine's step events of `task_id` until the stream ends.
    pub(crate) async fn follow(self, mut events: EventStream, task_id: TaskId) {
        let mut tracking = Tracking::default();
        while let Some(event) = events.recv().await {
            self.observe(&mut tracking, task_id, &event);
        }
    }

    /// Updates the line with one event; events of other tasks and other kinds are ignored.
    pub(crate) fn observe(&self, tracking: &mut Tracking, task_id: TaskId, event: &Event) {
        let Payload::Step(p) = &event.payload else {
            return;
        };
        if p.task_id != task_id {
            return;
        }
        let (name, attempt) = (p.step_name.to_string(), p.attempt);
        let Tracking {
            running,
            retries,
            waiting,
        } = tracking;
        match &*event.name {
            step::EXECUTION_REQUESTED => {
                if attempt > 1 {
                    *retries += 1;
                }
                if self.plain {
                    self.line(format!("started: {name} (attempt {attempt})"));
                }
                if waiting.as_ref().is_some_and(|(n, _)| *n == name) {
                    *waiting = None;
                }
                running.insert(name, attempt);
            }
            step::COMPLETED => {
                running.remove(&name);
                self.bar.inc(1);
                if self.plain {
                    self.line(format!("completed: {name} (attempt {attempt})"));
                }
            }
            step::FAILED => {
                running.remove(&name);
                let message = p.error.as_ref().map_or("", |e| e.message.as_str());
                let line = match p.next_attempt_at {
                    Some(at) => {
                        *waiting = Some((name.clone(), at));
                        format!(
                            "{name} attempt {attempt} failed: {message}; retrying at {}",
                            at.format("%H:%M:%S%.3f")
                        )
                    }
                    None => format!("{name} attempt {attempt} failed for good: {message}"),
                };
                self.line(line);
            }
            _ => return,
        }
        let mut message = String::new();
        if !running.is_empty() {
            message.push_str(&format!(
                "running: {}",
                running.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if *retries > 0 {
            message.push_str(&format!("  retries: {retries}"));
        }
        if let Some((name, at)) = waiting {
            message.push_str(&format!(
                "  waiting for backoff: {name} until {}",
                at.format("%H:%M:%S")
            ));
        }
        self.bar.set_message(message);
    }
}

/// A task as the summary shows it.
pub(crate) struct TaskLine {
    pub(crate) task_id: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) state: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
}

impl From<&TaskRecord> for TaskLine {
    fn from(task: &TaskRecord) -> Self {
        Self {
            task_id: task.task_id.to_string(),
            namespace: task.namespace.clone(),
            name: task.name.clone(),
            version: task.version.clone(),
            state: task.state.as_str().to_owned(),
            created_at: task.created_at,
            completed_at: task.completed_at,
        }
    }
}

impl From<&TaskView> for TaskLine {
    fn from(task: &TaskView) -> Self {
        Self {
            task_id: task.task_id.to_string(),
            namespace: task.namespace.clone(),
            name: task.name.clone(),
            version: task.version.clone(),
            state: task.state.clone(),
            created_at: task.created_at,
            completed_at: task.completed_at,
        }
    }
}

/// A step as the summary shows it.
pub(crate) struct StepLine {
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<Value>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
}

impl StepLine {
    /// The last attempt's duration, once it finished.
    pub(crate) fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds())
    }

    fn done(&self) -> bool {
        matches!(self.state.as_str(), "complete" | "resolved_manually")
    }

    fn error_message(&self) -> Option<&str> {
        self.last_error
            .as_ref()
            .and_then(|e| e.get("message").and_then(Value::as_str))
    }
}

impl From<&StepRecord> for StepLine {
    fn from(step: &StepRecord) -> Self {
        Self {
            name: step.name.clone(),
            state: step.state.as_str().to_owned(),
            attempts: step.attempts,
            last_error: step.last_error.clone(),
            started_at: step.last_attempted_at,
            finished_at: step.processed_at,
        }
    }
}

impl From<&StepView> for StepLine {
    fn from(step: &StepView) -> Self {
        Self {
            name: step.name.clone(),
            state: step.state.clone(),
            attempts: step.attempts,
            last_error: step.last_error.clone(),
            started_at: step.last_attempted_at,
            finished_at: step.processed_at,
        }
    }
}

/// The steps table: name, state, attempts, last attempt's time, last error.
pub(crate) fn steps_table(steps: &[StepLine]) -> String {
    let width = steps.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<17}  {:>8}  {:>9}  LAST ERROR\n",
        "STEP", "STATUS", "ATTEMPTS", "TIME (ms)"
    );
    for step in steps {
        let error = step
            .error_message()
            .map(|message| {
                if step.done() {
                    format!("(recovered) {message}")
                } else {
                    message.to_owned()
                }
            })
            .unwrap_or_default();
        let time = step
            .duration_ms()
            .map_or_else(|| "-".into(), |ms| ms.to_string());
        out.push_str(&format!(
            "{:<width$}  {:<17}  {:>8}  {:>9}  {}\n",
            step.name, step.state, step.attempts, time, error
        ));
    }
    out
}

/// `task <id> <namespace>/<name>@<version>: <state> [in N ms]`.
pub(crate) fn task_line(task: &TaskLine) -> String {
    let elapsed = task
        .completed_at
        .map(|done| (done - task.created_at).num_milliseconds());
    format!(
        "task {} {}/{}@{}: {}{}",
        task.task_id,
        task.namespace,
        task.name,
        task.version,
        task.state,
        elapsed.map(|ms| format!(" in {ms} ms")).unwrap_or_default()
    )
}

/// The final table on stdout, and on stderr the steps that failed a task that did not complete.
pub(crate) fn print_summary(task: &TaskLine, steps: &[StepLine]) {
    crate::print_stdout(&format!("{}\n{}\n", steps_table(steps), task_line(task)));
    if task.state != "complete" {
        for step in steps.iter().filter(|s| s.state == "error") {
            eprintln!(
                "failed step `{}` after {} attempt(s): {}",
                step.name,
                step.attempts,
                step.error_message().unwrap_or("unknown error")
            );
        }
    }
}
