//! Event ids follow a contact's meaning, not the bytes it was sent as: a contact re-sent reformatted (other
//! whitespace, key order, quoting, line endings, or beside other contacts) derives the same ids, so the
//! router delivers nothing new; a changed contact derives new ones.

#![allow(clippy::unwrap_used, reason = "test code: an unwrap that fails is the test failing")]

mod common;

use concordat_episode::{CrisisEvent, EventId};
use concordat_vcs::VcsConfig;

fn ids(payload: &str, content_type: &str) -> Vec<EventId> {
    let cx = common::ingest_context("safe-haven", content_type);
    let events: Vec<CrisisEvent> = concordat_vcs::ingest(payload.as_bytes(), &cx, &VcsConfig::default()).unwrap();
    events.iter().map(|event| event.event_id).collect()
}

const CONTACT: &str = r#"{"contact_id": "SH-9", "service": "safe_haven", "contact_date": "2026-03-01",
  "contact_time": "21:40", "consent_status": "not_sought", "risk": "low"}"#;

#[test]
fn a_reformatted_json_contact_keeps_its_ids() {
    let reformatted = "{\r\n\t\"risk\":\"low\",\"consent_status\":\"not_sought\",\n\
                       \"contact_time\":\"21:40\",\"contact_date\":\"2026-03-01\",\"service\":\"safe_haven\",\
                       \"contact_id\":\"SH-9\"}";
    assert_eq!(ids(CONTACT, "application/json"), ids(reformatted, "application/json"));
    // The same contact beside another one, in an array, still keeps its id.
    let batch = format!("[{CONTACT}, {}]", CONTACT.replace("SH-9", "SH-10"));
    assert_eq!(ids(CONTACT, "application/json")[0], ids(&batch, "application/json")[0]);
}

#[test]
fn a_changed_json_contact_gets_new_ids() {
    let changed = CONTACT.replace(r#""risk": "low""#, r#""risk": "moderate""#);
    assert_ne!(ids(CONTACT, "application/json"), ids(&changed, "application/json"));
}

#[test]
fn a_reexported_csv_row_keeps_its_id_and_a_changed_one_does_not() {
    let sent = "contact_id,service,contact_date,contact_time,consent_status,risk\n\
                SH-9,safe_haven,2026-03-01,21:40,not_sought,low\n";
    let reexported = "\u{feff}contact_id,service,contact_date,contact_time,consent_status,risk\r\n\
                      \"SH-9\",safe_haven, 2026-03-01 ,21:40,not_sought,\"low\"\r\n\
                      SH-10,safe_haven,2026-03-01,22:00,not_sought,low\r\n";
    assert_eq!(ids(sent, "text/csv")[0], ids(reexported, "text/csv")[0]);
    let changed = sent.replace(",low", ",moderate");
    assert_ne!(ids(sent, "text/csv"), ids(&changed, "text/csv"));
}
