//! TCP_NODELAY on the PostgreSQL pool's own sockets: a workaround, to delete once sqlx sets it.
//!
//! Why: sqlx 0.9.0 stopped setting TCP_NODELAY on the sockets it opens to PostgreSQL (upstream
//! sqlx issue 4335; the fix is upstream pull request 4336, not yet in a release). With Nagle's
//! algorithm on, a statement whose message spans more than one TCP segment waits for the
//! server's delayed ACK, about 40 ms on Linux, before its last segment leaves: measured here,
//! creating a 5,002-step task took 0.7 s over TCP and 0.07 s over a Unix socket, and bulk
//! creation ran at 350 instead of 3,500 tasks/s.
//!
//! What it touches: after the pool opens a connection, the TCP sockets of this process whose
//! peer is one of the database server's addresses, and nothing else (an application's own
//! sockets keep whatever it chose). Linux only (it lists `/proc/self/fd`); elsewhere it does
//! nothing.
//!
//! To delete it: once Cargo.lock holds a sqlx release with the upstream fix, remove this module,
//! the `after_connect` hook in `Store::connect` that calls it, and the `libc` dependency.

// One of the two places the workspace allows unsafe code (the other is the bench's getrusage):
// getsockopt on descriptors of this process and a never-dropped TcpStream view of one, each call
// with its SAFETY argument below.
#![allow(unsafe_code)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// The addresses a PostgreSQL URL connects to.
#[derive(Debug, Clone, Default)]
pub(crate) struct DatabasePeers(Vec<SocketAddr>);

impl DatabasePeers {
    /// The server addresses of a `postgres://` URL; none for a Unix socket or an unparsable URL
    /// (the pool then reports the URL's problem itself).
    pub(crate) fn of_url(url: &str) -> Self {
        let Ok(options) = sea_orm::sqlx::postgres::PgConnectOptions::from_str(url) else {
            return Self::default();
        };
        let host = options.get_host();
        if host.starts_with('/') {
            return Self::default();
        }
        Self::of(
            (host, options.get_port())
                .to_socket_addrs()
                .map(Iterator::collect)
                .unwrap_or_default(),
        )
    }

    fn of(addresses: Vec<SocketAddr>) -> Self {
        Self(addresses)
    }

    /// Sets TCP_NODELAY on every TCP socket of this process connected to one of these peers.
    #[cfg(target_os = "linux")]
    pub(crate) fn set_nodelay(&self) {
        if self.0.is_empty() {
            return;
        }
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in entries.flatten() {
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            let fd = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok());
            if let (true, Some(fd)) = (is_socket, fd) {
                self.set_nodelay_on(fd);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn set_nodelay(&self) {}

    /// TCP_NODELAY on `fd` if it is a TCP socket whose peer is one of ours; any other descriptor
    /// (or one closed meanwhile) makes the calls fail harmlessly.
    #[cfg(target_os = "linux")]
    fn set_nodelay_on(&self, fd: i32) {
        if !is_tcp(fd) {
            return;
        }
        // SAFETY: `fd` is a TCP socket of this process. The stream is never dropped, so the
        // descriptor is not closed; it is used only for getpeername and one setsockopt, which
        // cannot disturb the socket's owner.
        let stream = std::mem::ManuallyDrop::new(unsafe {
            <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        if stream.peer_addr().is_ok_and(|peer| self.0.contains(&peer)) {
            let _ = stream.set_nodelay(true);
        }
    }
}

/// Whether `fd` is a stream socket of the IPv4 or IPv6 family.
#[cfg(target_os = "linux")]
fn is_tcp(fd: i32) -> bool {
    let option = |name: libc::c_int| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt on an integer descriptor with a correctly sized buffer; on a
        // descriptor that is not a socket (or no longer open) it returns an error and touches
        // nothing.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&raw mut value).cast(),
                &raw mut len,
            )
        } == 0;
        ok.then_some(value)
    };
    option(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && matches!(
            option(libc::SO_DOMAIN),
            Some(libc::AF_INET | libc::AF_INET6)
        )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn only_sockets_to_the_database_get_nodelay() {
        let database = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_database = TcpStream::connect(database.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_database.nodelay().unwrap(), "Nagle is on by default");

        DatabasePeers::of(vec![database.local_addr().unwrap()]).set_nodelay();

        assert!(to_database.nodelay().unwrap());
        assert!(
            !to_other.nodelay().unwrap(),
            "another peer's socket is left alone"
        );
    }

    #[test]
    fn peers_come_from_the_url() {
        let peers = DatabasePeers::of_url("postgres://u:p@127.0.0.1:6543/db");
        assert_eq!(peers.0, vec!["127.0.0.1:6543".parse().unwrap()]);
        assert!(
            DatabasePeers::of_url("postgres:///db?host=/var/run/postgresql")
                .0
                .is_empty()
        );
        assert!(DatabasePeers::of_url("not a url").0.is_empty());
        // Non-sockets and closed descriptors are ignored.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let peers = DatabasePeers::of(vec!["127.0.0.1:1".parse().unwrap()]);
        peers.set_nodelay_on(std::os::fd::AsRawFd::as_raw_fd(&file));
        peers.set_nodelay_on(-1);
    }
}
