//! The command line: `concordat <command>`, parsed by clap. Exit codes are DESIGN.md §6's: 0 success,
//! 1 invalid input or a failed check, 2 usage error (clap's own), 3 a service is unreachable.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};

/// Concordat: shares crisis-care information between police, NHS and voluntary-sector partners, exactly as
/// their information sharing agreements allow.
#[derive(Debug, Parser)]
#[command(name = "concordat", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr: human-readable text, or one JSON object per line for a log shipper.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CONCORDAT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Concordat's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: connect to RabbitMQ, declare the topology, serve the admin listener.
    Run {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Translate an agency's native payload into canonical events, printed as a JSON array. Pure: no
    /// broker, no database.
    Translate {
        /// The adapter that reads the payload.
        #[arg(long, value_enum)]
        adapter: AdapterName,
        /// The sending agency (default: the sample area's agency for the adapter).
        #[arg(long)]
        agency: Option<String>,
        /// The payload's media type (default: `text/csv` for a `.csv` file, else the adapter's JSON type).
        #[arg(long)]
        content_type: Option<String>,
        /// When the payload counts as received, RFC 3339 (default: now).
        #[arg(long)]
        received_at: Option<String>,
        /// The payload file, or `-` for standard input.
        file: PathBuf,
    },
    /// Render a canonical event, as a recipient sees it after redaction, into the message that agency
    /// receives. Pure: no broker, no database.
    Render {
        /// The recipient's adapter.
        #[arg(long, value_enum)]
        adapter: AdapterName,
        /// The recipient agency (default: the sample area's agency for the adapter).
        #[arg(long)]
        to: Option<String>,
        /// The purpose to state (default: says no policy was applied).
        #[arg(long)]
        purpose: Option<String>,
        /// The lawful basis to state (default: says no policy was applied).
        #[arg(long)]
        lawful_basis: Option<String>,
        /// When the message counts as sent, RFC 3339 (default: now).
        #[arg(long)]
        sent_at: Option<String>,
        /// The canonical event file, or `-` for standard input.
        file: PathBuf,
    },
    /// Check, explain or render a sharing policy.
    Policy {
        /// What to do.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Measure the whole pipeline on this machine's RabbitMQ against a raw RabbitMQ baseline, and print
    /// the figures with a last `result …` line. Uses its own queues and a fresh store; run it from the
    /// repository root (it posts as the sample area's agencies with their development tokens).
    Bench {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Synthetic multi-agency episodes posted as fast as possible (throughput).
        #[arg(long, default_value_t = 300)]
        episodes: usize,
        /// Events per second offered in the latency phase.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Episodes posted in the latency phase.
        #[arg(long, default_value_t = 250)]
        latency_episodes: usize,
        /// Concurrent HTTP clients in the throughput phase (and publishers in the baseline).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// A store to use instead of a fresh SQLite file, e.g. an empty PostgreSQL database.
        #[arg(long)]
        store_url: Option<String>,
    },
    /// The pipeline half of `concordat bench`, run by it as a child process so that the pipeline's memory
    /// is measured apart from the benchmark's clients.
    #[command(hide = true)]
    BenchPipeline {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The prefix of the benchmark's queues and exchanges.
        #[arg(long)]
        prefix: String,
        /// The benchmark's store.
        #[arg(long)]
        store_url: String,
    },
    /// List and retry the dead letters: messages a stage could not process, held in
    /// `concordat.dead.{stage}` with their reason.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print the impact report for a period: per pair of partners, the episodes, the events shared and
    /// withheld (by reason) and the failed deliveries; per agency that started episodes, how many had
    /// outcome feedback and how soon after the crisis. Reads the store named by the configuration. No
    /// personal data: ids, agencies, reasons, counts and durations only.
    Report {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The period's first day, inclusive: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time (default:
        /// from the first record).
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// The period's end, exclusive: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time (default: up to
        /// the latest record). `--from 2026-04-01 --to 2026-07-01` is the second quarter of 2026.
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// Markdown for a partnership meeting, CSV for a spreadsheet, or JSON.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
    },
    /// Manage the agencies' RabbitMQ users: least privilege, one user per agency of the policy.
    Agencies {
        /// What to do.
        #[command(subcommand)]
        command: AgenciesCommand,
    },
    /// Work with the tamper-evident audit log in the store.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `concordat agencies …`.
#[derive(Debug, Subcommand)]
pub enum AgenciesCommand {
    /// Create one RabbitMQ user per agency of the policy (`agency-{id}`), which may read only its inbox,
    /// publish only to `concordat.ingest` with its own id as routing key, and configure nothing; through
    /// the management API, or as a definitions file. Idempotent: an existing user keeps its password. A new
    /// password is printed once and written (0600) to the secrets directory as the agency's AMQP URL.
    Provision {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where each agency's `agency-{id}.amqp` file (its AMQP URL with its credentials) is written.
        #[arg(long, value_name = "DIR")]
        secrets_dir: PathBuf,
        /// Replace this agency's password (and close its open connections); leave the others alone.
        #[arg(long, value_name = "AGENCY")]
        rotate: Option<String>,
        /// Write a definitions file for `rabbitmqctl import_definitions` instead of calling the management
        /// API.
        #[arg(long, value_name = "FILE")]
        emit_definitions: Option<PathBuf>,
    },
}

/// `concordat audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit chain from its first record and report the first broken link (exit 1), or how many
    /// records verified and the head hash (exit 0). Reads the store named by the configuration.
    Verify {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `concordat dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead letters by their metadata: stage, message id, kind, reason, original route, delivery
    /// count. Never prints a body. Every message stays in its queue.
    List {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this stage's dead letters.
        #[arg(long, value_enum)]
        stage: Option<StageName>,
        /// A table for people or a JSON array for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Republish dead letters to the exchange and routing key they were first published on, with their
    /// message id, so consumers recognise them. A dead letter leaves its queue only once RabbitMQ confirmed
    /// the copy. Exits 1 when `--id` names no dead letter or a selected one could not be retried.
    #[command(group(ArgGroup::new("which").required(true).multiple(true).args(["id", "stage", "reason", "kind", "all"])))]
    Retry {
        /// The configuration file (default: ./concordat.toml when present, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The dead letter with this message id, written `STAGE:MESSAGE_ID` or just `MESSAGE_ID` (any stage).
        #[arg(long, conflicts_with_all = ["stage", "reason", "kind", "all"])]
        id: Option<String>,
        /// Those of this stage.
        #[arg(long, value_enum)]
        stage: Option<StageName>,
        /// Those whose reason contains this text.
        #[arg(long)]
        reason: Option<String>,
        /// Those of this event kind (`concordat-kind`).
        #[arg(long)]
        kind: Option<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with_all = ["stage", "reason", "kind"])]
        all: bool,
    },
}

/// A stage of the pipeline that dead-letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageName {
    /// Native payloads from `concordat.ingest`.
    Ingest,
    /// Canonical events at the router.
    Router,
    /// Deliveries to agencies' inboxes.
    Deliver,
}

/// How `dlq list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// An aligned table.
    Text,
    /// A JSON array of objects.
    Json,
}

/// The native formats Concordat translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdapterName {
    /// FHIR R4 (UK Core), for NHS systems.
    NhsFhir,
    /// The police-incident JSON format.
    Police,
    /// The VCS contact format, JSON or CSV.
    Vcs,
}

/// `concordat policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load and check a policy file; print every problem with its line (exit 1), or nothing (exit 0).
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Explain what an agency would receive of an event under a policy, field by field.
    Explain {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// The canonical event file.
        #[arg(long)]
        event: PathBuf,
        /// The recipient agency.
        #[arg(long)]
        to: String,
        /// The recipient's relations to the episode (repeat or comma-separate).
        #[arg(long, value_enum, value_delimiter = ',')]
        relation: Vec<RelationName>,
        /// The episode's state.
        #[arg(long, value_enum, default_value_t = StateName::Open)]
        episode_state: StateName,
    },
    /// Render a policy as a readable information sharing agreement.
    Render {
        /// The policy file.
        file: PathBuf,
        /// Markdown or HTML.
        #[arg(long, value_enum, default_value_t = DocumentFormat::Md)]
        format: DocumentFormat,
    },
}

/// A recipient's relation to an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RelationName {
    /// Its event opened the episode.
    Originator,
    /// It has sent an event in the episode.
    Contributor,
    /// It responded to the crisis or was referred to.
    Responder,
}

/// An episode's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateName {
    /// In progress.
    Open,
    /// Closed.
    Closed,
}

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocumentFormat {
    /// Markdown.
    Md,
    /// HTML.
    Html,
}

/// How `concordat report` prints the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A readable document (Markdown).
    Md,
    /// One row per pair of partners and per originator (RFC 4180).
    Csv,
    /// The report's data as it is.
    Json,
}
