//! The gateway's error responses: RFC 9457 `application/problem+json`, or a FHIR `OperationOutcome` for FHIR
//! clients, with the same status codes either way.
//!
//! Every refusal of an HTTP request is a [`Problem`]. Its `type` is a URN per kind of refusal
//! (`urn:concordat:problem:invalid-payload`) that clients may branch on; its `detail` names places and rules,
//! never a value from the payload, and is generic for 5xx. The internal cause of a 5xx travels beside the
//! response (in its extensions) to the one middleware that logs it, and never reaches the client. This module
//! renders; it does not decide statuses for anything but the kinds it lists, and it logs nothing.

use std::sync::Arc;

use axum::http::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use concordat_episode::{IngestError, InputLocation, InputProblem};
use serde_json::{Map, Value, json};

/// The media type of problem details (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The media type of FHIR JSON, which also selects `OperationOutcome` errors.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Seconds a client is asked to wait before resubmitting after a `503`.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// `Accept-Post` lists the media types a resource takes (W3C LDP §7.1); sent with a `415`.
static ACCEPT_POST: HeaderName = HeaderName::from_static("accept-post");

/// The kinds of refusal, each with its status, `type` URN and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// No usable bearer token, or one that belongs to no agency (401).
    Unauthorized,
    /// A valid token or client certificate of one agency used on another agency's path, or both of two
    /// agencies' (403).
    Forbidden,
    /// An authenticated caller names an agency the policy does not list (404).
    UnknownAgency,
    /// No such route (404).
    NotFound,
    /// The route exists, not with this method (405).
    MethodNotAllowed,
    /// The body is over `body_limit_bytes` (413).
    PayloadTooLarge,
    /// The agency is over its `rate_limit_per_minute`; nothing was accepted (429).
    TooManyRequests,
    /// The payload yields more events than `max_events_per_payload` (413).
    TooManyEvents,
    /// The agency's adapter does not read this media type (415).
    UnsupportedMediaType,
    /// The body does not parse as the format, or could not be read (400).
    MalformedPayload,
    /// The body parses but breaks the format's rules (422).
    InvalidPayload,
    /// RabbitMQ did not confirm the events; nothing was accepted (503).
    BrokerUnavailable,
    /// The request took longer than `request_timeout_ms` (503).
    Timeout,
    /// A bug (500).
    Internal,
}

impl ProblemKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UnknownAgency | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge | Self::TooManyEvents => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MalformedPayload => StatusCode::BAD_REQUEST,
            Self::InvalidPayload => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BrokerUnavailable | Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last segment of the `type` URN.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::UnknownAgency => "unknown-agency",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::TooManyRequests => "too-many-requests",
            Self::TooManyEvents => "too-many-events",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::MalformedPayload => "malformed-payload",
            Self::InvalidPayload => "invalid-payload",
            Self::BrokerUnavailable => "broker-unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    /// The `type` URN: `urn:concordat:problem:{slug}`.
    pub fn type_uri(self) -> String {
        format!("urn:concordat:problem:{}", self.slug())
    }

    /// A short summary that is the same for every occurrence (RFC 9457 §3.1.3).
    pub fn title(self) -> &'static str {
        match self {
            Self::Unauthorized => "Missing or invalid bearer token",
            Self::Forbidden => "Credentials not valid for this agency",
            Self::UnknownAgency => "Unknown agency",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::PayloadTooLarge => "Payload too large",
            Self::TooManyRequests => "Too many requests",
            Self::TooManyEvents => "Too many events in one payload",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::MalformedPayload => "Malformed payload",
            Self::InvalidPayload => "Invalid payload",
            Self::BrokerUnavailable => "Events not accepted: message broker unavailable",
            Self::Timeout => "Events not accepted: request timed out",
            Self::Internal => "Internal error",
        }
    }

    /// The FHIR `issue-type` code for an `OperationOutcome` of this kind.
    fn fhir_issue_type(self) -> &'static str {
        match self {
            Self::Unauthorized => "login",
            Self::Forbidden => "forbidden",
            Self::UnknownAgency | Self::NotFound => "not-found",
            Self::MethodNotAllowed | Self::UnsupportedMediaType => "not-supported",
            Self::PayloadTooLarge | Self::TooManyEvents => "too-costly",
            Self::TooManyRequests => "throttled",
            Self::MalformedPayload => "structure",
            Self::InvalidPayload => "invalid",
            Self::BrokerUnavailable | Self::Timeout => "transient",
            Self::Internal => "exception",
        }
    }
}

