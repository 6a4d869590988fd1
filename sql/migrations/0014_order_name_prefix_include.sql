-- The order-name prefix index also carries order_name, so counting a search's matches by name
-- (search_size in engine/store/reports.sql) reads the index alone: PostgreSQL scans an index
-- on lower(order_name) index-only only when order_name itself is in it. Without it a broad
-- name search read 10,000 heap rows just to learn it was broad (250 ms at 10,000,000).
-- Plain CREATE INDEX (migrations run in a transaction): on a large live table, create it
-- CONCURRENTLY by hand first under a new name, drop the old one, rename, and mark this done.
DROP INDEX payment_processes_order_name_prefix_idx;
CREATE INDEX payment_processes_order_name_prefix_idx
    ON payment_processes (mid, mode, lower(order_name) text_pattern_ops) INCLUDE (order_name);
-- A new expression index has no statistics until the table is analyzed (a sample: seconds).
ANALYZE payment_processes;
