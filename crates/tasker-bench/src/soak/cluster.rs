//! The soak's own PostgreSQL cluster, made with Debian's cluster tools (`pg_createcluster`,
//! `pg_ctlcluster`, `pg_dropcluster`; run as root) on a free port, so that restarting it disturbs
//! no other database on the machine. [`Cluster`] drops the cluster when it goes out of scope,
//! on every path; clusters left by an earlier run that died (named `soak-<pid>` of a process that
//! no longer exists) are dropped before a new one is made.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The prefix of every cluster the soak makes.
const PREFIX: &str = "soak-";

/// A running cluster, dropped (stopped and deleted) with this value.
pub(crate) struct Cluster {
    version: String,
    name: String,
    pub port: u16,
}

impl Cluster {
    /// Drops stale soak clusters, then creates and starts `soak-<this pid>` on a free port with
    /// trust authentication on loopback.
    pub(crate) fn create() -> Result<Self> {
        let version = newest_version()?;
        drop_stale(&version);
        let name = format!("{PREFIX}{}", std::process::id());
        let port = free_port()?;
        run(Command::new("pg_createcluster")
            .args([&version, &name, "-p", &port.to_string()])
            .args(["-o", "max_connections=300"]))
        .context("pg_createcluster (the soak runs as root on Debian's PostgreSQL packages)")?;
        // From here on the cluster exists: dropping `cluster` deletes it whatever happens next.
        let cluster = Self {
            version,
            name,
            port,
        };
        let hba = Path::new("/etc/postgresql")
            .join(&cluster.version)
            .join(&cluster.name)
            .join("pg_hba.conf");
        std::fs::write(
            &hba,
            "# Written by the Tasker soak: a throwaway cluster on loopback.\n\
             local all all trust\n\
             host all all 127.0.0.1/32 trust\n\
             host all all ::1/128 trust\n",
        )
        .with_context(|| format!("writing {}", hba.display()))?;
        cluster.ctl("start")?;
        cluster.wait_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `version name`, as the cluster tools name it.
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.version, self.name)
    }

    /// Restarts the server (`pg_ctlcluster … restart`: a fast shutdown, every connection cut)
    /// and waits until it accepts connections again. With a non-zero `down`, stops it, keeps it
    /// down that long, then starts it: an outage longer than a lease.
    pub(crate) fn restart(&self, down: Duration) -> Result<()> {
        if down.is_zero() {
            self.ctl("restart")?;
        } else {
            self.ctl("stop")?;
            std::thread::sleep(down);
            self.ctl("start")?;
        }
        self.wait_ready(Duration::from_secs(60))
    }

    /// Runs SQL as the superuser against `database`.
    pub(crate) fn psql(&self, database: &str, sql: &str) -> Result<()> {
        run(Command::new("psql").arg(self.url(database)).args([
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ]))
    }

    fn ctl(&self, action: &str) -> Result<()> {
        run(Command::new("pg_ctlcluster")
            .arg("--skip-systemctl-redirect")
            .args([&self.version, &self.name, action]))
    }

    fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ready = Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cluster {} did not accept connections on port {} within {within:?}",
                    self.label(),
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) =
            run(Command::new("pg_dropcluster").args(["--stop", &self.version, &self.name]))
        {
            eprintln!(
                "soak: warning: could not drop cluster {}: {error:#}",
                self.label()
            );
        }
    }
}

/// The newest PostgreSQL major version installed (a directory of /usr/lib/postgresql, else of
/// /etc/postgresql).
fn newest_version() -> Result<String> {
    for root in ["/usr/lib/postgresql", "/etc/postgresql"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut versions: Vec<(u32, String)> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| Some((name.split('.').next()?.parse().ok()?, name)))
            .collect();
        versions.sort();
        if let Some((_, version)) = versions.pop() {
            return Ok(version);
        }
    }
    bail!(
        "no PostgreSQL installation under /usr/lib/postgresql or /etc/postgresql: the soak needs Debian's postgresql packages"
    )
}

/// Drops every `soak-<pid>` cluster of `version` whose process is gone.
fn drop_stale(version: &str) {
    let Ok(entries) = std::fs::read_dir(Path::new("/etc/postgresql").join(version)) else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        if let Some(pid) = stale_pid(&name)
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            eprintln!("soak: dropping cluster {version} {name} left by an earlier run");
            if let Err(error) = run(Command::new("pg_dropcluster").args(["--stop", version, &name]))
            {
                eprintln!("soak: warning: {error:#}");
            }
        }
    }
}

/// The process id in a soak cluster's name.
fn stale_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_soak_clusters_are_ever_stale() {
        assert_eq!(stale_pid("soak-4242"), Some(4242));
        assert_eq!(stale_pid("main"), None);
        assert_eq!(stale_pid("soak-main"), None);
    }
}
