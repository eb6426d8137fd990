//! deploy/compose: the migrate, api and worker services with their command, environment,
//! `configs:` and `secrets:` from compose.yaml, against the test database instead of the
//! stack's PostgreSQL and a local OTLP receiver instead of its collector.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};
use tasker_persistence::testing::{Backend, on_each_empty_database};
use yaml_serde::Value as Yaml;

use super::{
    Container, Mounts, errors, image_binary, image_health_check, items, read_yaml, repo, scalar,
    setting, strings,
};

/// A failure guard on waits for the processes, never a pause.
const DEADLINE: Duration = Duration::from_secs(90);

/// What Prometheus 3 sends when it scrapes (its default scrape protocols).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// The content types Prometheus 3 accepts from a target without `fallback_scrape_protocol`
/// (which prometheus.yml does not set).
const PROMETHEUS_TYPES: &[&str] = &[
    "application/openmetrics-text",
    "text/plain; version=0.0.4",
    "text/plain; version=1.0.0",
];

const JOB: &str = "name: shipped\nnamespace_name: compose\nversion: 1.0.0\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  - name: b\n    handler_class: tasker::echo\n    depends_on_step: a\n";

/// `${NAME:-default}`, `${NAME-default}`, `${NAME}` and `$$`, as compose expands them in a
/// shell where none of the stack's variables are set.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
            let expression = &inner[..end];
            let default = expression
                .split_once(":-")
                .or_else(|| expression.split_once('-'))
                .map_or("", |(_, default)| default);
            out.push_str(default);
            rest = &inner[end + 1..];
        } else {
            panic!("only ${{...}} and $$ are expected in compose.yaml, got {text}");
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn interpolation_takes_the_defaults_of_unset_variables() {
    assert_eq!(interpolate("${TASKER_IMAGE:-tasker:dev}"), "tasker:dev");
    assert_eq!(interpolate("${TASKER_CACHE__REDIS_URL:-}"), "");
    assert_eq!(interpolate("a${X-b}c$$d"), "abc$d");
}

/// compose.yaml, merge keys applied.
struct Compose {
    dir: PathBuf,
    doc: Yaml,
}

impl Compose {
    fn load() -> Self {
        let dir = repo().join("deploy/compose");
        let doc = read_yaml(&dir.join("compose.yaml"));
        Self { dir, doc }
    }

    fn service(&self, name: &str) -> &Yaml {
        let service = &self.doc["services"][name];
        assert!(service.is_mapping(), "compose.yaml has no service {name}");
        service
    }

    fn service_names(&self) -> Vec<String> {
        self.doc["services"]
            .as_mapping()
            .expect("services")
            .keys()
            .map(scalar)
            .collect()
    }

    /// The services that run the Tasker image.
    fn tasker_services(&self) -> Vec<String> {
        let image = interpolate(&scalar(&self.doc["x-tasker"]["image"]));
        self.service_names()
            .into_iter()
            .filter(|name| interpolate(&scalar(&self.service(name)["image"])) == image)
            .collect()
    }

    /// A local file named in a top-level `configs:` or `secrets:` entry.
    fn file_of(&self, section: &str, name: &str) -> PathBuf {
        let file = scalar(&self.doc[section][name]["file"]);
        assert!(!file.is_empty(), "{section}.{name} names no file");
        self.dir.join(file)
    }

    /// The service's environment, interpolated.
    fn environment(&self, name: &str) -> BTreeMap<String, String> {
        match &self.service(name)["environment"] {
            Yaml::Mapping(map) => map
                .iter()
                .map(|(k, v)| (scalar(k), interpolate(&scalar(v))))
                .collect(),
            Yaml::Sequence(list) => list
                .iter()
                .map(|entry| {
                    let entry = interpolate(&scalar(entry));
                    let (k, v) = entry.split_once('=').unwrap_or((&entry, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Where the service's `configs:` and `secrets:` are mounted, as local files.
    fn mounts(&self, name: &str) -> Mounts {
        let mut mounts = Mounts::default();
        let service = self.service(name);
        for (section, default_dir) in [("configs", "/"), ("secrets", "/run/secrets/")] {
            for entry in items(&service[section]) {
                let (source, target) = match entry {
                    Yaml::String(source) => (source.clone(), None),
                    long => (scalar(&long["source"]), Some(scalar(&long["target"]))),
                };
                let target = match target.filter(|t| !t.is_empty()) {
                    Some(target) if target.starts_with('/') => target,
                    Some(target) => format!("{default_dir}{target}"),
                    None => format!("{default_dir}{source}"),
                };
                mounts.add(&target, self.file_of(section, &source));
            }
        }
        mounts
    }

    /// The container compose runs for the service: the image's entry point given `command`.
    fn container(&self, name: &str) -> Container {
        Container {
            label: format!("compose {name}"),
            args: strings(&self.service(name)["command"])
                .iter()
                .map(|a| interpolate(a))
                .collect(),
            env: self.environment(name),
            mounts: self.mounts(name),
        }
    }

    /// The service's health check (`test: ["CMD", ...]`), as a container running the same
    /// image with the service's environment.
    fn health_check(&self, name: &str) -> Container {
        let test = strings(&self.service(name)["healthcheck"]["test"]);
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "{name}: exec form"
        );
        assert_eq!(
            test[1],
            image_binary(),
            "{name}: the health check runs the image's binary"
        );
        Container {
            label: format!("compose {name} health check"),
            args: test[2..].to_vec(),
            ..self.container(name)
        }
    }

    fn replicas(&self, name: &str) -> usize {
        match &self.service(name)["deploy"]["replicas"] {
            Yaml::Null => 1,
            n => scalar(n).parse().expect("deploy.replicas is a number"),
        }
    }
}

/// The variable that names the database URL's file, and that file's container path.
fn database_url_file(container: &Container) -> (String, String) {
    assert!(
        !container.env.contains_key("TASKER_DATABASE_URL")
            && !container.env.contains_key("TASKER_DATABASE__URL"),
        "{}: the database URL holds a password; it comes from a secret file, not the environment",
        container.label
    );
    ["TASKER_DATABASE_URL_FILE", "TASKER_DATABASE__URL_FILE"]
        .into_iter()
        .find_map(|var| Some((var.to_owned(), container.env.get(var)?.clone())))
        .unwrap_or_else(|| panic!("{}: no TASKER_DATABASE_URL_FILE", container.label))
}

#[test]
fn the_database_secret_is_the_url_of_the_stack_postgres() {
    let compose = Compose::load();
    let postgres = compose.container("postgres");
    let user = &postgres.env["POSTGRES_USER"];
    let database = &postgres.env["POSTGRES_DB"];
    let password = std::fs::read_to_string(
        postgres
            .mounts
            .file(&postgres.env["POSTGRES_PASSWORD_FILE"]),
    )
    .unwrap();
    let tasker = compose.tasker_services();
    assert_eq!(tasker, ["migrate", "api", "worker"]);
    for name in tasker {
        let container = compose.container(&name);
        let (_, file) = database_url_file(&container);
        let text = std::fs::read_to_string(container.mounts.file(&file)).unwrap();
        let url = Url::parse(text.trim_end()).unwrap();
        assert_eq!(
            (
                url.scheme(),
                url.username(),
                url.password(),
                url.host_str(),
                url.port(),
                url.path()
            ),
            (
                "postgres",
                user.as_str(),
                Some(password.trim_end()),
                Some("postgres"),
                Some(5432),
                format!("/{database}").as_str()
            ),
            "{name}: the URL names the stack's PostgreSQL with its credentials"
        );
        for value in container.env.values() {
            assert!(
                Url::parse(value).map_or(true, |url| url.password().is_none()),
                "{name}: a URL with a password in the environment: {value}"
            );
        }
    }
}

/// A compose container made to run here: the test database's URL in the file its
/// `*_FILE` variable names, and other services' hosts replaced by local addresses.
fn localised(
    compose: &Compose,
    name: &str,
    database_file: &Path,
    hosts: &[(&str, String)],
) -> Container {
    let mut container = compose.container(name);
    let (_, file) = database_url_file(&container);
    container.mounts.add(&file, database_file.to_owned());
    for value in container.env.values_mut() {
        for (service_port, local) in hosts {
            *value = value.replace(&format!("//{service_port}"), &format!("//{local}"));
        }
        for service in compose.service_names() {
            assert!(
                !value.contains(&format!("//{service}:"))
                    && !value.contains(&format!("@{service}:")),
                "{name}: `{value}` names the service {service}, which this test does not stand in for"
            );
        }
    }
    container
}

/// A running process and the rest of its stderr once it ends.
struct Running {
    label: String,
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `container` and reads its stderr up to the line that starts with `ready`, which
    /// `tasker serve` and `tasker worker` print once they listen or run (log lines may come
    /// first): that line, and the process. Fails if the process ends first or says nothing
    /// of the kind within its first lines.
    fn start(container: &Container, workdir: &Path, ready: &str) -> (String, Running) {
        let mut child = container
            .command(workdir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut before = String::new();
        let mut line = String::new();
        for _ in 0..1000 {
            line.clear();
            let read = stderr.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "{}: ended before `{ready}`: {before}",
                container.label
            );
            if line.starts_with(ready) {
                break;
            }
            before.push_str(&line);
        }
        assert!(
            line.starts_with(ready),
            "{}: no `{ready}` in {before}",
            container.label
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            stderr.read_to_string(&mut rest).ok();
            tx.send(rest).ok();
        });
        let running = Running {
            label: container.label.clone(),
            child,
            stderr: rx,
        };
        (line, running)
    }

    /// SIGTERM, as `docker compose stop` sends; the exit code and the rest of stderr.
    async fn stop(mut self) -> (Option<i32>, String) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "{}: kill", self.label);
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            (status, self.stderr.recv().unwrap_or_default())
        });
        let (status, rest) = tokio::time::timeout(DEADLINE, status)
            .await
            .expect("the process stops within the drain")
            .unwrap();
        (status.code(), rest)
    }
}

/// `serve`'s address as its first line prints it.
fn address_of(line: &str) -> String {
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|address| format!("http://{address}"))
        .unwrap_or_else(|| panic!("no address in `{line}`"))
}

