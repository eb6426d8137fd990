//! `tasker`: run workflows on the embedded SQLite default (or PostgreSQL), resume them after a
//! crash, validate and graph templates, and migrate the database.

mod run;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tasker_domain::{GraphFormat, TaskTemplate};

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
    /// Apply pending database migrations
    Migrate,
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
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
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
        command => {
            let mut settings = settings::load(cli.config.as_deref())?;
            if let Some(url) = cli.database {
                settings.database.url = url;
            }
            run::init_logging(&settings.log)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
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
                    Command::Validate { .. } | Command::Graph { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
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
