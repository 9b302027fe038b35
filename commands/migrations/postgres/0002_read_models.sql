-- Read models, written only by projections. Types are text and bigint only,
-- so one SQL text serves Postgres and SQLite. Every row remembers the last
-- event sequence of its aggregate it has applied (last_seq).
CREATE TABLE companies
(
    id         text   PRIMARY KEY,
    name       text   NOT NULL,
    created_at text   NOT NULL,
    updated_at text   NOT NULL,
    last_seq   bigint NOT NULL
);

CREATE TABLE users
(
    id             text   PRIMARY KEY,
    company_id     text   NOT NULL,
    email          text   NOT NULL,
    email_key      text   NOT NULL,
    name           text   NOT NULL,
    surname        text,
    title          text,
    role           text   NOT NULL,
    password_hash  text   NOT NULL,
    -- bumped on every change that must end existing tokens
    security_stamp bigint NOT NULL,
    removed        bigint NOT NULL DEFAULT 0,
    created_at     text   NOT NULL,
    updated_at     text   NOT NULL,
    last_seq       bigint NOT NULL
);
CREATE INDEX users_by_company ON users (company_id, removed, created_at, id);
CREATE INDEX users_by_email ON users (email_key, removed);

CREATE TABLE customers
(
    id          text   PRIMARY KEY,
    company_id  text   NOT NULL,
    name        text   NOT NULL,
    surname     text   NOT NULL,
    surname_key text   COLLATE "C" NOT NULL,
    email       text,
    phone       text,
    notes       text,
    photo_id    text,
    created_by  text   NOT NULL,
    created_at  text   NOT NULL,
    updated_by  text   NOT NULL,
    updated_at  text   NOT NULL,
    deleted     bigint NOT NULL DEFAULT 0,
    deleted_at  text,
    last_seq    bigint NOT NULL
);
CREATE INDEX customers_by_created ON customers (company_id, deleted, created_at, id);
CREATE INDEX customers_by_surname ON customers (company_id, deleted, surname_key, id);

-- One row per searchable word of a customer (folded in Rust: lower case, no accents).
CREATE TABLE customer_words
(
    company_id  text NOT NULL,
    word        text COLLATE "C" NOT NULL,
    customer_id text NOT NULL,
    PRIMARY KEY (company_id, word, customer_id)
);
CREATE INDEX customer_words_by_customer ON customer_words (customer_id);

CREATE TABLE photos
(
    id               text   PRIMARY KEY,
    company_id       text   NOT NULL,
    object_key       text   NOT NULL,
    content_type     text   NOT NULL,
    size             bigint NOT NULL,
    sha256           text   NOT NULL,
    for_customer     text,
    customer_id      text,
    customer_version bigint,
    status           text   NOT NULL,
    rejected_reason  text,
    created_by       text   NOT NULL,
    created_at       text   NOT NULL,
    updated_at       text   NOT NULL,
    last_seq         bigint NOT NULL
);
CREATE INDEX photos_by_company ON photos (company_id, created_at, id);

-- Events a projection gave up on after repeated failures: visible, not lost.
CREATE TABLE parked_events
(
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    error          text   NOT NULL,
    parked_at      text   NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id, sequence)
);

-- How far each projection has read the event store (embedded feed, rebuilds).
CREATE TABLE projection_checkpoints
(
    name       text   PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at text   NOT NULL
);