/// The port of a `HOST:PORT` bind address.
fn port_of(bind: &str) -> u16 {
    bind.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in `{bind}`"))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The scrape job of prometheus.yml whose target is `service`: its path and port there.
fn scrape_of(service: &str) -> (String, u16) {
    let config = read_yaml(&repo().join("deploy/compose/prometheus.yml"));
    for job in items(&config["scrape_configs"]) {
        for group in items(&job["static_configs"]) {
            for target in strings(&group["targets"]) {
                if let Some(port) = target.strip_prefix(&format!("{service}:")) {
                    assert_eq!(
                        scalar(&job["scheme"]).as_str(),
                        "",
                        "plain HTTP inside the network"
                    );
                    let path = match scalar(&job["metrics_path"]) {
                        path if path.is_empty() => "/metrics".to_owned(),
                        path => path,
                    };
                    return (path, port.parse().unwrap());
                }
            }
        }
    }
    panic!("prometheus.yml scrapes no {service}")
}

/// Scrapes `url` as Prometheus does and checks the answer is a valid text exposition: the
/// families it declares.
async fn scrape(url: &str) -> Vec<String> {
    let response = reqwest::Client::new()
        .get(url)
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        PROMETHEUS_TYPES.iter().any(|t| content_type.starts_with(t)),
        "{url}: Prometheus 3 refuses the content type `{content_type}`"
    );
    let body = response.text().await.unwrap();
    let mut families = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            families.push(declared.split_whitespace().next().unwrap().to_owned());
        } else if !line.starts_with('#') {
            let value = match line.rfind('}') {
                Some(end) => line[end + 1..].trim(),
                None => line.split_whitespace().nth(1).unwrap_or(""),
            };
            let value = value.split_whitespace().next().unwrap_or("");
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "{url}: not a sample: `{line}`"
            );
        }
    }
    families
}

