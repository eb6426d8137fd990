//! TCP_NODELAY for PostgreSQL connections.
//!
//! sqlx opens its TCP sockets with Nagle's algorithm on and offers no way to turn it off. A
//! statement whose message spans more than one TCP segment then waits for the server's delayed
//! ACK, about 40 ms on Linux, before its last segment leaves: measured here, creating a
//! 5,002-step task took 0.7 s over TCP and 0.07 s over a Unix socket, and bulk creation ran at
//! 350 instead of 3,500 tasks/s. After each new pool connection we therefore set TCP_NODELAY on
//! the process's TCP sockets (every TCP client wants it for request/response traffic; hyper
//! sets it too). Linux only (it lists `/proc/self/fd`); elsewhere this does nothing.

/// Sets TCP_NODELAY on every TCP socket of this process.
#[cfg(target_os = "linux")]
pub(crate) fn on_tcp_sockets() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        set_nodelay(fd);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn on_tcp_sockets() {}

/// TCP_NODELAY on `fd` if it is a TCP socket; any other descriptor (or one closed meanwhile)
/// makes the calls fail harmlessly.
#[cfg(target_os = "linux")]
fn set_nodelay(fd: i32) {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain socket syscalls on an integer descriptor with correctly sized buffers; on
    // a descriptor that is not a socket (or no longer open) they return an error and touch
    // nothing.
    let is_stream = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &raw mut len,
        )
    } == 0
        && kind == libc::SOCK_STREAM;
    if !is_stream {
        return;
    }
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above.
    let is_inet = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &raw mut len,
        )
    } == 0
        && (domain == libc::AF_INET || domain == libc::AF_INET6);
    if !is_inet {
        return;
    }
    let on: libc::c_int = 1;
    // SAFETY: as above; the option value is a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn sets_nodelay_on_tcp_sockets_only() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!client.nodelay().unwrap(), "Nagle is on by default");
        let file = std::fs::File::open("/proc/self/status").unwrap();
        super::on_tcp_sockets();
        assert!(client.nodelay().unwrap());
        // A non-socket descriptor is left alone and nothing fails.
        super::set_nodelay(file.as_raw_fd());
        super::set_nodelay(-1);
    }
}
