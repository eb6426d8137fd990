//! `tasker switches list|pause|resume|limit`: the runtime switches of a running server's
//! database, over `/v1/runtime/switches`. (They sit under `switches` because `tasker resume`
//! already resumes an interrupted task.)

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use tasker_api::{SwitchChangeView, SwitchesView};

use super::http::{Api, parse};
use super::{ClientOptions, api, print_json};
use crate::settings::Settings;

/// `tasker switches ...`.
#[derive(Args)]
pub(crate) struct SwitchesArgs {
    #[command(flatten)]
    options: ClientOptions,
    #[command(subcommand)]
    command: SwitchesCommand,
}

#[derive(Subcommand)]
enum SwitchesCommand {
    /// The switches in force, then the latest changes with who made them and why
    List,
    /// Pause a namespace or template: no process claims its ready steps (running attempts
    /// finish; tasks can still be created and wait)
    Pause {
        #[command(subcommand)]
        target: PauseTarget,
    },
    /// Resume a paused namespace or template (name it as it was paused)
    Resume {
        #[command(subcommand)]
        target: PauseTarget,
    },
    /// Cap a namespace's step attempts running at once across every process
    Limit {
        #[command(subcommand)]
        target: LimitTarget,
    },
}

#[derive(Subcommand)]
enum PauseTarget {
    /// Every template of a namespace
    Namespace {
        /// The namespace
        name: String,
        /// Why (required: every change is logged with who made it)
        #[arg(long)]
        reason: String,
    },
    /// One template: namespace/name, or namespace/name@version for one version
    Template {
        /// namespace/name[@version]
        template: String,
        /// Why (required: every change is logged with who made it)
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum LimitTarget {
    /// Cap a namespace's step attempts running at once across every process
    Namespace {
        /// The namespace
        name: String,
        /// The cap (at least 1), or `none` to remove it
        max_running: String,
        /// Why (required: every change is logged with who made it)
        #[arg(long)]
        reason: String,
    },
}

/// `tasker switches ...`.
pub(crate) async fn switches(settings: &Settings, args: SwitchesArgs) -> anyhow::Result<ExitCode> {
    let api = api(settings, &args.options)?;
    let options = &args.options;
    match args.command {
        SwitchesCommand::List => {
            let value = api.get("/runtime/switches").await?;
            if options.json {
                print_json(&value)?;
            } else {
                let view: SwitchesView = parse(&value, "the runtime switches")?;
                crate::print_stdout(&table(&view));
            }
            Ok(ExitCode::SUCCESS)
        }
        SwitchesCommand::Pause { target } => {
            let value = api
                .post("/runtime/switches/pause", Some(&pause_body(target)?))
                .await?;
            print_change(options, value)
        }
        SwitchesCommand::Resume { target } => {
            let value = api
                .post("/runtime/switches/resume", Some(&pause_body(target)?))
                .await?;
            print_change(options, value)
        }
        SwitchesCommand::Limit { target } => limit(&api, options, target).await,
    }
}

fn table(view: &SwitchesView) -> String {
    let mut out = String::new();
    if view.switches.is_empty() {
        out.push_str("no switches in force\n");
    } else {
        out.push_str(&format!(
            "{:<6}  {:<32}  {:<11}  {:<16}  {:<20}  WHY\n",
            "KIND", "TARGET", "MAX_RUNNING", "BY", "SINCE"
        ));
        for s in &view.switches {
            out.push_str(&format!(
                "{:<6}  {:<32}  {:<11}  {:<16}  {:<20}  {}\n",
                s.kind,
                s.target,
                s.max_running.map_or("-".into(), |n| n.to_string()),
                s.set_by,
                s.set_at.format("%Y-%m-%d %H:%M:%S"),
                s.reason
            ));
        }
    }
    if !view.recent_changes.is_empty() {
        out.push_str("\nrecent changes:\n");
        for c in &view.recent_changes {
            out.push_str(&format!("{}\n", change_line(c)));
        }
    }
    out
}

fn change_line(c: &SwitchChangeView) -> String {
    let cap = c.max_running.map(|n| format!(" {n}")).unwrap_or_default();
    format!(
        "{}  {} {}{cap} by {}: {}",
        c.changed_at.format("%Y-%m-%d %H:%M:%S"),
        c.action,
        c.target,
        c.changed_by,
        c.reason
    )
}

/// The pause/resume body of a target.
fn pause_body(target: PauseTarget) -> anyhow::Result<Value> {
    Ok(match target {
        PauseTarget::Namespace { name, reason } => json!({"namespace": name, "reason": reason}),
        PauseTarget::Template { template, reason } => {
            let (path, version) = match template.split_once('@') {
                Some((path, version)) => (path, Some(version)),
                None => (template.as_str(), None),
            };
            let Some((namespace, name)) = path.split_once('/') else {
                anyhow::bail!(
                    "template `{template}` must be namespace/name or namespace/name@version"
                );
            };
            json!({
                "namespace": namespace,
                "template": {"name": name, "version": version},
                "reason": reason,
            })
        }
    })
}

fn print_change(options: &ClientOptions, value: Value) -> anyhow::Result<ExitCode> {
    if options.json {
        print_json(&value)?;
    } else {
        let change: SwitchChangeView = parse(&value, "a runtime switch change")?;
        crate::print_stdout(&format!("{}\n", change_line(&change)));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tasker switches limit namespace NAME N|none --reason ...`.
async fn limit(
    api: &Api,
    options: &ClientOptions,
    target: LimitTarget,
) -> anyhow::Result<ExitCode> {
    let LimitTarget::Namespace {
        name,
        max_running,
        reason,
    } = target;
    let max_running: Option<u32> = if max_running.eq_ignore_ascii_case("none") {
        None
    } else {
        Some(max_running.parse().map_err(|_| {
            anyhow::anyhow!(
                "max_running must be a whole number of at least 1, or `none`; got `{max_running}`"
            )
        })?)
    };
    let body = json!({"max_running": max_running, "reason": reason});
    let request = api
        .request(
            Method::PUT,
            &format!("/runtime/switches/limits/{}", encode(&name)),
        )
        .json(&body);
    let (_, value) = api.json(request).await?;
    print_change(options, value)
}

/// A path segment with the characters that would change the path percent-encoded.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
