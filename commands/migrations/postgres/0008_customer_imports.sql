-- Customer imports: operational records of a bulk load (progress, counts,
-- rejected rows), not domain facts; every customer an import writes is an
-- event like any other. Types are text and bigint only, so one SQL text
-- serves Postgres and SQLite.
CREATE TABLE customer_imports
(
    id           text   PRIMARY KEY,
    company_id   text   NOT NULL,
    created_by   text   NOT NULL,
    -- csv | ndjson
    format       text   NOT NULL,
    -- email, or null to create every row
    upsert_on    text,
    -- SHA-256 of the uploaded file and its options: a repeat of the
    -- Idempotency-Key with another file is told from a retry
    digest       text   NOT NULL,
    -- running | succeeded | failed | cancelled
    state        text   NOT NULL,
    rows_read    bigint NOT NULL DEFAULT 0,
    created      bigint NOT NULL DEFAULT 0,
    updated      bigint NOT NULL DEFAULT 0,
    rejected     bigint NOT NULL DEFAULT 0,
    detail       text,
    created_at   text   NOT NULL,
    -- renewed every few seconds while a process runs the import: a running
    -- import whose heartbeat stopped was interrupted
    heartbeat_at text   NOT NULL,
    finished_at  text
);
CREATE INDEX customer_imports_by_company ON customer_imports (company_id, created_at);

-- Every rejected row's reasons, one per invalid field (field null when the
-- row itself is malformed).
CREATE TABLE customer_import_errors
(
    import_id text   NOT NULL,
    line      bigint NOT NULL,
    position  bigint NOT NULL,
    field     text,
    message   text   NOT NULL,
    PRIMARY KEY (import_id, line, position)
);

-- An import that upserts on email finds a batch's customers by address.
CREATE INDEX customers_by_email ON customers (company_id, lower(email));
