//! One trace per task: the request that creates a task (honouring the caller's `traceparent`),
//! the creation, every step attempt (in whichever engine or process runs it) and the outbound
//! call of `tasker::http` share one trace id, with the right parent links.
//!
//! In process, spans are read back through the SDK's in-memory exporter; across processes,
//! `tasker serve` and `tasker worker` export over OTLP/HTTP to a receiver started by the test.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Value, json};
use tasker_engine::Engine;
use tasker_persistence::testing::{Backend, on_each_database};
use tasker_persistence::{ConnectOptions, Store};
use tasker_template::TaskTemplate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::serve::start_with_config;

/// The caller's trace and span, as its `traceparent` names them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A failure guard on waits for another process, never a pause: spans arrive in milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);

fn template(namespace: &str, hook: &str) -> String {
    format!(
        "name: traced\nnamespace_name: {namespace}\nversion: 1.0.0\nstep_templates:\n  \
         - name: call\n    handler_class: tasker::http\n    handler_config: {{ url: \"{hook}\" }}\n  \
         - name: after\n    handler_class: tasker::noop\n    depends_on_step: call\n"
    )
}

/// An outside service: answers every request `200 {}` and hands over each request's text.
async fn outbound() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 16 * 1024];
            let n = socket.read(&mut request).await.unwrap_or(0);
            let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = tx.send(String::from_utf8_lossy(&request[..n]).into_owned());
        }
    });
    (url, rx)
}

