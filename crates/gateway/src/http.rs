//! HTTP ingest: `POST /v1/agencies/{agency}/events` (DESIGN.md §6) and the layers around it.
//!
//! A request is checked in this order, each step answering with its own status:
//! 1. the credentials (401): a bearer token that is missing, malformed, or no agency's. Over HTTPS, a client
//!    certificate pinned for an agency (`client_cert_sha256`) authenticates that agency without a token;
//!    with both, they must name the same agency (403 otherwise);
//! 2. the agency's rate (429 with `Retry-After`): counted per authenticated agency, before the body is read;
//! 3. the path (403, 404): credentials are only good for their own agency's path. An unknown agency is reported
//!    only to an authenticated caller, so nobody learns from the gateway which agencies exist without a
//!    token; and an unknown agency can have no valid token, so 401 is the truthful answer before that;
//! 4. the body size (413), then the media type (415), then the adapter (400, 422);
//! 5. publishing to `concordat.events` with confirms (503 when RabbitMQ does not confirm).
//!
//! `202` is sent only after RabbitMQ confirmed every event of the request (DESIGN.md §7, invariant 1).
//! Every refusal is a [`Problem`], rendered as `application/problem+json` or, for FHIR clients, as an
//! `OperationOutcome`; axum's own rejections (unknown route, wrong method, unreadable body) are mapped to
//! problems too. Logs carry agencies, media types, counts, event ids and statuses, never payloads.
//!
//! This module knows nothing of the formats themselves: [`crate::ingest`] translates.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{SubsecRound, Utc};
use concordat_bus::{TRACEPARENT_HEADER, TraceParent};
use concordat_episode::{AgencyId, EventId, IngestError, Timestamp};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use tracing::{Span, error, info, info_span, warn};

use crate::auth::{BearerError, bearer_token};
use crate::gateway::{Gateway, Party};
use crate::ingest::{Refusal, Submission, translate};
use crate::listener::ClientCertificate;
use crate::problem::{Problem, ProblemKind, Representation};

/// The route agencies post to.
pub const EVENTS_ROUTE: &str = "/v1/agencies/{agency}/events";

/// The body of a `202`: the accepted events' ids, in the order the adapter produced them, and what the
/// adapter read but left out (`{pointer, detail}` each, as in a `422`; empty when nothing was).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Accepted {
    accepted: Vec<EventId>,
    count: usize,
    warnings: Vec<serde_json::Value>,
}

impl Accepted {
    fn new(translated: crate::ingest::Translated) -> Self {
        let warnings = translated.warnings.iter().map(crate::problem::error_member).collect();
        Self { count: translated.event_ids.len(), accepted: translated.event_ids, warnings }
    }
}

pub(crate) fn router(gateway: Gateway) -> Router {
    let body_limit = gateway.inner.body_limit_bytes;
    Router::new()
        .route(EVENTS_ROUTE, post(ingest))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        // One stack, outermost first: a span per request (failures are logged by `represent_problems`, not
        // here), then the representation of errors (which must see every problem, the timeout's included),
        // then the deadline, then the body limit the extractor reads.
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
                .layer(middleware::from_fn(represent_problems))
                .layer(middleware::from_fn_with_state(gateway.clone(), deadline))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(gateway)
}

/// One span per request, named by the route template, never by the path's values beyond the route.
fn request_span(request: &Request) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let span = info_span!("request", method = %request.method(), route, agency = tracing::field::Empty);
    // A caller that traces its own work gets its trace continued; the events' traces start here otherwise.
    if let Some(traceparent) = request.headers().get(TRACEPARENT_HEADER).and_then(|value| value.to_str().ok()) {
        concordat_telemetry::trace::continue_trace(&span, traceparent);
    }
    span
}

