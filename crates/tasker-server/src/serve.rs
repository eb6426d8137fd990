//! `tasker serve`: the REST API under `/v1` (with the probes also at `/health/*`, and
//! Prometheus metrics at `/metrics` unless `metrics.enabled = false`) and, unless
//! `--no-worker`, the coordinator in the same process. SIGTERM or Ctrl-C stops accepting
//! requests, lets open ones finish (event streams are cut after the drain grace), then drains
//! the coordinator and exits 0.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tasker_api::{Api, DatabaseApiKeys, DatabaseRevocations};
use tasker_engine::Engine;
use tasker_persistence::{ConnectOptions, Store};

use crate::settings::Settings;

/// What `tasker serve` was asked.
pub(crate) struct ServeArgs {
    /// Overrides `server.bind`.
    pub(crate) bind: Option<String>,
    /// Apply pending migrations first.
    pub(crate) migrate: bool,
    /// The API alone; `tasker worker` processes run the tasks.
    pub(crate) no_worker: bool,
}

/// Opens the store, refusing a schema older than this binary unless asked to migrate it.
pub(crate) async fn open_current(settings: &Settings, migrate: bool) -> anyhow::Result<Store> {
    let options = settings.database.connect_options()?;
    let store = Store::connect(
        &settings.database.url,
        &ConnectOptions {
            migrate: false,
            ..options
        },
    )
    .await?;
    if migrate {
        store.migrate().await?;
        return Ok(store);
    }
    let status = store.schema_status().await?;
    if !status.is_current() {
        bail!(
            "the database schema is older than this binary: {} migration(s) pending ({}); run `tasker migrate` first, or start with `tasker serve --migrate`",
            status.pending.len(),
            status.pending.join(", ")
        );
    }
    Ok(store)
}

/// Stops startup when the profile's rules are broken (`tasker config check` lists them too).
pub(crate) fn refuse_profile_violations(settings: &Settings) -> anyhow::Result<()> {
    let errors = settings.profile_rules();
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// `telemetry`: the meter provider behind `/metrics` (built by `main` when `metrics.enabled`,
/// so that it is flushed after the runtime ends).
pub(crate) async fn run(
    settings: &Settings,
    args: ServeArgs,
    telemetry: Option<&crate::metrics::Telemetry>,
) -> anyhow::Result<ExitCode> {
    let signal = crate::worker::shutdown_signal()?;
    settings.api.validate().map_err(anyhow::Error::msg)?;
    refuse_profile_violations(settings)?;
    settings.health.validate().map_err(anyhow::Error::msg)?;
    settings.graphql.validate().map_err(anyhow::Error::msg)?;
    let cache = settings.cache.build().map_err(anyhow::Error::msg)?;
    let cache_ttl = settings.cache.ttl().map_err(anyhow::Error::msg)?;
    let templates = crate::run::read_template_dir(settings)?;
    let store = open_current(settings, args.migrate).await?;
    let mut builder = Engine::builder(store.clone()).config(settings.engine.clone());
    if let Some(telemetry) = &telemetry {
        builder = builder.meter(telemetry.meter());
    }
    let engine = builder.build().map_err(anyhow::Error::new)?;
    crate::run::configure_builtins(&engine, settings);
    // Sensitive keys in custom event data and step error contexts never reach subscribers.
    engine.events().set_redactor(settings.log.redactor());
    crate::run::register_examples(&engine).await?;
    crate::run::register_templates(&engine, templates).await?;
    engine
        .events()
        .register(Arc::new(tasker_events::LogSubscriber::new()))?;
    if let Some(telemetry) = &telemetry {
        engine
            .events()
            .register(Arc::new(tasker_events::MetricsSubscriber::new(
                &telemetry.meter(),
                engine.events(),
            )))?;
    }
    // On PostgreSQL, events of tasks other processes run reach this process's streams.
    let relay = engine.relay_events().await?;
    let jwks = crate::auth_cli::start_jwks(settings)
        .await
        .context("auth configuration")?;
    let revocations = DatabaseRevocations::new(store.clone(), cache.clone(), cache_ttl);
    let built = settings
        .auth
        .build_with_parts(
            settings.server.profile,
            tasker_auth::AuthParts {
                database_keys: Some(Arc::new(DatabaseApiKeys::new(store.clone()))),
                fetched: jwks.as_ref().map(|fetcher| fetcher.keys()),
                revocations: Some(Arc::new(revocations)),
            },
        )
        .context("auth configuration")?;
    if let Some(fetcher) = jwks {
        tokio::spawn(crate::jwks::run(fetcher));
    }
    for warning in &built.warnings {
        tracing::warn!("auth: {warning}");
    }
    let api = Api::new(engine.clone(), built.access)
        .settings(settings.api.clone())
        .health(settings.health.clone())
        .cache(cache, cache_ttl)
        .graphql(
            settings
                .graphql
                .clone()
                .for_profile(settings.server.profile),
        )
        .expects_coordinator(!args.no_worker);
    let status_auth = settings
        .health
        .status_auth
        .unwrap_or(tasker_api::EndpointAuth::default_for(
            settings.server.profile,
        ));
    let mut app = axum::Router::new()
        .nest("/v1", api.router())
        .merge(api.probes())
        .merge(api.status(status_auth))
        .merge(api.ui("/v1"));
    if let Some(telemetry) = &telemetry {
        let auth = settings.metrics.auth(settings.server.profile);
        app = app.merge(api.metrics(telemetry.exporter(), auth));
        app = tasker_api::track_requests(app, &telemetry.meter());
    }
    let bind = args.bind.unwrap_or_else(|| settings.server.bind.clone());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    if !args.no_worker {
        engine.start();
    }
    eprintln!(
        "tasker serve: listening on http://{address} (API under /v1, docs at /v1/docs, GraphQL at /v1/graphql{}{}){}",
        if settings.api.ui {
            ", dashboard at /ui/"
        } else {
            ""
        },
        if telemetry.is_some() {
            ", metrics at /metrics"
        } else {
            ""
        },
        if args.no_worker {
            ", no coordinator"
        } else {
            ", coordinator running"
        }
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stop_rx.await.ok();
            })
            .await
    });
    signal.await?;
    eprintln!("stopping: no new requests; open ones may finish");
    stop_tx.send(()).ok();
    // HTTP and the coordinator stop side by side, each within the grace: open requests
    // finish (event streams are cut at the grace) while running attempts finish and the
    // remaining claims are given back.
    let grace = settings.engine.shutdown_grace;
    let http = async {
        match tokio::time::timeout(grace, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => {
                tracing::warn!(error = %err, "the HTTP server stopped with an error")
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "the HTTP server task failed"),
            Err(_) => eprintln!("open connections (event streams) were cut after the grace"),
        }
    };
    let coordinator = async {
        if !args.no_worker {
            engine.drain().await;
        }
    };
    tokio::join!(http, coordinator);
    engine.events().settled().await;
    // The drain's last outcomes still go to the event streams of other processes.
    if let Some(relay) = relay {
        relay.stop().await;
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}
