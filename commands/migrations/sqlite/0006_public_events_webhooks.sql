-- The public event feed reads one company's events in commit order (rowid).
CREATE INDEX events_company_order ON events (json_extract(metadata, '$.company_id'));

-- Webhook endpoints: operational configuration, not domain facts, so a
-- plain table (docs/ARCHITECTURE.md says why). Types are text and bigint
-- only, so one SQL text serves Postgres and SQLite.
CREATE TABLE webhooks
(
    id                   text   PRIMARY KEY,
    company_id           text   NOT NULL,
    url                  text   NOT NULL,
    -- JSON array of public event types; [] = every type
    event_types          text   NOT NULL,
    description          text,
    enabled              bigint NOT NULL,
    -- why the server disabled it (410 Gone), null when a person did
    disabled_reason      text,
    secret               text   NOT NULL,
    -- the secret before the last rotation, still signing until it expires
    previous_secret      text,
    previous_expires_at  text,
    created_at           text   NOT NULL,
    updated_at           text   NOT NULL
);
CREATE INDEX webhooks_by_company ON webhooks (company_id, created_at, id);

-- One row per (webhook, public event): the delivery log and the sender's
-- work queue. The body is rendered once, so every attempt sends the same
-- bytes with the same webhook-id.
CREATE TABLE webhook_deliveries
(
    id                   text   PRIMARY KEY,
    webhook_id           text   NOT NULL,
    company_id           text   NOT NULL,
    event_id             text   NOT NULL,
    event_type           text   NOT NULL,
    payload              text   NOT NULL,
    -- pending | succeeded | failed
    status               text   NOT NULL,
    attempts             bigint NOT NULL,
    last_response_status bigint,
    last_error           text,
    last_latency_ms      bigint,
    last_attempt_at      text,
    -- when a sender may try it next (a claim pushes it forward); null when settled
    next_attempt_at      text,
    created_at           text   NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at, id);

-- Where the webhook dispatcher is in commit order.
CREATE TABLE webhook_checkpoints
(
    name            text   PRIMARY KEY,
    transaction_id  text   NOT NULL,
    global_position bigint NOT NULL,
    updated_at      text   NOT NULL
);
