//! The admin API under `/v1/admin` (DESIGN.md §6), behind its own bearer token: an episode's timeline,
//! the dead letters listed and retried one by one, and the audit chain verified. Everything it answers is
//! metadata (ids, agencies, kinds, times, decisions, JSON Pointers of the fields shared and withheld),
//! never personal data. Errors are `application/problem+json`.
//!
//! Not yet here: `GET /v1/admin/flows` and `POST /v1/admin/policy/explain` (use `concordat policy explain`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use concordat_bus::{
    BusConfig, DeadLetterId, Filter, Selector, Stage, Topology, list_dead_letters, retry_dead_letters,
};
use concordat_episode::EpisodeId;
use concordat_store::{Store, StoreError, Timeline};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the admin API needs: its token and the parts it reads.
#[derive(Clone)]
pub struct AdminApi {
    /// The bearer token; `None` turns the API off (every request is refused, saying how to turn it on).
    pub token: Option<Arc<str>>,
    /// The store.
    pub store: Store,
    /// RabbitMQ.
    pub bus: BusConfig,
    /// The topology `concordat run` declared.
    pub topology: Topology,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").field("enabled", &self.token.is_some()).finish_non_exhaustive()
    }
}

/// The `/v1/admin` routes.
pub fn routes(api: AdminApi) -> Router {
    Router::new()
        .route("/v1/admin/episodes/{id}", get(episode))
        .route("/v1/admin/dead-letters", get(dead_letters))
        .route("/v1/admin/dead-letters/{id}/retry", post(retry))
        .route("/v1/admin/audit/verify", get(audit_verify))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize))
        .with_state(api)
}

/// An RFC 9457 problem.
fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

/// Compares in time independent of where the first difference is.
fn same(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented.iter().zip(expected).fold(0_u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

async fn authorize(State(api): State<AdminApi>, request: Request, next: Next) -> Response {
    let Some(token) = &api.token else {
        return problem(
            StatusCode::FORBIDDEN,
            "the admin API is off: set CONCORDAT_ADMIN_TOKEN or admin_token_file and restart",
        );
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if same(presented.trim().as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = problem(StatusCode::UNAUTHORIZED, "a valid admin bearer token is required");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"concordat-admin\""));
            response
        }
    }
}

fn store_problem(error: &StoreError) -> Response {
    if error.is_transient() {
        problem(StatusCode::SERVICE_UNAVAILABLE, format!("the store is unavailable: {error}"))
    } else {
        problem(StatusCode::INTERNAL_SERVER_ERROR, format!("the store failed: {error}"))
    }
}

/// `GET /v1/admin/episodes/{id}`: the episode, its members, and each event with its decisions and
/// deliveries.
async fn episode(State(api): State<AdminApi>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return problem(StatusCode::BAD_REQUEST, "an episode id is a UUID");
    };
    match api.store.episode_timeline(EpisodeId(id)).await {
        Ok(Some(timeline)) => axum::Json(timeline_json(&timeline)).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "no episode has this id"),
        Err(error) => store_problem(&error),
    }
}

