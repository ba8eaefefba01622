//! The trace context Concordat's spans carry from hop to hop.
//!
//! An event's trace starts at the HTTP request or AMQP message that brought it and follows it through RabbitMQ
//! (the W3C `traceparent` header on every message), the router, the outbox and the relay to each agency's
//! inbox. When spans are exported (`otlp_endpoint` set, which installs the OpenTelemetry layer), a span picks
//! its parent up from the incoming `traceparent` with [`continue_trace`] and hands itself on with
//! [`traceparent`]. Without the layer both are inert, and callers keep deriving `traceparent` values as they
//! would anyway, so that an agency downstream still sees one trace id per event.
//!
//! Span fields carry ids, kinds, agencies, decisions and outcomes; never anything from a message body.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Makes `span` a child of the span that the W3C `traceparent` value names (from a message header or a
/// request header). Call it before the span is first entered. A malformed value, or spans not being
/// exported, leaves `span` as it was: a malformed context starts a new trace, it does not fail the message.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when there is no layer to hand the parent to, or the span is filtered out.
        let _ignored = span.set_parent(parent);
    }
}

/// The `traceparent` value naming `span`, for the message that carries the work on; `None` when spans are
/// not exported (or `span` is filtered out), in which case the caller derives one itself.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let current = context.span();
    let ids = current.span_context();
    ids.is_valid().then(|| format!("00-{}-{}-{:02x}", ids.trace_id(), ids.span_id(), ids.trace_flags().to_u8()))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_exporting_layer(test: impl FnOnce()) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), test);
    }

    #[test]
    fn a_span_continues_the_trace_it_is_given_and_names_itself_for_the_next_hop() {
        with_exporting_layer(|| {
            let span = tracing::info_span!("route");
            continue_trace(&span, PARENT);
            let next = traceparent(&span).expect("an exported span has a context");
            let parts: Vec<&str> = next.split('-').collect();
            assert_eq!(parts.len(), 4, "{next}");
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
            assert_ne!(parts[2], "00f067aa0ba902b7", "its own span id, not the parent's");
            assert_eq!(parts[3], "01", "still sampled");

            let child = tracing::info_span!(parent: &span, "decide");
            let child_next = traceparent(&child).expect("a child has a context");
            assert!(child_next.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{child_next}");
            assert_ne!(child_next, next);
        });
    }

    #[test]
    fn a_malformed_parent_starts_a_new_trace() {
        with_exporting_layer(|| {
            for malformed in ["", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
                let span = tracing::info_span!("route");
                continue_trace(&span, malformed);
                let next = traceparent(&span).expect("a root span has a context too");
                assert!(!next.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
                assert!(!next.starts_with("00-00000000000000000000000000000000"), "{next}");
            }
        });
    }

    #[test]
    fn without_the_layer_nothing_is_claimed() {
        let span = tracing::info_span!("route");
        continue_trace(&span, PARENT);
        assert_eq!(traceparent(&span), None);
    }
}
