//! The `concordat` binary: the command line, configuration and wiring. It is the only crate that builds the
//! runtime; the components it wires live in their own crates.

mod admin;
mod admin_api;
mod agencies;
mod bench;
mod cli;
mod config;
mod dashboard;
mod dlq;
mod ops;
mod pure;
mod report;
mod run;
mod traces;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{AgenciesCommand, AuditCommand, Cli, Command, DlqCommand, LogFormat};

/// How a command failed, which decides the exit code (DESIGN.md §6).
#[derive(Debug)]
pub enum Failure {
    /// Invalid input or a failed check: exit 1.
    Input(anyhow::Error),
    /// RabbitMQ or the database is unreachable: exit 3.
    Service(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Input(_) => ExitCode::from(1),
            Self::Service(_) => ExitCode::from(3),
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Self::Input(error) | Self::Service(error) => error,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    // The benchmark prints its own figures; the pipeline's per-event lines would drown them.
    let default_level =
        if matches!(cli.command, Command::Bench { .. } | Command::BenchPipeline { .. }) { "warn" } else { "info" };
    // `run` reads its configuration before logging starts, once: the span exporter it may name is part of
    // the subscriber. A configuration that does not load is reported by `run` itself.
    let run_config = match &cli.command {
        Command::Run { config } => Some(config::Config::load(config.as_deref(), &env)),
        _ => None,
    };
    let otlp_endpoint = run_config
        .as_ref()
        .and_then(|loaded| loaded.as_ref().ok())
        .and_then(|(config, _)| config.otlp_endpoint.as_deref())
        .filter(|endpoint| !endpoint.trim().is_empty());
    let traces = match init_logging(cli.log_format, default_level, otlp_endpoint) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("concordat: {error:#}");
            return ExitCode::from(1);
        }
    };
    let result = try_main(cli, &env, run_config);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Reported once, here, with its chain of causes on one line.
            eprintln!("concordat: {:#}", failure.error());
            failure.exit_code()
        }
    }
}

/// A configuration as [`config::Config::load`] returns it.
type Loaded = Result<(config::Config, Vec<String>), config::ConfigError>;

/// Runs the command; `run_config` is `run`'s configuration when `main` has loaded it already.
fn try_main(cli: Cli, env: &[(String, String)], run_config: Option<Loaded>) -> Result<(), Failure> {
    match cli.command {
        Command::Run { config } => {
            run::run(run_config.unwrap_or_else(|| config::Config::load(config.as_deref(), env)), env)
        }
        Command::Translate { adapter, agency, content_type, received_at, file } => {
            pure::translate(adapter, agency.as_deref(), content_type.as_deref(), received_at.as_deref(), &file)
        }
        Command::Render { adapter, to, purpose, lawful_basis, sent_at, file } => {
            pure::render(adapter, to.as_deref(), purpose.as_deref(), lawful_basis.as_deref(), sent_at.as_deref(), &file)
        }
        Command::Policy { command } => pure::policy(command),
        Command::Bench { config, episodes, rate, latency_episodes, concurrency, store_url } => {
            let args = bench::BenchArgs { config, episodes, rate, latency_episodes, concurrency, store_url };
            bench::bench(&args, env)
        }
        Command::BenchPipeline { config, prefix, store_url } => {
            bench::pipeline(config.as_deref(), &prefix, &store_url, env)
        }
        Command::Dlq { command: DlqCommand::List { config, stage, format } } => {
            dlq::list(config.as_deref(), stage, format, env)
        }
        Command::Dlq { command: DlqCommand::Retry { config, id, stage, reason, kind, all: _ } } => {
            dlq::retry(config.as_deref(), id.as_deref(), dlq::Chosen { stage, reason, kind }, env)
        }
        Command::Audit { command: AuditCommand::Verify { config } } => ops::audit_verify(config.as_deref(), env),
        Command::Agencies { command: AgenciesCommand::Provision { config, secrets_dir, rotate, emit_definitions } } => {
            agencies::provision(&agencies::ProvisionArgs { config, secrets_dir, rotate, emit_definitions }, env)
        }
        Command::Report { config, from, to, format } => {
            report::report(config.as_deref(), from.as_deref(), to.as_deref(), format, env)
        }
    }
}

/// Logs to stderr, as text or JSON lines, at `CONCORDAT_LOG` (default `default_level`); and, given an OTLP
/// endpoint, exports Concordat's spans there whatever the log level.
fn init_logging(
    format: LogFormat,
    default_level: &str,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Option<traces::Traces>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("CONCORDAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
        // lapin's own warning about a returned message prints the whole message, body and all, and a body
        // holds personal data; whatever the operator asks for, lapin speaks only of errors.
        .add_directive(LAPIN_ONLY_ERRORS.parse().expect("a valid directive"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let (export, traces) = match otlp_endpoint {
        Some(endpoint) => {
            let (layer, traces) = traces::layer(endpoint)?;
            (Some(layer), Some(traces))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(logs).with(export).init();
    Ok(traces)
}

const LAPIN_ONLY_ERRORS: &str = "lapin=error";
