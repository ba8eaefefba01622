//! Traces: with `otlp_endpoint` set, one s136 story is followed span by span in a local OTLP receiver: one
//! trace per event from the agency's request through RabbitMQ, the router and the outbox to each inbox, the
//! parent links unbroken across the queue hops, and no personal data in any span.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use concordat_e2e::fixtures::{EPISODE_SYSTEM, FHIR, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::otlp::{Collector, ExportedSpan};
use concordat_e2e::{Area, Received, StoreKind, find_identifier, json_fixture, set_nhs_number, string_leaves};
use serde_json::json;

/// The police system's own trace: the broker must go on with it.
const CALLER_TRACE: &str = "5e1f0c2a9b8d47e6a1c3f5e7d9b0a2c4";
const CALLER_SPAN: &str = "a1b2c3d4e5f60718";
/// The trace of a police system that publishes over AMQP.
const AMQP_TRACE: &str = "7d3e9f1a2b4c6d8e0f1a3b5c7d9e1f2a";

/// The parts of a `traceparent` header: trace id and parent span id.
fn trace_and_parent(received: &Received) -> (String, String) {
    let header = received.headers.get("traceparent").expect("every delivery carries traceparent");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Waits until `ready` holds of what the receiver has, and returns it.
async fn spans_until(collector: &Collector, ready: impl Fn(&[ExportedSpan]) -> bool) -> Vec<ExportedSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans();
        if ready(&spans) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans did not arrive within 30 s; received {}: {:#?}",
            spans.len(),
            spans.iter().map(|span| (&span.name, &span.attributes)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The one span of `trace` named `name` whose attribute `key` is `value`.
fn one<'a>(spans: &'a [ExportedSpan], trace: &str, name: &str, key: &str, value: &str) -> &'a ExportedSpan {
    let found: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == trace && span.name == name && span.attribute(key) == Some(value))
        .collect();
    assert_eq!(found.len(), 1, "one `{name}` span with {key}={value} in trace {trace}: {found:#?}");
    found[0]
}

fn has(spans: &[ExportedSpan], trace: &str, name: &str, key: &str, value: &str) -> bool {
    spans.iter().any(|span| span.trace_id == trace && span.name == name && span.attribute(key) == Some(value))
}

