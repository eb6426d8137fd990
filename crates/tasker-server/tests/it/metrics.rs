//! `GET /metrics` of a real `tasker serve`: a workflow runs to completion (with a retry) and
//! another to an error, then every line of the scrape is parsed strictly and the counters are
//! compared with what happened; the families are compared with the instrument lists that
//! docs/reference/metrics.md is generated from; and
//! `[metrics] auth = "api"` puts the endpoint behind the API's authenticators.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use tasker_persistence::testing::on_each_database;

use crate::text;

const MEASURED: &str = "name: measured\nnamespace_name: metrics\nversion: 1.0.0\nstep_templates:\n  - name: a\n    handler_class: tasker::noop\n  - name: b\n    handler_class: tasker::fail\n    handler_config: { times: 1 }\n    depends_on_step: a\n  - name: c\n    handler_class: tasker::echo\n    depends_on_step: b\n";

const DOOMED: &str = "name: doomed\nnamespace_name: metrics\nversion: 1.0.0\nstep_templates:\n  - name: x\n    handler_class: tasker::fail\n    handler_config: { times: 100 }\n    default_retry_limit: 2\n";

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One metric family: its `# TYPE`, whether it had a `# HELP`, and its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    samples: Vec<Sample>,
}

/// The whole exposition by family name.
#[derive(Debug, Default)]
struct Scrape(BTreeMap<String, Family>);

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("`{text}` is not a sample value")),
    }
}

/// `{a="x",b="y"}` (after the name) into labels, and the rest of the line.
fn labels(rest: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = rest.strip_prefix('{') else {
        return Ok((labels, rest));
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without `=`")?;
        let name = &rest[..eq];
        if !valid_label(name) {
            return Err(format!("`{name}` is not a label name"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label `{name}`: the value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("label `{name}`: bad escape {other:?}")),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err(format!("label `{name}`: a raw newline")),
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("label `{name}`: the value is not closed"))?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the text exposition format strictly: every line is a `# HELP`, a `# TYPE` or a sample
/// of the family declared last; families are contiguous and declared once; histograms are
/// consistent (cumulative buckets ending at `+Inf` equal to `_count`). Errors name the line.
fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut current: Option<String> = None;
    let body = text
        .strip_suffix('\n')
        .ok_or("the exposition does not end with a newline")?;
    for (index, line) in body.split('\n').enumerate() {
        let at = |message: String| format!("line {}: {message}: `{line}`", index + 1);
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default().to_owned();
            let rest = parts.next().unwrap_or_default();
            if !valid_name(&name) {
                return Err(at(format!("`{name}` is not a metric name")));
            }
            if current.as_deref() != Some(&name) {
                if scrape.0.contains_key(&name) {
                    return Err(at("the family is declared a second time".into()));
                }
                scrape.0.insert(name.clone(), Family::default());
                current = Some(name.clone());
            }
            let family = scrape.0.get_mut(&name).expect("just inserted");
            match keyword {
                "HELP" if !family.help && family.samples.is_empty() => family.help = true,
                "TYPE" if family.kind.is_empty() && family.samples.is_empty() => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest) {
                        return Err(at(format!("`{rest}` is not a metric type")));
                    }
                    family.kind = rest.to_owned();
                }
                _ => return Err(at("an unexpected or repeated comment".into())),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        let (labels, rest) = labels(&line[name_end..]).map_err(at)?;
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?
            .split(' ');
        let sample_value = value(fields.next().unwrap_or_default()).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| at(format!("`{timestamp}` is not a timestamp")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family_name = current
            .as_deref()
            .ok_or_else(|| at("a sample before any `# TYPE`".into()))?;
        let family = scrape.0.get_mut(family_name).expect("declared");
        let allowed = match family.kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family_name)),
            "" => return Err(at("a sample of a family without `# TYPE`".into())),
            _ => name == family_name,
        };
        if !allowed {
            return Err(at(format!(
                "a sample of `{name}` in family `{family_name}`"
            )));
        }
        if name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(at("a bucket without `le`".into()));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: sample_value,
        });
    }
    for (name, family) in &scrape.0 {
        if !family.help || family.samples.is_empty() {
            return Err(format!("family `{name}` lacks its HELP or its samples"));
        }
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(scrape)
}