/// Renders each problem as the request asks (FHIR clients get `OperationOutcome`) and logs it once: 5xx with
/// their internal cause at `error`/`warn`, refusals of bad input at `info`.
async fn represent_problems(request: Request, next: Next) -> Response {
    let representation = Representation::for_request(request.headers());
    let response = next.run(request).await;
    let Some(problem) = response.extensions().get::<Arc<Problem>>().cloned() else {
        return response;
    };
    let status = problem.kind().status().as_u16();
    let kind = problem.kind().slug();
    concordat_telemetry::inc("concordat_ingest_refused_total", &[("status", problem.kind().status().as_str())]);
    match problem.kind() {
        ProblemKind::Internal => error!(status, kind, cause = problem.cause().unwrap_or_default(), "Request failed."),
        ProblemKind::BrokerUnavailable | ProblemKind::Timeout => {
            warn!(status, kind, cause = problem.cause().unwrap_or_default(), "Request not accepted.");
        }
        _ => info!(status, kind, "Request refused."),
    }
    match representation {
        Representation::ProblemJson => response,
        Representation::OperationOutcome => problem.render(representation),
    }
}

/// Bounds the whole request, body included, by `request_timeout_ms`. Dropping the handler mid-publish is
/// safe: the client gets no `202`, resubmits, and the deterministic event ids let the router drop duplicates.
async fn deadline(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let timeout = gateway.inner.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            Problem::internal(ProblemKind::Timeout, format!("request not completed within {} ms", timeout.as_millis()))
                .into_response()
        }
    }
}

async fn not_found() -> Problem {
    Problem::new(ProblemKind::NotFound, "no such resource; agencies post to /v1/agencies/{agency}/events")
}

async fn method_not_allowed() -> Problem {
    Problem::new(ProblemKind::MethodNotAllowed, "this resource only takes POST")
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    BearerToken,
    ClientCertificate,
}

impl Credential {
    fn noun(self) -> &'static str {
        match self {
            Self::BearerToken => "bearer token",
            Self::ClientCertificate => "client certificate",
        }
    }
}

/// The agency whose token or client certificate the request carries, within its rate.
struct Caller(AgencyId, Credential);

impl FromRequestParts<Gateway> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, Problem> {
        let header = parts.headers.get(AUTHORIZATION).map(|value| value.as_bytes());
        let certified = parts
            .extensions
            .get::<ClientCertificate>()
            .and_then(|certificate| gateway.inner.certificates.agency_of(certificate));
        let caller = match (header, certified) {
            // A pinned certificate is a credential on its own (DESIGN.md §9: beside or instead of tokens).
            (None, Some(agency)) => Self(agency.clone(), Credential::ClientCertificate),
            (header, certified) => {
                let token = bearer_token(header).map_err(|error| match error {
                    BearerError::Missing => Problem::unauthorized(error.to_string(), None),
                    BearerError::Malformed => Problem::unauthorized(error.to_string(), Some("invalid_request")),
                })?;
                let Some(by_token) = gateway.inner.tokens.agency_of(token).cloned() else {
                    return Err(Problem::unauthorized("the bearer token is not valid", Some("invalid_token")));
                };
                if certified.is_some_and(|agency| agency != &by_token) {
                    return Err(Problem::new(
                        ProblemKind::Forbidden,
                        "the client certificate and the bearer token belong to different agencies",
                    ));
                }
                Self(by_token, Credential::BearerToken)
            }
        };
        // Counted only once the caller is known, so that nobody can spend an agency's allowance for it.
        if let Err(wait) = gateway.inner.rates.admit(&caller.0, Instant::now()) {
            return Err(Problem::too_many_requests(crate::rate::retry_after_seconds(wait)));
        }
        Ok(caller)
    }
}

/// The `{agency}` path segment, as sent.
struct PathAgency(String);

impl<S: Send + Sync> FromRequestParts<S> for PathAgency {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(agency)| Self(agency))
            .map_err(|_| Problem::new(ProblemKind::NotFound, "the path does not name an agency"))
    }
}

/// The request body, within `body_limit_bytes`.
struct NativePayload(Bytes);

impl<S: Send + Sync> FromRequest<S> for NativePayload {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(request, state).await.map(Self).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(ProblemKind::PayloadTooLarge, "the body is larger than the gateway accepts")
            } else {
                Problem::new(ProblemKind::MalformedPayload, "the request body could not be read")
            }
        })
    }
}

