//! The shipped deployment files, run by the real binary outside containers: the compose stack's
//! services and the Kubernetes overlays' pods get the command, environment, mounted files and
//! probes their YAML gives them (read from the files, never copied here). Paths inside a
//! container stand for local files, other services' hosts for local listeners, and listening
//! ports for free local ones.

mod compose;
mod k8s;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use yaml_serde::Value as Yaml;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// A YAML file with its `<<` merge keys applied.
fn read_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let mut value: Yaml = yaml_serde::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()));
    value
        .apply_merge()
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    value
}

/// A scalar as the text a container sees (YAML numbers and booleans included).
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A sequence's items (none when absent).
fn items(value: &Yaml) -> &[Yaml] {
    match value {
        Yaml::Sequence(items) => items,
        Yaml::Null => &[],
        other => panic!("not a list: {other:?}"),
    }
}

/// A list of strings (`["--config", "..."]`).
fn strings(value: &Yaml) -> Vec<String> {
    items(value).iter().map(scalar).collect()
}

/// The image's entry point, from the Dockerfile: what a container's command is given to, and
/// the binary its health checks name.
fn image_binary() -> String {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("the Dockerfile has an ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(line).expect("ENTRYPOINT in exec form");
    assert_eq!(entry.len(), 1, "the entry point is the binary alone");
    entry[0].clone()
}

/// The Dockerfile's `HEALTHCHECK ... CMD [...]`, without the binary.
fn image_health_check() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("the Dockerfile has a HEALTHCHECK");
    let cmd = line.split_once(" CMD ").expect("HEALTHCHECK ... CMD").1;
    let mut args: Vec<String> = serde_json::from_str(cmd.trim()).expect("CMD in exec form");
    assert_eq!(args.remove(0), image_binary());
    args
}

/// Container paths and the local files or folders that stand for them.
#[derive(Debug, Clone, Default)]
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    fn add(&mut self, container: &str, local: PathBuf) {
        assert!(
            container.starts_with('/'),
            "a mount point is absolute: {container}"
        );
        let container = container.trim_end_matches('/');
        // A later mount at the same point replaces the earlier, as the test's stand-ins do.
        self.0.retain(|(path, _)| path != container);
        self.0.push((container.to_owned(), local));
        // The deepest mount wins, as in a container.
        self.0
            .sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    }

    /// The local file behind a container path; panics when nothing is mounted there.
    fn file(&self, container: &str) -> PathBuf {
        let local = self.local(container);
        assert_ne!(local, container, "nothing is mounted at {container}");
        PathBuf::from(local)
    }

    /// `text` with every container path under a mount point replaced by its local path.
    fn local(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        'scan: while let Some(c) = rest.chars().next() {
            for (container, local) in &self.0 {
                if let Some(after) = rest.strip_prefix(container.as_str())
                    && (after.is_empty() || after.starts_with(['/', '"', '\'', ',', ']', ' ']))
                {
                    out.push_str(&local.display().to_string());
                    rest = after;
                    continue 'scan;
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

/// How a container runs `tasker`: its arguments after the entry point, its whole environment,
/// and what is mounted where.
#[derive(Debug, Clone)]
struct Container {
    /// Who this is, for messages: `compose api`, `k8s prod tasker-api/api`.
    label: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    mounts: Mounts,
}

/// Flags that come before the subcommand and take a value.
const GLOBAL_FLAGS: &[&str] = &["--config", "--database"];

impl Container {
    /// The subcommand (`serve`, `worker`, `migrate`) and where it is in `args`.
    fn subcommand(&self) -> (usize, &str) {
        let mut i = 0;
        while i < self.args.len() {
            if GLOBAL_FLAGS.contains(&self.args[i].as_str()) {
                i += 2;
            } else {
                return (i, &self.args[i]);
            }
        }
        panic!("{}: no subcommand in {:?}", self.label, self.args)
    }

    /// The value of `flag` in the arguments, when given.
    fn flag(&self, flag: &str) -> Option<&str> {
        let at = self.args.iter().position(|a| a == flag)?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// The same container running `tasker <its global flags> <args>` instead.
    fn running(&self, args: &[&str]) -> Container {
        let (at, _) = self.subcommand();
        let mut changed = self.clone();
        changed.args.truncate(at);
        changed.args.extend(args.iter().map(|a| (*a).to_owned()));
        changed
    }

    /// The command, with container paths made local, in an empty working directory (the
    /// image's has no `tasker.toml` and no `templates`).
    fn command(&self, workdir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tasker"));
        command
            .args(self.args.iter().map(|a| self.mounts.local(a)))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, self.mounts.local(v))))
            .current_dir(workdir);
        command
    }

    fn output(&self, workdir: &Path) -> Output {
        self.command(workdir)
            .output()
            .unwrap_or_else(|err| panic!("{}: the tasker binary runs: {err}", self.label))
    }

    /// `tasker config check --json --for <this container's command>`, as a `kubectl exec` or
    /// `docker compose exec` in it would run it: the report and the exit code.
    fn config_check(&self, workdir: &Path) -> (Value, Option<i32>) {
        let (_, command) = self.subcommand();
        let command = command.to_owned();
        let out = self
            .running(&["config", "check", "--json", "--for", &command])
            .output(workdir);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "{}: config check printed no JSON ({err}): {}{}",
                self.label,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (report, out.status.code())
    }
}

/// A setting of a `config check` report: its value and source.
fn setting<'a>(report: &'a Value, key: &str) -> (&'a Value, &'a str) {
    let entry = report["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("{key} is not in the report: {report}"));
    (&entry["value"], entry["source"].as_str().unwrap())
}

/// The errors of a `config check` report.
fn errors(report: &Value) -> Vec<String> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn mounts_stand_in_for_container_paths_deepest_first() {
    let mut mounts = Mounts::default();
    mounts.add("/run/secrets/tasker", PathBuf::from("/tmp/jwt"));
    mounts.add("/run/secrets/tasker-database", PathBuf::from("/tmp/db"));
    mounts.add("/etc/tasker/", PathBuf::from("/tmp/config"));
    assert_eq!(
        mounts
            .local(r#"["/run/secrets/tasker/jwt_public.pem","/run/secrets/tasker-database/url"]"#),
        r#"["/tmp/jwt/jwt_public.pem","/tmp/db/url"]"#
    );
    assert_eq!(
        mounts.local("/etc/tasker/tasker.toml"),
        "/tmp/config/tasker.toml"
    );
    assert_eq!(
        mounts.local("/etc/taskerx"),
        "/etc/taskerx",
        "a whole segment only"
    );
    assert_eq!(
        mounts.file("/run/secrets/tasker-database/url"),
        PathBuf::from("/tmp/db/url")
    );
}
