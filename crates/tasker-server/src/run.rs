//! `tasker run` and `tasker resume`: one task to completion, with live progress and a summary.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tasker_domain::{TaskId, TaskRequest, TaskState};
use tasker_engine::Engine;
use tasker_engine::tasker_events::{Category, EventStream, Interest};
use tasker_persistence::{StepRecord, Store, TaskRecord};

use crate::render::{self, Progress, StepLine, TaskLine};
use crate::settings::Settings;

/// The context from `--context` or `--context-file`, if either is given.
pub(crate) fn read_context(
    inline: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<Option<Value>> {
    read_json("--context", inline, file)
}

/// JSON given inline as `flag` or in a file, if either is given; errors name the flag or file.
pub(crate) fn read_json(
    flag: &str,
    inline: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<Option<Value>> {
    let (text, origin) = match (inline, file) {
        (Some(text), _) => (text.to_owned(), flag.to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(None),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{origin} is not valid JSON: {e}"))
}

async fn open(settings: &Settings) -> anyhow::Result<(Store, Engine)> {
    open_claiming(settings, &[]).await
}

/// The store and an engine with the built-in example workflows registered, claiming only in
/// `namespaces` when any are given.
/// Gives the built-in handlers this process's settings: `tasker::http` follows
/// `[http_handler]` (public addresses only unless configured otherwise).
pub(crate) fn configure_builtins(engine: &Engine, settings: &Settings) {
    engine.registry().replace_step_handler(
        "tasker::http",
        std::sync::Arc::new(tasker_engine::HttpHandler::with_policy(
            settings.http_handler.clone(),
        )),
    );
}

pub(crate) async fn open_claiming(
    settings: &Settings,
    namespaces: &[String],
) -> anyhow::Result<(Store, Engine)> {
    let options = settings.database.connect_options()?;
    let templates = read_template_dir(settings)?;
    let store = Store::connect(&settings.database.url, &options).await?;
    let mut builder = Engine::builder(store.clone()).config(settings.engine.clone());
    if !namespaces.is_empty() {
        builder = builder.namespaces(namespaces.iter().cloned());
    }
    let engine = builder.build().map_err(anyhow::Error::new)?;
    configure_builtins(&engine, settings);
    // Sensitive keys in custom event data and step error contexts never reach subscribers.
    engine.events().set_redactor(settings.log.redactor());
    register_examples(&engine).await?;
    register_templates(&engine, templates).await?;
    // One structured log record per event (target `tasker::events`, INFO; failures WARN),
    // visible at the configured log level, as JSON lines with `log.format = "json"`.
    engine
        .events()
        .register(std::sync::Arc::new(tasker_events::LogSubscriber::new()))?;
    Ok((store, engine))
}

/// Registers the blog example workflows and the engine test shapes, with mock services.
#[cfg(feature = "blog-examples")]
pub(crate) async fn register_examples(engine: &Engine) -> anyhow::Result<()> {
    tasker_blog_examples::register_with_default_services(engine).await?;
    Ok(())
}

#[cfg(not(feature = "blog-examples"))]
pub(crate) async fn register_examples(_: &Engine) -> anyhow::Result<()> {
    Ok(())
}

/// The templates of `[templates] dir` (or `./templates` when unset and present), in file-name
/// order, parsed and validated; read before the database is opened, so a bad file changes
/// nothing. Errors name the file.
pub(crate) fn read_template_dir(
    settings: &Settings,
) -> anyhow::Result<Vec<(std::path::PathBuf, tasker_template::TaskTemplate)>> {
    let dir = match &settings.templates.dir {
        Some(dir) => {
            if !dir.is_dir() {
                bail!(
                    "templates.dir `{}` is not a folder (relative paths start from the working directory)",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            let dir = std::path::PathBuf::from(crate::settings::DEFAULT_TEMPLATES_DIR);
            if !dir.is_dir() {
                return Ok(Vec::new());
            }
            dir
        }
    };
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let is_template = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if is_template && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| crate::read_template(&path).map(|template| (path, template)))
        .collect()
}

/// Registers templates read by [`read_template_dir`]; an error names the file.
pub(crate) async fn register_templates(
    engine: &Engine,
    templates: Vec<(std::path::PathBuf, tasker_template::TaskTemplate)>,
) -> anyhow::Result<()> {
    for (path, template) in templates {
        engine
            .register_template(template, true)
            .await
            .with_context(|| format!("cannot register {}", path.display()))?;
    }
    Ok(())
}

/// The shipped sample context of a built-in example run name.
#[cfg(feature = "blog-examples")]
fn sample_context(run_name: &str) -> Option<Value> {
    tasker_blog_examples::sample(run_name).map(tasker_blog_examples::SampleRun::context)
}

#[cfg(not(feature = "blog-examples"))]
fn sample_context(_: &str) -> Option<Value> {
    None
}

pub(crate) async fn list_templates(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (_, engine) = open(settings).await?;
    for (namespace, name, version) in engine.registry().list(None) {
        println!("{namespace}/{name}@{version}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let options = settings.database.connect_options()?;
    let store = Store::connect(
        &settings.database.url,
        &tasker_persistence::ConnectOptions {
            migrate: false,
            ..options
        },
    )
    .await?;
    store.migrate().await?;
    println!("migrations applied to {}", settings.database.url);
    Ok(ExitCode::SUCCESS)
}

/// `namespace/name[@version]`.
pub(crate) fn parse_target(target: &str) -> anyhow::Result<TaskRequest> {
    let (path, version) = match target.split_once('@') {
        Some((path, version)) => {
            let version = version.parse().map_err(|e| {
                anyhow::anyhow!("version `{version}` in `{target}` is not semver: {e}")
            })?;
            (path, Some(version))
        }
        None => (target, None),
    };
    let (namespace, name) = path.split_once('/').unwrap_or(("default", path));
    if namespace.is_empty() || name.is_empty() {
        bail!("`{target}` is neither a template file nor namespace/name[@version]");
    }
    let mut request = TaskRequest::new(name).namespace(namespace);
    request.version = version;
    Ok(request)
}

pub(crate) async fn run(
    settings: &Settings,
    target: &str,
    context: Option<Value>,
    bypass: Vec<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let looks_like_file = [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| target.ends_with(ext))
        || Path::new(target).is_file();
    // Templates are parsed before the database is touched: bad input changes nothing.
    let from_file = if looks_like_file {
        Some(crate::read_template(Path::new(target))?)
    } else {
        None
    };
    let (store, engine) = open(settings).await?;
    let mut request = match from_file {
        Some(template) => {
            let request = TaskRequest::new(template.name.clone())
                .namespace(template.namespace_name.clone())
                .version(template.version.clone());
            engine.register_template(template, true).await?;
            request
        }
        None => parse_target(target)?,
    };
    // A built-in example without --context runs on its shipped sample context.
    request.context = context
        .or_else(|| target.split('@').next().and_then(sample_context))
        .unwrap_or_else(|| json!({}));
    request.bypass_steps = bypass;
    request.initiator = "tasker run".into();
    request.source_system = "cli".into();
    let events = step_events(&engine);
    let created = engine.create_task(request).await?;
    if !json {
        eprintln!(
            "task {} created ({} steps)",
            created.task_id,
            created.steps.len()
        );
    }
    drive(&store, &engine, created.task_id, events, json).await
}

pub(crate) async fn resume(
    settings: &Settings,
    task_id: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let task_id: TaskId = task_id
        .parse()
        .map_err(|e| anyhow::anyhow!("`{task_id}` is not a task id: {e}"))?;
    let (store, engine) = open(settings).await?;
    let task = store.task(task_id).await?;
    if !json {
        eprintln!(
            "resuming task {task_id} ({}/{}@{}, {}); steps held by a previous run restart when their lease expires (up to {:?})",
            task.namespace, task.name, task.version, task.state, settings.engine.lease
        );
    }
    let events = step_events(&engine);
    drive(&store, &engine, task_id, events, json).await
}

/// The step events the progress display follows.
fn step_events(engine: &Engine) -> EventStream {
    engine
        .events()
        .stream(vec![Interest::Category(Category::Step)], 65_536)
}

async fn drive(
    store: &Store,
    engine: &Engine,
    task_id: TaskId,
    events: EventStream,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let total = store.task(task_id).await?.total_steps;
    let progress = Progress::new(u64::from(total), json);
    let watcher = tokio::spawn(progress.clone().follow(events, task_id));
    let signal = crate::worker::shutdown_signal()?;
    engine.start();
    let finished = tokio::select! {
        task = engine.wait_for_task(task_id) => Some(task?),
        signal = signal => {
            signal?;
            None
        }
    };
    if finished.is_some() {
        engine.shutdown().await;
    } else {
        // SIGTERM and Ctrl-C alike: running attempts finish within the grace and the claims
        // still held are given back, so `tasker resume` starts at once with no attempt spent.
        engine.drain().await;
    }
    // Subscribers (the event log) finish what was published before the process exits.
    engine.events().settled().await;
    watcher.abort();
    let Some(task) = finished else {
        progress.bar.abandon_with_message("interrupted");
        eprintln!(
            "interrupted: drained; nothing is lost; run `tasker resume {task_id}` to finish the task"
        );
        return Ok(ExitCode::from(130));
    };
    progress.bar.finish_and_clear();
    let steps = store.steps(task_id).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&document(&task, &steps))?
        );
    } else {
        let lines: Vec<StepLine> = steps.iter().map(StepLine::from).collect();
        render::print_summary(&TaskLine::from(&task), &lines);
    }
    Ok(match task.state {
        TaskState::Complete => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn document(task: &TaskRecord, steps: &[StepRecord]) -> Value {
    let steps: serde_json::Map<String, Value> = steps
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                json!({
                    "status": s.state,
                    "attempts": s.attempts,
                    "results": s.results,
                    "last_error": s.last_error,
                    "started_at": s.last_attempted_at,
                    "completed_at": s.processed_at,
                    "duration_ms": StepLine::from(s).duration_ms(),
                }),
            )
        })
        .collect();
    json!({
        "task_id": task.task_id,
        "status": task.state,
        "namespace": task.namespace,
        "name": task.name,
        "version": task.version,
        "correlation_id": task.correlation_id,
        "context": task.context,
        "created_at": task.created_at,
        "completed_at": task.completed_at,
        "steps": steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_namespace_and_version() {
        let request = parse_target("payments/process_refund@2.1.0").unwrap();
        assert_eq!(
            (request.namespace.as_str(), request.name.as_str()),
            ("payments", "process_refund")
        );
        assert_eq!(request.version.unwrap().to_string(), "2.1.0");
        assert_eq!(parse_target("solo").unwrap().namespace, "default");
        assert!(
            parse_target("a/b@1.0")
                .unwrap_err()
                .to_string()
                .contains("not semver")
        );
        assert!(parse_target("/x").is_err());
    }

    #[test]
    fn contexts_must_be_json() {
        assert_eq!(
            read_context(Some(r#"{"a": 1}"#), None).unwrap(),
            Some(json!({"a": 1}))
        );
        let err = read_context(Some("{a: 1}"), None).unwrap_err().to_string();
        assert!(
            err.starts_with("--context is not valid JSON: key must be a string at line 1 column 2"),
            "{err}"
        );
        assert_eq!(read_context(None, None).unwrap(), None);
    }
}
