//! Push delivery (cargo feature `push`): posts a rendered message Bundle to a trust's FHIR server, either to
//! `$process-message` or, converted, as a `transaction`.
//!
//! Retry policy: each attempt has a timeout; a timeout, a connection failure, HTTP 5xx, 408 or 429 is retried
//! after a backoff that starts at `initial_backoff_ms` and doubles up to `max_backoff_ms`, for at most
//! `max_attempts` attempts in all. Any other 4xx is final and not retried: the Bundle would be refused again, so
//! the caller dead-letters it with the server's `OperationOutcome` as the reason. Redelivery after a lost
//! response is safe because the Bundle's id and fullUrls are deterministic and the transaction form creates the
//! Patient and Organization only if none exists.
//!
//! This module does the HTTP; it does not decide whom to deliver to, record the delivery, or dead-letter (the
//! delivery worker does, from the [`PushError`]).

use std::time::Duration;

use concordat_episode::Rendered;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{FHIR_JSON, mapping};

/// Where and how to push. Only `base_url` has no default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The FHIR server's base URL, without a trailing slash (`https://fhir.northvale-mh.nhs.uk/R4`).
    pub base_url: String,
    /// `process-message` (post the message Bundle to `{base_url}/$process-message`, the default) or
    /// `transaction` (post it, as a transaction Bundle without its MessageHeader, to `{base_url}`).
    #[serde(default)]
    pub mode: PushMode,
    /// Timeout of one attempt, in milliseconds. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts in all, the first included. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait before the first retry, in milliseconds; it doubles on each retry. Default 500.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// The longest wait between retries, in milliseconds. Default 30000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// How the Bundle is posted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushMode {
    /// FHIR messaging: `POST {base}/$process-message` with the message Bundle.
    #[default]
    ProcessMessage,
    /// RESTful: `POST {base}` with a transaction Bundle.
    Transaction,
}

/// A delivery the server accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The HTTP status (2xx).
    pub status: u16,
    /// How many attempts it took.
    pub attempts: u32,
    /// The server's response body as JSON (an OperationOutcome or a response Bundle), when it sent one.
    pub response: Option<Value>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// The server refused the Bundle (4xx other than 408 and 429); not retried. Dead-letter it with the
    /// outcome as the reason.
    #[error("the FHIR server refused the Bundle with HTTP {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's OperationOutcome, when the body was one.
        outcome: Option<Value>,
    },
    /// Every attempt failed with a retryable error.
    #[error("delivery failed after {attempts} attempts; last: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure (`HTTP 503`, `timeout`, `connection failed`).
        last: String,
        /// The last answer's `Retry-After` header as the server sent it (a 429's or 503's), for a caller
        /// that tries again later.
        retry_after: Option<String>,
    },
    /// The rendered body is not a message Bundle this module can convert.
    #[error("the rendered body is not a FHIR message Bundle")]
    NotABundle,
}

impl PushError {
    /// The reason to record on the dead letter: the server's OperationOutcome when it sent one, else the error.
    pub fn dead_letter_reason(&self) -> String {
        match self {
            Self::Rejected { outcome: Some(outcome), status } => format!("HTTP {status}: {outcome}"),
            other => other.to_string(),
        }
    }
}

