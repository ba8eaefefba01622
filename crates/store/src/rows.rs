//! Reading columns the same way from SQLite and PostgreSQL rows, and turning them into the store's types.
//!
//! Each backend gets the same tiny [`Cols`] trait so that the decoding functions below are written once.
//! A value that does not parse as its type (an unknown agency id, a non-JSON array) is reported as
//! [`StoreError::Corrupt`] with the table and column, never with the value.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use concordat_episode::{AgencyId, EpisodeId, EventId, EventKind, Sha256Hex};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{
    CloseReason, Decision, DecisionId, DeliveryId, DeliveryMeta, DeliveryStatus, Episode, EpisodeState, EventMeta,
    PendingDelivery, Verdict,
};

/// Typed column access shared by both backends' rows.
pub(crate) trait Cols {
    fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error>;
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

macro_rules! impl_cols {
    ($row:ty) => {
        impl Cols for $row {
            fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, sqlx::Error> {
                self.try_get(column)
            }
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(column)
            }
            fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
                self.try_get(column)
            }
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                self.try_get(column)
            }
        }
    };
}

impl_cols!(SqliteRow);
impl_cols!(PgRow);

fn corrupt(table: &'static str, column: &'static str) -> StoreError {
    StoreError::Corrupt { table, column }
}

pub(crate) fn agency(
    row: &(impl Cols + ?Sized),
    table: &'static str,
    column: &'static str,
) -> Result<AgencyId, StoreError> {
    AgencyId::new(row.text(column)?).map_err(|_| corrupt(table, column))
}

pub(crate) fn string_list(
    row: &impl Cols,
    table: &'static str,
    column: &'static str,
) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(&row.text(column)?).map_err(|_| corrupt(table, column))
}

pub(crate) fn headers(row: &impl Cols) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(&row.text("headers")?).map_err(|_| corrupt("outbox", "headers"))
}

pub(crate) fn count(value: i64, table: &'static str, column: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(table, column))
}

pub(crate) const EPISODE_COLUMNS: &str = "id, state, originator, opened_by_event, opened_at, last_event_at, closed_at, \
     close_reason, feedback_due_at, feedback_delivered_at";

pub(crate) fn episode(row: &(impl Cols + ?Sized)) -> Result<Episode, StoreError> {
    const T: &str = "episodes";
    let close_reason = match row.opt_text("close_reason")? {
        Some(text) => Some(CloseReason::parse(&text).ok_or_else(|| corrupt(T, "close_reason"))?),
        None => None,
    };
    Ok(Episode {
        id: EpisodeId(row.uuid("id")?),
        state: EpisodeState::parse(&row.text("state")?).ok_or_else(|| corrupt(T, "state"))?,
        originator: agency(row, T, "originator")?,
        opened_by: EventId(row.uuid("opened_by_event")?),
        opened_at: row.time("opened_at")?,
        last_event_at: row.time("last_event_at")?,
        closed_at: row.opt_time("closed_at")?,
        close_reason,
        feedback_due_at: row.opt_time("feedback_due_at")?,
        feedback_delivered_at: row.opt_time("feedback_delivered_at")?,
    })
}

pub(crate) const EVENT_COLUMNS: &str = "e.event_id, e.episode_id, e.kind, e.source_agency, e.occurred_at, \
     e.received_at, e.payload_sha256, p.event_id AS payload_id";

pub(crate) fn event_meta(row: &impl Cols) -> Result<EventMeta, StoreError> {
    const T: &str = "events";
    Ok(EventMeta {
        event_id: EventId(row.uuid("event_id")?),
        episode_id: EpisodeId(row.uuid("episode_id")?),
        kind: row.text("kind")?.parse::<EventKind>().map_err(|_| corrupt(T, "kind"))?,
        source: agency(row, T, "source_agency")?,
        occurred_at: row.time("occurred_at")?,
        received_at: row.time("received_at")?,
        payload_sha256: Sha256Hex::new(row.text("payload_sha256")?).map_err(|_| corrupt(T, "payload_sha256"))?,
        payload_purged: row.opt_uuid("payload_id")?.is_none(),
    })
}

pub(crate) const DECISION_COLUMNS: &str = "decision_id, event_id, episode_id, recipient, verdict, reason, \
     agreement_ids, purposes, lawful_bases, fields_shared, fields_withheld, policy_version, decided_at";

pub(crate) fn decision(row: &impl Cols) -> Result<Decision, StoreError> {
    const T: &str = "decisions";
    Ok(Decision {
        decision_id: DecisionId(row.uuid("decision_id")?),
        event_id: EventId(row.uuid("event_id")?),
        episode_id: row.opt_uuid("episode_id")?.map(EpisodeId),
        recipient: agency(row, T, "recipient")?,
        verdict: Verdict::parse(&row.text("verdict")?).ok_or_else(|| corrupt(T, "verdict"))?,
        reason: row.text("reason")?,
        agreement_ids: string_list(row, T, "agreement_ids")?,
        purposes: string_list(row, T, "purposes")?,
        lawful_bases: string_list(row, T, "lawful_bases")?,
        fields_shared: string_list(row, T, "fields_shared")?,
        fields_withheld: string_list(row, T, "fields_withheld")?,
        policy_version: row.text("policy_version")?,
        decided_at: row.time("decided_at")?,
    })
}

pub(crate) const PENDING_COLUMNS: &str = "delivery_id, event_id, recipient, exchange, routing_key, content_type, headers, body, attempts, created_at, \
     (SELECT received_at FROM events WHERE events.event_id = outbox.event_id) AS received_at";

pub(crate) fn pending_delivery(row: &impl Cols) -> Result<PendingDelivery, StoreError> {
    const T: &str = "outbox";
    Ok(PendingDelivery {
        delivery_id: DeliveryId(row.uuid("delivery_id")?),
        event_id: EventId(row.uuid("event_id")?),
        recipient: agency(row, T, "recipient")?,
        exchange: row.text("exchange")?,
        routing_key: row.text("routing_key")?,
        content_type: row.text("content_type")?,
        headers: headers(row)?,
        // Pending rows are never purged, so a missing body means the row was edited by hand.
        body: row.opt_bytes("body")?.ok_or_else(|| corrupt(T, "body"))?,
        attempts: count(row.int("attempts")?, T, "attempts")?,
        created_at: row.time("created_at")?,
        received_at: row.opt_time("received_at")?,
    })
}

pub(crate) const DELIVERY_META_COLUMNS: &str = "delivery_id, event_id, decision_id, recipient, status, attempts, \
     last_error, created_at, sent_at, confirmed_at, CAST(CASE WHEN body IS NULL THEN 1 ELSE 0 END AS BIGINT) AS body_purged";

pub(crate) fn delivery_meta(row: &impl Cols) -> Result<DeliveryMeta, StoreError> {
    const T: &str = "outbox";
    Ok(DeliveryMeta {
        delivery_id: DeliveryId(row.uuid("delivery_id")?),
        event_id: EventId(row.uuid("event_id")?),
        decision_id: row.opt_uuid("decision_id")?.map(DecisionId),
        recipient: agency(row, T, "recipient")?,
        status: DeliveryStatus::parse(&row.text("status")?).ok_or_else(|| corrupt(T, "status"))?,
        attempts: count(row.int("attempts")?, T, "attempts")?,
        last_error: row.opt_text("last_error")?,
        created_at: row.time("created_at")?,
        sent_at: row.opt_time("sent_at")?,
        confirmed_at: row.opt_time("confirmed_at")?,
        body_purged: row.int("body_purged")? != 0,
    })
}
