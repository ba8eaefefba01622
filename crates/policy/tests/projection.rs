//! The projection keeps exactly what an allow-list names, field by field, and explain and render say so.
// Helpers outside `#[test]` functions unwrap too: a panic is a test failure here.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use concordat_episode::to_validated_json;
use concordat_policy::{Field, decide, explain, project, render_html, render_markdown};
use support::{agency, full_event, leaves, open, sample};

fn policy_naming(pointers: &[&str]) -> concordat_policy::Policy {
    let fields = pointers.join(", ");
    let text = format!(
        "format: concordat.sharing-policy.v1\nid: one\ntitle: One field\narea: Testshire\nagencies:\n\
         \x20 - {{ id: northvale-police, kind: police, name: Police }}\n\
         \x20 - {{ id: northvale-mh, kind: nhs, name: Trust }}\n\
         agreements:\n\
         \x20 - id: one\n    title: one\n    from: {{ kind: police }}\n    to: {{ kind: nhs }}\n\
         \x20   kinds: [police.s136_detention]\n    purpose: p\n\
         \x20   lawful_basis: {{ regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }}\n\
         \x20   fields: [{fields}]\n"
    );
    concordat_policy::load(Path::new("one.yaml"), &text)
        .unwrap_or_else(|errors| panic!("{pointers:?}: {}", concordat_policy::problems_report(&errors)))
}

/// The fields an allow-list may name on its own: not the envelope, not a parent of sensitive fields, and
/// with the required fields of its enclosing objects added.
fn nameable() -> Vec<Vec<&'static str>> {
    let required = |field: Field| -> Vec<&'static str> {
        match field.parent().map(Field::pointer) {
            Some("/risk") if field != Field::RiskLevel => vec!["/risk/level"],
            Some("/risk/source_scale") => vec!["/risk/level"],
            _ => Vec::new(),
        }
    };
    Field::ALL
        .iter()
        .filter(|field| !field.is_envelope())
        .filter(|field| !matches!(field.pointer(), "/subject" | "/details" | "/consent"))
        .map(|field| {
            let mut list = vec![field.pointer()];
            list.extend(required(*field));
            if matches!(
                *field,
                Field::SubjectEthnicityDisplay | Field::SubjectEthnicityCode | Field::SubjectEthnicitySystem
            ) {
                list = vec![field.pointer(), "/subject/ethnicity/system", "/subject/ethnicity/code"];
                list.dedup();
            }
            if matches!(*field, Field::RiskSourceScaleScheme | Field::RiskSourceScaleValue) {
                list = vec![field.pointer(), "/risk/source_scale/scheme", "/risk/source_scale/value", "/risk/level"];
                list.dedup();
            }
            if matches!(*field, Field::DetailsPlaceOfSafetyName | Field::DetailsPlaceOfSafetyOdsCode) {
                list.push("/details/place_of_safety/kind");
            }
            if *field == Field::DetailsConveyanceAmbulanceNotUsedReason {
                list.push("/details/conveyance/mode");
            }
            list.sort_unstable();
            list.dedup();
            list
        })
        .collect()
}

#[test]
fn each_field_projects_exactly_itself() {
    let event = full_event();
    let full = leaves(&serde_json::to_value(&event).unwrap());
    let envelope: Vec<&str> = Field::ALL.iter().filter(|f| f.is_envelope()).map(|f| f.pointer()).collect();
    let within = |leaf: &str, list: &[&str]| list.iter().any(|p| leaf == *p || leaf.starts_with(&format!("{p}/")));
    for pointers in nameable() {
        let policy = policy_naming(&pointers);
        let decision = decide(&policy, &event, &open(&[]), &agency("northvale-mh"));
        assert!(decision.is_permit(), "{pointers:?}");
        let view = project(&event, &decision);
        to_validated_json(&view).unwrap_or_else(|error| panic!("{pointers:?}: {error}"));
        let kept = leaves(&serde_json::to_value(&view).unwrap());
        let expected: Vec<&String> =
            full.iter().filter(|leaf| within(leaf, &envelope) || within(leaf, &pointers)).collect();
        assert_eq!(kept.iter().collect::<Vec<_>>(), expected, "{pointers:?}");
    }
}

#[test]
fn explain_accounts_for_every_agreement_and_field() {
    let policy = sample();
    let event = full_event();
    let text = explain(policy, &event, &open(&[]), &agency("northvale-mh"));
    assert!(text.starts_with("Decision "), "{text}");
    assert!(text.contains(": PERMIT"));
    for agreement in policy.agreements() {
        assert!(text.contains(&format!("  {} (line {}): ", agreement.id, agreement.line)), "{}", agreement.id);
    }
    assert!(text.contains("s136-notify-place-of-safety (line"));
    assert!(text.contains("/subject/nhs_number"));
    assert!(text.lines().any(|line| line.contains("/details/notes") && line.contains("withheld: sensitive")));
    assert!(
        text.lines()
            .any(|line| line.contains("/subject/nhs_number") && line.contains("shared: s136-notify-place-of-safety"))
    );
    assert!(text.lines().any(|line| line.starts_with("  /source ") && line.contains("always (envelope)")));
    // No personal data in the account.
    for secret in ["McTestface", "9990000018", "1990-06-15", "Summary text", "Clinical notes"] {
        assert!(!text.contains(secret), "{secret}");
    }
    let denied = explain(policy, &event, &open(&[]), &agency("listening-line"));
    assert!(denied.contains("DENY (no agreement covers"), "{denied}");
    assert!(denied.contains("not applicable: the recipient is not"));
}

#[test]
fn rendered_agreements_name_parties_purposes_bases_and_fields() {
    let policy = sample();
    let markdown = render_markdown(policy);
    let html = render_html(policy);
    for agency in policy.agencies() {
        assert!(markdown.contains(&agency.name), "{}", agency.name);
        assert!(html.contains(&concordat_policy::html_escape(&agency.name)));
    }
    for agreement in policy.agreements() {
        assert!(markdown.contains(&agreement.purpose), "{}", agreement.id);
    }
    assert!(markdown.contains("UK GDPR Art. 9(2)(h) health or social care"));
    assert!(markdown.contains("DPA 2018 Sch. 1 Pt. 2 para. 18 safeguarding of children and individuals at risk"));
    assert!(markdown.contains("NHS number (/subject/nhs\\_number)"));
    assert!(markdown.contains(policy.version().as_str()));
    assert!(markdown.contains("## Signatures"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("British Transport Police, Northvale sub-division"));
}

#[test]
fn html_is_escaped() {
    let text = "format: concordat.sharing-policy.v1\nid: x\ntitle: \"<script>alert('x')</script> & co\"\narea: A\n\
                agencies:\n  - { id: a, kind: nhs, name: \"<b>A</b>\" }\nagreements: []\n";
    let policy = concordat_policy::load(Path::new("x.yaml"), text).unwrap();
    let html = render_html(&policy);
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<b>A</b>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
    let markdown = render_markdown(&policy);
    assert!(markdown.contains("\\<script\\>"));
}