/// Posts a rendered Bundle as `config` says, retrying as the module docs describe.
///
/// # Errors
/// [`PushError::Rejected`] on a final 4xx, [`PushError::Exhausted`] when retries run out,
/// [`PushError::NotABundle`] when the transaction form is asked for and the body is not a Bundle.
pub async fn push(client: &reqwest::Client, config: &PushConfig, rendered: &Rendered) -> Result<Delivered, PushError> {
    let base = config.base_url.trim_end_matches('/');
    let (url, body) = match config.mode {
        PushMode::ProcessMessage => (format!("{base}/$process-message"), rendered.body.clone()),
        PushMode::Transaction => (base.to_owned(), to_transaction(&rendered.body)?),
    };
    let timeout = Duration::from_millis(config.timeout_ms);
    let attempts = config.max_attempts.max(1);
    let mut backoff = Duration::from_millis(config.initial_backoff_ms);
    let mut last = String::new();
    let mut last_retry_after = None;
    for attempt in 1..=attempts {
        match attempt_once(client, &url, &body, timeout).await {
            Attempt::Accepted(status, response) => return Ok(Delivered { status, attempts: attempt, response }),
            Attempt::Refused(status, outcome) => return Err(PushError::Rejected { status, outcome }),
            Attempt::Retry(reason, retry_after) => (last, last_retry_after) = (reason, retry_after),
        }
        if attempt < attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(config.max_backoff_ms));
        }
    }
    Err(PushError::Exhausted { attempts, last, retry_after: last_retry_after })
}

enum Attempt {
    Accepted(u16, Option<Value>),
    Refused(u16, Option<Value>),
    Retry(String, Option<String>),
}

async fn attempt_once(client: &reqwest::Client, url: &str, body: &[u8], timeout: Duration) -> Attempt {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
        .header(reqwest::header::ACCEPT, FHIR_JSON)
        .timeout(timeout)
        .body(body.to_vec())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Attempt::Retry(failure(&error), None),
    };
    let status = response.status();
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => return Attempt::Retry(failure(&error), None),
    };
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    let code = status.as_u16();
    if status.is_success() {
        Attempt::Accepted(code, json)
    } else if status.is_client_error() && code != 408 && code != 429 {
        let outcome = json.filter(|value| value["resourceType"] == "OperationOutcome");
        Attempt::Refused(code, outcome)
    } else {
        Attempt::Retry(format!("HTTP {code}"), retry_after)
    }
}

fn failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// The transaction form of a rendered message Bundle: the MessageHeader dropped, each other entry a `POST`, the
/// Patient and the Organization conditional on their identifiers so that a redelivery does not duplicate them.
///
/// # Errors
/// [`PushError::NotABundle`] when the body is not a JSON Bundle with entries.
pub fn to_transaction(body: &[u8]) -> Result<Vec<u8>, PushError> {
    let mut bundle: Value = serde_json::from_slice(body).map_err(|_| PushError::NotABundle)?;
    let entries = bundle.get("entry").and_then(Value::as_array).ok_or(PushError::NotABundle)?;
    let mut converted = Vec::new();
    for entry in entries {
        let resource_type = entry["resource"]["resourceType"].as_str().unwrap_or_default();
        if resource_type == "MessageHeader" || resource_type.is_empty() {
            continue;
        }
        let mut request = json!({ "method": "POST", "url": resource_type });
        let condition = match resource_type {
            "Patient" => identifier_condition(&entry["resource"], concordat_episode::NHS_NUMBER_SYSTEM),
            "Organization" => identifier_condition(&entry["resource"], mapping::CONCORDAT_AGENCY),
            _ => None,
        };
        if let (Some(condition), Some(object)) = (condition, request.as_object_mut()) {
            object.insert("ifNoneExist".to_owned(), json!(condition));
        }
        let mut entry = entry.clone();
        if let Some(object) = entry.as_object_mut() {
            object.insert("request".to_owned(), request);
        }
        converted.push(entry);
    }
    let object = bundle.as_object_mut().ok_or(PushError::NotABundle)?;
    object.insert("type".to_owned(), json!("transaction"));
    object.insert("entry".to_owned(), Value::Array(converted));
    serde_json::to_vec(&bundle).map_err(|_| PushError::NotABundle)
}

fn identifier_condition(resource: &Value, system: &str) -> Option<String> {
    let identifiers = resource.get("identifier")?.as_array()?;
    let value = identifiers.iter().find(|identifier| identifier["system"] == system)?["value"].as_str()?;
    Some(format!("identifier={system}|{value}"))
}
