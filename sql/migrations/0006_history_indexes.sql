-- Indexes for a merchant's transaction history (GET /api/payments): newest first, keyset
-- pagination, filters, and a prefix search on order id, order name and customer id.
--
-- None of them covers updated_at or the webhook columns (status only in predicates, like the
-- claim indexes already; canceled_at changes once), so updates that are HOT today stay HOT.
-- Plain CREATE INDEX (migrations run in a transaction): on a large live table, run this one at
-- a quiet time, or create the indexes CONCURRENTLY by hand first (same names) and mark it done.

-- Payments newest first: the history's main walk, also serving date ranges and amount/status
-- filters (checked on the rows the walk reaches).
CREATE INDEX payment_processes_history_idx
    ON payment_processes (mid, requested_at DESC, id DESC);

-- Canceled payments, newest cancel first. Their time is canceled_at; the few without one
-- (canceled before the column was set) fall back to updated_at, read through the next index.
CREATE INDEX payment_processes_canceled_idx
    ON payment_processes (mid, canceled_at DESC, id DESC) WHERE status = 'CANCELED';
-- Not ordered by updated_at on purpose: indexing updated_at would make every update non-HOT.
CREATE INDEX payment_processes_canceled_untimed_idx
    ON payment_processes (mid, id) WHERE status = 'CANCELED' AND canceled_at IS NULL;

-- Prefix search. text_pattern_ops compares bytes, so a prefix becomes an index range under
-- any database collation, without extensions.
CREATE INDEX payment_processes_order_id_prefix_idx
    ON payment_processes (mid, order_id text_pattern_ops);
CREATE INDEX payment_processes_order_name_prefix_idx
    ON payment_processes (mid, lower(order_name) text_pattern_ops);
CREATE INDEX payment_processes_customer_prefix_idx
    ON payment_processes (mid, user_public_id text_pattern_ops);

-- refunds_history_idx (mid, requested_at DESC, id DESC) from 0005 serves the refund items.
