//! The audit chain: append-only records of what the broker decided and did, each hash-linked to the last.
//!
//! A record holds ids, agencies, kinds, JSON Pointers and digests, never personal data, so purging
//! personal data on schedule leaves every link intact (DESIGN.md invariant 7). Record `n`'s hash is
//!
//! ```text
//! hash_n = hex(SHA-256(hash_{n-1} "\n" n "\n" at "\n" record))
//! ```
//!
//! where `hash_0` is 64 zeros, `n` is decimal, `at` is RFC 3339 UTC with six fractional digits and `Z`,
//! and `record` is the record's canonical JSON (object keys sorted, no whitespace), exactly as stored.
//! This module holds the record types and the pure hashing and checking; the SQL lives in `tx.rs`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use concordat_episode::{AgencyId, EpisodeId, EventId, EventKind, Sha256Hex};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{CloseReason, DecisionId, DeliveryId, PurgeCutoffs, PurgeReport, Relation, Verdict};

/// The hash before the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record. The variants are the audit vocabulary; each holds only ids, agencies, kinds, JSON
/// Pointers, digests and counts, so none can carry personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditRecord {
    /// An event was recorded in an episode.
    EventRecorded {
        /// The event.
        event_id: EventId,
        /// Its episode.
        episode_id: EpisodeId,
        /// Its kind.
        event_kind: EventKind,
        /// Its source agency.
        source: AgencyId,
        /// The digest of the native payload it came from.
        payload_sha256: Sha256Hex,
    },
    /// An event that belongs to no episode yet was held for its subject (pre-crisis context).
    EventHeld {
        /// The event.
        event_id: EventId,
        /// Its kind.
        event_kind: EventKind,
        /// Its source agency.
        source: AgencyId,
        /// The digest of the native payload it came from.
        payload_sha256: Sha256Hex,
    },
    /// An episode was opened.
    EpisodeOpened {
        /// The episode.
        episode_id: EpisodeId,
        /// Its originator.
        originator: AgencyId,
        /// The event that opened it.
        event_id: EventId,
    },
    /// An event stated an episode's id or one of its refs, but its source had no right to the episode
    /// (neither taking part, nor sent anything from it, nor sending about its person): the event was
    /// handled as if it had not stated them.
    JoinRefused {
        /// The event.
        event_id: EventId,
        /// The episode it named.
        episode_id: EpisodeId,
        /// Its source agency.
        source: AgencyId,
    },
    /// An agency joined an episode in a relation.
    MemberAdded {
        /// The episode.
        episode_id: EpisodeId,
        /// The agency.
        agency: AgencyId,
        /// The relation.
        relation: Relation,
    },
    /// An episode was closed.
    EpisodeClosed {
        /// The episode.
        episode_id: EpisodeId,
        /// Why.
        reason: CloseReason,
    },
    /// A sharing decision was made.
    Decision {
        /// The decision.
        decision_id: DecisionId,
        /// The event decided on.
        event_id: EventId,
        /// The episode, when there is one.
        episode_id: Option<EpisodeId>,
        /// The recipient.
        recipient: AgencyId,
        /// Permit or deny.
        verdict: Verdict,
        /// The policy engine's reason.
        reason: String,
        /// The permitting agreements.
        agreement_ids: Vec<String>,
        /// Their purposes.
        purposes: Vec<String>,
        /// Their lawful bases.
        lawful_bases: Vec<String>,
        /// JSON Pointers shared.
        fields_shared: Vec<String>,
        /// JSON Pointers withheld.
        fields_withheld: Vec<String>,
        /// The policy version.
        policy_version: String,
    },
    /// A rendered delivery was put in the outbox.
    DeliveryEnqueued {
        /// The message id.
        delivery_id: DeliveryId,
        /// The event rendered.
        event_id: EventId,
        /// The permitting decision.
        decision_id: Option<DecisionId>,
        /// The recipient.
        recipient: AgencyId,
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
        /// The digest of the body, so a delivered message can be matched after the body is purged.
        body_sha256: Sha256Hex,
    },
    /// RabbitMQ confirmed a delivery.
    DeliverySent {
        /// The message id.
        delivery_id: DeliveryId,
    },
    /// The recipient's own endpoint (its webhook or FHIR server) accepted a pushed delivery with a 2xx.
    DeliveryConfirmed {
        /// The message id.
        delivery_id: DeliveryId,
        /// How it was pushed: `webhook` or `fhir`.
        channel: String,
        /// The HTTP status the endpoint answered.
        status: u16,
    },
    /// A delivery failed too often and was given up.
    DeliveryDead {
        /// The message id.
        delivery_id: DeliveryId,
        /// Attempts made.
        attempts: u32,
    },
    /// An operator put a dead delivery back in the queue.
    DeliveryRetried {
        /// The message id.
        delivery_id: DeliveryId,
    },
    /// Outcome feedback reached the episode's originator for the first time.
    FeedbackDelivered {
        /// The episode.
        episode_id: EpisodeId,
        /// The originator.
        originator: AgencyId,
        /// The `feedback.outcome` event delivered.
        event_id: EventId,
    },
    /// Personal data older than their kind's cut-off were purged.
    PersonalDataPurged {
        /// The cut-offs. (Records written before cut-offs were per kind hold one `before` instead; the chain
        /// hashes each record as stored, so they still verify.)
        cutoffs: PurgeCutoffs,
        /// What was removed.
        removed: PurgeReport,
    },
}

