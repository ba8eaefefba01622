-- Concordat store schema, SQLite flavour. Keep it in step with ../postgres/20260301000001_init.sql: the two
-- differ only in column types and trigger syntax, never in tables, columns or constraints.
--
-- Personal data live only in three places, each purgeable on its own without touching the audit chain:
-- `event_payloads.body` (the canonical event), `outbox.body` (the rendered message) and `subject_keys`
-- (a keyed hash of the NHS number). Everything else holds ids, agencies, kinds, times and JSON Pointers.
--
-- Ids are UUIDs (16-byte BLOBs here), times are RFC 3339 text in UTC as sqlx writes them, which sorts
-- correctly as text.

CREATE TABLE episodes (
    id                    BLOB PRIMARY KEY NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    originator            TEXT NOT NULL,
    opened_by_event       BLOB NOT NULL,
    opened_at             TEXT NOT NULL,
    last_event_at         TEXT NOT NULL,
    closed_at             TEXT,
    close_reason          TEXT CHECK (close_reason IN ('quiet', 'concluded', 'administrative')),
    feedback_due_at       TEXT,
    feedback_delivered_at TEXT,
    CHECK ((state = 'open') = (closed_at IS NULL))
);
CREATE INDEX episodes_state_last_event ON episodes (state, last_event_at);
CREATE INDEX episodes_awaiting_feedback ON episodes (opened_at) WHERE feedback_delivered_at IS NULL;

CREATE TABLE episode_members (
    episode_id    BLOB NOT NULL REFERENCES episodes (id),
    agency        TEXT NOT NULL,
    relation      TEXT NOT NULL CHECK (relation IN ('originator', 'contributor', 'responder')),
    first_seen_at TEXT NOT NULL,
    PRIMARY KEY (episode_id, agency, relation)
);

CREATE TABLE episode_refs (
    system     TEXT NOT NULL,
    value      TEXT NOT NULL,
    episode_id BLOB NOT NULL REFERENCES episodes (id),
    added_at   TEXT NOT NULL,
    PRIMARY KEY (system, value)
);
CREATE INDEX episode_refs_episode ON episode_refs (episode_id);

-- Personal data (pseudonymous): HMAC-SHA256 of the subject's NHS number under the deployment's key.
CREATE TABLE subject_keys (
    episode_id  BLOB NOT NULL REFERENCES episodes (id),
    subject_key BLOB NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (episode_id, subject_key)
);
CREATE INDEX subject_keys_key ON subject_keys (subject_key);

CREATE TABLE events (
    event_id       BLOB PRIMARY KEY NOT NULL,
    episode_id     BLOB NOT NULL REFERENCES episodes (id),
    kind           TEXT NOT NULL,
    source_agency  TEXT NOT NULL,
    occurred_at    TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL
);
CREATE INDEX events_episode ON events (episode_id, received_at);

-- Personal data: the canonical event as JSON. Purging deletes the row; `events` keeps the metadata.
CREATE TABLE event_payloads (
    event_id BLOB PRIMARY KEY NOT NULL REFERENCES events (event_id),
    body     TEXT NOT NULL
);

CREATE TABLE processed_events (
    event_id     BLOB PRIMARY KEY NOT NULL,
    episode_id   BLOB REFERENCES episodes (id),
    processed_at TEXT NOT NULL
);

CREATE TABLE decisions (
    decision_id     BLOB PRIMARY KEY NOT NULL,
    event_id        BLOB NOT NULL,
    episode_id      BLOB REFERENCES episodes (id),
    recipient       TEXT NOT NULL,
    verdict         TEXT NOT NULL CHECK (verdict IN ('permit', 'deny')),
    reason          TEXT NOT NULL,
    agreement_ids   TEXT NOT NULL,
    purposes        TEXT NOT NULL,
    lawful_bases    TEXT NOT NULL,
    fields_shared   TEXT NOT NULL,
    fields_withheld TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    decided_at      TEXT NOT NULL,
    UNIQUE (event_id, recipient)
);

CREATE TABLE outbox (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  BLOB NOT NULL UNIQUE,
    event_id     BLOB NOT NULL,
    decision_id  BLOB,
    recipient    TEXT NOT NULL,
    exchange     TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    content_type TEXT NOT NULL,
    headers      TEXT NOT NULL,
    -- Personal data: the rendered message. Null once purged.
    body         BLOB,
    body_sha256  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_at      TEXT
);
CREATE INDEX outbox_status_position ON outbox (status, position);

-- The audit chain. `hash` = SHA-256 over prev_hash, seq, at and the canonical JSON record; see audit.rs.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY NOT NULL,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    record    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- One row naming the chain's head. Every append updates it first, which serializes appends and lets verify
-- notice records removed from the end.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only by construction; the hash chain catches whoever drops these triggers first.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