#[tokio::test]
async fn one_s136_story_is_one_trace_per_event_across_every_hop_with_no_personal_data() {
    let collector = Collector::start().await.unwrap();
    let endpoint = collector.endpoint();
    let env = [
        ("CONCORDAT_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut area = Area::start_with(StoreKind::Sqlite, &env).await.unwrap();

    // The police system traces its own work and sends its context with the detention.
    let police = json_fixture(POLICE_S136);
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let answer = area
        .post_with_headers(
            "northvale-police",
            &area.token("northvale-police"),
            "application/json",
            serde_json::to_vec(&police).unwrap(),
            &[("traceparent", traceparent.as_str())],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.text);
    // The incident is two events (the detention and the conveyance), each with its trace going on from
    // the one request.
    let accepted = answer.event_ids();
    assert_eq!(accepted.len(), 2, "{}", answer.text);

    let notification = area.next("northvale-mh").await.unwrap();
    assert_eq!(notification.kind(), "police.s136_detention");
    let episode_id = find_identifier(&notification.json().unwrap(), EPISODE_SYSTEM).unwrap();
    let (notified_trace, notified_parent) = trace_and_parent(&notification);
    assert_eq!(notified_trace, CALLER_TRACE, "the trust's message goes on with the police system's trace");
    area.drain("northvale-mh", Duration::from_secs(1)).await.unwrap();

    // A force that integrates over AMQP sends its trace context as a message header: the broker goes on
    // with it too.
    let mut over_amqp = police.clone();
    over_amqp["incident_number"] = json!("NV-TRACES-AMQP-1");
    let amqp_traceparent = format!("00-{AMQP_TRACE}-{CALLER_SPAN}-01");
    area.publish_ingest_with_headers(
        "northvale-police",
        "traces-amqp-1",
        "application/json",
        &serde_json::to_vec(&over_amqp).unwrap(),
        &[("traceparent", amqp_traceparent.as_str())],
    )
    .await
    .unwrap();
    let from_amqp = area.next("northvale-mh").await.unwrap();
    assert_eq!(trace_and_parent(&from_amqp).0, AMQP_TRACE, "the AMQP publisher's trace reaches the trust");
    area.drain("northvale-mh", Duration::from_secs(1)).await.unwrap();

    // The trust posts the outcome with no trace context of its own: its trace starts at the broker.
    let mut outcome = json_fixture(OUTCOME_NFA);
    set_nhs_number(&mut outcome, police["person"]["nhs_number"].as_str().unwrap());
    outcome["identifier"] = json!({ "system": EPISODE_SYSTEM, "value": episode_id });
    let outcome_ids = area.accepted("northvale-mh", FHIR, serde_json::to_vec(&outcome).unwrap()).await.unwrap();
    let feedback = loop {
        let received = area.next("northvale-police").await.unwrap();
        if received.kind() == "feedback.outcome" {
            break received;
        }
    };
    let (feedback_trace, feedback_parent) = trace_and_parent(&feedback);
    assert_ne!(feedback_trace, CALLER_TRACE, "the outcome is an event of its own, with a trace of its own");

    let spans = spans_until(&collector, |spans| {
        has(spans, CALLER_TRACE, "deliver", "message_id", &notification.message_id)
            && has(spans, &feedback_trace, "deliver", "message_id", &feedback.message_id)
            && has(spans, CALLER_TRACE, "request", "agency", "northvale-police")
            && has(spans, &feedback_trace, "request", "agency", "northvale-mh")
            && has(spans, AMQP_TRACE, "deliver", "message_id", &from_amqp.message_id)
    })
    .await;
    assert!(collector.refused().is_empty(), "the exporter spoke OTLP JSON: {:?}", collector.refused());

    // The detention's trace, hop by hop: the police request, the event published, routed (across
    // concordat.events and concordat.router), decided for the trust, delivered from the outbox, and the
    // message in the trust's inbox names the delivery as its parent.
    let request = one(&spans, CALLER_TRACE, "request", "agency", "northvale-police");
    assert_eq!(request.parent_span_id, CALLER_SPAN, "the request continues the caller's span");
    let detention = spans
        .iter()
        .find(|span| span.name == "route" && span.attribute("kind") == Some("police.s136_detention"))
        .and_then(|span| span.attribute("event_id"))
        .expect("the detention was routed")
        .to_owned();
    assert!(accepted.contains(&detention), "{accepted:?}");
    let publish = one(&spans, CALLER_TRACE, "publish", "event_id", &detention);
    assert_eq!(publish.parent_span_id, request.span_id);
    assert_eq!(publish.attribute("kind"), Some("police.s136_detention"));
    assert_eq!(publish.attribute("agency"), Some("northvale-police"));
    let route = one(&spans, CALLER_TRACE, "route", "event_id", &detention);
    assert_eq!(route.parent_span_id, publish.span_id, "the router's span is the published event's child");
    assert_eq!(route.attribute("kind"), Some("police.s136_detention"));
    assert_eq!(route.attribute("agency"), Some("northvale-police"));
    assert_eq!(route.attribute("outcome"), Some("routed"));
    assert_eq!(route.attribute("episode"), Some(episode_id.as_str()));
    let deliver = one(&spans, CALLER_TRACE, "deliver", "message_id", &notification.message_id);
    assert_eq!(deliver.attribute("recipient"), Some("northvale-mh"));
    assert_eq!(deliver.attribute("outcome"), Some("confirmed"));
    let decide = spans.iter().find(|span| span.span_id == deliver.parent_span_id).expect("the decision is exported");
    assert_eq!(decide.name, "decide", "the relay goes on from the decision, across the outbox");
    assert_eq!(decide.trace_id, CALLER_TRACE);
    assert_eq!(decide.parent_span_id, route.span_id);
    assert_eq!(decide.attribute("recipient"), Some("northvale-mh"));
    assert_eq!(decide.attribute("decision"), Some("permit"));
    assert_eq!(decide.attribute("event_id"), Some(detention.as_str()));
    assert_eq!(notified_parent, deliver.span_id, "the inbox message names the delivery span as its parent");
    // Every other agency the policy weighed has its decision in the same trace, denials included.
    assert!(
        spans.iter().filter(|span| span.parent_span_id == route.span_id && span.name == "decide").count() >= 2,
        "a decision per agency weighed"
    );

    // The outcome's trace ends in the detaining force's inbox with the feedback.
    let outcome_route = spans
        .iter()
        .find(|span| {
            span.trace_id == feedback_trace
                && span.name == "route"
                && outcome_ids.iter().any(|id| span.attribute("event_id") == Some(id.as_str()))
                && span.attribute("kind") == Some("nhs.assessment_outcome")
        })
        .expect("the outcome is routed in its own trace");
    let to_police = one(&spans, &feedback_trace, "deliver", "message_id", &feedback.message_id);
    assert_eq!(to_police.attribute("recipient"), Some("northvale-police"));
    assert_eq!(to_police.attribute("kind"), Some("feedback.outcome"));
    assert_eq!(feedback_parent, to_police.span_id);
    let feedback_decision = spans
        .iter()
        .find(|span| span.span_id == to_police.parent_span_id)
        .expect("the feedback's decision is exported");
    assert_eq!(feedback_decision.name, "decide");
    assert_eq!(feedback_decision.parent_span_id, outcome_route.span_id);

    // Over AMQP: the ingest span continues the publisher's, and its events go on from there as over HTTP.
    let ingest = one(&spans, AMQP_TRACE, "ingest", "message_id", "traces-amqp-1");
    assert_eq!(ingest.parent_span_id, CALLER_SPAN);
    let published: Vec<&ExportedSpan> =
        spans.iter().filter(|span| span.trace_id == AMQP_TRACE && span.name == "publish").collect();
    assert_eq!(published.len(), 2, "the detention and the conveyance: {published:#?}");
    assert!(published.iter().all(|span| span.parent_span_id == ingest.span_id));
    for publish in &published {
        let routed = spans.iter().find(|span| span.name == "route" && span.parent_span_id == publish.span_id);
        assert!(routed.is_some_and(|route| route.trace_id == AMQP_TRACE), "{publish:?} was routed in its trace");
    }

    // No span, attribute or span event holds personal data from the inputs: names, the NHS number, the
    // birth date, the officers' free text.
    let mut personal = Vec::new();
    personal.extend(string_leaves(&police["person"]["name"]));
    personal.push(police["person"]["nhs_number"].as_str().unwrap().to_owned());
    personal.push(police["person"]["birth_date"].as_str().unwrap().to_owned());
    let notes = police["notes"].as_str().unwrap();
    personal.push(notes[..notes.len().min(30)].to_owned());
    for entry in outcome["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        if resource["resourceType"] == "Patient" {
            personal.extend(string_leaves(&resource["name"]));
            personal.push(resource["birthDate"].as_str().unwrap().to_owned());
            personal.push(find_identifier(resource, "https://fhir.nhs.uk/Id/nhs-number").unwrap());
        }
    }
    personal.retain(|text| text.len() >= 3 && text != "usual" && text != "official");
    assert!(personal.len() >= 6, "the inputs' personal data were found: {personal:?}");
    for span in &spans {
        for text in &span.texts {
            for secret in &personal {
                assert!(!text.contains(secret.as_str()), "span `{}` holds `{secret}`: {text}", span.name);
            }
        }
    }
}
