//! The process's `tracing` subscriber: log lines (`log.format = text|json`) on stderr, and,
//! when traces are exported, the OpenTelemetry layer.
//!
//! Every line inside a request or a task carries the correlation id and, when traces are
//! exported, the trace id and span id: the request, task, creation and attempt spans hold them
//! as fields (`correlation_id`, `trace_id`, `span_id`). JSON lines put them at the top level;
//! text lines show them in the span prefix. Field values whose key is sensitive
//! ([`tasker_domain::Redactor`], `log.redact_keys`) are written as `[REDACTED]`, in spans and
//! events alike, and so are sensitive keys inside a field that holds a JSON document.
//!
//! The log level (`log.level`, `RUST_LOG`) filters log lines only: spans reach the
//! OpenTelemetry layer at `info` and above for Tasker's own crates whatever the log level.

use std::fmt;

use anyhow::Context as _;
use serde_json::{Map, Value};
use tasker_domain::{REDACTED, Redactor};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry};

use crate::settings::{LogFormat, LogSettings};

/// The fields a JSON line lifts from its spans to the top level (innermost span wins).
const LIFTED: &[&str] = &["correlation_id", "trace_id", "span_id"];

/// Installs the global subscriber.
pub(crate) fn init(
    log: &LogSettings,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> anyhow::Result<()> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => level_filter(&log.level)?,
    };
    let redactor = log.redactor();
    let otel = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("tasker") && *meta.level() <= tracing::Level::INFO
            }))
    });
    layers(log.format, redactor, filter, std::io::stderr)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// Where sqlx logs the notices PostgreSQL sends.
const POSTGRES_NOTICES: &str = "sqlx::postgres::notice";

/// The filter `log.level` names. PostgreSQL's notices come at `info` unless the level names
/// sqlx itself: checking the schema (`/health/ready`, every probe) runs `CREATE TABLE IF NOT
/// EXISTS`, whose "already exists, skipping" notice would otherwise fill the logs at `info`.
fn level_filter(level: &str) -> anyhow::Result<EnvFilter> {
    let filter = EnvFilter::try_new(level)
        .with_context(|| format!("log.level `{level}` is not a valid filter"))?;
    if level.contains("sqlx") {
        return Ok(filter);
    }
    let quiet = format!("{POSTGRES_NOTICES}=warn")
        .parse()
        .expect("a valid directive");
    Ok(filter.add_directive(quiet))
}

/// The registry with the log-line layer, writing to `writer` (stderr, or a buffer in tests).
pub(crate) fn layers<W>(
    format: LogFormat,
    redactor: Redactor,
    filter: EnvFilter,
    writer: W,
) -> tracing_subscriber::layer::Layered<
    Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>,
    Registry,
>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // A closed stderr (`tasker run ... 2>&1 | head`) must not turn log writes into panics:
    // tracing-subscriber reports write errors with eprintln!, which panics on a broken pipe.
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields {
                redactor: redactor.clone(),
            })
            .event_format(JsonLine { redactor })
            .log_internal_errors(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(text_fields(redactor))
            .log_internal_errors(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer)
}

/// A value as it may be shown: a JSON document's sensitive keys redacted.
fn shown(redactor: &Redactor, text: String) -> Value {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(mut value) = serde_json::from_str::<Value>(&text)
    {
        redactor.redact(&mut value);
        return value;
    }
    Value::String(text)
}

/// Text fields: `key=value`, sensitive values redacted, the message bare.
fn text_fields(redactor: Redactor) -> impl for<'w> FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(
        move |writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            if field.name() == "message" {
                write!(writer, "{value:?}")
            } else if redactor.is_sensitive(field.name()) {
                write!(writer, "{field}={REDACTED}")
            } else {
                let text = format!("{value:?}");
                // A string field prints quoted and escaped; look inside it for a JSON document.
                let inner = serde_json::from_str::<String>(&text).unwrap_or_else(|_| text.clone());
                match shown(&redactor, inner) {
                    Value::String(_) => write!(writer, "{field}={text}"),
                    json => write!(writer, "{field}={json}"),
                }
            }
        },
    )
    .delimited(" ")
}

/// Collects fields into a JSON object, redacting sensitive keys.
struct Collect<'a> {
    redactor: &'a Redactor,
    fields: &'a mut Map<String, Value>,
}

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let value = if self.redactor.is_sensitive(field.name()) {
            Value::String(REDACTED.to_owned())
        } else {
            value
        };
        self.fields.insert(field.name().to_owned(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value = shown(self.redactor, value.to_owned());
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let value = shown(self.redactor, format!("{value:?}"));
        self.put(field, value);
    }
}

