-- The cqrs-es event table (postgres-es columns) plus what the relay needs:
-- global_position orders events, transaction_id lets the relay stop at the
-- oldest in-flight transaction, so a late commit is never skipped.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    global_position bigserial                    NOT NULL,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_commit_order ON events (transaction_id, global_position);

-- postgres-es reads it even in plain event-store mode; we never write it.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          jsonb                                NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Where the relay is: the last (transaction_id, global_position) published.
CREATE TABLE relay_checkpoint
(
    name            text   PRIMARY KEY,
    transaction_id  text   NOT NULL,
    global_position bigint NOT NULL,
    updated_at      text   NOT NULL
);
