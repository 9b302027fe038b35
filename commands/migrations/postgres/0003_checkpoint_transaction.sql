-- A checkpoint in commit order is (transaction_id, position) on Postgres;
-- SQLite keeps 0 (rowid order is commit order there).
ALTER TABLE projection_checkpoints ADD COLUMN transaction_id text NOT NULL DEFAULT '0';
