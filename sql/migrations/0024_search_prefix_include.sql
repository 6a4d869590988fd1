-- The search's prefix indexes carry each payment's id and time, so a search with few matches
-- lists them (search_ids in engine/store/reports.sql) from the indexes alone: through a bitmap
-- it read a payment_search page per match (at 10,000,000 payments, 4,411 matches on 4,363
-- pages: 16 ms of the page's time). payment_search is only inserted into, so its pages are
-- soon all-visible and an index-only scan rarely visits the table.
-- Plain statements (migrations run in a transaction): on a large live table, create each index
-- CONCURRENTLY by hand first under a new name, drop the old one, rename, and mark this done.
DROP INDEX payment_search_order_id_prefix_idx;
CREATE INDEX payment_search_order_id_prefix_idx
    ON payment_search (mid, mode, order_id text_pattern_ops) INCLUDE (id, requested_at);
DROP INDEX payment_search_order_name_prefix_idx;
CREATE INDEX payment_search_order_name_prefix_idx
    ON payment_search (mid, mode, lower(order_name) text_pattern_ops)
    INCLUDE (order_name, id, requested_at);
DROP INDEX payment_search_customer_prefix_idx;
CREATE INDEX payment_search_customer_prefix_idx
    ON payment_search (mid, mode, user_public_id text_pattern_ops) INCLUDE (id, requested_at);
