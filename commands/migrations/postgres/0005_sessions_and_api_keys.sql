-- Credentials the API keeps beside the event log: refresh tokens and API
-- keys. They are not read models (no event produces them and a rebuild never
-- touches them): a session or a key is a secret's state, not a business
-- fact, and must stop working the moment it is revoked. Only hashes of the
-- secrets are stored. Times are Unix seconds.
CREATE TABLE refresh_tokens
(
    token_hash     text   PRIMARY KEY,
    -- every token rotated from one login; reuse of a spent one revokes it all
    family_id      text   NOT NULL,
    user_id        text   NOT NULL,
    company_id     text   NOT NULL,
    -- the user's security stamp at login: a later change ends the family
    security_stamp bigint NOT NULL,
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    spent_at       bigint,
    revoked_at     bigint
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

CREATE TABLE api_keys
(
    id           text   PRIMARY KEY,
    company_id   text   NOT NULL,
    name         text   NOT NULL,
    key_hash     text   NOT NULL UNIQUE,
    created_by   text   NOT NULL,
    created_at   text   NOT NULL,
    last_used_at text
);
CREATE INDEX api_keys_by_company ON api_keys (company_id, id);
