//! The pure part of ingest, shared by HTTP and AMQP: a native payload from an authenticated agency becomes
//! the canonical events' messages for `concordat.events`, each validated against the canonical schema.
//!
//! No I/O, clock or randomness here: the receiving time and the trace context come in as values, so the same
//! submission always yields the same messages. Publishing them, and what a refusal means to the sender (an
//! HTTP status, a dead letter), is the caller's business.

use std::collections::BTreeMap;

use concordat_bus::{OutgoingMessage, TraceParent};
use concordat_episode::{
    AgencyId, AgencyKind, CONTENT_TYPE, CrisisEvent, EventId, IngestContext, IngestError, InputProblem, Timestamp,
    to_validated_json,
};
use concordat_formats::{AdapterConfigs, Format};

/// The header naming the event kind.
pub const KIND_HEADER: &str = "concordat-kind";
/// The header naming the episode, when the event already carries one.
pub const EPISODE_HEADER: &str = "concordat-episode";

/// One payload as received from an authenticated agency.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The sender, from its token or AMQP routing key.
    pub agency: &'a AgencyId,
    /// Its kind, from the policy.
    pub agency_kind: AgencyKind,
    /// The format its adapter reads.
    pub format: Format,
    /// The media type as sent, parameters allowed (`text/csv; charset=utf-8`).
    pub content_type: &'a str,
    /// The bytes.
    pub payload: &'a [u8],
    /// When Concordat received them.
    pub received_at: Timestamp,
    /// The trace the messages continue.
    pub traceparent: TraceParent,
    /// The most events the payload may yield (`[gateway] max_events_per_payload`).
    pub max_events: usize,
}

/// Why a submission yields no messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The adapter refused the payload (or its media type): the sender's to fix.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The adapter produced an event that breaks the canonical schema: a bug in the adapter, not the
    /// sender's doing. The reason names pointers and rules only.
    #[error("event {event_id} from the {format} adapter breaks the canonical schema: {reason}")]
    InvalidEvent {
        /// The event's id.
        event_id: EventId,
        /// The adapter.
        format: Format,
        /// The schema violations.
        reason: String,
    },
    /// The payload yields more events than the configured cap; none of them is queued.
    #[error("the payload yields {events} events, more than the {limit} one payload may hold; split it")]
    TooManyEvents {
        /// How many it yields.
        events: usize,
        /// The cap.
        limit: usize,
    },
}

/// The messages of one accepted submission, in the adapter's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The events' ids.
    pub event_ids: Vec<EventId>,
    /// One message per event, for the events exchange.
    pub messages: Vec<OutgoingMessage>,
    /// What the adapter read but left out, for the sender (the `202` body lists them).
    pub warnings: Vec<InputProblem>,
}

impl Translated {
    /// Counts the accepted events in the process's metrics, by agency and kind; call once RabbitMQ confirmed
    /// them.
    pub fn count_accepted(&self, agency: &AgencyId) {
        for message in &self.messages {
            let kind = message.headers.get(KIND_HEADER).map_or("unknown", String::as_str);
            concordat_telemetry::inc("concordat_events_ingested_total", &[("agency", agency.as_str()), ("kind", kind)]);
        }
    }

    /// Opens one `publish` span per event under `parent` (ids, kind and agency only) and, when spans are
    /// exported, makes each message's `traceparent` name its event's span, so that each event's trace goes
    /// on from there. Keep the spans until RabbitMQ confirmed the messages: a span ends when it is dropped.
    pub fn trace(&mut self, parent: &tracing::Span, agency: &AgencyId) -> Vec<tracing::Span> {
        self.messages
            .iter_mut()
            .map(|message| {
                let kind = message.headers.get(KIND_HEADER).map_or("unknown", String::as_str);
                let span = tracing::info_span!(
                    parent: parent,
                    "publish",
                    event_id = %message.message_id,
                    kind,
                    agency = %agency,
                    exchange = %message.exchange,
                );
                if let Some(own) = concordat_telemetry::trace::traceparent(&span).and_then(|value| value.parse().ok()) {
                    message.traceparent = own;
                }
                span
            })
            .collect()
    }
}

