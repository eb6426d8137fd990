//! `tasker tasks` and `tasker steps`: a client for a running `tasker serve`, over its REST API.
//! Tables by default, the server's JSON with `--json`; errors show the server's envelope.

pub(crate) mod http;
mod sse;
mod switches;

pub(crate) use switches::{SwitchesArgs, switches};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasker_api::{HistoryView, StepView, TaskPage, TaskView};
use tasker_domain::TaskId;
use tasker_events::Event;
use uuid::Uuid;

use self::http::{Api, parse};
use self::sse::SseStream;
use crate::render::{self, Progress, StepLine, Tracking};
use crate::settings::Settings;

/// Options every client command takes.
#[derive(Args)]
pub(crate) struct ClientOptions {
    /// The server's base URL [default: client.server, TASKER_SERVER, or http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Print the server's JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
    /// Send this correlation id (`X-Correlation-ID`) with every request
    #[arg(long, global = true, value_name = "ID")]
    correlation_id: Option<String>,
}

/// `tasker tasks ...`.
#[derive(Args)]
pub(crate) struct TasksArgs {
    #[command(flatten)]
    options: ClientOptions,
    #[command(subcommand)]
    command: TasksCommand,
}

/// `tasker steps ...`.
#[derive(Args)]
pub(crate) struct StepsArgs {
    #[command(flatten)]
    options: ClientOptions,
    #[command(subcommand)]
    command: StepsCommand,
}

#[derive(Subcommand)]
enum TasksCommand {
    /// List tasks, newest first, a page at a time (`--all` follows the cursor to the end)
    List {
        /// Only this template namespace
        #[arg(long)]
        namespace: Option<String>,
        /// Only this template name
        #[arg(long)]
        name: Option<String>,
        /// Only this template version
        #[arg(long)]
        version: Option<String>,
        /// Only tasks in this state (pending, in_progress, complete, error, cancelled,
        /// resolved_manually)
        #[arg(long)]
        state: Option<String>,
        /// Page size (the server caps it at api.max_page_size)
        #[arg(long)]
        limit: Option<u64>,
        /// Start after this cursor (the `next_cursor` a previous page printed)
        #[arg(long)]
        cursor: Option<String>,
        /// Every page, following the cursor to the end
        #[arg(long)]
        all: bool,
        /// Oldest first instead of newest first
        #[arg(long)]
        oldest_first: bool,
    },
    /// Show a task with its steps
    Show {
        /// The task id
        task_id: String,
        /// Also print its dependency graph (Mermaid)
        #[arg(long)]
        graph: bool,
    },
    /// Create a task from a registered template: namespace/name[@version]
    Create {
        /// namespace/name[@version] (the namespace defaults to `default`, the version to the
        /// highest registered)
        template: String,
        /// The task context as JSON
        #[arg(long, conflicts_with = "context_file")]
        context: Option<String>,
        /// A file holding the task context as JSON
        #[arg(long, value_name = "FILE")]
        context_file: Option<PathBuf>,
        /// Makes creation idempotent: the same key answers with the first task
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Why the task is created
        #[arg(long)]
        reason: Option<String>,
        /// A tag (repeatable)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// A skippable step to bypass (repeatable)
        #[arg(long = "bypass", value_name = "STEP")]
        bypass: Vec<String>,
    },
    /// Cancel a task and its unfinished steps
    Cancel(TaskAction),
    /// Send a task that ended in error back to work
    Retry(TaskAction),
    /// Resolve a task in error by hand
    Resolve(TaskAction),
    /// A task's transitions and its steps', with who acted and why
    History {
        /// The task id
        task_id: String,
    },
    /// Follow a task's events until it finishes; exit 0 when it completes, 1 when it ends
    /// otherwise, 130 on Ctrl-C (the task goes on)
    Watch {
        /// The task id
        task_id: String,
    },
}

