-- A customer's stale words are deleted along the key, by the words its row
-- had (the view folds the row before and after), so the words table needs
-- no index by customer. A rebuild names its indexes afresh, so the table is
-- remade with its key alone rather than dropping an index by name.
CREATE TABLE customer_words_keyed
(
    company_id  text NOT NULL,
    word        text NOT NULL,
    customer_id text NOT NULL,
    PRIMARY KEY (company_id, word, customer_id)
);
INSERT INTO customer_words_keyed (company_id, word, customer_id)
    SELECT company_id, word, customer_id FROM customer_words;
DROP TABLE customer_words;
ALTER TABLE customer_words_keyed RENAME TO customer_words;