/// Span fields as a JSON object (what [`JsonLine`] reads back from the span's extensions).
struct JsonFields {
    redactor: Redactor,
}

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Collect {
            redactor: &self.redactor,
            fields: &mut map,
        });
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map = match serde_json::from_str::<Value>(&current.fields) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        fields.record(&mut Collect {
            redactor: &self.redactor,
            fields: &mut map,
        });
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's fields (`message`
/// included), the lifted span fields ([`LIFTED`]), and `span` (the current span's name and
/// fields).
struct JsonLine {
    redactor: Redactor,
}

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        let mut fields = Map::new();
        event.record(&mut Collect {
            redactor: &self.redactor,
            fields: &mut fields,
        });
        if let Some(scope) = ctx.event_scope() {
            let mut current = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(stored) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(stored) else {
                    continue;
                };
                for key in LIFTED {
                    if let Some(value) = span_fields.get(*key) {
                        line.insert((*key).to_owned(), value.clone());
                    }
                }
                current = Some((span.name(), span_fields));
            }
            if let Some((name, mut span_fields)) = current {
                span_fields.insert("name".into(), name.into());
                line.insert("span".into(), Value::Object(span_fields));
            }
        }
        for (key, value) in fields {
            line.insert(key, value);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
        type Writer = Self;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let subscriber = layers(
            format,
            Redactor::default(),
            EnvFilter::new("info"),
            buffer.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            // Callsite interest is cached process-wide: a callsite another test
            // thread registered while this subscriber was being set may be cached
            // as unwanted. Recompute it.
            tracing::callsite::rebuild_interest_cache();
            let span = tracing::info_span!(
                "step_attempt",
                correlation_id = %"req-7",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
                api_key = "k-123",
            );
            span.record(
                "trace_id",
                tracing::field::display("0af7651916cd43dd8448eb211c80319c"),
            );
            span.record("span_id", tracing::field::display("b7ad6b7169203331"));
            let _entered = span.enter();
            tracing::info!(
                password = "hunter2",
                body = r#"{"user":"ada","Authorization":"Bearer x"}"#,
                attempt = 2,
                "calling out"
            );
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_lift_the_correlation_and_trace_ids_and_redact() {
        let text = logged(LogFormat::Json);
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["correlation_id"], "req-7");
        assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(line["span_id"], "b7ad6b7169203331");
        assert_eq!(line["message"], "calling out");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["password"], REDACTED);
        assert_eq!(
            line["body"],
            serde_json::json!({"user": "ada", "Authorization": REDACTED})
        );
        assert_eq!(line["span"]["name"], "step_attempt");
        assert_eq!(line["span"]["api_key"], REDACTED);
        assert!(
            !text.contains("hunter2") && !text.contains("k-123"),
            "{text}"
        );
    }

    #[test]
    fn postgres_notices_show_only_from_warn_unless_the_level_names_sqlx() {
        let logged = |level: &str| {
            let buffer = Buffer::default();
            let filter = level_filter(level).unwrap();
            let subscriber = layers(LogFormat::Text, Redactor::default(), filter, buffer.clone());
            tracing::subscriber::with_default(subscriber, || {
                // Callsite interest is cached process-wide: a callsite another test
                // thread registered while this subscriber was being set may be cached
                // as unwanted. Recompute it.
                tracing::callsite::rebuild_interest_cache();
                tracing::info!(target: "sqlx::postgres::notice", "relation already exists, skipping");
                tracing::warn!(target: "sqlx::postgres::notice", "a warning from the server");
                tracing::info!(target: "tasker_engine", "an engine line");
            });
            String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
        };
        let quiet = logged("info");
        assert!(!quiet.contains("skipping"), "{quiet}");
        assert!(quiet.contains("a warning from the server"), "{quiet}");
        assert!(quiet.contains("an engine line"), "{quiet}");
        let asked = logged("info,sqlx=info");
        assert!(asked.contains("skipping"), "{asked}");
        let err = level_filter("info,[").unwrap_err().to_string();
        assert_eq!(err, "log.level `info,[` is not a valid filter");
    }

    #[test]
    fn text_lines_carry_the_ids_and_redact() {
        let text = logged(LogFormat::Text);
        for expected in [
            "correlation_id=req-7",
            "trace_id=0af7651916cd43dd8448eb211c80319c",
            "span_id=b7ad6b7169203331",
            "password=[REDACTED]",
            "api_key=[REDACTED]",
            "calling out",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
        assert!(
            !text.contains("hunter2") && !text.contains("k-123") && !text.contains("Bearer x"),
            "{text}"
        );
    }
}