/// The `traceparent` header of a raw HTTP request, split into trace id and parent span id.
fn traceparent_of(request: &str) -> (String, String) {
    let value = request
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("traceparent")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no traceparent in {request}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The in-memory exporter behind this test binary's global subscriber (installed once: spans
/// of spawned tasks on every runtime thread must reach it, as they do in `tasker serve`).
fn exporter() -> InMemorySpanExporter {
    static EXPORTER: std::sync::OnceLock<InMemorySpanExporter> = std::sync::OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let subscriber = tracing_subscriber::registry().with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                        meta.target().starts_with("tasker")
                    })),
            );
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            exporter
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_creation_attempts_and_the_outbound_call_share_one_trace() {
    on_each_database(|db| async move {
        let exporter = exporter();
        // A trace of this run's own: the test runs once per backend.
        let (trace, caller_span) = match db.backend {
            Backend::Sqlite => (TRACE, CALLER_SPAN),
            Backend::Postgres => ("5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8"),
        };

        let (hook, mut calls) = outbound().await;
        let yaml = template("traces", &hook);
        // The API's engine only creates tasks: it is never started.
        let api_engine = Engine::builder(db.store.clone()).build().unwrap();
        api_engine
            .register_template(TaskTemplate::from_yaml_str(&yaml, None).unwrap(), false)
            .await
            .unwrap();
        let access = tasker_auth::AccessControl::new(
            Arc::new(tasker_auth::OpenAuthenticator),
            tasker_auth::Authorizer::new(tasker_auth::PermissionPolicy::new(
                Default::default(),
                false,
            )),
        );
        let api = tasker_api::Api::new(api_engine, access);
        let app = axum::Router::new().nest("/v1", api.router());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let created = reqwest::Client::new()
            .post(format!("{base}/tasks"))
            .header("traceparent", format!("00-{trace}-{caller_span}-01"))
            .json(&json!({"namespace": "traces", "name": "traced", "context": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        let task_id = created["task_id"].as_str().unwrap().to_owned();
        let stored = db
            .session()
            .await
            .count(&format!(
                "SELECT COUNT(*) AS n FROM tasker_tasks WHERE trace_parent LIKE '00-{trace}-%'"
            ))
            .await
            .unwrap();
        assert_eq!(
            stored, 1,
            "the task stores the trace context it was created in"
        );

        // Another engine (on PostgreSQL with its own connection pool, as another process
        // would have) runs the steps.
        let runner_store = match db.backend {
            Backend::Postgres => Store::connect(
                &db.url,
                &ConnectOptions {
                    migrate: false,
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
            Backend::Sqlite => db.store.clone(),
        };
        let runner = Engine::builder(runner_store).build().unwrap();
        // The hook listens on loopback, which `tasker::http` refuses by default.
        runner.registry().replace_step_handler(
            "tasker::http",
            Arc::new(tasker_engine::HttpHandler::with_policy(
                tasker_engine::HttpPolicy::allowing_private_networks(),
            )),
        );
        runner
            .register_template(TaskTemplate::from_yaml_str(&yaml, None).unwrap(), false)
            .await
            .unwrap();
        runner.start();
        let finished = runner
            .wait_for_task(task_id.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(finished.state, tasker_domain::TaskState::Complete);
        let call = calls.recv().await.unwrap();
        runner.shutdown().await;
        server.abort();
        let _ = server.await;

        let spans = exporter.get_finished_spans().unwrap();
        let trace_id: TraceId = TraceId::from_hex(trace).unwrap();
        let named = |name: &str| -> Vec<&SpanData> {
            spans
                .iter()
                .filter(|s| s.name == name && s.span_context.trace_id() == trace_id)
                .collect()
        };
        let request = named("http.request");
        assert_eq!(request.len(), 1, "{spans:#?}");
        assert_eq!(
            request[0].parent_span_id,
            SpanId::from_hex(caller_span).unwrap(),
            "the caller's span is the request's parent"
        );
        let creation = named("task.create");
        assert_eq!(creation.len(), 1, "{spans:#?}");
        assert_eq!(
            creation[0].parent_span_id,
            request[0].span_context.span_id()
        );
        assert_eq!(
            attribute(creation[0], "task_id").as_deref(),
            Some(task_id.as_str())
        );
        assert!(attribute(request[0], "correlation_id").is_some());
        assert_eq!(
            attribute(creation[0], "correlation_id"),
            attribute(request[0], "correlation_id"),
            "the task stores the request's correlation id"
        );
        let attempts = named("step_attempt");
        let mut steps: Vec<String> = attempts
            .iter()
            .map(|s| attribute(s, "step").unwrap())
            .collect();
        steps.sort();
        assert_eq!(steps, ["after", "call"], "{spans:#?}");
        for attempt in &attempts {
            assert_eq!(
                attempt.parent_span_id,
                creation[0].span_context.span_id(),
                "an attempt is a child of the task's creation"
            );
            assert_eq!(
                attribute(attempt, "task_id").as_deref(),
                Some(task_id.as_str())
            );
            assert_eq!(attribute(attempt, "namespace").as_deref(), Some("traces"));
            assert_eq!(attribute(attempt, "template").as_deref(), Some("traced"));
            assert_eq!(attribute(attempt, "attempt").as_deref(), Some("1"));
        }
        let calling = attempts
            .iter()
            .find(|s| attribute(s, "step").as_deref() == Some("call"))
            .unwrap();
        // Other tests of this binary export to the same global provider: this trace only.
        let client = named("http.client");
        assert_eq!(client.len(), 1, "one outbound call in this trace");
        assert_eq!(client[0].parent_span_id, calling.span_context.span_id());
        assert_eq!(
            traceparent_of(&call),
            (
                trace.to_owned(),
                client[0].span_context.span_id().to_string()
            ),
            "the outbound call carries its client span's trace context"
        );
    })
    .await;
}

/// What the OTLP receiver got.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
    trace_posts: usize,
    metric_posts: usize,
    content_types: Vec<String>,
}

/// A collector: accepts OTLP/HTTP protobuf on `/v1/traces` and `/v1/metrics`.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Received>>, Arc<tokio::sync::Notify>) {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use prost::Message as _;

    let received = Arc::new(Mutex::new(Received::default()));
    let notify = Arc::new(tokio::sync::Notify::new());
    let traces = {
        let received = received.clone();
        let notify = notify.clone();
        move |headers: HeaderMap, body: Bytes| async move {
            let request =
                opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                    body,
                )
                .expect("an OTLP protobuf trace export");
            let mut received = received.lock().unwrap();
            received.trace_posts += 1;
            received.content_types.push(
                headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            );
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    received.spans.extend(scope.spans);
                }
            }
            notify.notify_waiters();
            ""
        }
    };
    let metrics = {
        let received = received.clone();
        let notify = notify.clone();
        move |body: Bytes| async move {
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
                body,
            )
            .expect("an OTLP protobuf metrics export");
            received.lock().unwrap().metric_posts += 1;
            notify.notify_waiters();
            ""
        }
    };
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .route("/v1/metrics", axum::routing::post(metrics));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received, notify)
}

fn start_worker(config: &std::path::Path, database: &str, namespace: &str) -> Child {
    let mut worker = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .arg("--config")
        .arg(config)
        .args(["worker", "--namespace", namespace, "--database", database])
        .env_remove("TASKER_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("OTEL_SERVICE_NAME", "tasker-worker-under-test")
        .env("TASKER_ENGINE__POLL_INTERVAL", "0.05")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tasker binary runs");
    let mut stderr = BufReader::new(worker.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("worker "), "the worker runs: {line}");
    std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).ok();
    });
    worker
}

async fn stop(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "stops cleanly");
}

