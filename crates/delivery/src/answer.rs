//! What an endpoint's HTTP answer means for the message in hand: accepted (record and ack), retry later
//! (and no sooner than `Retry-After` says), or refused for good (dead-letter with the reason).
//!
//! Pure: the status, headers and body come in as values, and so does the time `Retry-After` dates are
//! counted from. The rules: 2xx is accepted; 408, 429 and 5xx are retried (429 and 503 honour
//! `Retry-After`); any other status is final, with a reason read from the body. The reason is cut short
//! and stripped of control characters; it is the receiver's own words about why it refused.

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// How long a reason read from a response may be, in characters.
const REASON_CHARS: usize = 200;

/// What to do with a message after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The endpoint took it (2xx): record the confirmation and ack.
    Accepted {
        /// The HTTP status.
        status: u16,
    },
    /// A transient failure: keep the message and try again, no sooner than `after` when the endpoint said.
    Retry {
        /// What failed (`HTTP 503`, `timeout`, `connection failed`).
        reason: String,
        /// The endpoint's `Retry-After`, when it sent one.
        after: Option<Duration>,
    },
    /// The endpoint refused it for good: dead-letter it with the reason.
    Refused {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// Why, in the endpoint's words when it gave any.
        reason: String,
    },
}

/// Classifies an HTTP answer: `status`, its `Retry-After` header, its `Content-Type` and body, at `now`.
#[must_use]
pub fn classify(
    status: u16,
    retry_after_header: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Answer {
    match status {
        200..=299 => Answer::Accepted { status },
        408 | 500..=599 | 429 => {
            let after = match status {
                429 | 503 => retry_after_header.and_then(|value| retry_after(value, now)),
                _ => None,
            };
            Answer::Retry { reason: format!("HTTP {status}"), after }
        }
        300..=399 => Answer::Refused {
            status: Some(status),
            reason: "the endpoint redirects; configure the URL it redirects to".to_owned(),
        },
        _ => Answer::Refused {
            status: Some(status),
            reason: body_reason(content_type, body).unwrap_or_else(|| "no reason given".to_owned()),
        },
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date counted from `now` (a date in
/// the past is no wait). `None` for anything else.
#[must_use]
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The reason a FHIR `OperationOutcome` gives: its issues' `diagnostics` (else `details.text`, else
/// `code`), joined with `; `. `None` when `outcome` is not an OperationOutcome with issues.
#[must_use]
pub fn operation_outcome_reason(outcome: &Value) -> Option<String> {
    if outcome["resourceType"] != "OperationOutcome" {
        return None;
    }
    let issues: Vec<&str> = outcome["issue"]
        .as_array()?
        .iter()
        .filter_map(|issue| {
            issue["diagnostics"]
                .as_str()
                .or_else(|| issue["details"]["text"].as_str())
                .or_else(|| issue["code"].as_str())
        })
        .collect();
    if issues.is_empty() { None } else { Some(tidy(&issues.join("; "))) }
}

/// The reason in a refusal's body: an OperationOutcome's, a problem's `detail` or `title`, a JSON object's
/// `message` or `error`, or plain text.
fn body_reason(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let media = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        if let Some(reason) = operation_outcome_reason(&json) {
            return Some(reason);
        }
        let named = ["detail", "title", "message", "error"].iter().find_map(|key| json[*key].as_str());
        return named.map(tidy).filter(|reason| !reason.is_empty());
    }
    if media.starts_with("text/") {
        let text = String::from_utf8_lossy(body);
        let reason = tidy(&text);
        return (!reason.is_empty()).then_some(reason);
    }
    None
}

/// Whitespace collapsed, control characters dropped, cut to [`REASON_CHARS`] characters.
fn tidy(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined: String = words.join(" ").chars().filter(|c| !c.is_control()).collect();
    if joined.chars().count() > REASON_CHARS {
        let cut: String = joined.chars().take(REASON_CHARS).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        httpdate::parse_http_date("Fri, 04 Dec 2026 14:00:00 GMT").unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn check(status: u16, retry: Option<&str>, content_type: Option<&str>, body: &str, expected: Answer) {
        assert_eq!(classify(status, retry, content_type, body.as_bytes(), now()), expected, "HTTP {status} {body}");
    }

    fn retry(status: u16, after: Option<u64>) -> Answer {
        Answer::Retry { reason: format!("HTTP {status}"), after: after.map(Duration::from_secs) }
    }

    fn refused(status: u16, reason: &str) -> Answer {
        Answer::Refused { status: Some(status), reason: reason.to_owned() }
    }

    #[test]
    fn success_is_accepted_whatever_the_body() {
        check(200, None, None, "", Answer::Accepted { status: 200 });
        check(204, Some("5"), None, "", Answer::Accepted { status: 204 });
        check(202, None, Some("application/json"), "{not json", Answer::Accepted { status: 202 });
    }

    #[test]
    fn transient_failures_are_retried_and_429_and_503_say_when() {
        check(503, None, None, "down", retry(503, None));
        check(503, Some("30"), None, "", retry(503, Some(30)));
        check(429, Some("Fri, 04 Dec 2026 14:02:00 GMT"), None, "", retry(429, Some(120)));
        check(429, Some("Fri, 04 Dec 2026 13:00:00 GMT"), None, "", retry(429, Some(0)));
        check(429, Some("soon"), None, "", retry(429, None));
        check(500, Some("30"), None, "", retry(500, None));
        check(408, None, None, "", retry(408, None));
    }

    #[test]
    fn other_statuses_are_final_with_the_receivers_reason() {
        let problem = r#"{"type":"about:blank","title":"Bad Request","detail":"unknown incident reference"}"#;
        check(400, None, Some("application/problem+json"), problem, refused(400, "unknown incident reference"));
        let outcome = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invariant",
            "diagnostics":"Communication.subject: patient unknown"},{"severity":"error","code":"required"}]}"#;
        check(
            422,
            None,
            Some("application/fhir+json"),
            outcome,
            refused(422, "Communication.subject: patient unknown; required"),
        );
        check(
            403,
            None,
            Some("text/plain; charset=utf-8"),
            "  signature\n\tinvalid\u{7}  ",
            refused(403, "signature invalid"),
        );
        check(404, None, Some("text/html"), "", refused(404, "no reason given"));
        check(410, None, Some("application/octet-stream"), "\u{0}\u{1}", refused(410, "no reason given"));
        check(301, None, None, "", refused(301, "the endpoint redirects; configure the URL it redirects to"));
    }

    #[test]
    fn long_reasons_are_cut() {
        let Answer::Refused { reason, .. } =
            classify(400, None, Some("text/plain"), "x".repeat(5000).as_bytes(), now())
        else {
            panic!("a 400 is final")
        };
        assert_eq!(reason.chars().count(), REASON_CHARS + 1);
    }

    proptest::proptest! {
        #[test]
        fn every_status_gets_exactly_one_answer(status in 100u16..600, body in ".{0,64}") {
            let answer = classify(status, Some("7"), Some("text/plain"), body.as_bytes(), now());
            let expected_kind = match status {
                200..=299 => "accepted",
                408 | 429 | 500..=599 => "retry",
                _ => "refused",
            };
            let kind = match answer {
                Answer::Accepted { .. } => "accepted",
                Answer::Retry { .. } => "retry",
                Answer::Refused { .. } => "refused",
            };
            proptest::prop_assert_eq!(kind, expected_kind);
        }
    }
}