/// Translates a submission with its format's adapter, validates every event, and builds its message for
/// `events_exchange`.
///
/// # Errors
/// [`Refusal::Ingest`] when the media type is not one the format reads or the adapter refuses the payload;
/// [`Refusal::InvalidEvent`] when an event fails validation; [`Refusal::TooManyEvents`] over the cap.
pub fn translate(
    submission: &Submission<'_>,
    adapters: &AdapterConfigs,
    events_exchange: &str,
) -> Result<Translated, Refusal> {
    let content_type = crate::problem::media_type(submission.content_type);
    let expected = submission.format.content_types();
    // Checked here as well as in the adapters, so every format refuses the same way and lists the same types.
    if !expected.contains(&content_type.as_str()) {
        return Err(Refusal::Ingest(IngestError::UnsupportedContentType {
            content_type,
            expected: expected.iter().map(|&name| name.to_owned()).collect(),
        }));
    }
    let cx = IngestContext {
        agency: submission.agency.clone(),
        agency_kind: submission.agency_kind,
        content_type,
        received_at: submission.received_at,
    };
    let ingested = submission.format.ingest(submission.payload, &cx, adapters)?;
    let events = ingested.events;
    // Refused before validation and publishing: decisions and audit records are never purged, so each
    // payload's share of them is bounded.
    if events.len() > submission.max_events {
        return Err(Refusal::TooManyEvents { events: events.len(), limit: submission.max_events });
    }
    let mut translated =
        Translated { event_ids: Vec::with_capacity(events.len()), messages: Vec::new(), warnings: ingested.warnings };
    for event in &events {
        let body = to_validated_json(event).map_err(|error| Refusal::InvalidEvent {
            event_id: event.event_id,
            format: submission.format,
            reason: error.to_string(),
        })?;
        translated.event_ids.push(event.event_id);
        translated.messages.push(message(event, body, events_exchange, submission.traceparent));
    }
    Ok(translated)
}

