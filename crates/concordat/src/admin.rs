//! The admin listener: `/healthz` (the process is alive), `/readyz` (it can do its work: RabbitMQ is
//! connected), `/metrics` (Prometheus), the flow dashboard at `/` ([`crate::dashboard`]), and the
//! token-protected admin API under `/v1/admin` ([`crate::admin_api`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What `/readyz` reports on. Each flag is set by the component it names.
#[derive(Debug, Default)]
pub struct Readiness {
    /// RabbitMQ is connected and the topology declared.
    pub broker: AtomicBool,
}

/// The admin routes: the health checks, and the dashboard and the admin API when the API is given.
pub fn router(readiness: Arc<Readiness>, api: Option<crate::admin_api::AdminApi>) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    match api {
        Some(api) => health.merge(crate::dashboard::routes(api.clone())).merge(crate::admin_api::routes(api)),
        None => health,
    }
}

/// `/metrics`: the process's counters, gauges and histograms in the Prometheus text format. Like the health
/// checks it needs no token (a scraper rarely carries one); it holds agency ids, kinds, verdicts and reasons,
/// never personal data.
async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], concordat_telemetry::render())
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> Response {
    let broker = readiness.broker.load(Ordering::Acquire);
    let body =
        serde_json::json!({ "status": if broker { "ready" } else { "not_ready" }, "checks": { "rabbitmq": broker } });
    if broker {
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        // RFC 9457 problem details, with the failing checks as an extension member.
        let problem = serde_json::json!({
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "not ready: RabbitMQ is not connected",
            "checks": { "rabbitmq": broker },
        });
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/problem+json")], problem.to_string())
            .into_response()
    }
}