#[derive(Args)]
struct TaskAction {
    /// The task id
    task_id: String,
    /// Why (kept in the history with who acted)
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Subcommand)]
enum StepsCommand {
    /// List a task's steps in template order
    List {
        /// The task id
        task_id: String,
    },
    /// Show one step: state, attempts, dependencies, results and last error
    Show(StepRef),
    /// Resolve a step by hand with results; its dependants then run
    Resolve {
        #[command(flatten)]
        step: StepRef,
        /// The results its dependants will see, as JSON (default: {})
        #[arg(long, conflicts_with = "results_file")]
        results: Option<String>,
        /// A file holding the results as JSON
        #[arg(long, value_name = "FILE")]
        results_file: Option<PathBuf>,
        /// Why (kept in the history with who acted)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give a step in error one more attempt
    Retry(StepAction),
    /// Cancel a step: its dependants will not run
    Cancel(StepAction),
}

#[derive(Args)]
struct StepRef {
    /// The task id
    task_id: String,
    /// The step: its name or its id
    step: String,
}

#[derive(Args)]
struct StepAction {
    #[command(flatten)]
    step: StepRef,
    /// Why (kept in the history with who acted)
    #[arg(long)]
    reason: Option<String>,
}

fn api(settings: &Settings, options: &ClientOptions) -> anyhow::Result<Api> {
    let server = options
        .server
        .as_deref()
        .unwrap_or(settings.client.server.as_str());
    Api::new(server, &settings.client, options.correlation_id.clone())
}

fn task_id(text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text.trim()).map_err(|e| {
        anyhow::anyhow!("`{text}` is not a task id (a UUID, as `tasker tasks list` prints): {e}")
    })
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    crate::print_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?));
    Ok(())
}

/// `{"reason": ...}`, or no body at all.
fn reason_body(reason: Option<String>) -> Option<Value> {
    reason.map(|reason| json!({ "reason": reason }))
}

