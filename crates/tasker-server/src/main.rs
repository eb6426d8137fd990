//! `tasker`: run workflows on the embedded SQLite default (or PostgreSQL), resume them after a
//! crash, validate and graph templates, and migrate the database.

mod auth_cli;
mod client;
mod config_check;
mod events;
mod health;
mod init;
mod jwks;
mod logging;
mod metrics;
#[cfg(test)]
mod reference;
mod render;
mod run;
mod serve;
mod settings;
mod telemetry;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tasker_template::{GraphFormat, TaskTemplate};

#[derive(Parser)]
#[command(
    name = "tasker",
    version,
    about = "Tasker: durable workflow orchestration"
)]
struct Cli {
    /// Configuration file (default: ./tasker.toml when present)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL (overrides configuration), e.g. sqlite://tasker.db?mode=rwc or postgres://...
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one task to completion: a template file, or namespace/name[@version] of a built-in
    Run {
        /// A template file (.yaml, .yml, .json) or namespace/name[@version]
        template: String,
        /// The task context as JSON
        #[arg(long, conflicts_with = "context_file")]
        context: Option<String>,
        /// A file holding the task context as JSON
        #[arg(long, value_name = "FILE")]
        context_file: Option<PathBuf>,
        /// Steps to bypass (they must be skippable)
        #[arg(long = "bypass", value_name = "STEP")]
        bypass: Vec<String>,
        /// Print the final task document as JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run an interrupted task to completion (after the previous run's leases expire)
    Resume {
        /// The task id
        task_id: String,
        /// Print the final task document as JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Validate template files; prints every error with its file, line and step
    Validate {
        /// Template files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a template's dependency graph
    Graph {
        /// A template file
        file: PathBuf,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the built-in workflows `tasker run` knows by name
    Templates,
    /// The event catalog: every Rails event name and Tasker's own `runtime.*` with what Tasker
    /// publishes for it (or why not), and the custom events templates declare
    Events {
        /// Describe one event (payload fields, when it is published)
        name: Option<String>,
        /// Only this category (task, step, workflow, observability, runtime, telemetry, test,
        /// registry, custom)
        #[arg(long)]
        category: Option<String>,
        /// Only events whose name or description contains this
        #[arg(long)]
        search: Option<String>,
        /// Only the events Tasker publishes
        #[arg(long)]
        published: bool,
        /// Also list the custom events these template files declare
        #[arg(long = "template", value_name = "FILE")]
        templates: Vec<PathBuf>,
        /// JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Create a project folder: tasker.toml, templates/ with an example workflow, a README
    Init {
        /// The folder (created when missing; default: the current one)
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write into a folder that is not empty, overwriting the files init writes
        #[arg(long)]
        force: bool,
    },
    /// Apply pending database migrations
    Migrate,
    /// Run the coordinator alone (no HTTP) on tasks created elsewhere, until SIGTERM or Ctrl-C;
    /// then drain (running attempts finish within engine.shutdown_grace) and exit 0
    Worker {
        /// Only claim steps of tasks in this namespace (repeatable; default: all)
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
    },
    /// Serve the REST API under /v1 (and the probes at /health/*), with the coordinator unless
    /// --no-worker
    Serve {
        /// Listen here (default: server.bind, 127.0.0.1:8080)
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Apply pending migrations first (otherwise an old schema is refused)
        #[arg(long)]
        migrate: bool,
        /// The API alone: tasks run in `tasker worker` processes
        #[arg(long)]
        no_worker: bool,
    },
    /// Tasks on a running server: list, show, create, cancel, retry, resolve, history, watch
    Tasks(client::TasksArgs),
    /// Steps of a task on a running server: list, show, resolve, retry, cancel
    Steps(client::StepsArgs),
    /// Runtime switches on a running server: list, pause, resume, limit
    Switches(client::SwitchesArgs),
    /// Mint and inspect JWTs with the configured auth.jwt keys
    Token {
        #[command(subcommand)]
        command: auth_cli::TokenCommand,
    },
    /// Create, list and revoke API keys in the database
    Keys {
        #[command(subcommand)]
        command: auth_cli::KeysCommand,
    },
    /// Check the configuration: print the effective settings with where each came from
    /// (secrets redacted); exit 0 when valid, 2 with the reasons when not. Or print the JSON
    /// Schema of tasker.toml
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check readiness (a running server's, or with --local this process's view of the
    /// database and cache) or read the detailed status report; exit 0 when ready or healthy,
    /// 1 when not (for container health checks)
    Health(health::HealthArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (as startup does) and print the effective settings
    Check {
        /// The command the configuration is for: `serve` checks everything, authentication
        /// included; `worker` and `migrate` serve no HTTP, so their check leaves `auth` out
        #[arg(long = "for", value_enum, value_name = "COMMAND", default_value_t = config_check::CheckedCommand::Serve)]
        command: config_check::CheckedCommand,
        /// JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of tasker.toml (every key, its type, default and description),
    /// for editors and tools
    Schema,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Mermaid,
    Dot,
    Text,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::from(2)
        }
    }
}

/// `err` and its causes, joined with `: `, each cause once: many library errors already say
/// their source in their own message, and `{:#}` would repeat it after them.
pub(crate) fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Init { dir, force } => init::run(&dir, force),
        Command::Events {
            name,
            category,
            search,
            published,
            templates,
            json,
        } => {
            let category = category
                .map(|c| c.parse::<tasker_events::Category>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--category: {e}"))?;
            events::run(&events::Query {
                name,
                category,
                search,
                published,
                templates,
                json,
            })
        }
        Command::Graph { file, format } => {
            let template = read_template(&file)?;
            let format = match format {
                Format::Mermaid => GraphFormat::Mermaid,
                Format::Dot => GraphFormat::Dot,
                Format::Text => GraphFormat::Text,
            };
            print!("{}", template.graph().render(format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { command, json },
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            Ok(runtime.block_on(config_check::run(
                cli.config.as_deref(),
                cli.database.as_deref(),
                command,
                json,
            )))
        }
        Command::Config {
            command: ConfigCommand::Schema,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&settings::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let mut settings = settings::load(cli.config.as_deref())?;
            if let Some(url) = cli.database {
                settings.database.url = url;
            }
            // Traces and metrics leave the process only for the commands that run tasks.
            let exports = matches!(
                command,
                Command::Run { .. }
                    | Command::Resume { .. }
                    | Command::Worker { .. }
                    | Command::Serve { .. }
            );
            let plan = if exports {
                telemetry::plan(&settings.telemetry, |name| std::env::var(name).ok())?
            } else {
                None
            };
            let mut otel = plan.as_ref().map(telemetry::Otel::start).transpose()?;
            logging::init(&settings.log, otel.as_ref().map(telemetry::Otel::tracer))?;
            let meters = if matches!(command, Command::Serve { .. }) && settings.metrics.enabled {
                Some(metrics::Telemetry::with_otlp(
                    otel.as_mut()
                        .and_then(telemetry::Otel::take_metric_exporter),
                )?)
            } else {
                None
            };
            if let Some(otel) = &mut otel {
                otel.install_global_meter_provider();
            }
            let runtime = tokio::runtime::Runtime::new()?;
            let meters_ref = meters.as_ref();
            let result = runtime.block_on(async move {
                match command {
                    Command::Run {
                        template,
                        context,
                        context_file,
                        bypass,
                        json,
                    } => {
                        let context =
                            run::read_context(context.as_deref(), context_file.as_deref())?;
                        run::run(&settings, &template, context, bypass, json).await
                    }
                    Command::Resume { task_id, json } => {
                        run::resume(&settings, &task_id, json).await
                    }
                    Command::Templates => run::list_templates(&settings).await,
                    Command::Migrate => run::migrate(&settings).await,
                    Command::Worker { namespaces } => worker::run(&settings, namespaces).await,
                    Command::Serve {
                        bind,
                        migrate,
                        no_worker,
                    } => {
                        let args = serve::ServeArgs {
                            bind,
                            migrate,
                            no_worker,
                        };
                        serve::run(&settings, args, meters_ref).await
                    }
                    Command::Health(args) => health::run(&settings, args).await,
                    Command::Tasks(args) => client::tasks(&settings, args).await,
                    Command::Steps(args) => client::steps(&settings, args).await,
                    Command::Switches(args) => client::switches(&settings, args).await,
                    Command::Token { command } => auth_cli::token(&settings, command).await,
                    Command::Keys { command } => auth_cli::keys(&settings, command).await,
                    Command::Validate { .. }
                    | Command::Graph { .. }
                    | Command::Events { .. }
                    | Command::Init { .. }
                    | Command::Config { .. } => {
                        unreachable!("handled above")
                    }
                }
            });
            // The exporters' threads make blocking HTTP calls: flush them (the last spans of the
            // run included) only once the runtime is gone.
            drop(runtime);
            if let Some(meters) = meters {
                meters.shutdown();
            }
            if let Some(otel) = otel {
                otel.shutdown();
            }
            result
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`tasker events | head`) is not an error.
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing to stdout failed: {err}");
    }
}

/// Reads and validates one template file; errors carry the file name and lines.
pub(crate) fn read_template(path: &std::path::Path) -> anyhow::Result<TaskTemplate> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    TaskTemplate::from_yaml_slice(&bytes, Some(&path.display().to_string()))
        .map_err(|errors| anyhow::anyhow!("{errors}"))
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match read_template(file) {
            Ok(template) => println!(
                "ok: {} ({}, {} steps)",
                file.display(),
                template.full_name(),
                template.step_templates.len()
            ),
            Err(err) => {
                failed = true;
                eprintln!("{err}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("auth.jwt.public_keys[0]: {source}")]
    struct Saying {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Saying { source: io() }).context("auth");
        assert_eq!(
            error_text(&err),
            "auth: auth.jwt.public_keys[0]: no such file"
        );
        let err = anyhow::Error::new(io()).context("cannot read /etc/x");
        assert_eq!(error_text(&err), "cannot read /etc/x: no such file");
    }
}
