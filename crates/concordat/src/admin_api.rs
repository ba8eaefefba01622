//! The admin API under `/v1/admin` (DESIGN.md §6), behind its own bearer token: the flows between
//! agencies, an episode's timeline, the dead letters listed and retried one by one, a policy decision
//! explained, and the audit chain verified. Everything it answers is metadata (ids, agencies, kinds, times,
//! decisions, JSON Pointers of the fields shared and withheld), never personal data. Errors are
//! `application/problem+json`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use concordat_bus::{
    BusConfig, DeadLetterId, Filter, Selector, Stage, Topology, list_dead_letters, retry_dead_letters,
};
use concordat_episode::{AgencyId, EpisodeId};
use concordat_policy::{EpisodeContext, EpisodeState, Policy, Relation, Verdict};
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
    /// The sharing policy in force.
    pub policy: Arc<Policy>,
    /// The host names the admin listener answers to besides IP literals and `localhost` (`admin_hosts`).
    pub hosts: Arc<[String]>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").field("enabled", &self.token.is_some()).finish_non_exhaustive()
    }
}

/// The `/v1/admin` routes.
pub fn routes(api: AdminApi) -> Router {
    Router::new()
        .route("/v1/admin/flows", get(flows))
        .route("/v1/admin/episodes/{id}", get(episode))
        .route("/v1/admin/policy/explain", post(explain))
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

/// Whether `headers` carry the admin token: `Authorization: Bearer <token>`, read by the gateway's parser
/// (the scheme in any case), compared in constant time whatever the lengths.
pub(crate) fn carries_token(api: &AdminApi, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = &api.token else { return false };
    let header = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    concordat_gateway::bearer_token(header)
        .is_ok_and(|presented| concordat_gateway::secret_matches(presented, token.as_bytes()))
}

async fn authorize(State(api): State<AdminApi>, request: Request, next: Next) -> Response {
    if api.token.is_none() {
        return problem(
            StatusCode::FORBIDDEN,
            "the admin API is off: set CONCORDAT_ADMIN_TOKEN or admin_token_file and restart",
        );
    }
    if carries_token(&api, request.headers()) {
        return next.run(request).await;
    }
    let mut response = problem(StatusCode::UNAUTHORIZED, "a valid admin bearer token is required");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"concordat-admin\""));
    response
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
                "confirmed_at": delivery.confirmed_at,
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

#[derive(Debug, Deserialize)]
struct FlowsQuery {
    /// RFC 3339; default 24 hours ago.
    since: Option<String>,
}

/// `GET /v1/admin/flows[?since=RFC3339]`: per source and recipient agency since then (default: the last
/// 24 hours), the episodes, events shared, events withheld by reason, and failed deliveries.
async fn flows(State(api): State<AdminApi>, Query(query): Query<FlowsQuery>) -> Response {
    let now = chrono::Utc::now();
    let since = match query.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => now - chrono::Duration::hours(24),
        Some(Ok(since)) => since.to_utc(),
        Some(Err(_)) => return problem(StatusCode::BAD_REQUEST, "since is an RFC 3339 time"),
    };
    match api.store.impact_report(Some(since), None, now).await {
        Ok(report) => axum::Json(json!({
            "since": since,
            "as_of": now,
            "flows": report.pairs,
        }))
        .into_response(),
        Err(error) => store_problem(&error),
    }
}

#[derive(Debug, Deserialize)]
struct ExplainRequest {
    /// The canonical event, as the router would see it.
    event: Value,
    /// The recipient.
    to: String,
    /// The recipient's relations to the episode.
    #[serde(default)]
    relations: Vec<String>,
    /// `open` (default) or `closed`.
    #[serde(default)]
    episode_state: Option<String>,
}

/// `POST /v1/admin/policy/explain`: `{"event": {…canonical event…}, "to": "agency", "relations":
/// ["responder"], "episode_state": "open"}` → the decision the router would make, with the agreements
/// that permit it (or why none does), the fields shared and withheld, and the explanation as text. The
/// answer holds no field values, only their JSON Pointers.
async fn explain(State(api): State<AdminApi>, body: Bytes) -> Response {
    let request: ExplainRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return problem(StatusCode::BAD_REQUEST, format!("not an explain request: {error}")),
    };
    let event = match concordat_episode::event_from_value(request.event) {
        Ok(event) => event,
        Err(error) => return problem(StatusCode::UNPROCESSABLE_ENTITY, format!("not a canonical event: {error}")),
    };
    let Ok(recipient) = AgencyId::new(request.to.as_str()) else {
        return problem(StatusCode::BAD_REQUEST, "to is an agency id");
    };
    let mut relations = std::collections::BTreeSet::new();
    for relation in &request.relations {
        relations.insert(match relation.as_str() {
            "originator" => Relation::Originator,
            "contributor" => Relation::Contributor,
            "responder" => Relation::Responder,
            _ => return problem(StatusCode::BAD_REQUEST, "relations are originator, contributor or responder"),
        });
    }
    let state = match request.episode_state.as_deref() {
        None | Some("open") => EpisodeState::Open,
        Some("closed") => EpisodeState::Closed,
        Some(_) => return problem(StatusCode::BAD_REQUEST, "episode_state is open or closed"),
    };
    let context = EpisodeContext { state, recipient_relations: relations };
    let decision = concordat_policy::decide(&api.policy, &event, &context, &recipient);
    let (verdict, reason) = match decision.verdict {
        Verdict::Permit => ("permit", None),
        Verdict::Deny(reason) => ("deny", Some(reason.as_str())),
    };
    axum::Json(json!({
        "decision_id": decision.decision_id.to_string(),
        "verdict": verdict,
        "reason": reason,
        "permitted_by": decision.permitted_by.iter().map(|ground| json!({
            "agreement": ground.agreement,
            "purpose": ground.purpose,
            "lawful_basis": ground.lawful_basis,
        })).collect::<Vec<_>>(),
        "fields_shared": decision.fields_shared.iter().map(|field| field.pointer()).collect::<Vec<_>>(),
        "fields_withheld": decision.fields_withheld.iter().map(|field| field.pointer()).collect::<Vec<_>>(),
        "policy_version": decision.policy_version.to_string(),
        "explanation": concordat_policy::explain(&api.policy, &event, &context, &recipient),
    }))
    .into_response()
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
