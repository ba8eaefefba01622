-- When the recipient's own endpoint (a webhook, a FHIR server) answered 2xx for a delivery pushed by the
-- delivery worker. Null for deliveries the agency reads from its inbox itself, and until the push is
-- confirmed. Audited as `delivery_confirmed`.
ALTER TABLE outbox ADD COLUMN confirmed_at TEXT;
