-- A customer's key in another system, unique per company (the write side's
-- external_id_claim streams make it so); the list and export filter on it.
ALTER TABLE customers ADD COLUMN external_id text;
CREATE INDEX customers_by_external_id ON customers (company_id, external_id);
