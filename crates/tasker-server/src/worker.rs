//! `tasker worker`: the coordinator alone, with no HTTP, on tasks other processes create, until
//! SIGTERM or Ctrl-C; then a drain (running attempts finish within `engine.shutdown_grace`, the
//! claims still held are given back with no attempt spent) and exit 0.

use std::process::ExitCode;

use crate::settings::Settings;

/// Listens for Ctrl-C (SIGINT) and, on Unix, SIGTERM from now on (on Unix both handlers are
/// installed before this returns); the future finishes at the first of them: both mean "drain
/// and stop".
pub(crate) fn shutdown_signal()
-> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}

/// Runs the coordinator until a shutdown signal, then drains.
pub(crate) async fn run(settings: &Settings, namespaces: Vec<String>) -> anyhow::Result<ExitCode> {
    // Listening before the engine starts: a signal that arrives during start-up still drains.
    let signal = shutdown_signal()?;
    crate::serve::refuse_profile_violations(settings)?;
    let (_, engine) = crate::run::open_claiming(settings, &namespaces).await?;
    // On PostgreSQL, what this worker runs reaches the event streams of `tasker serve`
    // processes on the same database; without it they would see nothing of its tasks.
    let relay = engine.relay_events().await?;
    // The store's counts so far (migrations, templates): what running costs is counted apart.
    let store = engine.store().clone();
    let (statements, transactions) = (store.statements(), store.transactions());
    engine.start();
    let scope = if namespaces.is_empty() {
        "all namespaces".to_owned()
    } else {
        format!("namespaces {}", namespaces.join(", "))
    };
    eprintln!(
        "worker {} running ({scope}); SIGTERM or Ctrl-C drains and stops",
        engine.owner()
    );
    signal.await?;
    eprintln!(
        "draining: running attempts may finish for up to {:?}",
        settings.engine.shutdown_grace
    );
    engine.drain().await;
    // Subscribers (the event log) finish what was published before the process exits.
    engine.events().settled().await;
    // The drain's last outcomes still go to the event streams of other processes.
    if let Some(relay) = relay {
        relay.stop().await;
    }
    // What running cost the database, from the store's own counters (the benchmarks read it).
    eprintln!(
        "sent {} SQL statements in {} transactions while running",
        store.statements().saturating_sub(statements),
        store.transactions().saturating_sub(transactions)
    );
    eprintln!("drained; stopped");
    Ok(ExitCode::SUCCESS)
}
