//! The pure commands: `translate`, `render` and `policy check|explain|render`. None touches the broker or a
//! database, so an integrator can try payloads and a governance lead can read a policy on any machine.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use chrono::Utc;
use concordat_episode::{
    AgencyId, AgencyKind, CrisisEvent, IngestContext, IngestError, RenderContext, Timestamp, derived_id, parse_event,
};
use concordat_formats::{AdapterConfigs, Format};
use concordat_policy::{EpisodeContext, EpisodeState, Relation};

use crate::Failure;
use crate::cli::{AdapterName, DocumentFormat, PolicyCommand, RelationName, StateName};

impl AdapterName {
    /// The sample area's agency that speaks this format, used when `--agency` or `--to` is not given.
    fn sample_agency(self) -> (&'static str, AgencyKind) {
        match self {
            Self::NhsFhir => ("northvale-mh", AgencyKind::Nhs),
            Self::Police => ("northvale-police", AgencyKind::Police),
            Self::Vcs => ("safe-haven", AgencyKind::Vcs),
        }
    }

    fn default_content_type(self, file: &Path) -> &'static str {
        let csv = file.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
        match self {
            Self::Vcs if csv => "text/csv",
            Self::NhsFhir => "application/fhir+json",
            Self::Police | Self::Vcs => "application/json",
        }
    }

    fn agency_kind(self) -> AgencyKind {
        self.sample_agency().1
    }

    fn format(self) -> Format {
        match self {
            Self::NhsFhir => Format::NhsFhir,
            Self::Police => Format::Police,
            Self::Vcs => Format::Vcs,
        }
    }
}

/// The bytes of `file`, or of standard input for `-`.
fn read_input(file: &Path) -> Result<Vec<u8>, Failure> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("reading standard input").map_err(Failure::Input)?;
        return Ok(bytes);
    }
    std::fs::read(file).with_context(|| format!("reading {}", file.display())).map_err(Failure::Input)
}

fn timestamp(value: Option<&str>, what: &str) -> Result<Timestamp, Failure> {
    match value {
        None => Ok(Timestamp::from(Utc::now())),
        Some(text) => Timestamp::parse(text)
            .map_err(|_| Failure::Input(anyhow!("--{what} `{text}` is not an RFC 3339 timestamp with an offset"))),
    }
}

fn agency(value: Option<&str>, adapter: AdapterName) -> Result<AgencyId, Failure> {
    let id = value.unwrap_or(adapter.sample_agency().0);
    AgencyId::new(id).map_err(|error| Failure::Input(anyhow!("agency `{id}`: {error}")))
}

/// `concordat translate`.
pub fn translate(
    adapter: AdapterName,
    agency_id: Option<&str>,
    content_type: Option<&str>,
    received_at: Option<&str>,
    file: &Path,
) -> Result<(), Failure> {
    let payload = read_input(file)?;
    let cx = IngestContext {
        agency: agency(agency_id, adapter)?,
        agency_kind: adapter.agency_kind(),
        content_type: content_type
            .map_or_else(|| adapter.default_content_type(file).to_owned(), str::to_ascii_lowercase),
        received_at: timestamp(received_at, "received-at")?,
    };
    let ingested = adapter
        .format()
        .ingest(&payload, &cx, &AdapterConfigs::default())
        .map_err(|error| Failure::Input(ingest_failure(file, &error)))?;
    // What the adapter left out goes to stderr, so stdout stays the JSON array a script reads.
    for warning in &ingested.warnings {
        eprintln!("{}: {warning}", file.display());
    }
    print_json(&ingested.events)
}

fn ingest_failure(file: &Path, error: &IngestError) -> anyhow::Error {
    match error {
        IngestError::Invalid(problems) => {
            let lines: Vec<String> = problems.iter().map(|problem| format!("{}: {problem}", file.display())).collect();
            anyhow!("{} problem(s):\n{}", problems.len(), lines.join("\n"))
        }
        other => anyhow!("{}: {other}", file.display()),
    }
}

/// `concordat render`.
pub fn render(
    adapter: AdapterName,
    to: Option<&str>,
    purpose: Option<&str>,
    lawful_basis: Option<&str>,
    sent_at: Option<&str>,
    file: &Path,
) -> Result<(), Failure> {
    let view = read_event(file)?;
    let recipient = agency(to, adapter)?;
    let cx = RenderContext {
        decision_id: derived_id("render-command", &[&view.event_id.to_string(), recipient.as_str()]),
        recipient,
        recipient_kind: adapter.agency_kind(),
        source_name: view.source.agency.to_string(),
        source_ods: None,
        recipient_ods: None,
        episode_id: view.episode.episode_id,
        episode_refs: view.episode.refs.clone(),
        purpose: purpose.unwrap_or("not stated: rendered by `concordat render`, no sharing policy applied").to_owned(),
        lawful_basis: lawful_basis.unwrap_or("not stated: no sharing policy applied").to_owned(),
        sent_at: timestamp(sent_at, "sent-at")?,
    };
    let rendered =
        adapter.format().render(&view, &cx).map_err(|error| Failure::Input(anyhow!("{}: {error}", file.display())))?;
    write_stdout(&rendered.body)?;
    write_stdout(b"\n")
}

fn read_event(file: &Path) -> Result<CrisisEvent, Failure> {
    let bytes = read_input(file)?;
    parse_event(&bytes).map_err(|error| Failure::Input(anyhow!("{}: {error}", file.display())))
}

/// `concordat policy …`.
pub fn policy(command: PolicyCommand) -> Result<(), Failure> {
    match command {
        PolicyCommand::Check { file } => {
            let policy = load_policy(&file)?;
            eprintln!(
                "{}: ok ({} agencies, {} agreements, version {})",
                file.display(),
                policy.agencies().len(),
                policy.agreements().len(),
                policy.version()
            );
            Ok(())
        }
        PolicyCommand::Explain { policy, event, to, relation, episode_state } => {
            let policy = load_policy(&policy)?;
            let event = read_event(&event)?;
            let recipient =
                AgencyId::new(to.as_str()).map_err(|error| Failure::Input(anyhow!("--to `{to}`: {error}")))?;
            let context = EpisodeContext {
                state: match episode_state {
                    StateName::Open => EpisodeState::Open,
                    StateName::Closed => EpisodeState::Closed,
                },
                recipient_relations: relation
                    .iter()
                    .map(|relation| match relation {
                        RelationName::Originator => Relation::Originator,
                        RelationName::Contributor => Relation::Contributor,
                        RelationName::Responder => Relation::Responder,
                    })
                    .collect(),
            };
            write_stdout(concordat_policy::explain(&policy, &event, &context, &recipient).as_bytes())
        }
        PolicyCommand::Render { file, format } => {
            let policy = load_policy(&file)?;
            let document = match format {
                DocumentFormat::Md => concordat_policy::render_markdown(&policy),
                DocumentFormat::Html => concordat_policy::render_html(&policy),
            };
            write_stdout(document.as_bytes())
        }
    }
}

/// Loads and checks a policy file, every problem listed with its line.
pub fn load_policy(path: &Path) -> Result<concordat_policy::Policy, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the sharing policy {}", path.display()))
        .map_err(Failure::Input)?;
    concordat_policy::load(path, &text).map_err(|errors| {
        Failure::Input(anyhow!(
            "the sharing policy has {} problem(s):\n{}",
            errors.len(),
            concordat_policy::problems_report(&errors).trim_end()
        ))
    })
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).context("writing JSON").map_err(Failure::Input)?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

/// Writes to standard output; a closed pipe (`| head`) is a normal end, not an error.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output").map_err(Failure::Input),
    }
}