#[tokio::test]
async fn the_compose_services_migrate_serve_work_and_stop_as_shipped() {
    on_each_empty_database(|db| async move {
        let compose = Compose::load();
        let work = tempfile::tempdir().unwrap();
        let database_file = work.path().join("database-url");
        std::fs::write(&database_file, format!("{}\n", db.url)).unwrap();
        let (otlp, received, _) = crate::traces::receiver().await;
        let collector = otlp.trim_start_matches("http://").to_owned();
        let hosts = [("otel-collector:4318", collector)];
        let migrate = localised(&compose, "migrate", &database_file, &hosts);
        let mut api = localised(&compose, "api", &database_file, &hosts);
        let worker = localised(&compose, "worker", &database_file, &hosts);

        for container in [&migrate, &api, &worker] {
            let (report, code) = container.config_check(work.path());
            if db.backend == Backend::Sqlite && report["valid"] == false {
                eprintln!(
                    "compose stack on SQLite: its configuration refuses SQLite ({:?}); PostgreSQL only, set TASKER_TEST_DATABASE_URL",
                    errors(&report)
                );
                return;
            }
            assert_eq!(code, Some(0), "{}: {report}", container.label);
            check_sources(&compose, container, &report, &db.url, &database_file);
        }
        let out = migrate.output(work.path());
        assert_eq!(out.status.code(), Some(0), "migrate: {}", text(&out));
        assert!(text(&out).starts_with("migrations applied"), "{}", text(&out));

        // SQLite serves one process: the API runs the coordinator itself there.
        if db.backend == Backend::Sqlite {
            eprintln!(
                "compose stack on SQLite: one `serve` with its coordinator; `serve --no-worker` with the workers runs on PostgreSQL only (set TASKER_TEST_DATABASE_URL)"
            );
            api.args.retain(|a| a != "--no-worker");
        }
        let bind = api.flag("--bind").expect("the API binds").to_owned();
        let port = port_of(&bind);
        let at = api.args.iter().position(|a| *a == bind).unwrap();
        api.args[at] = "127.0.0.1:0".into();
        let (first, server) = Running::start(&api, work.path(), "tasker serve: listening on");
        let base = address_of(&first);
        let local_port = base.rsplit_once(':').unwrap().1.to_owned();
        let mut workers = Vec::new();
        if db.backend == Backend::Postgres {
            for _ in 0..compose.replicas("worker") {
                workers.push(Running::start(&worker, work.path(), "worker ").1);
            }
            assert_eq!(workers.len(), 2, "compose.yaml runs two workers");
        }

        check_health(&compose, &api, &base, port, &local_port, work.path()).await;
        run_a_task(&base).await;
        let (path, scrape_port) = scrape_of("api");
        assert_eq!(scrape_port, port, "Prometheus scrapes the port the API binds");
        let families = scrape(&format!("{base}{path}")).await;
        for family in ["tasker_http_requests_total", "tasker_steps_ready"] {
            assert!(families.iter().any(|f| f == family), "{family} in {families:?}");
        }
        stop(server, workers).await;
        // OTEL_EXPORTER_OTLP_ENDPOINT took effect: the processes flushed their spans to the
        // stand-in collector before exiting.
        assert!(
            !received.lock().unwrap().spans.is_empty(),
            "spans reached the collector"
        );
    })
    .await;
}

