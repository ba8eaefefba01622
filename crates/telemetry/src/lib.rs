//! The process's metrics, rendered in the Prometheus text exposition format (version 0.0.4) for the admin
//! listener's `/metrics`.
//!
//! One registry per process, reached through free functions, so that the gateway, the router, the relay and
//! the bus can count without a handle threaded through every constructor. Every metric is declared in
//! [`METRICS`] with its type and help text, so the exposition documents itself and a misspelt name is a
//! test failure, not a silent new series.
//!
//! Labels carry agency ids, event kinds, verdicts, reasons and stages: bounded sets from the policy and the
//! schema, never anything from a message body, so no personal data reaches a metric.
//!
//! [`trace`] carries the trace context of Concordat's spans across RabbitMQ.

pub mod trace;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Set to the latest value.
    Gauge,
    /// Observations counted into buckets of seconds.
    Histogram,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Every metric Concordat exports: name, type, help.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "concordat_events_ingested_total",
        Kind::Counter,
        "Canonical events accepted from an agency and confirmed by RabbitMQ, by agency and kind.",
    ),
    ("concordat_ingest_refused_total", Kind::Counter, "Ingest requests or messages refused, by HTTP status."),
    ("concordat_decisions_total", Kind::Counter, "Sharing decisions committed, by recipient and verdict."),
    ("concordat_denials_total", Kind::Counter, "Sharing decisions that withheld an event, by reason."),
    ("concordat_deliveries_sent_total", Kind::Counter, "Deliveries RabbitMQ confirmed to an agency's inbox."),
    ("concordat_dead_letters_total", Kind::Counter, "Messages dead-lettered, by stage."),
    (
        "concordat_retention_purged_total",
        Kind::Counter,
        "Records purged when their retention period ended, by kind of record (dead letters included).",
    ),
    (
        "concordat_joins_refused_total",
        Kind::Counter,
        "Events that named an episode their source had no right to, handled as if they had not, by source agency.",
    ),
    (
        "concordat_records_stored_total",
        Kind::Counter,
        "Decisions and audit records committed by the router (kept for good), by the source agency of the event \
         that caused them and by record (decision, audit).",
    ),
    ("concordat_router_batch_seconds", Kind::Histogram, "Time to route and commit one batch of events in the store."),
    (
        "concordat_delivery_seconds",
        Kind::Histogram,
        "Time from an event's receipt by the gateway to RabbitMQ confirming its delivery to an inbox.",
    ),
    (
        "concordat_queue_messages",
        Kind::Gauge,
        "Messages ready in each of the topology's queues (router input, inboxes, dead letters), read every 15 s.",
    ),
    ("concordat_queue_consumers", Kind::Gauge, "Consumers reading each of the topology's queues, read every 15 s."),
    ("concordat_feedback_outstanding", Kind::Gauge, "Open episodes whose originator has had no outcome feedback yet."),
    (
        "concordat_feedback_overdue",
        Kind::Gauge,
        "Open episodes whose originator's outcome feedback is past its deadline.",
    ),
];

/// Bucket upper bounds for histograms, in seconds.
pub const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Series {
    Value(f64),
    Histogram { counts: Vec<u64>, sum: f64, count: u64 },
}

static REGISTRY: LazyLock<Mutex<BTreeMap<(&'static str, Labels), Series>>> = LazyLock::new(Mutex::default);

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(name, value)| (*name, (*value).to_owned())).collect()
}

fn update(name: &'static str, pairs: &[(&'static str, &str)], change: impl FnOnce(&mut Series)) {
    let fresh = || match kind_of(name) {
        Some(Kind::Histogram) => Series::Histogram { counts: vec![0; BUCKETS.len()], sum: 0.0, count: 0 },
        _ => Series::Value(0.0),
    };
    // A poisoned lock only means another thread panicked mid-update; the counts are still usable.
    let mut registry = REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    change(registry.entry((name, labels(pairs))).or_insert_with(fresh));
}

fn kind_of(name: &str) -> Option<Kind> {
    METRICS.iter().find(|(known, _, _)| *known == name).map(|(_, kind, _)| *kind)
}

/// Adds `n` to a counter.
pub fn add(name: &'static str, pairs: &[(&'static str, &str)], n: u64) {
    update(name, pairs, |series| {
        if let Series::Value(value) = series {
            *value += n as f64;
        }
    });
}

