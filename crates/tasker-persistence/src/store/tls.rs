//! No TLS to a PostgreSQL server on the same host, unless the URL or the environment asks for it.
//!
//! sqlx, like libpq, defaults to `sslmode=prefer`: it negotiates TLS whenever the server offers
//! it, and Debian's and most packaged PostgreSQL servers do (a self-signed certificate, `ssl =
//! on`). Over loopback that encrypts traffic that never leaves the machine, and it is not free:
//! every message is encrypted and decrypted on both ends, by the engine and by the server's
//! backend. Measured with the bench on a 2-core machine against a loopback server: B1 3,598 →
//! 4,589 steps/s, B6 3,001 → 4,286 tasks/s with TLS turned off, the same durability.
//!
//! So for a URL whose host is `localhost` or a loopback address, with no `sslmode` (or
//! `ssl-mode`) of its own and no `PGSSLMODE` in the environment, the store connects without
//! TLS. Anything explicit wins: `?sslmode=prefer` or `require` keeps TLS on the same host, and
//! a server that only accepts TLS on loopback (`hostssl` lines in `pg_hba.conf`) needs one of
//! those. Remote servers keep sqlx's default. A Unix socket never uses TLS anyway.

use std::net::IpAddr;
use std::str::FromStr;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The TLS mode the store sets for `url`, or `None` to leave sqlx's choice (the URL's, the
/// environment's `PGSSLMODE` passed as `env_mode`, or its default).
pub(crate) fn loopback_mode(url: &str, env_mode: Option<&str>) -> Option<PgSslMode> {
    if env_mode.is_some() || names_ssl_mode(url) {
        return None;
    }
    let options = PgConnectOptions::from_str(url).ok()?;
    is_loopback(options.get_host()).then_some(PgSslMode::Disable)
}

/// Whether the URL's query sets the TLS mode itself.
fn names_ssl_mode(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
        .any(|key| key.eq_ignore_ascii_case("sslmode") || key.eq_ignore_ascii_case("ssl-mode"))
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    IpAddr::from_str(host.trim_start_matches('[').trim_end_matches(']'))
        .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disabled(url: &str) -> bool {
        matches!(loopback_mode(url, None), Some(PgSslMode::Disable))
    }

    #[test]
    fn a_loopback_server_is_reached_without_tls() {
        assert!(disabled("postgres://postgres@127.0.0.1:5432/tasker"));
        assert!(disabled("postgres://postgres@localhost/tasker"));
        assert!(disabled(
            "postgres://postgres@127.0.0.2:5433/tasker?application_name=x"
        ));
        assert!(disabled("postgres://postgres@[::1]:5432/tasker"));
    }

    #[test]
    fn an_explicit_mode_or_a_remote_server_keeps_the_default() {
        assert!(loopback_mode("postgres://u@127.0.0.1/db?sslmode=require", None).is_none());
        assert!(loopback_mode("postgres://u@127.0.0.1/db?x=1&ssl-mode=prefer", None).is_none());
        assert!(loopback_mode("postgres://u@127.0.0.1/db", Some("require")).is_none());
        assert!(loopback_mode("postgres://u@db.internal:5432/db", None).is_none());
        assert!(loopback_mode("postgres://u@10.0.0.5/db", None).is_none());
        assert!(loopback_mode("not a url", None).is_none());
    }
}
