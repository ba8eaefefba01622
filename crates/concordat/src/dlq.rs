//! `concordat dlq list|retry`: the dead letters of the configured broker, listed by their metadata and
//! retried to their original route. What is printed comes from headers and properties only; bodies hold
//! personal data and are never read out.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use concordat_bus::{
    DeadLetter, DeadLetterError, DeadLetterId, Filter, Selector, Stage, Topology, list_dead_letters, retry_dead_letters,
};
use serde_json::{Value, json};

use crate::Failure;
use crate::cli::{ListFormat, StageName};
use crate::config::Config;

/// The filter options of `dlq retry`; none given (with `--all`) selects every dead letter.
#[derive(Debug)]
pub struct Chosen {
    /// `--stage`.
    pub stage: Option<StageName>,
    /// `--reason`.
    pub reason: Option<String>,
    /// `--kind`.
    pub kind: Option<String>,
}

/// `concordat dlq list`: prints the dead letters as a table or a JSON array (exit 0); an unreachable
/// RabbitMQ exits 3.
///
/// # Errors
/// See above; a bad configuration or policy is [`Failure::Input`].
pub fn list(
    config_file: Option<&Path>,
    stage: Option<StageName>,
    format: ListFormat,
    env: &[(String, String)],
) -> Result<(), Failure> {
    let (config, topology) = load(config_file, env)?;
    let filter = Filter { stage: stage.map(to_stage), ..Filter::default() };
    let letters = runtime()?.block_on(list_dead_letters(&config.bus, &topology, &filter)).map_err(failure)?;
    match format {
        ListFormat::Json => {
            let array = Value::Array(letters.iter().map(to_json).collect());
            println!("{}", serde_json::to_string_pretty(&array).map_err(|error| Failure::Input(error.into()))?);
        }
        ListFormat::Text => print!("{}", table(&letters)),
    }
    Ok(())
}

/// `concordat dlq retry`: republishes the chosen dead letters and prints one line for each, `retried …`
/// or `not retried …: why`. Exit 0 when every chosen one was retried; 1 when `--id` names none, or one
/// could not be retried; 3 when RabbitMQ is unreachable.
///
/// # Errors
/// See above.
pub fn retry(
    config_file: Option<&Path>,
    id: Option<&str>,
    chosen: Chosen,
    env: &[(String, String)],
) -> Result<(), Failure> {
    let (config, topology) = load(config_file, env)?;
    let selector = match id {
        Some(text) => match DeadLetterId::parse(text) {
            Some(id) => Selector::from(id),
            None => Selector::Id { stage: None, message_id: text.to_owned() },
        },
        None => {
            Selector::Filter(Filter { stage: chosen.stage.map(to_stage), reason: chosen.reason, kind: chosen.kind })
        }
    };
    let report = runtime()?.block_on(retry_dead_letters(&config.bus, &topology, &selector)).map_err(failure)?;
    for letter in &report.retried {
        println!(
            "retried {} to {} {}",
            for_terminal(&name(letter)),
            for_terminal(show(&letter.original_exchange)),
            for_terminal(show(&letter.original_routing_key))
        );
    }
    for (letter, why) in &report.not_retried {
        println!("not retried {}: {}", for_terminal(&name(letter)), for_terminal(&describe(why)));
    }
    if let Some(text) = id
        && report.retried.is_empty()
        && report.not_retried.is_empty()
    {
        return Err(Failure::Input(anyhow!("no dead letter has the id `{text}`; `concordat dlq list` shows them")));
    }
    if !report.not_retried.is_empty() {
        return Err(Failure::Input(anyhow!(
            "{} dead letter(s) could not be retried and stay in their queue",
            report.not_retried.len()
        )));
    }
    if report.retried.is_empty() {
        println!("no dead letter matched");
    }
    Ok(())
}

/// The configuration and the production topology, as `concordat run` builds it from the policy.
fn load(config_file: Option<&Path>, env: &[(String, String)]) -> Result<(Config, Topology), Failure> {
    let (config, _) = Config::load(config_file, env).map_err(|error| Failure::Input(error.into()))?;
    let policy = crate::pure::load_policy(&config.policy)?;
    let agencies: Vec<String> = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::new(agencies).map_err(|error| Failure::Input(error.into()))?;
    Ok((config, topology))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Service)
}

fn failure(error: DeadLetterError) -> Failure {
    match error {
        DeadLetterError::Config(_) => Failure::Input(error.into()),
        DeadLetterError::Connect { .. } | DeadLetterError::Broker { .. } => Failure::Service(error.into()),
    }
}

