//! A local OTLP/HTTP receiver for the trace tests: it takes `POST /v1/traces` with JSON bodies
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`), as a collector would, answers `200 {}`, and keeps every span.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::Value;

/// One span as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSpan {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The span id, 16 hex digits.
    pub span_id: String,
    /// The parent span id; empty for a root.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// Its attributes, each value as text.
    pub attributes: BTreeMap<String, String>,
    /// Every string anywhere in the span as exported (attributes, events and their attributes, names): what
    /// a trace backend would store and show.
    pub texts: Vec<String>,
}

impl ExportedSpan {
    /// An attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The receiver, serving on a port of its own until dropped.
#[derive(Debug)]
pub struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    refused: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Starts the receiver on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// No port could be bound.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state((Arc::clone(&spans), Arc::clone(&refused)));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, spans, refused, server })
    }

    /// The base URL to give as `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().map(|spans| spans.clone()).unwrap_or_default()
    }

    /// What was posted and could not be read as OTLP JSON (should stay empty).
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().map(|refused| refused.clone()).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Shared = (Arc<Mutex<Vec<ExportedSpan>>>, Arc<Mutex<Vec<String>>>);

async fn receive(State((spans, refused)): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let parsed = if content_type.starts_with("application/json") {
        parse(&body)
    } else {
        Err(anyhow::anyhow!("content type `{content_type}`, not application/json"))
    };
    match parsed {
        Ok(received) => {
            if let Ok(mut spans) = spans.lock() {
                spans.extend(received);
            }
            (StatusCode::OK, "{}".to_owned())
        }
        Err(error) => {
            if let Ok(mut refused) = refused.lock() {
                refused.push(format!("{error:#}"));
            }
            (StatusCode::BAD_REQUEST, format!("{{\"message\":\"{error}\"}}"))
        }
    }
}

/// Reads an `ExportTraceServiceRequest` in the OTLP JSON encoding (ids as hex, attributes as key/value
/// pairs with typed values).
///
/// # Errors
/// The body is not such a request.
pub fn parse(body: &[u8]) -> Result<Vec<ExportedSpan>> {
    let request: Value = serde_json::from_slice(body).context("not JSON")?;
    let mut out = Vec::new();
    for resource in request["resourceSpans"].as_array().context("no resourceSpans")? {
        for scope in resource["scopeSpans"].as_array().context("no scopeSpans")? {
            for span in scope["spans"].as_array().context("no spans")? {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                let attributes = span["attributes"]
                    .as_array()
                    .map(|pairs| {
                        pairs
                            .iter()
                            .filter_map(|pair| Some((pair["key"].as_str()?.to_owned(), value_text(&pair["value"]))))
                            .collect()
                    })
                    .unwrap_or_default();
                let texts = crate::string_leaves(span);
                out.push(ExportedSpan {
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_span_id: text("parentSpanId"),
                    name: text("name"),
                    attributes,
                    texts,
                });
            }
        }
    }
    Ok(out)
}

/// An OTLP `AnyValue` as text.
fn value_text(value: &Value) -> String {
    match value.as_object().and_then(|typed| typed.values().next()) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}