/// Runs `tasker tasks ...`.
pub(crate) async fn tasks(settings: &Settings, args: TasksArgs) -> anyhow::Result<ExitCode> {
    let api = api(settings, &args.options)?;
    let json = args.options.json;
    match args.command {
        TasksCommand::List {
            namespace,
            name,
            version,
            state,
            limit,
            cursor,
            all,
            oldest_first,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            for (key, value) in [
                ("namespace", namespace),
                ("name", name),
                ("version", version),
                ("state", state),
                ("limit", limit.map(|l| l.to_string())),
            ] {
                if let Some(value) = value {
                    query.push((key, value));
                }
            }
            if oldest_first {
                query.push(("sort", "created_at".into()));
            }
            list_tasks(&api, query, cursor, all, json).await
        }
        TasksCommand::Show { task_id: id, graph } => {
            let id = task_id(&id)?;
            let include = if graph { "steps,graph" } else { "steps" };
            let value = api
                .json(api.request_with_query(
                    Method::GET,
                    &format!("/tasks/{id}"),
                    &[("include", include.into())],
                ))
                .await?
                .1;
            if json {
                print_json(&value)?;
            } else {
                let task: TaskView = parse(&value, "a task")?;
                show_task(&task);
                if let Some(graph) = &task.graph {
                    crate::print_stdout(&format!("\n{}", graph.mermaid));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Create {
            template,
            context,
            context_file,
            idempotency_key,
            reason,
            tags,
            bypass,
        } => {
            // Bad input is refused before anything is sent.
            let context = crate::run::read_context(context.as_deref(), context_file.as_deref())?;
            let target = crate::run::parse_target(&template)?;
            let mut body = json!({
                "namespace": target.namespace,
                "name": target.name,
                "source_system": "cli",
                "tags": tags,
                "bypass_steps": bypass,
            });
            if let Some(version) = &target.version {
                body["version"] = version.to_string().into();
            }
            if let Some(context) = context {
                body["context"] = context;
            }
            if let Some(reason) = reason {
                body["reason"] = reason.into();
            }
            let mut request = api.request(Method::POST, "/tasks").json(&body);
            if let Some(key) = &idempotency_key {
                request = request.header(tasker_api::IDEMPOTENCY_KEY, key);
            }
            let (status, value) = api.json(request).await?;
            if json {
                print_json(&value)?;
            } else {
                let task: TaskView = parse(&value, "a task")?;
                if status == StatusCode::OK {
                    eprintln!(
                        "an existing task answers idempotency key `{}`",
                        idempotency_key.as_deref().unwrap_or_default()
                    );
                } else {
                    eprintln!("created task {} ({} steps)", task.task_id, task.total_steps);
                }
                crate::print_stdout(&format!("{}\n", render::task_line(&(&task).into())));
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Cancel(action) => task_action(&api, "cancel", action, json).await,
        TasksCommand::Retry(action) => task_action(&api, "retry", action, json).await,
        TasksCommand::Resolve(action) => task_action(&api, "resolve", action, json).await,
        TasksCommand::History { task_id: id } => {
            let id = task_id(&id)?;
            let value = api.get(&format!("/tasks/{id}/transitions")).await?;
            if json {
                print_json(&value)?;
            } else {
                let history: HistoryView = parse(&value, "a task history")?;
                crate::print_stdout(&history_table(&history));
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Watch { task_id: id } => watch(&api, task_id(&id)?, json).await,
    }
}

async fn list_tasks(
    api: &Api,
    query: Vec<(&str, String)>,
    mut cursor: Option<String>,
    all: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut items: Vec<Value> = Vec::new();
    let mut pages = 0usize;
    let last = loop {
        let mut query = query.clone();
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let value = api
            .json(api.request_with_query(Method::GET, "/tasks", &query))
            .await?
            .1;
        let page: TaskPage = parse(&value, "a page of tasks")?;
        pages += 1;
        if let Some(page_items) = value.get("items").and_then(Value::as_array) {
            items.extend(page_items.iter().cloned());
        }
        match page.next_cursor {
            Some(next) if all && Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => break (value, page),
        }
    };
    let (value, page) = last;
    if json {
        if all {
            print_json(&json!({
                "items": items,
                "total": page.total,
                "limit": page.limit,
                "next_cursor": page.next_cursor,
            }))?;
        } else {
            print_json(&value)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tasks: Vec<TaskView> = items
        .iter()
        .map(|item| parse(item, "a task"))
        .collect::<anyhow::Result<_>>()?;
    crate::print_stdout(&tasks_table(&tasks));
    let mut footer = format!("{} of {} task(s)", tasks.len(), page.total);
    if all {
        footer.push_str(&format!(" in {pages} page(s)"));
    }
    if let Some(next) = &page.next_cursor {
        footer.push_str(&format!("; next page: --cursor {next} (or --all)"));
    }
    eprintln!("{footer}");
    Ok(ExitCode::SUCCESS)
}

fn tasks_table(tasks: &[TaskView]) -> String {
    let workflows: Vec<String> = tasks
        .iter()
        .map(|t| format!("{}/{}@{}", t.namespace, t.name, t.version))
        .collect();
    let width = workflows.iter().map(String::len).max().unwrap_or(8).max(8);
    let mut out = format!(
        "{:<36}  {:<width$}  {:<17}  {:>7}  CREATED\n",
        "TASK", "WORKFLOW", "STATE", "STEPS"
    );
    for (task, workflow) in tasks.iter().zip(&workflows) {
        out.push_str(&format!(
            "{:<36}  {:<width$}  {:<17}  {:>7}  {}\n",
            task.task_id,
            workflow,
            task.state,
            format!("{}/{}", task.done_steps, task.total_steps),
            task.created_at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    out
}

fn show_task(task: &TaskView) {
    let steps: Vec<StepLine> = task.steps.iter().flatten().map(StepLine::from).collect();
    render::print_summary(&task.into(), &steps);
    let mut details = format!(
        "  correlation id: {}\n  initiator: {} ({})\n",
        task.correlation_id, task.initiator, task.source_system
    );
    if !task.reason.is_empty() {
        details.push_str(&format!("  reason: {}\n", task.reason));
    }
    if !task.tags.is_empty() {
        details.push_str(&format!("  tags: {}\n", task.tags.join(", ")));
    }
    crate::print_stdout(&details);
}

async fn task_action(
    api: &Api,
    verb: &str,
    action: TaskAction,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let id = task_id(&action.task_id)?;
    let value = api
        .post(
            &format!("/tasks/{id}/{verb}"),
            reason_body(action.reason).as_ref(),
        )
        .await?;
    if json {
        print_json(&value)?;
    } else {
        let task: TaskView = parse(&value, "a task")?;
        crate::print_stdout(&format!("{}\n", render::task_line(&(&task).into())));
    }
    Ok(ExitCode::SUCCESS)
}

fn history_table(history: &HistoryView) -> String {
    let subjects: Vec<String> = history
        .transitions
        .iter()
        .map(|t| match &t.step_name {
            Some(name) => format!("step {name}"),
            None => "task".to_owned(),
        })
        .collect();
    let width = subjects.iter().map(String::len).max().unwrap_or(7).max(7);
    let mut out = format!(
        "{:<23}  {:<width$}  {:<32}  {:<12}  WHY\n",
        "TIME", "SUBJECT", "TRANSITION", "ACTOR"
    );
    for (transition, subject) in history.transitions.iter().zip(&subjects) {
        let change = format!(
            "{} -> {}",
            transition.from_state.as_deref().unwrap_or("(new)"),
            transition.to_state
        );
        let mut why = transition
            .metadata
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(note) = transition.metadata.get("note").and_then(Value::as_str) {
            why.push_str(&format!(" (note: {note})"));
        }
        out.push_str(&format!(
            "{:<23}  {:<width$}  {:<32}  {:<12}  {}\n",
            transition.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            subject,
            change,
            transition.actor.as_deref().unwrap_or("-"),
            why.trim()
        ));
    }
    out
}

/// Whether a task in `state` is still running (`tasker run` waits for the same).
fn running(state: &str) -> bool {
    matches!(state, "pending" | "in_progress")
}

/// A live event that says the task left the running states.
fn finishes(event: &Value, id: Uuid) -> bool {
    let payload = &event["payload"];
    payload["kind"] == "task"
        && payload["task_id"].as_str() == Some(id.to_string().as_str())
        && payload["state"].as_str().is_some_and(|s| !running(s))
}

enum Watched {
    Finished,
    StreamEnded,
    Interrupted,
}

/// Follows a task's event stream (its history replayed, then live) with `tasker run`'s
/// progress display, then prints the task as `tasker run` does.
async fn watch(api: &Api, id: Uuid, json: bool) -> anyhow::Result<ExitCode> {
    let signal = crate::worker::shutdown_signal()?;
    // The stream first: the server reads the history when it answers, so a task still running
    // when read below finishes in a live event.
    let response = api
        .send(
            api.request(Method::GET, &format!("/tasks/{id}/events"))
                .header("accept", "text/event-stream"),
        )
        .await?;
    let mut stream = SseStream::new(response);
    let task: TaskView = parse(&api.get(&format!("/tasks/{id}")).await?, "a task")?;
    if running(&task.state) {
        let progress = Progress::new(u64::from(task.total_steps), json);
        progress.bar.set_position(u64::from(task.done_steps));
        if !json {
            eprintln!(
                "watching task {id} ({}/{}@{}, {}, {}/{} steps done); Ctrl-C stops watching, not the task",
                task.namespace,
                task.name,
                task.version,
                task.state,
                task.done_steps,
                task.total_steps
            );
        }
        let mut tracking = Tracking::default();
        tokio::pin!(signal);
        let watched = loop {
            let next = tokio::select! {
                next = stream.next() => match next {
                    Ok(next) => next,
                    Err(err) => {
                        progress.bar.abandon_with_message("the event stream broke off");
                        return Err(err.context(format!(
                            "watching task {id} (`tasker tasks watch {id}` follows it again)"
                        )));
                    }
                },
                signal = &mut signal => {
                    signal?;
                    break Watched::Interrupted;
                }
            };
            let Some(event) = next else {
                break Watched::StreamEnded;
            };
            // The replayed history is already counted in the task's done steps.
            if event.name == "transition" {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if let Ok(event) = serde_json::from_value::<Event>(value.clone()) {
                progress.observe(&mut tracking, TaskId(id), &event);
            }
            if finishes(&value, id) {
                break Watched::Finished;
            }
        };
        match watched {
            Watched::Interrupted => {
                progress.bar.abandon_with_message("interrupted");
                eprintln!(
                    "interrupted: stopped watching; task {id} goes on on the server (`tasker tasks watch {id}` follows it again)"
                );
                return Ok(ExitCode::from(130));
            }
            Watched::Finished | Watched::StreamEnded => progress.bar.finish_and_clear(),
        }
    }
    let value = api
        .json(api.request_with_query(
            Method::GET,
            &format!("/tasks/{id}"),
            &[("include", "steps".into())],
        ))
        .await?
        .1;
    let task: TaskView = parse(&value, "a task")?;
    if running(&task.state) {
        anyhow::bail!(
            "the server ended the event stream of task {id} before the task finished (is it stopping?); `tasker tasks watch {id}` follows it again"
        );
    }
    if json {
        print_json(&value)?;
    } else {
        let steps: Vec<StepLine> = task.steps.iter().flatten().map(StepLine::from).collect();
        render::print_summary(&(&task).into(), &steps);
    }
    Ok(if task.state == "complete" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `tasker steps ...`.
pub(crate) async fn steps(settings: &Settings, args: StepsArgs) -> anyhow::Result<ExitCode> {
    let api = api(settings, &args.options)?;
    let json = args.options.json;
    match args.command {
        StepsCommand::List { task_id: id } => {
            let id = task_id(&id)?;
            let value = api.get(&format!("/tasks/{id}/workflow_steps")).await?;
            if json {
                print_json(&value)?;
            } else {
                let steps: Vec<StepView> = parse(&value, "a list of steps")?;
                let lines: Vec<StepLine> = steps.iter().map(StepLine::from).collect();
                crate::print_stdout(&render::steps_table(&lines));
            }
            Ok(ExitCode::SUCCESS)
        }
        StepsCommand::Show(step) => {
            let (task, steps) = task_steps(&api, &step.task_id).await?;
            let step_id = find_step(task, &steps, &step.step)?;
            let value = api
                .get(&format!("/tasks/{task}/workflow_steps/{step_id}"))
                .await?;
            if json {
                print_json(&value)?;
            } else {
                let step: StepView = parse(&value, "a step")?;
                crate::print_stdout(&step_details(&step, &steps));
            }
            Ok(ExitCode::SUCCESS)
        }
        StepsCommand::Resolve {
            step,
            results,
            results_file,
            reason,
        } => {
            let results =
                crate::run::read_json("--results", results.as_deref(), results_file.as_deref())?;
            let mut body = json!({});
            if let Some(results) = results {
                body["results"] = results;
            }
            if let Some(reason) = reason {
                body["reason"] = reason.into();
            }
            step_action(&api, "resolve", &step, Some(body), json).await
        }
        StepsCommand::Retry(action) => {
            step_action(
                &api,
                "retry",
                &action.step,
                reason_body(action.reason),
                json,
            )
            .await
        }
        StepsCommand::Cancel(action) => {
            step_action(
                &api,
                "cancel",
                &action.step,
                reason_body(action.reason),
                json,
            )
            .await
        }
    }
}

/// The task's id and its steps.
async fn task_steps(api: &Api, task: &str) -> anyhow::Result<(Uuid, Vec<StepView>)> {
    let id = task_id(task)?;
    let value = api.get(&format!("/tasks/{id}/workflow_steps")).await?;
    Ok((id, parse(&value, "a list of steps")?))
}

/// The id of the step named or identified by `step`.
fn find_step(task: Uuid, steps: &[StepView], step: &str) -> anyhow::Result<Uuid> {
    if let Some(found) = steps
        .iter()
        .find(|s| s.name == step || s.step_id.to_string() == step.trim().to_ascii_lowercase())
    {
        return Ok(found.step_id);
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    anyhow::bail!(
        "task {task} has no step `{step}`; its steps are: {}",
        names.join(", ")
    )
}

async fn step_action(
    api: &Api,
    verb: &str,
    step: &StepRef,
    body: Option<Value>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (task, steps) = task_steps(api, &step.task_id).await?;
    let step_id = find_step(task, &steps, &step.step)?;
    let value = api
        .post(
            &format!("/tasks/{task}/workflow_steps/{step_id}/{verb}"),
            body.as_ref(),
        )
        .await?;
    if json {
        print_json(&value)?;
    } else {
        let step: StepView = parse(&value, "a step")?;
        crate::print_stdout(&format!(
            "step {} of task {task}: {} (attempt {} of {})\n",
            step.name, step.state, step.attempts, step.retry_limit
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn step_details(step: &StepView, steps: &[StepView]) -> String {
    let names = |ids: &[Uuid]| -> String {
        let names: Vec<String> = ids
            .iter()
            .map(|id| {
                steps
                    .iter()
                    .find(|s| s.step_id == *id)
                    .map_or_else(|| id.to_string(), |s| s.name.clone())
            })
            .collect();
        if names.is_empty() {
            "-".into()
        } else {
            names.join(", ")
        }
    };
    let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or_else(|| "-".into(), |at| at.to_rfc3339())
    };
    let json = |value: &Option<Value>| {
        value
            .as_ref()
            .map_or_else(|| "-".into(), |value| value.to_string())
    };
    let mut out = format!(
        "step {} ({}) of task {}\n  state: {}\n  attempts: {} of {} (retryable: {}, skippable: {})\n",
        step.name,
        step.step_id,
        step.task_id,
        step.state,
        step.attempts,
        step.retry_limit,
        step.retryable,
        step.skippable
    );
    out.push_str(&format!("  depends on: {}\n", names(&step.parents)));
    out.push_str(&format!("  needed by: {}\n", names(&step.children)));
    out.push_str(&format!(
        "  last attempt: {}\n",
        time(step.last_attempted_at)
    ));
    out.push_str(&format!("  finished: {}\n", time(step.processed_at)));
    if let Some(at) = step.next_attempt_at {
        out.push_str(&format!("  next attempt: {}\n", at.to_rfc3339()));
    }
    out.push_str(&format!("  results: {}\n", json(&step.results)));
    out.push_str(&format!("  last error: {}\n", json(&step.last_error)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_task_s_own_final_events_end_a_watch() {
        let id = Uuid::new_v4();
        let event = |kind: &str, task: Uuid, state: &str| json!({"name": "x", "payload": {"kind": kind, "task_id": task.to_string(), "state": state}});
        assert!(finishes(&event("task", id, "complete"), id));
        assert!(finishes(&event("task", id, "error"), id));
        assert!(!finishes(&event("task", id, "in_progress"), id));
        assert!(!finishes(&event("task", Uuid::new_v4(), "complete"), id));
        assert!(!finishes(&event("step", id, "complete"), id));
        assert!(!finishes(&json!("not an event"), id));
    }

    #[test]
    fn task_ids_are_checked_before_anything_is_sent() {
        let err = task_id("nope").unwrap_err().to_string();
        assert!(err.starts_with("`nope` is not a task id"), "{err}");
    }
}
