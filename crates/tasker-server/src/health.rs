//! `tasker health`: readiness from a running server (`/health/ready`), the detailed report
//! (`/health/status`, with the client's credentials), or the readiness checks run in this
//! process against the configured database and cache (`--local`: a worker, which serves no
//! HTTP, checks itself this way). Exit 0 when ready or healthy, 1 when not, 2 when the
//! configuration is unusable.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use reqwest::StatusCode;
use tasker_api::{HealthCheck, HealthStatusView, HealthView};
use tasker_persistence::{ConnectOptions, Store};

use crate::settings::Settings;

/// `tasker health ...`.
#[derive(Args)]
pub(crate) struct HealthArgs {
    /// The server's base URL [default: client.server, TASKER_SERVER, or http://127.0.0.1:8080]
    #[arg(
        long,
        visible_alias = "url",
        value_name = "URL",
        conflicts_with = "local"
    )]
    server: Option<String>,
    /// The detailed report (`/v1/health/status`: counts, retries, pool, cache and a verdict),
    /// sent with the client's credentials; exit 0 when healthy
    #[arg(long, conflicts_with = "local")]
    status: bool,
    /// Run the readiness checks here, against the configured database and cache, without a
    /// server
    #[arg(long)]
    local: bool,
    /// Print the JSON document
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(settings: &Settings, args: HealthArgs) -> anyhow::Result<ExitCode> {
    if args.local {
        return local(settings, args.json).await;
    }
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| settings.client.server.clone());
    let api = crate::client::http::Api::new(&server, &settings.client, None)?;
    let path = if args.status {
        "/health/status"
    } else {
        "/health/ready"
    };
    let request = api
        .request(reqwest::Method::GET, path)
        .timeout(Duration::from_secs(10));
    // Unreachable, or refused: not ready, said on stderr.
    let response = match api
        .send_accepting(request, &[StatusCode::SERVICE_UNAVAILABLE])
        .await
    {
        Ok(response) => response,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::from(1));
        }
    };
    let ok = response.status().is_success();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|err| anyhow::anyhow!("{server}{path} did not answer JSON: {err}"))?;
    let text = if args.json {
        serde_json::to_string_pretty(&body)?
    } else if args.status {
        let view: HealthStatusView = crate::client::http::parse(&body, "a status report")?;
        status_text(&view)
    } else {
        let view: HealthView = crate::client::http::parse(&body, "a readiness report")?;
        checks_text(if ok { "ready" } else { "not ready" }, &view.checks)
    };
    crate::print_stdout(&format!("{text}\n"));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The readiness checks in this process: the same ones `/health/ready` runs, without the
/// coordinator's.
async fn local(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let cache = settings
        .cache
        .build()
        .map_err(|err| anyhow::anyhow!("cache configuration: {err}"))?;
    let options = settings.database.connect_options()?;
    let options = ConnectOptions {
        migrate: false,
        min_connections: 0,
        max_connections: 1,
        acquire_timeout: options.acquire_timeout.min(Duration::from_secs(5)),
        ..options
    };
    let checks = match Store::connect(&settings.database.url, &options).await {
        Ok(store) => tasker_api::readiness_checks(&store, None, &cache).await,
        Err(err) => {
            let mut checks = vec![HealthCheck {
                name: "database".into(),
                ok: false,
                detail: format!("unreachable: {err}"),
            }];
            checks.extend(tasker_api::cache_check(&cache).await);
            checks
        }
    };
    let ok = checks.iter().all(|c| c.ok);
    let text = if json {
        serde_json::to_string_pretty(&HealthView {
            status: if ok { "ok" } else { "unavailable" }.into(),
            checks,
        })?
    } else {
        checks_text(if ok { "ready" } else { "not ready" }, &checks)
    };
    crate::print_stdout(&format!("{text}\n"));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn checks_text(verdict: &str, checks: &[HealthCheck]) -> String {
    let mut text = verdict.to_owned();
    for check in checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        let _ = write!(text, "\n  {mark}  {:<12} {}", check.name, check.detail);
    }
    text
}

fn status_text(view: &HealthStatusView) -> String {
    let mut text = checks_text(&view.status, &view.checks);
    for reason in &view.reasons {
        let _ = write!(text, "\n  reason: {reason}");
    }
    if let Some(counts) = &view.counts {
        let states = |counts: &std::collections::BTreeMap<String, u64>| {
            counts
                .iter()
                .map(|(state, n)| format!("{state} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(text, "\n  tasks:   {}", states(&counts.tasks));
        let _ = write!(text, "\n  steps:   {}", states(&counts.steps));
        let b = &counts.backlog;
        let _ = write!(
            text,
            "\n  backlog: {} ready, {} waiting, {} claimed, {} past their lease",
            b.ready, b.waiting, b.claimed, b.expired_claims
        );
        let r = &counts.retries;
        let _ = write!(
            text,
            "\n  retries: {} steps retrying, {} exhausted, {} retries made",
            r.retrying_steps, r.exhausted_steps, r.retries
        );
    }
    if let Some(pool) = &view.pool {
        let _ = write!(
            text,
            "\n  pool:    {} of {} connections in use ({:.0}%)",
            pool.in_use,
            pool.max,
            pool.utilisation * 100.0
        );
    }
    let _ = write!(
        text,
        "\n  cache:   {}{}, {} hits, {} misses, {} errors",
        view.cache.kind,
        if view.cache.shared { " (shared)" } else { "" },
        view.cache.hits,
        view.cache.misses,
        view.cache.errors
    );
    text
}
