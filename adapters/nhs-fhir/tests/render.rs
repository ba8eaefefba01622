//! Rendering: what an NHS trust receives for partner events, pre-crisis context and outcome feedback. Each case is
//! a canonical view under `fixtures/render/`, checked by one function: the Bundle parses back through `fhir-sdk`,
//! is a message with the MessageHeader first, carries the correlation identifiers, renders the same bytes twice,
//! holds nothing that the view does not, and matches its snapshot.
// Helpers outside `#[test]` functions are test code too: a failed unwrap is a failed test or bench.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use concordat_episode::{
    AgencyId, AgencyKind, CrisisEvent, EpisodeId, Identifier, NonEmptyString, OdsCode, RenderContext, Timestamp,
};
use concordat_nhs_fhir::render;
use fhir_sdk::r4b::resources::{Bundle, Resource};
use serde_json::Value;
use uuid::Uuid;

fn context(view: &CrisisEvent) -> RenderContext {
    let source_name = match view.source.agency.as_str() {
        "northvale-police" => "Northvale Police",
        "northvale-acute" => "Northvale Hospitals NHS Trust",
        "safe-haven" => "Northvale Safe Haven",
        "listening-line" => "Northvale Listening Line",
        other => panic!("no name for {other}"),
    };
    RenderContext {
        recipient: AgencyId::new("northvale-mh").unwrap(),
        recipient_kind: AgencyKind::Nhs,
        source_name: source_name.to_owned(),
        // The acute trust has an ODS code in the sample policy; police and VCS services have none.
        source_ods: (view.source.agency.as_str() == "northvale-acute").then(|| OdsCode::new("RX5").unwrap()),
        recipient_ods: Some(OdsCode::new("RX4").unwrap()),
        episode_id: Some(EpisodeId(Uuid::parse_str("5b0f3a52-6a3e-4d6c-9a51-0d2f4f1c7e10").unwrap())),
        episode_refs: vec![Identifier {
            system: NonEmptyString::new("urn:concordat:police-incident:northvale-police").unwrap(),
            value: NonEmptyString::new("NP-20260301-0457").unwrap(),
        }],
        decision_id: Uuid::parse_str("0e5d7c1a-3b7e-4f0e-9d55-6f1e2a9b4c21").unwrap(),
        purpose: "Safe handover of a person detained under s136".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e), Art. 9(2)(h); DPA 2018 Sch. 1 Pt 1 para 2".to_owned(),
        sent_at: Timestamp::parse("2026-03-02T04:05:00Z").unwrap(),
    }
}

fn views() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

fn check(path: &Path) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let view: CrisisEvent = concordat_episode::parse_event(&std::fs::read(path).unwrap()).unwrap();
    let cx = context(&view);
    let rendered = render(&view, &cx).unwrap();
    assert_eq!(rendered.content_type, "application/fhir+json");
    assert_eq!(render(&view, &cx).unwrap(), rendered, "{name}: rendering must be deterministic");

    let bundle: Bundle = serde_json::from_slice(&rendered.body).unwrap();
    assert_eq!(bundle.r#type.as_ref(), "message", "{name}");
    let resources: Vec<&Resource> = bundle.entry.iter().flatten().filter_map(|entry| entry.resource.as_ref()).collect();
    assert!(matches!(resources.first(), Some(Resource::MessageHeader(_))), "{name}: MessageHeader first");
    assert!(matches!(resources.get(1), Some(Resource::Organization(_))), "{name}: source Organization second");
    let has_patient = resources.iter().any(|resource| matches!(resource, Resource::Patient(_)));
    let subject_in_view = serde_json::to_value(&view.subject).unwrap().as_object().is_some_and(|s| !s.is_empty());
    assert_eq!(has_patient, subject_in_view, "{name}: a Patient only when the view has subject fields");

    let json: Value = serde_json::from_slice(&rendered.body).unwrap();
    let main = &json["entry"].as_array().unwrap().last().unwrap()["resource"];
    let identifiers = main["identifier"].as_array().unwrap();
    let has = |system: &str, value: &str| identifiers.iter().any(|id| id["system"] == system && id["value"] == value);
    assert!(has("urn:concordat:episode", "5b0f3a52-6a3e-4d6c-9a51-0d2f4f1c7e10"), "{name}: episode id");
    assert!(has("urn:concordat:police-incident:northvale-police", "NP-20260301-0457"), "{name}: episode ref");
    assert!(has("urn:concordat:event", &view.event_id.to_string()), "{name}: event id");
    let header = &json["entry"][0]["resource"];
    assert_eq!(header["eventCoding"]["code"], view.kind.as_str(), "{name}");
    // NHS systems know organisations by ODS code: the receiver always has one here, the sender when it is a trust.
    let receiver = &header["destination"][0]["receiver"]["identifier"];
    assert_eq!(receiver["system"], "https://fhir.nhs.uk/Id/ods-organization-code", "{name}: receiver by ODS code");
    assert_eq!(receiver["value"], "RX4", "{name}");
    let sender_ids = json["entry"][1]["resource"]["identifier"].as_array().unwrap();
    let sender_ods = sender_ids.iter().any(|id| id["system"] == "https://fhir.nhs.uk/Id/ods-organization-code");
    assert_eq!(sender_ods, cx.source_ods.is_some(), "{name}: the sender's ODS code exactly when the policy gives one");
    // The event's own time is in a structured element, not only in text.
    if main["resourceType"] == "Communication" {
        assert_eq!(main["sent"], view.occurred_at.to_rfc3339(), "{name}: Communication.sent is the event's time");
    }
    assert_eq!(header["focus"][0]["reference"], json["entry"].as_array().unwrap().last().unwrap()["fullUrl"]);

    // Nothing withheld from the view may appear: a withheld subject leaves no personal data anywhere.
    let text = String::from_utf8(rendered.body.clone()).unwrap();
    if view.subject.nhs_number.is_none() {
        assert!(!text.contains("https://fhir.nhs.uk/Id/nhs-number"), "{name}");
    }
    if view.details.notes.is_none() {
        assert!(!text.contains("Notes:"), "{name}");
    }
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(format!("render-{name}"), json);
    });
}

#[test]
fn rendered_views() {
    let files = views();
    assert!(files.len() >= 5);
    for path in files {
        check(&path);
    }
}
