//! How the store connects: no TLS to a PostgreSQL server on the same host unless asked for.

use tasker_persistence::{ConnectOptions, Store};

use crate::support::*;

/// Rows of `sql` (a `SELECT`) as a transaction's row count, on a one-connection store on `url`.
async fn rows_on(url: &str, sql: &str) -> anyhow::Result<u64> {
    let store = Store::connect(
        url,
        &ConnectOptions {
            max_connections: 1,
            min_connections: 1,
            migrate: false,
            ..Default::default()
        },
    )
    .await?;
    let txn = store.begin().await?;
    let rows = txn.execute(sql, []).await?;
    txn.rollback().await?;
    store.close().await;
    Ok(rows)
}

const ON_TLS: &str = "SELECT 1 FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl";

#[tokio::test]
async fn a_same_host_postgres_is_reached_without_tls_unless_the_url_asks_for_it() {
    on_each_database_url(|url, backend| async move {
        let loopback = url.contains("@127.0.0.1") || url.contains("@localhost");
        if backend != "postgres"
            || !loopback
            || url.contains("sslmode")
            || std::env::var_os("PGSSLMODE").is_some()
        {
            return Ok(());
        }
        assert_eq!(
            rows_on(&url, ON_TLS).await?,
            0,
            "a loopback connection with no sslmode used TLS"
        );
        let server_offers_tls = rows_on(
            &url,
            "SELECT 1 FROM pg_settings WHERE name = 'ssl' AND setting = 'on'",
        )
        .await?
            == 1;
        if server_offers_tls {
            assert_eq!(
                rows_on(&format!("{url}?sslmode=require"), ON_TLS).await?,
                1,
                "sslmode=require in the URL did not give TLS"
            );
        }
        Ok(())
    })
    .await;
}