/// The caller's party, when the path is its own agency's: a credential is good for its own path only.
#[allow(clippy::result_large_err, reason = "the handler's own error, built once per refused request")]
fn party_on_path(gateway: &Gateway, caller: &AgencyId, credential: Credential, path: &str) -> Result<Party, Problem> {
    if path != caller.as_str() {
        let known = AgencyId::new(path).is_ok_and(|agency| gateway.inner.parties.contains_key(&agency));
        return Err(if known {
            Problem::new(ProblemKind::Forbidden, format!("the {} is not valid for this agency", credential.noun()))
        } else {
            Problem::new(ProblemKind::UnknownAgency, "the sharing policy lists no such agency")
        });
    }
    // Every credential holder is an agency of the policy (checked when the gateway was built).
    gateway.inner.parties.get(caller).copied().ok_or_else(|| {
        Problem::internal(ProblemKind::Internal, format!("credential holder `{caller}` is not in the policy"))
    })
}

/// `POST /v1/agencies/{agency}/events`.
async fn ingest(
    State(gateway): State<Gateway>,
    Caller(caller, credential): Caller,
    PathAgency(path): PathAgency,
    headers: HeaderMap,
    NativePayload(payload): NativePayload,
) -> Result<(StatusCode, Json<Accepted>), Problem> {
    let started = Instant::now();
    Span::current().record("agency", caller.as_str());
    let party = party_on_path(&gateway, &caller, credential, &path)?;
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned) else {
        let expected = party.format.content_types().iter().map(|&name| name.to_owned()).collect();
        let error = IngestError::UnsupportedContentType { content_type: "(none)".to_owned(), expected };
        return Err(Problem::from_ingest(error, party.format.as_str()));
    };
    let traceparent = match headers.get(TRACEPARENT_HEADER).and_then(|value| value.to_str().ok()) {
        Some(value) => TraceParent::parse(value).map_or_else(|_| TraceParent::new_root(), |parent| parent.child()),
        None => TraceParent::new_root(),
    };
    let received_at = Timestamp::from(Utc::now().trunc_subsecs(3));
    let events_exchange = gateway.inner.topology.events_exchange();

    // Adapters and schema validation are CPU-bound; a megabyte of FHIR must not stall other requests.
    let work = gateway.clone();
    let agency = caller.clone();
    let media_type = content_type.clone();
    let mut translated = tokio::task::spawn_blocking(move || {
        let submission = Submission {
            agency: &agency,
            agency_kind: party.kind,
            format: party.format,
            content_type: &media_type,
            payload: &payload,
            received_at,
            traceparent,
            max_events: work.inner.max_events,
        };
        translate(&submission, &work.inner.adapters, &events_exchange)
    })
    .await
    .map_err(|error| Problem::internal(ProblemKind::Internal, format!("translation task failed: {error}")))?
    .map_err(|refusal| match refusal {
        Refusal::Ingest(error) => Problem::from_ingest(error, party.format.as_str()),
        bug @ Refusal::InvalidEvent { .. } => Problem::internal(ProblemKind::Internal, bug.to_string()),
        over @ Refusal::TooManyEvents { .. } => Problem::new(ProblemKind::TooManyEvents, over.to_string()),
    })?;

    let _spans = translated.trace(&Span::current(), &caller);
    // Only a confirm makes the events durable; until then nothing is promised to the sender.
    gateway.inner.publisher.publish_batch(&translated.messages).await.map_err(|error| {
        let kind = match error {
            concordat_bus::PublishError::Invalid { .. } => ProblemKind::Internal,
            _ => ProblemKind::BrokerUnavailable,
        };
        Problem::internal(kind, error.to_string())
    })?;

    translated.count_accepted(&caller);
    let count = translated.event_ids.len();
    let event_ids: Vec<String> = translated.event_ids.iter().map(ToString::to_string).collect();
    info!(
        agency = %caller,
        content_type = %crate::problem::media_type(&content_type),
        format = %party.format,
        count,
        skipped = translated.warnings.len(),
        event_ids = %event_ids.join(","),
        duration_ms = started.elapsed().as_millis(),
        "Events accepted."
    );
    Ok((StatusCode::ACCEPTED, Json(Accepted::new(translated))))
}