/// One histogram series: its `(le, cumulative count)` buckets and its `_count`.
type Series = (Vec<(f64, f64)>, Option<f64>);

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut series: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for sample in &family.samples {
        let mut key: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        key.retain(|(k, _)| k != "le");
        let entry = series.entry(key).or_default();
        if sample.name.ends_with("_bucket") {
            entry.0.push((value(&sample.labels["le"])?, sample.value));
        } else if sample.name.ends_with("_count") {
            entry.1 = Some(sample.value);
        }
    }
    for (labels, (buckets, count)) in series {
        let ordered = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last().copied();
        if !ordered || last.map(|b| b.0) != Some(f64::INFINITY) || last.map(|b| b.1) != count {
            return Err(format!(
                "histogram `{name}` {labels:?}: buckets {buckets:?} do not end at +Inf = count {count:?}"
            ));
        }
    }
    Ok(())
}

impl Scrape {
    fn family(&self, name: &str) -> &Family {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no family `{name}` in {:?}", self.0.keys()))
    }

    /// The sum of the samples named `name` whose labels include `with`.
    fn sum(&self, family: &str, name: &str, with: &[(&str, &str)]) -> f64 {
        self.family(family)
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// A counter or gauge family's total over samples matching `with`.
    fn total(&self, family: &str, with: &[(&str, &str)]) -> f64 {
        self.sum(family, family, with)
    }
}

/// Every instrument of every list, by Prometheus family name.
fn documented() -> BTreeMap<String, tasker_events::InstrumentSpec> {
    let mut rows = BTreeMap::new();
    for list in [
        tasker_events::EVENT_INSTRUMENTS,
        tasker_engine::ENGINE_INSTRUMENTS,
        tasker_api::HTTP_INSTRUMENTS,
    ] {
        for spec in list {
            let previous = rows.insert(spec.prometheus_name(), *spec);
            assert!(previous.is_none(), "`{}` is listed twice", spec.name);
        }
    }
    rows
}

async fn scrape(client: &reqwest::Client, base: &str) -> Scrape {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    parse(&body).unwrap_or_else(|err| panic!("{err}\n{body}"))
}

/// Whether one server-sent event says the task has reached `complete` or `error`: live, as
/// `task.completed` / `task.failed`; or, when the task ended before the stream opened, as the
/// task's own transition (no `step_id`) in the replayed history.
fn ends_task(block: &str) -> bool {
    let field = |name: &str| {
        block
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    match field("event:") {
        Some("task.completed" | "task.failed") => true,
        Some("transition") => field("data:")
            .and_then(|data| serde_json::from_str::<Value>(data).ok())
            .is_some_and(|data| {
                data.get("step_id").is_none()
                    && matches!(data["to_state"].as_str(), Some("complete" | "error"))
            }),
        _ => false,
    }
}

/// Creates a task of `name` and waits on its event stream (no polling) until it completes or
/// ends in error (a task in error stays open to a retry, so its stream does not close); returns
/// the task document.
async fn run_task(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let created = client
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"namespace": "metrics", "name": name, "context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["task_id"].as_str().unwrap().to_owned();
    let mut stream = client
        .get(format!("{base}/v1/tasks/{id}/events"))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.split("\n\n").any(ends_task) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "task {name} did not end: {seen}");
    drop(stream);
    client
        .get(format!("{base}/v1/tasks/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn stop(mut server: std::process::Child, stderr: std::sync::mpsc::Receiver<String>) {
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let code = server.wait().unwrap().code();
    let rest = stderr.recv().unwrap();
    assert_eq!(code, Some(0), "{rest}");
}

fn config(dir: &Path, toml: &str) -> std::path::PathBuf {
    let path = dir.join("tasker.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test]
async fn a_scrape_after_a_workflow_counts_it_and_matches_the_reference() {
    on_each_database(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        // Retries after 10 ms, so the planned failures cost no time.
        let config = config(
            dir.path(),
            "[engine.backoff]\nbase = 0.01\njitter = 0.0\n[metrics]\nenabled = true\n",
        );
        let (server, base, stderr) = crate::serve::start_with_config(&config, &db.url, &[]);
        let client = reqwest::Client::new();
        for template in [MEASURED, DOOMED] {
            let registered = client
                .post(format!("{base}/v1/templates"))
                .header("content-type", "application/yaml")
                .body(template)
                .send()
                .await
                .unwrap();
            assert_eq!(registered.status(), 201);
        }
        let measured = run_task(&client, &base, "measured").await;
        assert_eq!(measured["state"], "complete", "{measured}");
        let doomed = run_task(&client, &base, "doomed").await;
        assert_eq!(doomed["state"], "error", "{doomed}");
        let task_id = measured["task_id"].as_str().unwrap().to_owned();

        let first = scrape(&client, &base).await;
        let measured_labels = [("namespace", "metrics"), ("task_name", "measured")];
        let doomed_labels = [("namespace", "metrics"), ("task_name", "doomed")];
        let total = |family: &str, with: &[(&str, &str)]| first.total(family, with);
        assert_eq!(total("tasker_tasks_created_total", &measured_labels), 1.0);
        assert_eq!(total("tasker_tasks_started_total", &measured_labels), 1.0);
        assert_eq!(total("tasker_tasks_completed_total", &measured_labels), 1.0);
        assert_eq!(total("tasker_tasks_failed_total", &doomed_labels), 1.0);
        assert_eq!(total("tasker_tasks_failed_total", &measured_labels), 0.0);
        // a once, b twice (one planned failure, then a retry), c once.
        assert_eq!(total("tasker_steps_started_total", &measured_labels), 4.0);
        assert_eq!(
            total(
                "tasker_steps_started_total",
                &[("task_name", "measured"), ("step", "b")]
            ),
            2.0
        );
        assert_eq!(total("tasker_steps_completed_total", &measured_labels), 3.0);
        assert_eq!(
            total(
                "tasker_steps_failed_total",
                &[
                    ("task_name", "measured"),
                    ("step", "b"),
                    ("error_kind", "retryable"),
                    ("error_code", "PLANNED_FAILURE"),
                ]
            ),
            1.0
        );
        assert_eq!(total("tasker_steps_retried_total", &measured_labels), 1.0);
        // x: two attempts, both failed, the second its last.
        assert_eq!(total("tasker_steps_started_total", &doomed_labels), 2.0);
        assert_eq!(total("tasker_steps_failed_total", &doomed_labels), 2.0);
        assert_eq!(total("tasker_steps_exhausted_total", &doomed_labels), 1.0);
        assert_eq!(
            first.sum(
                "tasker_step_duration_seconds",
                "tasker_step_duration_seconds_count",
                &measured_labels
            ),
            4.0
        );
        assert_eq!(
            first.sum(
                "tasker_task_duration_seconds",
                "tasker_task_duration_seconds_count",
                &[("task_name", "measured"), ("state", "complete")]
            ),
            1.0
        );
        // Six attempts in all, each recorded by a group commit after a claim.
        assert_eq!(
            first.sum("tasker_commit_steps", "tasker_commit_steps_sum", &[]),
            6.0
        );
        assert_eq!(
            first.sum(
                "tasker_engine_claim_steps",
                "tasker_engine_claim_steps_sum",
                &[]
            ),
            6.0
        );
        assert!(
            first.sum(
                "tasker_engine_record_duration_seconds",
                "tasker_engine_record_duration_seconds_count",
                &[]
            ) >= 1.0
        );
        // Nothing is left to do, and nothing runs.
        assert_eq!(total("tasker_steps_ready", &[]), 0.0);
        assert_eq!(total("tasker_steps_in_backoff", &[]), 0.0);
        assert_eq!(total("tasker_engine_steps_running", &[]), 0.0);
        assert_eq!(total("tasker_engine_steps_held", &[]), 0.0);
        assert_eq!(total("tasker_events_dropped_total", &[]), 0.0);
        // The pool: both states reported, at least one connection open.
        let states: BTreeSet<&str> = first
            .family("tasker_db_pool_connections")
            .samples
            .iter()
            .map(|s| s.labels["state"].as_str())
            .collect();
        assert_eq!(states, BTreeSet::from(["idle", "in_use"]));
        assert!(total("tasker_db_pool_connections", &[]) >= 1.0);
        // HTTP: by route template and status, never by raw path.
        let requests = |method: &str, route: &str, status: &str| {
            total(
                "tasker_http_requests_total",
                &[("method", method), ("route", route), ("status", status)],
            )
        };
        assert_eq!(requests("POST", "/v1/templates", "201"), 2.0);
        assert_eq!(requests("POST", "/v1/tasks", "201"), 2.0);
        assert_eq!(requests("GET", "/v1/tasks/{task_id}/events", "200"), 2.0);
        assert_eq!(requests("GET", "/v1/tasks/{task_id}", "200"), 2.0);
        assert_eq!(
            first.sum(
                "tasker_http_request_duration_seconds",
                "tasker_http_request_duration_seconds_count",
                &[("route", "/v1/tasks/{task_id}")]
            ),
            2.0
        );
        for sample in &first.family("tasker_http_requests_total").samples {
            assert!(
                !sample.labels["route"].contains(&task_id),
                "a raw path as a label: {sample:?}"
            );
        }
        assert_eq!(
            requests("GET", "/metrics", "200"),
            0.0,
            "counted after it answers"
        );

        // The instrument lists: every exported family listed with its type and with only the
        // labels listed (histograms add `le`), and every family listed as present from the
        // start exported.
        let documented = documented();
        for (name, family) in &first.0 {
            let spec = documented
                .get(name)
                .unwrap_or_else(|| panic!("`{name}` is exported but in no instrument list"));
            assert_eq!(
                spec.kind.prometheus_type(),
                family.kind,
                "`{name}`: the listed type"
            );
            for sample in &family.samples {
                for label in sample.labels.keys() {
                    assert!(
                        spec.labels.contains(&label.as_str())
                            || (label == "le" && family.kind == "histogram"),
                        "`{name}` carries `{label}`, not in its listed labels {:?}",
                        spec.labels
                    );
                }
            }
        }
        for (name, spec) in &documented {
            let expected = matches!(
                spec.appears,
                tasker_events::Appears::AtStart | tasker_events::Appears::WithCoordinator
            );
            assert!(
                !expected || first.0.contains_key(name),
                "`{name}` is listed `{}` but not exported",
                spec.appears
            );
        }

        // A second scrape counts the first, and an unknown path only as `unmatched`.
        let missing = client
            .get(format!("{base}/v1/nothing/{task_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let second = scrape(&client, &base).await;
        let again = |method: &str, route: &str, status: &str| {
            second.total(
                "tasker_http_requests_total",
                &[("method", method), ("route", route), ("status", status)],
            )
        };
        assert_eq!(again("GET", "/metrics", "200"), 1.0);
        assert_eq!(again("GET", "unmatched", "404"), 1.0);
        stop(server, stderr);
    })
    .await;
}

#[tokio::test]
async fn metrics_auth_api_needs_credentials_and_the_metrics_permission() {
    const SECRET: &str = "metrics-test-secret-0123456789abcdef0123";
    on_each_database(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            &format!(
                "[auth]\nauthenticators = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n[metrics]\nauth = \"api\"\n"
            ),
        );
        let mint = |permission: &str| {
            let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
                .arg("--config")
                .arg(&config)
                .args(["token", "mint", "--sub", "prometheus", "--ttl", "1h", "--permission", permission])
                .env_remove("TASKER_DATABASE_URL")
                .env_remove("TASKER_AUTH__JWT__SECRET")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_owned()
        };
        let reader = mint("tasker.metrics:index");
        let other = mint("tasker.task:index");
        let (server, base, stderr) = crate::serve::start_with_config(&config, &db.url, &[]);
        let client = reqwest::Client::new();
        let metrics = format!("{base}/metrics");
        let anonymous = client.get(&metrics).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let body: Value = anonymous.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        let forbidden = client.get(&metrics).bearer_auth(&other).send().await.unwrap();
        assert_eq!(forbidden.status(), 403);
        let body: Value = forbidden.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains("tasker.metrics:index"),
            "{body}"
        );
        let allowed = client.get(&metrics).bearer_auth(&reader).send().await.unwrap();
        assert_eq!(allowed.status(), 200);
        let scraped = parse(&allowed.text().await.unwrap()).unwrap();
        // The refusals were answered, and counted, on the route itself.
        assert_eq!(
            scraped.total(
                "tasker_http_requests_total",
                &[("route", "/metrics"), ("status", "401")]
            ),
            1.0
        );
        assert_eq!(
            scraped.total(
                "tasker_http_requests_total",
                &[("route", "/metrics"), ("status", "403")]
            ),
            1.0
        );
        // The probes stay open.
        let live = client.get(format!("{base}/health/live")).send().await.unwrap();
        assert_eq!(live.status(), 200);
        stop(server, stderr);
    })
    .await;
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let config = config(dir.path(), "[metrics]\nenabled = false\n");
    let (server, base, stderr) =
        crate::serve::start_with_config(&config, &database, &["--migrate"]);
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 404);
    stop(server, stderr);
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"2\"} 3\n";
    let parsed = parse(good).unwrap();
    assert_eq!(parsed.family("a_total").samples[0].labels["x"], "1\"2");
    for (bad, why) in [
        ("# TYPE a counter\na 1", "newline"),
        ("# HELP a A.\na 1\n", "without `# TYPE`"),
        ("# HELP a A.\n# TYPE a counter\nb 1\n", "a sample of `b`"),
        ("# HELP a A.\n# TYPE a counter\na{x=1} 1\n", "not quoted"),
        (
            "# HELP a A.\n# TYPE a counter\na one\n",
            "not a sample value",
        ),
        (
            "# HELP a A.\n# TYPE a counter\na 1\n# HELP a A.\n",
            "repeated",
        ),
        ("# HELP a A.\n# TYPE a wobble\na 1\n", "not a metric type"),
        (
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "do not end at +Inf",
        ),
    ] {
        let err = parse(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}