/// One refusal of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    kind: ProblemKind,
    detail: String,
    /// The adapter's refusal, when there is one: it gives the `errors` member and the FHIR issues.
    ingest: Option<IngestError>,
    /// The RFC 6750 `error` attribute of `WWW-Authenticate` (401 only).
    bearer_error: Option<&'static str>,
    /// Why a 5xx happened, for the log only.
    cause: Option<String>,
    /// Seconds until a `429`'s caller may try again (`Retry-After`).
    retry_after: Option<u64>,
}

impl Problem {
    /// A refusal of `kind` with a specific `detail` (no payload values; no trailing period).
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), ingest: None, bearer_error: None, cause: None, retry_after: None }
    }

    /// A 401. `bearer_error` is RFC 6750's `invalid_request` or `invalid_token`; `None` when no credentials
    /// were sent at all (RFC 6750 §3.1).
    pub fn unauthorized(detail: impl Into<String>, bearer_error: Option<&'static str>) -> Self {
        Self { bearer_error, ..Self::new(ProblemKind::Unauthorized, detail) }
    }

    /// A 429: the caller is over its rate and may try again in `retry_after_seconds`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        let detail = format!(
            "this agency is over its request rate, so nothing was accepted; resubmit after {retry_after_seconds} s"
        );
        Self { retry_after: Some(retry_after_seconds), ..Self::new(ProblemKind::TooManyRequests, detail) }
    }

    /// A 5xx whose `cause` is logged and whose detail, sent to the client, is generic.
    pub fn internal(kind: ProblemKind, cause: impl Into<String>) -> Self {
        let detail = match kind {
            ProblemKind::BrokerUnavailable => {
                "RabbitMQ did not confirm the events, so none was accepted; resubmit the same payload later"
            }
            ProblemKind::Timeout => {
                "the request was not completed in time, so no event was accepted; resubmit it later"
            }
            _ => "an internal error occurred, so no event was accepted; the operators have the details in the log",
        };
        Self { cause: Some(cause.into()), ..Self::new(kind, detail) }
    }

    /// The refusal for an adapter's [`IngestError`]: 415, 400 or 422.
    pub fn from_ingest(error: IngestError, format: &str) -> Self {
        let (kind, detail) = match &error {
            IngestError::UnsupportedContentType { .. } => (ProblemKind::UnsupportedMediaType, error.to_string()),
            IngestError::Syntax { .. } => (ProblemKind::MalformedPayload, error.to_string()),
            IngestError::Invalid(problems) => (
                ProblemKind::InvalidPayload,
                format!("the payload breaks {} rule(s) of the {format} format; see errors", problems.len()),
            ),
        };
        Self { ingest: Some(error), ..Self::new(kind, detail) }
    }

    /// Its kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The internal cause of a 5xx, for the log.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    /// The RFC 9457 document.
    pub fn to_problem_json(&self) -> Value {
        let status = self.kind.status();
        let mut document = Map::new();
        document.insert("type".to_owned(), json!(self.kind.type_uri()));
        document.insert("title".to_owned(), json!(self.kind.title()));
        document.insert("status".to_owned(), json!(status.as_u16()));
        document.insert("detail".to_owned(), json!(self.detail));
        // Extension members (RFC 9457 §3.2).
        match &self.ingest {
            Some(IngestError::Invalid(problems)) => {
                document.insert("errors".to_owned(), problems.iter().map(error_member).collect());
            }
            Some(IngestError::UnsupportedContentType { expected, .. }) => {
                document.insert("accepted".to_owned(), json!(expected));
            }
            Some(IngestError::Syntax { line, column, .. }) => {
                document.insert("line".to_owned(), json!(line));
                document.insert("column".to_owned(), json!(column));
            }
            None => {}
        }
        Value::Object(document)
    }

    /// The FHIR R4 `OperationOutcome`: the adapter's issues for an adapter refusal, one issue otherwise.
    pub fn to_operation_outcome(&self) -> Value {
        match &self.ingest {
            Some(error) => concordat_nhs_fhir::operation_outcome(error),
            None => json!({
                "resourceType": "OperationOutcome",
                "issue": [{ "severity": "error", "code": self.kind.fhir_issue_type(), "diagnostics": self.detail }],
            }),
        }
    }

    /// The response in the chosen representation.
    pub fn render(&self, representation: Representation) -> Response {
        let (content_type, body) = match representation {
            Representation::ProblemJson => (PROBLEM_JSON, self.to_problem_json()),
            Representation::OperationOutcome => (FHIR_JSON, self.to_operation_outcome()),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        match self.kind {
            ProblemKind::Unauthorized => {
                let challenge = match self.bearer_error {
                    Some(error) => format!(r#"Bearer realm="concordat", error="{error}""#),
                    None => r#"Bearer realm="concordat""#.to_owned(),
                };
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
            ProblemKind::PayloadTooLarge => {
                // The rest of the body stays unread, so the connection cannot be reused: say so, or a
                // client that pools connections sends its next request into a closing socket.
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            ProblemKind::BrokerUnavailable | ProblemKind::Timeout => {
                headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            ProblemKind::TooManyRequests => {
                headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after.unwrap_or(1)));
            }
            ProblemKind::UnsupportedMediaType => {
                if let Some(IngestError::UnsupportedContentType { expected, .. }) = &self.ingest
                    && let Ok(value) = HeaderValue::from_str(&expected.join(", "))
                {
                    headers.insert(ACCEPT_POST.clone(), value);
                }
            }
            _ => {}
        }
        let mut response = (self.kind.status(), headers, body.to_string()).into_response();
        // The representation middleware may re-render, and the logging middleware reads the cause.
        response.extensions_mut().insert(Arc::new(self.clone()));
        response
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.render(Representation::ProblemJson)
    }
}

/// `{pointer, detail}`, `{row, column, detail}`, `{row, detail}` or `{detail}` for one input problem.
pub(crate) fn error_member(problem: &InputProblem) -> Value {
    match &problem.location {
        InputLocation::Pointer(pointer) => json!({ "pointer": pointer, "detail": problem.detail }),
        InputLocation::Cell { row, column } => json!({ "row": row, "column": column, "detail": problem.detail }),
        InputLocation::Row(row) => json!({ "row": row, "detail": problem.detail }),
        InputLocation::Document => json!({ "detail": problem.detail }),
    }
}

/// How errors are written for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// RFC 9457 problem details, the default.
    ProblemJson,
    /// A FHIR `OperationOutcome`, for a request sent as `application/fhir+json` or accepting it.
    OperationOutcome,
}

impl Representation {
    /// The representation a request asks for by its `Content-Type` or `Accept`.
    pub fn for_request(headers: &HeaderMap) -> Self {
        let sent_fhir = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| media_type(value) == FHIR_JSON);
        let accepts_fhir = headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|range| media_type(range) == FHIR_JSON);
        if sent_fhir || accepts_fhir { Self::OperationOutcome } else { Self::ProblemJson }
    }
}

