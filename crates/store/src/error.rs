//! The store's errors.
//!
//! Messages name the table, the id or the URL with its password removed, never a stored value: the store
//! holds personal data, and its errors end up in logs.

use std::path::PathBuf;

use concordat_episode::{EpisodeId, EventId};

use crate::audit::AuditBreak;
use crate::model::DeliveryId;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`, or the driver refused it.
    #[error("store URL `{url_redacted}` is not a sqlite:// or postgres:// URL the store can use")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url_redacted: String,
    },
    /// The directory for the SQLite file could not be created.
    #[error("cannot create the directory `{}` for the SQLite store", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened. The binary exits with code 3.
    #[error("database at `{url_redacted}` is unreachable")]
    Unreachable {
        /// The URL with any password replaced by `***`.
        url_redacted: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrating the schema failed.
    #[error("migrating the store schema failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// A write would break a uniqueness rule; the transaction should be rolled back.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// A row the operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(Missing),
    /// A stored value could not be read back as its type (the database was edited by hand, or a newer
    /// version wrote it).
    #[error("stored column `{table}.{column}` holds a value this version cannot read")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// `audit verify` found a broken link: the first one, by sequence number.
    #[error("audit chain broken at seq {seq}: {reason}")]
    AuditBroken {
        /// The sequence number of the first record that does not verify (or is missing).
        seq: u64,
        /// What is wrong with it.
        reason: AuditBreak,
    },
    /// Any other database error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// True when retrying the whole transaction may succeed: the connection dropped, the pool timed out,
    /// PostgreSQL aborted a transaction as a serialization failure or deadlock victim, or SQLite stayed
    /// busy past its timeout. The router nacks such an event for redelivery rather than dead-lettering it.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Database(error) => match error {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                // 40001 serialization_failure, 40P01 deadlock_detected; SQLite 5 SQLITE_BUSY, 6 SQLITE_LOCKED
                // (extended codes keep the primary code in the low byte).
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    matches!(code.as_ref(), "40001" | "40P01")
                        || code.parse::<i32>().is_ok_and(|number| matches!(number & 0xff, 5 | 6))
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The event already carries its dedup mark: another transaction processed it.
    #[error("event {0} is already processed")]
    AlreadyProcessed(EventId),
    /// The event is already recorded in an episode.
    #[error("event {0} is already recorded")]
    EventRecorded(EventId),
    /// An episode with this id exists.
    #[error("episode {0} already exists")]
    EpisodeExists(EpisodeId),
    /// A correlation ref already points at another episode. The value is left out: it may identify a person.
    #[error("a ref in system `{system}` already belongs to episode {held_by}")]
    RefHeldByOtherEpisode {
        /// The ref's identifier system.
        system: String,
        /// The episode that holds it.
        held_by: EpisodeId,
    },
    /// The event already has a decision for this recipient.
    #[error("event {event_id} already has a decision for `{recipient}`")]
    DecisionExists {
        /// The event.
        event_id: EventId,
        /// The recipient agency.
        recipient: String,
    },
    /// A delivery with this message id is already in the outbox.
    #[error("delivery {0} is already in the outbox")]
    DeliveryExists(DeliveryId),
}

/// What was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// No such episode.
    #[error("episode {0}")]
    Episode(EpisodeId),
    /// No such delivery.
    #[error("delivery {0}")]
    Delivery(DeliveryId),
}

/// Replaces the password in `scheme://user:password@host/...` with `***`, so a URL can go into an error
/// message or a log line.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let authority_start = scheme_end + 3;
    let rest = url.get(authority_start..).unwrap_or_default();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or_default();
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let userinfo = authority.get(..at).unwrap_or_default();
    let Some(colon) = userinfo.find(':') else { return url.to_owned() };
    format!(
        "{}{}:***{}",
        url.get(..authority_start).unwrap_or_default(),
        userinfo.get(..colon).unwrap_or_default(),
        rest.get(at..).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, expected) in [
            ("postgres://postgres:secret@127.0.0.1:5432/db", "postgres://postgres:***@127.0.0.1:5432/db"),
            ("postgres://u:p%40ss@host/db?sslmode=require", "postgres://u:***@host/db?sslmode=require"),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            ("sqlite://data/concordat.db", "sqlite://data/concordat.db"),
            ("sqlite:relative.db", "sqlite:relative.db"),
            ("postgres://a:b@host/x@y", "postgres://a:***@host/x@y"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }
}