/// The message for one validated event: routing key `{agency_kind}.{agency}.{kind}`, the event id as
/// `message_id`, and the CloudEvents 1.0 binary-mode attributes as headers (DESIGN.md §5).
fn message(event: &CrisisEvent, body: Vec<u8>, exchange: &str, traceparent: TraceParent) -> OutgoingMessage {
    let event_id = event.event_id.to_string();
    let kind = event.kind.to_string();
    let mut headers = BTreeMap::from([
        (KIND_HEADER.to_owned(), kind.clone()),
        ("cloudEvents:specversion".to_owned(), "1.0".to_owned()),
        ("cloudEvents:id".to_owned(), event_id.clone()),
        ("cloudEvents:source".to_owned(), format!("urn:concordat:agency:{}", event.source.agency)),
        ("cloudEvents:type".to_owned(), kind),
        ("cloudEvents:time".to_owned(), event.occurred_at.to_rfc3339()),
    ]);
    if let Some(episode) = event.episode.episode_id {
        headers.insert(EPISODE_HEADER.to_owned(), episode.to_string());
    }
    OutgoingMessage {
        exchange: exchange.to_owned(),
        routing_key: event.routing_key(),
        message_id: event_id,
        content_type: CONTENT_TYPE.to_owned(),
        body,
        headers,
        traceparent,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use concordat_episode::{parse_event, validate};
    use proptest::prelude::*;

    use super::*;

    const EXCHANGE: &str = "concordat.events";

    fn submission<'a>(
        agency: &'a AgencyId,
        format: Format,
        content_type: &'a str,
        payload: &'a [u8],
    ) -> Submission<'a> {
        let agency_kind = match format {
            Format::Police => AgencyKind::Police,
            Format::NhsFhir => AgencyKind::Nhs,
            Format::Vcs => AgencyKind::Vcs,
        };
        Submission {
            agency,
            agency_kind,
            format,
            content_type,
            payload,
            // After every published example, some of which are dated in the summer: an event more than a day
            // after its receipt is refused (`check_times`).
            received_at: Timestamp::parse("2027-01-01T12:00:00Z").unwrap(),
            traceparent: TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap(),
            max_events: 1000,
        }
    }

    fn files(dir: &str, extension: &str) -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == extension))
            .collect();
        files.sort();
        files
    }

    /// Every valid fixture yields schema-valid messages whose headers agree with the event they carry.
    fn check(agency: &str, format: Format, content_type: &str, path: &Path) {
        let agency = AgencyId::new(agency).unwrap();
        let payload = std::fs::read(path).unwrap();
        let submission = submission(&agency, format, content_type, &payload);
        let translated = translate(&submission, &AdapterConfigs::default(), EXCHANGE)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(!translated.messages.is_empty(), "{}", path.display());
        assert_eq!(translated, translate(&submission, &AdapterConfigs::default(), EXCHANGE).unwrap());
        assert_eq!(translated.event_ids.len(), translated.messages.len());
        for (event_id, message) in translated.event_ids.iter().zip(&translated.messages) {
            let value: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
            validate(&value).unwrap_or_else(|violations| panic!("{}: {violations:?}", path.display()));
            let event = parse_event(&message.body).unwrap();
            assert_eq!(&event.event_id, event_id);
            assert_eq!(event.source.agency, agency);
            assert_eq!(message.exchange, EXCHANGE);
            assert_eq!(message.routing_key, event.routing_key());
            assert_eq!(message.message_id, event_id.to_string());
            assert_eq!(message.content_type, CONTENT_TYPE);
            assert_eq!(message.traceparent, submission.traceparent);
            let header = |name: &str| message.headers.get(name).map(String::as_str);
            assert_eq!(header(KIND_HEADER), Some(event.kind.to_string().as_str()));
            assert_eq!(header("cloudEvents:specversion"), Some("1.0"));
            assert_eq!(header("cloudEvents:id"), Some(message.message_id.as_str()));
            assert_eq!(header("cloudEvents:source"), Some(format!("urn:concordat:agency:{agency}").as_str()));
            assert_eq!(header("cloudEvents:type"), Some(event.kind.to_string().as_str()));
            assert_eq!(header("cloudEvents:time"), Some(event.occurred_at.to_rfc3339().as_str()));
            assert_eq!(header(EPISODE_HEADER), event.episode.episode_id.map(|id| id.to_string()).as_deref());
        }
        let unique: std::collections::BTreeSet<_> = translated.event_ids.iter().collect();
        assert_eq!(unique.len(), translated.event_ids.len(), "{}: duplicate event ids", path.display());
    }

    #[test]
    fn police_examples() {
        for path in files("schemas/examples/police-incident/valid", "json") {
            let btp = path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("btp-"));
            check(if btp { "transport-police" } else { "northvale-police" }, Format::Police, "application/json", &path);
        }
    }

    #[test]
    fn vcs_examples() {
        let dir = "schemas/examples/vcs-contact/valid";
        for (extension, content_type) in [("json", "application/json"), ("csv", "text/csv; charset=utf-8")] {
            for path in files(dir, extension) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let agency = if name.starts_with("listening-line") { "listening-line" } else { "safe-haven" };
                check(agency, Format::Vcs, content_type, &path);
            }
        }
    }

    #[test]
    fn fhir_examples() {
        for path in files("adapters/nhs-fhir/tests/fixtures/valid", "json") {
            check("northvale-mh", Format::NhsFhir, "application/fhir+json", &path);
        }
    }

    #[test]
    fn a_media_type_the_format_does_not_read_is_refused_with_the_accepted_list() {
        let agency = AgencyId::new("northvale-police").unwrap();
        let refusal =
            translate(&submission(&agency, Format::Police, "text/csv", b"a,b\n"), &AdapterConfigs::default(), EXCHANGE);
        assert_eq!(
            refusal,
            Err(Refusal::Ingest(IngestError::UnsupportedContentType {
                content_type: "text/csv".to_owned(),
                expected: vec!["application/json".to_owned()],
            }))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the bytes and media type, translation refuses or yields schema-valid messages; it never panics.
        #[test]
        fn any_payload_is_refused_or_valid(
            payload in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..256),
                "\\{\"format\": *\"[a-z.0-9-]{0,24}\"(, *\"[a-z_]{1,12}\": *(\"[ -~]{0,16}\"|[0-9]{1,4}|null))*\\}"
                    .prop_map(String::into_bytes),
            ],
            format in prop_oneof![Just(Format::Police), Just(Format::Vcs), Just(Format::NhsFhir)],
            content_type in prop_oneof![
                Just("application/json"), Just("application/fhir+json"), Just("text/csv"), Just(""), Just("text/plain")
            ],
        ) {
            let agency = AgencyId::new("safe-haven").unwrap();
            if let Ok(translated) = translate(&submission(&agency, format, content_type, &payload), &AdapterConfigs::default(), EXCHANGE) {
                for message in &translated.messages {
                    let value: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
                    prop_assert!(validate(&value).is_ok());
                }
            }
        }
    }

    #[test]
    fn a_payload_over_the_event_cap_is_refused_whole() {
        let agency = AgencyId::new("safe-haven").unwrap();
        let mut csv = String::from("contact_id,service,contact_date,contact_time,consent_status,risk\n");
        for row in 0..5000 {
            csv.push_str(&format!("SH-{row},safe_haven,2026-03-01,21:40,not_sought,low\n"));
        }
        let over = submission(&agency, Format::Vcs, "text/csv", csv.as_bytes());
        assert_eq!(
            translate(&over, &AdapterConfigs::default(), EXCHANGE),
            Err(Refusal::TooManyEvents { events: 5000, limit: 1000 })
        );
        let raised = Submission { max_events: 5000, ..over };
        assert_eq!(translate(&raised, &AdapterConfigs::default(), EXCHANGE).unwrap().messages.len(), 5000);
    }
}
