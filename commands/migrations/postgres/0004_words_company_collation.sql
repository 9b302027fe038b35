-- The search words' key leads with company_id, which is only ever compared
-- with a bound id: under "C" its comparisons are byte compares, and building
-- or maintaining the key (millions of rows: a rebuild builds it afresh) no
-- longer goes through the locale's collation. Ids are ASCII, so their order
-- does not change.
ALTER TABLE customer_words ALTER COLUMN company_id TYPE text COLLATE "C";