/// A media type without parameters, trimmed and lower case (`Application/JSON; charset=utf-8` is
/// `application/json`).
pub fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems() -> Vec<(&'static str, Problem)> {
        vec![
            ("unauthorized", Problem::unauthorized("no token", None)),
            ("unauthorized", Problem::unauthorized("bad token", Some("invalid_token"))),
            ("forbidden", Problem::new(ProblemKind::Forbidden, "another agency")),
            (
                "unsupported-media-type",
                Problem::from_ingest(
                    IngestError::UnsupportedContentType {
                        content_type: "text/plain".to_owned(),
                        expected: vec!["application/json".to_owned(), "text/csv".to_owned()],
                    },
                    "vcs",
                ),
            ),
            (
                "malformed-payload",
                Problem::from_ingest(
                    IngestError::Syntax { format: "JSON", reason: "syntax error".to_owned(), line: 3, column: 7 },
                    "police",
                ),
            ),
            (
                "invalid-payload",
                Problem::from_ingest(
                    IngestError::Invalid(vec![
                        InputProblem::at("/person/nhs_number", "NHS number fails the modulus 11 check"),
                        InputProblem::cell(4, "contact_at", "not a date and time"),
                        InputProblem { location: InputLocation::Row(5), detail: "wrong number of fields".to_owned() },
                        InputProblem { location: InputLocation::Document, detail: "empty".to_owned() },
                    ]),
                    "police",
                ),
            ),
            ("too-many-requests", Problem::too_many_requests(42)),
            ("broker-unavailable", Problem::internal(ProblemKind::BrokerUnavailable, "timeout after 5000 ms")),
            ("internal", Problem::internal(ProblemKind::Internal, "schema drift at /details")),
        ]
    }

    #[test]
    fn problem_documents_follow_rfc_9457() {
        for (slug, problem) in problems() {
            let document = problem.to_problem_json();
            assert_eq!(document["type"], format!("urn:concordat:problem:{slug}"));
            assert_eq!(document["status"], problem.kind().status().as_u16());
            assert_eq!(document["title"], problem.kind().title());
            let detail = document["detail"].as_str().unwrap();
            assert!(!detail.is_empty() && !detail.ends_with('.'), "{detail}");
            if let Some(cause) = problem.cause() {
                assert!(!document.to_string().contains(cause), "a 5xx cause reaches the client: {document}");
            }
        }
    }

    #[test]
    fn invalid_payloads_list_every_error_by_place() {
        let (_, problem) = problems().into_iter().find(|(slug, _)| *slug == "invalid-payload").unwrap();
        assert_eq!(
            problem.to_problem_json()["errors"],
            json!([
                { "pointer": "/person/nhs_number", "detail": "NHS number fails the modulus 11 check" },
                { "row": 4, "column": "contact_at", "detail": "not a date and time" },
                { "row": 5, "detail": "wrong number of fields" },
                { "detail": "empty" },
            ])
        );
    }

    #[test]
    fn responses_carry_the_headers_their_status_needs() {
        for (slug, problem) in problems() {
            for representation in [Representation::ProblemJson, Representation::OperationOutcome] {
                let response = problem.render(representation);
                let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(response.status(), problem.kind().status());
                let expected_type =
                    if representation == Representation::ProblemJson { PROBLEM_JSON } else { FHIR_JSON };
                assert_eq!(header("content-type").as_deref(), Some(expected_type));
                assert_eq!(header("www-authenticate").is_some(), slug == "unauthorized", "{slug}");
                let retry_after = match slug {
                    "broker-unavailable" => Some("5"),
                    "too-many-requests" => Some("42"),
                    _ => None,
                };
                assert_eq!(header("retry-after").as_deref(), retry_after, "{slug}");
                if slug == "unsupported-media-type" {
                    assert_eq!(header("accept-post").as_deref(), Some("application/json, text/csv"));
                }
            }
        }
        let challenge = Problem::unauthorized("bad", Some("invalid_token")).render(Representation::ProblemJson);
        assert_eq!(challenge.headers()["www-authenticate"], r#"Bearer realm="concordat", error="invalid_token""#);
    }

    #[test]
    fn fhir_clients_get_operation_outcomes() {
        for (_, problem) in problems() {
            let outcome = problem.to_operation_outcome();
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            let issues = outcome["issue"].as_array().unwrap();
            assert!(!issues.is_empty());
            assert!(issues.iter().all(|issue| issue["severity"] == "error" && issue["code"].is_string()));
        }
    }

    #[test]
    fn the_representation_follows_content_type_or_accept() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, HeaderValue::from_static(value));
            }
            map
        };
        let fhir = Representation::OperationOutcome;
        let plain = Representation::ProblemJson;
        assert_eq!(Representation::for_request(&headers(&[])), plain);
        assert_eq!(Representation::for_request(&headers(&[("content-type", "application/json")])), plain);
        assert_eq!(
            Representation::for_request(&headers(&[("content-type", "Application/FHIR+JSON; fhirVersion=4.0")])),
            fhir
        );
        assert_eq!(
            Representation::for_request(&headers(&[
                ("content-type", "application/json"),
                ("accept", "text/html, application/fhir+json;q=0.9")
            ])),
            fhir
        );
    }
}