impl AuditRecord {
    /// The record's kind as stored in the `kind` column (`decision`, `episode_opened` …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EventRecorded { .. } => "event_recorded",
            Self::EventHeld { .. } => "event_held",
            Self::EpisodeOpened { .. } => "episode_opened",
            Self::JoinRefused { .. } => "join_refused",
            Self::MemberAdded { .. } => "member_added",
            Self::EpisodeClosed { .. } => "episode_closed",
            Self::Decision { .. } => "decision",
            Self::DeliveryEnqueued { .. } => "delivery_enqueued",
            Self::DeliverySent { .. } => "delivery_sent",
            Self::DeliveryConfirmed { .. } => "delivery_confirmed",
            Self::DeliveryDead { .. } => "delivery_dead",
            Self::DeliveryRetried { .. } => "delivery_retried",
            Self::FeedbackDelivered { .. } => "feedback_delivered",
            Self::PersonalDataPurged { .. } => "personal_data_purged",
        }
    }

    /// The canonical JSON the hash covers: object keys sorted, no whitespace.
    pub fn canonical_json(&self) -> String {
        // Serializing these plain data types cannot fail; `Null` keeps the function total all the same.
        canonical_json(&serde_json::to_value(self).unwrap_or(Value::Null))
    }
}

/// Writes a JSON value with object keys sorted by their UTF-8 bytes and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The text form of `at` that the hash covers.
pub(crate) fn hashed_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The hash of record `seq` (see the module docs).
pub fn link_hash(prev_hash: &str, seq: u64, at: DateTime<Utc>, record_json: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(seq.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(hashed_time(at).as_bytes());
    hasher.update(b"\n");
    hasher.update(record_json.as_bytes());
    hex::encode(hasher.finalize())
}

/// What is wrong with the first broken link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    /// Records are missing before this one.
    #[error("sequence gap: expected seq {expected}")]
    Gap {
        /// The sequence number that should have come next.
        expected: u64,
    },
    /// `prev_hash` is not the previous record's hash.
    #[error("prev_hash does not match the previous record's hash")]
    PrevLink,
    /// The stored hash is not the hash of the stored record.
    #[error("hash mismatch: the record, its time or its seq was changed")]
    HashMismatch,
    /// The `kind` column disagrees with the record.
    #[error("kind column does not match the record")]
    KindMismatch,
    /// The chain head names records beyond the last one stored: records were removed from the end.
    #[error("records missing at the end: the chain head is at seq {head_seq}")]
    Truncated {
        /// The sequence number the head names.
        head_seq: u64,
    },
    /// The head names a different hash than the last record's.
    #[error("the chain head's hash does not match the last record")]
    HeadMismatch,
}

/// A stored audit row, as read for verification.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub record: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Checks rows one at a time, in seq order.
#[derive(Debug)]
pub(crate) struct ChainCheck {
    expected: u64,
    prev_hash: String,
}

impl ChainCheck {
    pub(crate) fn new() -> Self {
        Self { expected: 1, prev_hash: GENESIS_HASH.to_owned() }
    }

    /// Checks the next row; on failure returns the seq to report and why.
    pub(crate) fn next(&mut self, row: &AuditRow) -> Result<(), (u64, AuditBreak)> {
        if row.seq != self.expected {
            return Err((row.seq, AuditBreak::Gap { expected: self.expected }));
        }
        if row.prev_hash != self.prev_hash {
            return Err((row.seq, AuditBreak::PrevLink));
        }
        if link_hash(&row.prev_hash, row.seq, row.at, &row.record) != row.hash {
            return Err((row.seq, AuditBreak::HashMismatch));
        }
        let kind = serde_json::from_str::<Value>(&row.record)
            .ok()
            .and_then(|value| value.get("kind").and_then(Value::as_str).map(str::to_owned));
        if kind.as_deref() != Some(row.kind.as_str()) {
            return Err((row.seq, AuditBreak::KindMismatch));
        }
        self.expected = row.seq.saturating_add(1);
        self.prev_hash.clone_from(&row.hash);
        Ok(())
    }

