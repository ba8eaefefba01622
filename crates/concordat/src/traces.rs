//! Span export over OTLP/HTTP, when `otlp_endpoint` is set: an OpenTelemetry layer beside the log layer,
//! taking Concordat's own spans (gateway, router, relay, bus) at `info` and above, whatever the log level.
//!
//! The protocol is OTLP/HTTP with protobuf bodies, or JSON when `OTEL_EXPORTER_OTLP_PROTOCOL` (or
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`) says `http/json`; the batch processor's pacing follows the standard
//! `OTEL_BSP_*` variables. Spans carry ids, kinds, agencies, decisions and outcomes, never personal data
//! (see `concordat_telemetry::trace`).

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

/// The exporting half of tracing: flush it before the process ends.
#[derive(Debug)]
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Exports what is still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("concordat: traces were not all exported: {error}");
        }
    }
}

/// The URL spans are posted to: `endpoint` itself when it names the signal path, else `endpoint` as a base
/// URL (the way `OTEL_EXPORTER_OTLP_ENDPOINT` is read) with `/v1/traces` appended.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// The layer that exports Concordat's spans to `endpoint`, and the handle that flushes them.
///
/// # Errors
/// `endpoint` is not a URL the exporter accepts.
pub fn layer<S>(endpoint: &str) -> anyhow::Result<(impl Layer<S> + Send + Sync + 'static, Traces)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
{
    let url = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.as_str())
        .build()
        .with_context(|| format!("otlp_endpoint `{endpoint}` cannot be used"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("concordat")
                .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("concordat"))
        .with_filter(Targets::new().with_target("concordat", tracing::Level::INFO));
    Ok((layer, Traces(provider)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_signal_path_and_a_full_one_is_kept() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://collector:4318/"), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("http://collector:4318/v1/traces"), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("https://otel.example/prefix"), "https://otel.example/prefix/v1/traces");
    }
}