fn to_stage(stage: StageName) -> Stage {
    match stage {
        StageName::Ingest => Stage::Ingest,
        StageName::Router => Stage::Router,
        StageName::Deliver => Stage::Deliver,
    }
}

/// `stage:message_id`, or the stage and a note when the message has no id.
pub(crate) fn name(letter: &DeadLetter) -> String {
    letter.id().map_or_else(|| format!("{}:(no message id)", letter.stage), |id| id.to_string())
}

/// `text` with every control character escaped (`\u{1b}`), so that a message id, routing key or reason that
/// an AMQP sender chose cannot move the cursor, recolour or retitle the operator's terminal, or break a line.
pub(crate) fn for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() {
            out.extend(character.escape_default());
        } else {
            out.push(character);
        }
    }
    out
}

fn show(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

fn rfc3339(seconds: u64) -> Option<String> {
    let seconds = i64::try_from(seconds).ok()?;
    chrono::DateTime::from_timestamp(seconds, 0).map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub(crate) fn to_json(letter: &DeadLetter) -> Value {
    json!({
        "id": letter.id().map(|id| id.to_string()),
        "stage": letter.stage.as_str(),
        "message_id": letter.message_id,
        "kind": letter.kind,
        "reason": letter.reason,
        "original_exchange": letter.original_exchange,
        "original_routing_key": letter.original_routing_key,
        "delivery_count": letter.delivery_count,
        "content_type": letter.content_type,
        "body_bytes": letter.body_bytes,
        "dead_lettered_at": letter.dead_lettered_at.and_then(rfc3339),
    })
}

/// An aligned table, one dead letter a line, the reason last since it is the longest.
fn table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let header = ["STAGE", "MESSAGE ID", "KIND", "ORIGINAL ROUTE", "COUNT", "DEAD-LETTERED", "REASON"];
    let mut rows: Vec<[String; 7]> = vec![header.map(str::to_owned)];
    for letter in letters {
        rows.push(
            [
                letter.stage.to_string(),
                letter.message_id.clone().unwrap_or_else(|| "-".to_owned()),
                letter.kind.clone().unwrap_or_else(|| "-".to_owned()),
                format!("{} {}", show(&letter.original_exchange), show(&letter.original_routing_key)),
                letter.delivery_count.map_or_else(|| "-".to_owned(), |count| count.to_string()),
                letter.dead_lettered_at.and_then(rfc3339).unwrap_or_else(|| "-".to_owned()),
                letter.reason.clone(),
            ]
            .map(|cell| for_terminal(&cell)),
        );
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (at, (cell, width)) in row.iter().zip(widths).enumerate() {
            if at + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An error's message and its causes on one line, `message: cause: cause`.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_shows_no_body() {
        let letter = DeadLetter {
            stage: Stage::Ingest,
            message_id: Some("m-1".to_owned()),
            reason: "police refused the payload: /person/nhs_number".to_owned(),
            original_exchange: "concordat.ingest".to_owned(),
            original_routing_key: "northvale-police".to_owned(),
            delivery_count: Some(1),
            kind: None,
            content_type: Some("application/json".to_owned()),
            body_bytes: 812,
            dead_lettered_at: Some(1_700_000_000),
        };
        let shown = table(std::slice::from_ref(&letter));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2, "{shown}");
        assert!(lines[0].starts_with("STAGE   MESSAGE ID  KIND  ORIGINAL ROUTE"), "{shown}");
        assert!(lines[1].contains("concordat.ingest northvale-police"), "{shown}");
        assert!(lines[1].contains("2023-11-14T22:13:20Z"), "{shown}");
        assert_eq!(to_json(&letter)["id"], "ingest:m-1");
        assert_eq!(table(&[]), "no dead letters\n");
    }

    #[test]
    fn control_characters_in_a_dead_letter_are_shown_escaped() {
        let letter = DeadLetter {
            stage: Stage::Ingest,
            message_id: Some("m-\u{1b}[2J\u{1b}]0;owned\u{7}".to_owned()),
            reason: "refused\nFAKE LINE".to_owned(),
            original_exchange: "concordat.ingest".to_owned(),
            original_routing_key: "north\rvale".to_owned(),
            delivery_count: None,
            kind: None,
            content_type: None,
            body_bytes: 0,
            dead_lettered_at: None,
        };
        let shown = table(std::slice::from_ref(&letter));
        assert!(!shown.chars().any(|character| character.is_control() && character != '\n'), "{shown:?}");
        assert_eq!(shown.lines().count(), 2, "{shown}");
        assert!(shown.contains("m-\\u{1b}[2J\\u{1b}]0;owned\\u{7}"), "{shown}");
        assert!(shown.contains("refused\\nFAKE LINE"), "{shown}");
    }
}