    /// Checks the end of the chain against its head row.
    pub(crate) fn finish(self, head_seq: u64, head_hash: &str) -> Result<AuditVerified, (u64, AuditBreak)> {
        let last = self.expected.saturating_sub(1);
        if head_seq > last {
            return Err((last.saturating_add(1), AuditBreak::Truncated { head_seq }));
        }
        if head_hash != self.prev_hash {
            return Err((last, AuditBreak::HeadMismatch));
        }
        Ok(AuditVerified { records: last, head_hash: self.prev_hash })
    }
}

/// A chain that verified.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditVerified {
    /// How many records it holds (the last seq).
    pub records: u64,
    /// The last record's hash, to compare with an earlier verification or an external anchor.
    pub head_hash: String,
}

impl fmt::Debug for AuditVerified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditVerified({} records, head {})", self.records, self.head_hash)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn row(seq: u64, prev_hash: &str, record: &AuditRecord) -> AuditRow {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 22, 14, 0).unwrap();
        let json = record.canonical_json();
        AuditRow {
            seq,
            at,
            kind: record.kind().to_owned(),
            hash: link_hash(prev_hash, seq, at, &json),
            record: json,
            prev_hash: prev_hash.to_owned(),
        }
    }

    fn sent(n: u128) -> AuditRecord {
        AuditRecord::DeliverySent { delivery_id: DeliveryId(Uuid::from_u128(n)) }
    }

    fn chain(len: u64) -> Vec<AuditRow> {
        let mut rows: Vec<AuditRow> = Vec::new();
        for seq in 1..=len {
            let prev = rows.last().map_or(GENESIS_HASH.to_owned(), |last| last.hash.clone());
            rows.push(row(seq, &prev, &sent(u128::from(seq))));
        }
        rows
    }

    fn check(rows: &[AuditRow], head_seq: u64, head_hash: &str) -> Result<u64, (u64, AuditBreak)> {
        let mut walk = ChainCheck::new();
        for row in rows {
            walk.next(row)?;
        }
        walk.finish(head_seq, head_hash).map(|verified| verified.records)
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let value = json!({"b": 1, "a": {"d": [true, null, "x\"y"], "c": 2.5}});
        assert_eq!(canonical_json(&value), r#"{"a":{"c":2.5,"d":[true,null,"x\"y"]},"b":1}"#);
    }

    #[test]
    fn hash_is_pinned() {
        // Pinned so that a change to the hashing scheme, which would orphan every stored chain, is noticed.
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 22, 14, 0).unwrap();
        assert_eq!(hashed_time(at), "2026-03-01T22:14:00.000000Z");
        let json = sent(1).canonical_json();
        assert_eq!(json, r#"{"delivery_id":"00000000-0000-0000-0000-000000000001","kind":"delivery_sent"}"#);
        let expected = {
            let text = format!("{GENESIS_HASH}\n1\n2026-03-01T22:14:00.000000Z\n{json}");
            hex::encode(Sha256::digest(text.as_bytes()))
        };
        assert_eq!(link_hash(GENESIS_HASH, 1, at, &json), expected);
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        let head = rows.last().unwrap().hash.clone();
        assert_eq!(check(&rows, 5, &head), Ok(5));
        assert_eq!(check(&[], 0, GENESIS_HASH), Ok(0));
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let rows = chain(5);
        let head = rows.last().unwrap().hash.clone();

        let mut edited = rows.clone();
        edited[2].record = sent(99).canonical_json();
        assert_eq!(check(&edited, 5, &head), Err((3, AuditBreak::HashMismatch)));

        let mut relinked = rows.clone();
        relinked[3] = row(4, GENESIS_HASH, &sent(4));
        assert_eq!(check(&relinked, 5, &head), Err((4, AuditBreak::PrevLink)));

        let mut gap = rows.clone();
        gap.remove(1);
        assert_eq!(check(&gap, 5, &head), Err((3, AuditBreak::Gap { expected: 2 })));

        let mut truncated = rows.clone();
        truncated.pop();
        assert_eq!(check(&truncated, 5, &head), Err((5, AuditBreak::Truncated { head_seq: 5 })));

        let mut kind = rows.clone();
        kind[0].kind = "decision".to_owned();
        assert_eq!(check(&kind, 5, &head), Err((1, AuditBreak::KindMismatch)));

        assert_eq!(check(&rows, 5, GENESIS_HASH), Err((5, AuditBreak::HeadMismatch)));
    }
}