/// A `config check` report names where the settings came from: the database URL from the
/// secret file, the shipped values from the mounted tasker.toml, the cache from compose's
/// environment.
fn check_sources(
    compose: &Compose,
    container: &Container,
    report: &Value,
    database_url: &str,
    database_file: &Path,
) {
    let (var, _) = database_url_file(container);
    let (url, source) = setting(report, "database.url");
    assert_eq!(url, &json!(tasker_persistence::redact_url(database_url)));
    assert_eq!(
        source,
        format!("file {} (from {var})", database_file.display()),
        "{}",
        container.label
    );
    let config_file = compose.file_of("configs", "tasker-config");
    for key in ["engine.shutdown_grace", "metrics.auth", "log.format"] {
        assert_eq!(
            setting(report, key).1,
            format!("file {}", config_file.display()),
            "{}: {key}",
            container.label
        );
    }
    assert_eq!(
        setting(report, "cache.redis_url"),
        (&json!(""), "env TASKER_CACHE__REDIS_URL"),
        "an empty Redis URL keeps the cache in the process"
    );
}

/// Registers a template and creates a task over HTTP, and follows the task's event stream to
/// its end: whoever runs the coordinator ran it (on PostgreSQL, the workers, whose events reach
/// the API through the relay).
async fn run_a_task(base: &str) {
    let client = reqwest::Client::new();
    let registered = client
        .post(format!("{base}/v1/templates"))
        .header("content-type", "application/yaml")
        .body(JOB)
        .send()
        .await
        .unwrap();
    assert_eq!(
        registered.status(),
        201,
        "{}",
        registered.text().await.unwrap()
    );
    let created: Value = client
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"namespace": "compose", "name": "shipped", "context": {"n": 1}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["task_id"].as_str().expect("a task id").to_owned();
    let events = tokio::time::timeout(DEADLINE, async {
        client
            .get(format!("{base}/v1/tasks/{id}/events"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the task finishes");
    assert!(events.contains("event: task.completed"), "{events}");
}

/// SIGTERM to the API and the workers, as `docker compose stop` sends it: each drains and
/// exits 0.
async fn stop(server: Running, workers: Vec<Running>) {
    let (code, rest) = server.stop().await;
    assert_eq!(code, Some(0), "api: {rest}");
    assert!(rest.trim_end().ends_with("stopped"), "api: {rest}");
    // The probes checked the schema, each time with a PostgreSQL notice that the shipped
    // `info` level keeps out of the log.
    assert!(!rest.contains("sqlx::postgres::notice"), "api: {rest}");
    for worker in workers {
        let (code, rest) = worker.stop().await;
        assert_eq!(code, Some(0), "worker: {rest}");
        assert!(
            rest.trim_end().ends_with("drained; stopped"),
            "worker: {rest}"
        );
    }
}

/// The probes every file names, against the running API: compose's health checks (the API's
/// and the worker's), the image's HEALTHCHECK, and the Kubernetes probes and scrape annotation.
async fn check_health(
    compose: &Compose,
    api: &Container,
    base: &str,
    port: u16,
    local_port: &str,
    work: &Path,
) {
    let client = reqwest::Client::new();
    let ready: Value = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ok", "{ready}");

    let mut check = compose.health_check("api");
    let shipped = format!("127.0.0.1:{port}");
    assert!(
        check.args.iter().any(|a| a.contains(&shipped)),
        "the API's health check asks the port it binds: {:?}",
        check.args
    );
    for arg in &mut check.args {
        *arg = arg.replace(&shipped, &format!("127.0.0.1:{local_port}"));
    }
    let out = check.output(work);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).starts_with("ready\n"), "{}", text(&out));

    let mut worker_check = compose.health_check("worker");
    let (_, file) = database_url_file(&worker_check);
    worker_check.mounts.add(&file, api.mounts.file(&file));
    assert!(
        worker_check
            .args
            .ends_with(&["health".into(), "--local".into()]),
        "a worker checks itself: {:?}",
        worker_check.args
    );
    let out = worker_check.output(work);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("ok    schema"), "{}", text(&out));

    // The image's HEALTHCHECK asks the client's default server, which must be where the image's
    // CMD binds.
    let mut image = Container {
        label: "the image's HEALTHCHECK".into(),
        args: image_health_check(),
        ..api.clone()
    };
    let (report, _) = Container {
        args: vec!["serve".into()],
        ..image.clone()
    }
    .config_check(work);
    let (server, _) = setting(&report, "client.server");
    assert_eq!(
        server,
        &json!(format!("http://127.0.0.1:{}", image_cmd_port())),
        "tasker health's default server is the image's bind address"
    );
    image.env.insert(
        "TASKER_SERVER".into(),
        format!("http://127.0.0.1:{local_port}"),
    );
    let out = image.output(work);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    for check in super::k8s::api_http_checks() {
        assert_eq!(check.port, port, "{} asks the port the API binds", check.by);
        let url = format!("{base}{}", check.path);
        if check.by == "prometheus.io/scrape" {
            scrape(&url).await;
        } else {
            let status = client.get(&url).send().await.unwrap().status();
            assert_eq!(status, 200, "{}: {}", check.by, check.path);
        }
    }
}

/// The port the image's default `CMD` binds.
fn image_cmd_port() -> u16 {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("the Dockerfile has a CMD");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    let at = args.iter().position(|a| a == "--bind").expect("CMD binds");
    port_of(&args[at + 1])
}
