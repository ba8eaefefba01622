-- Events that belong to no episode yet: what partners hold before any crisis (a crisis plan, a risk flag, a
-- VCS contact), kept by the subject key so that an episode a later crisis opens can offer them to its
-- responders as pre-crisis context. Personal data: purged with the other payloads.
CREATE TABLE unattached_events (
    event_id      UUID PRIMARY KEY NOT NULL,
    subject_key   BYTEA NOT NULL,
    kind          TEXT NOT NULL,
    source_agency TEXT NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX unattached_events_subject ON unattached_events (subject_key, received_at);
