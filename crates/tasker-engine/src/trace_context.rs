//! W3C trace context across processes: the `traceparent` a task is created under is stored
//! with it, and every attempt of its steps joins that trace, in this process or another.
//!
//! Only the `opentelemetry` API and `tracing-opentelemetry`'s span extension are used here.
//! The binary decides whether spans are exported: it installs the OpenTelemetry layer and the
//! global text-map propagator. Without them a span has no OpenTelemetry context, the
//! propagator is a no-op, [`traceparent`] returns `None`, and nothing is stored.

use std::collections::HashMap;

use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (and map key) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`'s OpenTelemetry context, through the global propagator; `None`
/// when the span is not recorded by OpenTelemetry (tracing export is off).
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    // The span's own ids, for its log lines, now that they are known.
    record_ids(span);
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut Carrier(&mut carrier));
    });
    carrier.remove(TRACEPARENT)
}

/// Records `span`'s OpenTelemetry trace id and span id into its `trace_id` and `span_id`
/// fields (declared `Empty`), so log lines within it carry them. Call it after any
/// [`set_parent`]: reading the context starts the span. Nothing happens when the span is not
/// recorded by OpenTelemetry.
pub fn record_ids(span: &Span) {
    let cx = span.context();
    let context = cx.span().span_context().clone();
    if context.is_valid() {
        span.record("trace_id", tracing::field::display(context.trace_id()));
        span.record("span_id", tracing::field::display(context.span_id()));
    }
}

/// Makes the remote span a `traceparent` names the OpenTelemetry parent of `span`. A value the
/// propagator cannot parse is ignored (the span keeps its own parent): a bad header from a
/// caller or a damaged stored value must not fail the work.
pub fn set_parent(span: &Span, traceparent: &str) {
    set_parent_from(span, |key| {
        (key == TRACEPARENT).then(|| traceparent.to_owned())
    });
}

/// Like [`set_parent`], reading whatever fields the global propagator wants (for W3C trace
/// context: `traceparent` and `tracestate`) through `get`, e.g. from request headers.
pub fn set_parent_from(span: &Span, get: impl Fn(&str) -> Option<String>) {
    let cx = opentelemetry::global::get_text_map_propagator(|propagator| {
        let carrier: HashMap<String, String> = propagator
            .fields()
            .filter_map(|field| get(field).map(|value| (field.to_owned(), value)))
            .collect();
        propagator.extract(&carrier)
    });
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started children; both harmless.
        let _ = span.set_parent(cx);
    }
}

struct Carrier<'a>(&'a mut HashMap<String, String>);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}