#[tokio::test]
async fn serve_and_worker_processes_export_one_trace_per_task_over_otlp() {
    on_each_database(|db| async move {
        if db.backend == Backend::Sqlite {
            // A worker process beside a server needs a shared database server.
            eprintln!("cross-process traces: PostgreSQL only; set TASKER_TEST_DATABASE_URL");
            return;
        }
        let (collector, received, arrived) = receiver().await;
        let (hook, mut calls) = outbound().await;
        let dir = tempfile::tempdir().unwrap();
        let config = crate::write(
            dir.path(),
            "tasker.toml",
            &format!(
                "[telemetry]\nenabled = true\notlp_endpoint = \"{collector}\"\nservice_name = \"tasker-under-test\"\n\
                 [http_handler]\nallow_private_networks = true\n"
            ),
        );
        let (server, base, server_stderr) = start_with_config(&config, &db.url, &["--no-worker"]);
        let client = reqwest::Client::new();
        let registered = client
            .post(format!("{base}/v1/templates"))
            .header("content-type", "application/yaml")
            .body(template("otlp", &hook))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201, "{}", registered.text().await.unwrap());
        let created = client
            .post(format!("{base}/v1/tasks"))
            .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
            .json(&json!({"namespace": "otlp", "name": "traced", "context": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        let task_id = created["task_id"].as_str().unwrap().to_owned();

        let worker = start_worker(&config, &db.url, "otlp");
        let call = tokio::time::timeout(DEADLINE, calls.recv())
            .await
            .expect("the worker calls out")
            .unwrap();
        let (call_trace, call_parent) = traceparent_of(&call);
        assert_eq!(call_trace, TRACE, "the worker's attempt joined the caller's trace");
        // The task completes; then both processes stop, and flush what they hold.
        let finished = tokio::time::timeout(DEADLINE, async {
            loop {
                let task = db
                    .store
                    .task(task_id.parse().unwrap())
                    .await
                    .unwrap();
                if task.state.is_finished() {
                    return task.state;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the task finishes");
        assert_eq!(finished, tasker_domain::TaskState::Complete);
        stop(worker).await;
        stop(server).await;
        drop(server_stderr);

        let wanted = |received: &Received| {
            let names: Vec<&str> = received
                .spans
                .iter()
                .filter(|s| s.trace_id == hex(TRACE))
                .map(|s| s.name.as_str())
                .collect();
            ["http.request", "task.create", "step_attempt"]
                .iter()
                .all(|name| names.contains(name))
                && received.metric_posts >= 2
        };
        tokio::time::timeout(DEADLINE, async {
            loop {
                let notified = arrived.notified();
                if wanted(&received.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            let received = received.lock().unwrap();
            panic!(
                "spans missing: {:?}",
                received.spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
        let received = received.lock().unwrap();
        assert!(received.trace_posts >= 2, "both processes exported");
        assert!(
            received
                .content_types
                .iter()
                .all(|t| t == "application/x-protobuf"),
            "{:?}",
            received.content_types
        );
        let in_trace: Vec<_> = received
            .spans
            .iter()
            .filter(|s| s.trace_id == hex(TRACE))
            .collect();
        let one = |name: &str| {
            let found: Vec<_> = in_trace.iter().filter(|s| s.name == name).collect();
            assert_eq!(found.len(), 1, "{name}: {in_trace:#?}");
            *found[0]
        };
        let request = one("http.request");
        assert_eq!(request.parent_span_id, hex(CALLER_SPAN));
        let creation = one("task.create");
        assert_eq!(creation.parent_span_id, request.span_id);
        let attempts: Vec<_> = in_trace.iter().filter(|s| s.name == "step_attempt").collect();
        assert_eq!(attempts.len(), 2, "{in_trace:#?}");
        for attempt in &attempts {
            assert_eq!(attempt.parent_span_id, creation.span_id, "{attempt:#?}");
        }
        let client = in_trace
            .iter()
            .find(|s| s.span_id == hex(&call_parent))
            .expect("the outbound traceparent names an exported span");
        assert_eq!(client.name, "http.client");
        assert!(
            attempts
                .iter()
                .any(|attempt| attempt.span_id == client.parent_span_id),
            "the client span is a child of an attempt"
        );
    })
    .await;
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn tasker_run_flushes_its_whole_trace_before_exiting() {
    let (collector, received, _) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args(["run", crate::DIAMOND, "--json", "--database", &url])
            .env_remove("TASKER_DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
            .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The process has exited: whatever it exported has been received.
    let received = received.lock().unwrap();
    let creation: Vec<_> = received
        .spans
        .iter()
        .filter(|s| s.name == "task.create")
        .collect();
    assert_eq!(creation.len(), 1, "one task, one creation span");
    let attempts: Vec<_> = received
        .spans
        .iter()
        .filter(|s| s.name == "step_attempt")
        .collect();
    let attempted: u64 = task["steps"]
        .as_object()
        .unwrap()
        .values()
        .map(|step| step["attempts"].as_u64().unwrap())
        .sum();
    assert!(attempted >= 7, "{task}");
    assert_eq!(
        attempts.len() as u64,
        attempted,
        "every attempt, the last one included, was exported"
    );
    for attempt in &attempts {
        assert_eq!(attempt.trace_id, creation[0].trace_id);
        assert_eq!(attempt.parent_span_id, creation[0].span_id);
    }
    assert!(received.metric_posts >= 1, "metrics are flushed too");
}
