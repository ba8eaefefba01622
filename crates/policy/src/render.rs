//! The policy as a readable information sharing agreement, in Markdown or HTML: parties, then each
//! agreement (who shares what with whom, for which purpose, under which law, on which conditions), the
//! always-shared envelope, the version hash and a signature block.
//!
//! Both formats come from one document model, so they say the same thing. This module writes text; it reads
//! and writes no files.

use std::fmt::Write as _;

use concordat_episode::{AgencyKind, ConsentStatus, EventKind};

use crate::model::{Agreement, Conditions, FromParty, Policy, Relation, ToParty};

/// One block of the document.
enum Block {
    Heading(u8, String),
    Paragraph(String),
    /// A labelled list: each item a label and its lines.
    Facts(Vec<(String, Vec<String>)>),
    Table(Vec<String>, Vec<Vec<String>>),
}

/// Renders the agreement document as Markdown.
pub fn render_markdown(policy: &Policy) -> String {
    let mut out = String::new();
    for block in document(policy) {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {}\n", "#".repeat(usize::from(level)), md_escape(&text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{}\n", md_escape(&text));
            }
            Block::Facts(items) => {
                for (label, lines) in items {
                    match lines.as_slice() {
                        [single] => {
                            let _ = writeln!(out, "- **{}:** {}", md_escape(&label), md_escape(single));
                        }
                        many => {
                            let _ = writeln!(out, "- **{}:**", md_escape(&label));
                            for line in many {
                                let _ = writeln!(out, "  - {}", md_escape(line));
                            }
                        }
                    }
                }
                out.push('\n');
            }
            Block::Table(header, rows) => {
                let cells = |row: &[String]| row.iter().map(|cell| md_cell(cell)).collect::<Vec<_>>().join(" | ");
                let _ = writeln!(out, "| {} |", cells(&header));
                let _ = writeln!(out, "|{}|", vec![" --- "; header.len()].join("|"));
                for row in rows {
                    let _ = writeln!(out, "| {} |", cells(&row));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// Renders the agreement document as a standalone HTML page, every text escaped.
pub fn render_html(policy: &Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\
         body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3em .6em;text-align:left}}\
         </style>\n</head>\n<body>",
        html_escape(policy.title())
    );
    for block in document(policy) {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", html_escape(&text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "<p>{}</p>", html_escape(&text));
            }
            Block::Facts(items) => {
                out.push_str("<dl>\n");
                for (label, lines) in items {
                    let _ = writeln!(out, "<dt>{}</dt>", html_escape(&label));
                    for line in lines {
                        let _ = writeln!(out, "<dd>{}</dd>", html_escape(&line));
                    }
                }
                out.push_str("</dl>\n");
            }
            Block::Table(header, rows) => {
                out.push_str("<table>\n<tr>");
                for cell in header {
                    let _ = write!(out, "<th>{}</th>", html_escape(&cell));
                }
                out.push_str("</tr>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for cell in row {
                        let _ = write!(out, "<td>{}</td>", html_escape(&cell));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn document(policy: &Policy) -> Vec<Block> {
    let mut blocks = vec![Block::Heading(1, policy.title().to_owned())];
    let mut facts = vec![
        ("Area".to_owned(), vec![policy.area().to_owned()]),
        ("Agreement id".to_owned(), vec![policy.id().to_owned()]),
    ];
    if let Some(date) = policy.effective_from() {
        facts.push(("Effective from".to_owned(), vec![date.to_owned()]));
    }
    if let Some(date) = policy.review_by() {
        facts.push(("Review by".to_owned(), vec![date.to_owned()]));
    }
    facts.push(("Version (SHA-256 of the policy file)".to_owned(), vec![policy.version().as_str().to_owned()]));
    blocks.push(Block::Facts(facts));
    if let Some(description) = policy.description() {
        blocks.push(Block::Paragraph(description.trim().to_owned()));
    }

    blocks.push(Block::Heading(2, "How this agreement works".to_owned()));
    for paragraph in [
        "Nothing is shared unless an agreement below permits it (default deny). Each agreement permits one flow: \
         events of the kinds listed, from the senders named, to the recipients named, for the stated purpose, \
         under the stated lawful basis, and only while its conditions hold.",
        "When several agreements permit the same delivery, the recipient receives the fields of all of them, and \
         the decision record names every agreement relied on.",
        "Every delivery carries an envelope so that the recipient can file and match it: the event id and kind, \
         when it happened and was recorded, the sending agency and its reference, the episode id and its \
         correlating references (such as police incident numbers), the consent status, and how the message was \
         made. Everything else is withheld unless an agreement lists it. Personal and clinical details (anything \
         about the person, summaries, notes and clinical codes) are shared only when an agreement lists them one by \
         one.",
        "Consent is a condition, not the lawful basis: where an agreement requires consent, an event whose \
         consent was refused, not sought or not recorded is not shared under it. A risk condition is met only by a \
         recorded risk level at or above the threshold. An age condition is met only when the date of birth is \
         known; age is counted in whole years on the day of the event.",
        "Every decision, permit or deny, is recorded with the agreements considered, the fields shared and \
         withheld, and the version of this document.",
    ] {
        blocks.push(Block::Paragraph(paragraph.to_owned()));
    }

    blocks.push(Block::Heading(2, "Parties".to_owned()));
    let rows = policy
        .agencies()
        .iter()
        .map(|agency| {
            vec![
                agency.name.clone(),
                kind_name(agency.kind).to_owned(),
                agency.id.as_str().to_owned(),
                agency.ods_code.as_ref().map(|code| code.as_str().to_owned()).unwrap_or_default(),
                agency.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    blocks.push(Block::Table(
        ["Organisation", "Kind", "Concordat id", "ODS code", "Role"].map(str::to_owned).to_vec(),
        rows,
    ));

    blocks.push(Block::Heading(2, "Agreements".to_owned()));
    if policy.agreements().is_empty() {
        blocks.push(Block::Paragraph("There are no agreements: nothing is shared.".to_owned()));
    }
    for (index, agreement) in policy.agreements().iter().enumerate() {
        blocks.push(Block::Heading(3, format!("{}. {} ({})", index + 1, agreement.title, agreement.id)));
        if let Some(description) = &agreement.description {
            blocks.push(Block::Paragraph(description.trim().to_owned()));
        }
        blocks.push(Block::Facts(agreement_facts(policy, agreement)));
    }

    blocks.push(Block::Heading(2, "Signatures".to_owned()));
    blocks.push(Block::Paragraph(format!(
        "By signing, each party agrees to share and receive information as set out above, under the version of this \
         agreement identified by SHA-256 {}.",
        policy.version().as_str()
    )));
    let rows = policy
        .agencies()
        .iter()
        .map(|agency| vec![agency.name.clone(), String::new(), String::new(), String::new(), String::new()])
        .collect();
    blocks.push(Block::Table(
        ["Organisation", "Name", "Role (e.g. Caldicott Guardian, SIRO, DPO)", "Signature", "Date"]
            .map(str::to_owned)
            .to_vec(),
        rows,
    ));
    blocks
}

fn agreement_facts(policy: &Policy, agreement: &Agreement) -> Vec<(String, Vec<String>)> {
    let name_of = |id: &concordat_episode::AgencyId| {
        policy.agency(id).map_or_else(|| id.as_str().to_owned(), |agency| format!("{} ({})", agency.name, id))
    };
    let from = if agreement.from.agencies.is_empty() {
        describe_from(&agreement.from)
    } else {
        let names: Vec<String> = agreement.from.agencies.iter().map(name_of).collect();
        let mut text = names.join(", ");
        if !agreement.from.kinds.is_empty() {
            text = format!(
                "{text}, when {}",
                describe_from(&FromParty { agencies: Vec::new(), kinds: agreement.from.kinds.clone() })
            );
        }
        text
    };
    let to = if agreement.to.agencies.is_empty() {
        describe_to(&agreement.to)
    } else {
        let names: Vec<String> = agreement.to.agencies.iter().map(name_of).collect();
        let rest = ToParty {
            agencies: Vec::new(),
            kinds: agreement.to.kinds.clone(),
            relations: agreement.to.relations.clone(),
        };
        if rest.kinds.is_empty() && rest.relations.is_empty() {
            names.join(", ")
        } else {
            format!("{}, when it is {}", names.join(", "), describe_to(&rest))
        }
    };
    let kinds = agreement.kinds.iter().map(|kind| format!("{} ({})", kind_description(*kind), kind.as_str())).collect();
    let mut fields: Vec<String> =
        agreement.fields.iter().map(|field| format!("{} ({})", field.label(), field.pointer())).collect();
    if fields.is_empty() {
        fields.push("nothing beyond the envelope".to_owned());
    }
    vec![
        ("From".to_owned(), vec![from]),
        ("To".to_owned(), vec![to]),
        ("Events".to_owned(), kinds),
        ("Purpose".to_owned(), vec![agreement.purpose.clone()]),
        ("Lawful basis".to_owned(), agreement.lawful_basis.parts()),
        ("Conditions".to_owned(), vec![capitalise(&describe_conditions(&agreement.conditions))]),
        ("Fields shared in addition to the envelope".to_owned(), fields),
    ]
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn kind_name(kind: AgencyKind) -> &'static str {
    match kind {
        AgencyKind::Police => "police",
        AgencyKind::Nhs => "NHS",
        AgencyKind::Vcs => "voluntary and community sector",
        AgencyKind::Ambulance => "ambulance service",
        AgencyKind::LocalAuthority => "local authority",
    }
}

fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Who a `from` party covers, in words: "any police agency", "northvale-police".
pub(crate) fn describe_from(from: &FromParty) -> String {
    let mut parts = Vec::new();
    if !from.agencies.is_empty() {
        parts.push(or_list(&from.agencies.iter().map(|id| id.as_str().to_owned()).collect::<Vec<_>>()));
    }
    if !from.kinds.is_empty() {
        let kinds: Vec<String> = from.kinds.iter().map(|kind| kind_name(*kind).to_owned()).collect();
        parts.push(format!("any {} agency", or_list(&kinds)));
    }
    parts.join(" and ")
}

/// Who a `to` party covers, in words: "any police agency responding in the episode".
pub(crate) fn describe_to(to: &ToParty) -> String {
    let mut parts = Vec::new();
    if !to.agencies.is_empty() {
        parts.push(or_list(&to.agencies.iter().map(|id| id.as_str().to_owned()).collect::<Vec<_>>()));
    }
    let relations: Vec<String> = to.relations.iter().map(|relation| relation_words(*relation).to_owned()).collect();
    if !to.kinds.is_empty() {
        let kinds: Vec<String> = to.kinds.iter().map(|kind| kind_name(*kind).to_owned()).collect();
        parts.push(format!("any {} agency", or_list(&kinds)));
    } else if !relations.is_empty() && to.agencies.is_empty() {
        parts.push("any party".to_owned());
    }
    let mut text = parts.join(" and ");
    if !relations.is_empty() {
        text = format!("{text} that {}", or_list(&relations));
    }
    text
}

fn relation_words(relation: Relation) -> &'static str {
    match relation {
        Relation::Originator => "opened the episode",
        Relation::Contributor => "has sent an event in the episode",
        Relation::Responder => "is responding in the episode (sent a during-crisis event, or was referred to)",
    }
}

/// The conditions in words: "consent is given, and the risk level is high or above".
pub(crate) fn describe_conditions(conditions: &Conditions) -> String {
    if conditions.is_empty() {
        return "no further conditions".to_owned();
    }
    let mut parts = Vec::new();
    if let Some(state) = conditions.episode_state {
        parts.push(format!("the episode is {}", state.as_str()));
    }
    if let Some(statuses) = &conditions.consent {
        let names: Vec<String> = statuses.iter().map(|status| consent_words(*status).to_owned()).collect();
        parts.push(format!("consent to sharing is {}", or_list(&names)));
    }
    if let Some(level) = conditions.risk_at_least {
        parts.push(format!("the recorded risk level is {level} or above"));
    }
    if let Some(band) = conditions.age {
        parts.push(format!("the person is {band} on the day of the event (date of birth known)"));
    }
    if !conditions.any_of.is_empty() {
        let alternatives: Vec<String> =
            conditions.any_of.iter().map(|alternative| format!("({})", describe_conditions(alternative))).collect();
        parts.push(format!("at least one of: {}", alternatives.join(" or ")));
    }
    parts.join(", and ")
}

fn consent_words(status: ConsentStatus) -> &'static str {
    match status {
        ConsentStatus::Given => "given",
        ConsentStatus::Refused => "refused",
        ConsentStatus::NotSought => "not sought",
        ConsentStatus::LacksCapacity => "not obtainable because the person lacks capacity",
        ConsentStatus::Unknown => "not recorded",
    }
}

/// An event kind in words.
pub fn kind_description(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PoliceConcernForWelfare => "police concern for welfare",
        EventKind::NhsCrisisPlan => "NHS crisis plan",
        EventKind::NhsRiskFlag => "NHS risk flag",
        EventKind::VcsContact => "voluntary-sector contact (Safe Haven visit, helpline call)",
        EventKind::PoliceS136Detention => "police detention under s136 Mental Health Act",
        EventKind::PoliceS135Warrant => "police execution of a s135 warrant",
        EventKind::PoliceConveyance => "conveyance to a place of safety",
        EventKind::NhsPlaceOfSafetyArrival => "arrival at a place of safety",
        EventKind::NhsReferral => "NHS referral",
        EventKind::VcsReferral => "voluntary-sector referral",
        EventKind::NhsAssessmentOutcome => "outcome of a Mental Health Act assessment",
        EventKind::NhsDischarge => "NHS discharge",
        EventKind::VcsFollowUp => "voluntary-sector follow-up",
        EventKind::PoliceOutcome => "police incident outcome",
        EventKind::FeedbackOutcome => "outcome feedback",
        EventKind::ContextPreCrisis => "pre-crisis context held by partners",
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Escapes the characters Markdown would read as markup, so policy text renders as written.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn md_cell(text: &str) -> String {
    md_escape(text).replace('\n', " ")
}
