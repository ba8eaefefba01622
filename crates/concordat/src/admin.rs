//! The admin listener: `/healthz` (the process is alive), `/readyz` (it can do its work: RabbitMQ is
//! connected), `/metrics` (Prometheus), the flow dashboard at `/` ([`crate::dashboard`]), and the
//! token-protected admin API under `/v1/admin` ([`crate::admin_api`]).
//!
//! Every route answers only requests whose `Host` is an IP literal, `localhost` or one of `admin_hosts`:
//! a page on another site that rebinds its own DNS name to this listener's address (DNS rebinding) would
//! otherwise read the dashboard and the metrics from the operator's browser. Others get `421`.

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
        Some(api) => {
            let hosts = Arc::clone(&api.hosts);
            health.merge(crate::dashboard::routes(api.clone())).merge(crate::admin_api::routes(api)).layer(
                axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let allowed = host_allowed(request.headers().get(header::HOST), &hosts);
                    async move { if allowed { next.run(request).await } else { misdirected() } }
                }),
            )
        }
        None => health,
    }
}

/// Whether a `Host` header names this listener: an IP literal (with or without a port), `localhost`, or
/// one of the configured names, compared without case. A missing or unreadable header is refused.
fn host_allowed(host: Option<&axum::http::HeaderValue>, names: &[String]) -> bool {
    let Some(host) = host.and_then(|value| value.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(address, after)| {
                let port = after.is_empty() || after.strip_prefix(':').is_some_and(|port| port.parse::<u16>().is_ok());
                port && address.parse::<std::net::Ipv6Addr>().is_ok()
            });
        }
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|known| known.eq_ignore_ascii_case(name))
}

fn misdirected() -> Response {
    let problem = serde_json::json!({
        "type": "about:blank",
        "title": "Misdirected Request",
        "status": 421,
        "detail": "this listener does not answer to that Host; add the name to admin_hosts if it is yours",
    });
    (StatusCode::MISDIRECTED_REQUEST, [(header::CONTENT_TYPE, "application/problem+json")], problem.to_string())
        .into_response()
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::host_allowed;

    #[test]
    fn only_ip_literals_localhost_and_configured_names_are_answered() {
        let names = vec!["concordat-admin.northvale.example".to_owned()];
        let allowed = |host: &str| host_allowed(Some(&HeaderValue::from_str(host).unwrap()), &names);
        for host in [
            "127.0.0.1:8081",
            "10.0.0.5",
            "[::1]:8081",
            "[::1]",
            "localhost:8081",
            "LOCALHOST",
            "concordat-admin.northvale.example:8081",
        ] {
            assert!(allowed(host), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:8081",
            "127.0.0.1.attacker.example",
            "[::1].attacker",
            "localhost.attacker.example",
            "",
        ] {
            assert!(!allowed(host), "{host}");
        }
        assert!(!host_allowed(None, &names));
    }
}