/// Adds one to a counter.
pub fn inc(name: &'static str, pairs: &[(&'static str, &str)]) {
    add(name, pairs, 1);
}

/// Sets a gauge.
pub fn set(name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
    update(name, pairs, |series| {
        if let Series::Value(current) = series {
            *current = value;
        }
    });
}

/// Records one observation, in seconds, in a histogram.
pub fn observe(name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
    update(name, pairs, |series| {
        if let Series::Histogram { counts, sum, count } = series {
            for (bound, bucket) in BUCKETS.iter().zip(counts.iter_mut()) {
                if seconds <= *bound {
                    *bucket += 1;
                }
            }
            *sum += seconds;
            *count += 1;
        }
    });
}

/// A counter's or gauge's current value (0 when never touched): for tests and the dashboard.
#[must_use]
pub fn value(name: &'static str, pairs: &[(&'static str, &str)]) -> f64 {
    let registry = REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match registry.get(&(name, labels(pairs))) {
        Some(Series::Value(value)) => *value,
        Some(Series::Histogram { count, .. }) => *count as f64,
        None => 0.0,
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(labels: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(name, value)| format!("{name}=\"{}\"", escape(value))).collect();
    if let Some((name, value)) = extra {
        parts.push(format!("{name}=\"{value}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// The whole registry in the Prometheus text format: every declared metric with its `HELP` and `TYPE`,
/// then its series.
#[must_use]
pub fn render() -> String {
    let registry = REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
        for ((series_name, labels), series) in registry.iter() {
            if series_name != name {
                continue;
            }
            match series {
                Series::Value(value) => {
                    let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*value));
                }
                Series::Histogram { counts, sum, count } => {
                    for (bound, bucket) in BUCKETS.iter().zip(counts) {
                        let le = Some(("le", number(*bound)));
                        let _ = writeln!(out, "{name}_bucket{} {bucket}", label_text(labels, le));
                    }
                    let _ =
                        writeln!(out, "{name}_bucket{} {count}", label_text(labels, Some(("le", "+Inf".to_owned()))));
                    let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), number(*sum));
                    let _ = writeln!(out, "{name}_count{} {count}", label_text(labels, None));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        inc("concordat_events_ingested_total", &[("agency", "northvale-police"), ("kind", "police.s136_detention")]);
        add("concordat_events_ingested_total", &[("agency", "northvale-police"), ("kind", "police.s136_detention")], 2);
        set("concordat_feedback_overdue", &[], 4.0);
        observe("concordat_router_batch_seconds", &[], 0.02);
        observe("concordat_router_batch_seconds", &[], 3.0);
        let text = render();
        assert!(text.contains("# TYPE concordat_events_ingested_total counter\n"), "{text}");
        assert!(
            text.contains(
                "concordat_events_ingested_total{agency=\"northvale-police\",kind=\"police.s136_detention\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("concordat_feedback_overdue 4\n"), "{text}");
        assert!(text.contains("concordat_router_batch_seconds_bucket{le=\"0.01\"} 0\n"), "{text}");
        assert!(text.contains("concordat_router_batch_seconds_bucket{le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("concordat_router_batch_seconds_bucket{le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("concordat_router_batch_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("concordat_router_batch_seconds_count 2\n"), "{text}");
        assert!(text.contains("concordat_router_batch_seconds_sum 3.02\n"), "{text}");
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_default();
            assert!(series.starts_with("concordat_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        inc("concordat_denials_total", &[("reason", "a \"quoted\\ reason\nwith a newline")]);
        let text = render();
        assert!(text.contains(r#"concordat_denials_total{reason="a \"quoted\\ reason\nwith a newline"} 1"#), "{text}");
    }

    #[test]
    fn every_metric_is_declared_once_with_the_prometheus_naming() {
        for (index, (name, kind, help)) in METRICS.iter().enumerate() {
            assert!(name.starts_with("concordat_") && !help.is_empty(), "{name}");
            assert_eq!(
                *kind == Kind::Counter,
                name.ends_with("_total"),
                "{name}: counters and only they end in _total"
            );
            assert!(METRICS[index + 1..].iter().all(|(other, _, _)| other != name), "{name} twice");
        }
    }
}