fn timeline_json(timeline: &Timeline) -> Value {
    let episode = &timeline.episode;
    json!({
        "episode": {
            "id": episode.id.to_string(),
            "state": episode.state.as_str(),
            "originator": episode.originator.as_str(),
            "opened_by": episode.opened_by.to_string(),
            "opened_at": episode.opened_at,
            "last_event_at": episode.last_event_at,
            "closed_at": episode.closed_at,
            "close_reason": episode.close_reason.map(|reason| reason.as_str()),
            "feedback_due_at": episode.feedback_due_at,
            "feedback_delivered_at": episode.feedback_delivered_at,
        },
        "members": timeline.members.iter().map(|member| json!({
            "agency": member.agency.as_str(),
            "relations": member.relations.iter().map(|relation| relation.as_str()).collect::<Vec<_>>(),
            "first_seen_at": member.first_seen_at,
        })).collect::<Vec<_>>(),
        "events": timeline.entries.iter().map(|entry| json!({
            "event_id": entry.event.event_id.to_string(),
            "kind": entry.event.kind.as_str(),
            "source": entry.event.source.as_str(),
            "occurred_at": entry.event.occurred_at,
            "received_at": entry.event.received_at,
            "payload_purged": entry.event.payload_purged,
            "decisions": entry.decisions.iter().map(|decision| json!({
                "decision_id": decision.decision_id.0.to_string(),
                "recipient": decision.recipient.as_str(),
                "verdict": decision.verdict.as_str(),
                "reason": decision.reason,
                "agreements": decision.agreement_ids,
                "purposes": decision.purposes,
                "lawful_bases": decision.lawful_bases,
                "fields_shared": decision.fields_shared,
                "fields_withheld": decision.fields_withheld,
                "policy_version": decision.policy_version,
                "decided_at": decision.decided_at,
            })).collect::<Vec<_>>(),
            "deliveries": entry.deliveries.iter().map(|delivery| json!({
                "delivery_id": delivery.delivery_id.0.to_string(),
                "recipient": delivery.recipient.as_str(),
                "status": delivery.status.as_str(),
                "attempts": delivery.attempts,
                "created_at": delivery.created_at,
                "sent_at": delivery.sent_at,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
struct DeadLetterQuery {
    stage: Option<String>,
}

fn dead_letter_problem(error: &concordat_bus::DeadLetterError) -> Response {
    problem(StatusCode::SERVICE_UNAVAILABLE, format!("RabbitMQ: {}", crate::dlq::describe(error)))
}

/// `GET /v1/admin/dead-letters[?stage=ingest|router|deliver]`: every dead letter's metadata, never a body.
async fn dead_letters(State(api): State<AdminApi>, Query(query): Query<DeadLetterQuery>) -> Response {
    let stage = match query.stage.as_deref().map(Stage::from_name) {
        None => None,
        Some(Some(stage)) => Some(stage),
        Some(None) => return problem(StatusCode::BAD_REQUEST, "stage is one of ingest, router, deliver"),
    };
    let filter = Filter { stage, ..Filter::default() };
    match list_dead_letters(&api.bus, &api.topology, &filter).await {
        Ok(letters) => axum::Json(Value::Array(letters.iter().map(crate::dlq::to_json).collect())).into_response(),
        Err(error) => dead_letter_problem(&error),
    }
}

/// `POST /v1/admin/dead-letters/{stage:message_id}/retry`: republishes that dead letter to its original
/// route; `404` when there is none, `409` when it could not be retried and stays.
async fn retry(State(api): State<AdminApi>, Path(id): Path<String>) -> Response {
    let Some(id) = DeadLetterId::parse(&id) else {
        return problem(StatusCode::BAD_REQUEST, "a dead letter is named STAGE:MESSAGE_ID, as the listing shows");
    };
    match retry_dead_letters(&api.bus, &api.topology, &Selector::from(id)).await {
        Ok(report) if report.retried.is_empty() && report.not_retried.is_empty() => {
            problem(StatusCode::NOT_FOUND, "no dead letter has this id")
        }
        Ok(report) if !report.not_retried.is_empty() => {
            let why: Vec<String> = report.not_retried.iter().map(|(_, why)| crate::dlq::describe(why)).collect();
            problem(StatusCode::CONFLICT, format!("not retried; it stays in its queue: {}", why.join("; ")))
        }
        Ok(report) => axum::Json(json!({
            "retried": report.retried.iter().map(crate::dlq::to_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => dead_letter_problem(&error),
    }
}

/// `GET /v1/admin/audit/verify`: `{"verified": true, "records", "head_hash"}`, or `{"verified": false,
/// "first_broken_seq", "detail"}` naming the first record that does not verify.
async fn audit_verify(State(api): State<AdminApi>) -> Response {
    match api.store.audit_verify().await {
        Ok(verified) => axum::Json(json!({
            "verified": true,
            "records": verified.records,
            "head_hash": verified.head_hash.to_string(),
        }))
        .into_response(),
        Err(StoreError::AuditBroken { seq, reason }) => axum::Json(json!({
            "verified": false,
            "first_broken_seq": seq,
            "detail": reason.to_string(),
        }))
        .into_response(),
        Err(error) => store_problem(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same(b"admin-token", b"admin-token"));
        assert!(!same(b"admin-token", b"admin-tokem"));
        assert!(!same(b"admin-token", b"admin-token-longer"));
        assert!(!same(b"", b"admin-token"));
    }
}
