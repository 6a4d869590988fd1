-- The back office's search indexes move off payment_processes (issue 15: what the database
-- pays per payment). A payment's row is updated at least twice after its insert (claimed,
-- then final), and neither update can be HOT: status is named by the claim indexes. So every
-- index on the row takes a new entry at every status change, including six on columns that
-- never change (currency, amount, order id, order name, customer): 12 of the 40 index entries
-- a drained payment wrote (pg_walinspect, 10,000 payments claimed, settled and their webhook
-- delivered in batches of 50: WAL per payment 6.3 KB -> 5.0 KB without them).
--
-- payment_search holds those columns (and the tid, so a search's whole filter reads one narrow
-- row) once per payment, written by the insert's statement (trigger below) and never updated,
-- with the six indexes. engine/store/reports.sql reads it for a search and for the currency
-- and amount filters, joined to payment_processes by id.
-- No foreign key: the row is written by the statement that inserts its payment, payments are
-- never deleted, and a key check would lock the payment's row again at every insert.
--
-- Plain statements (migrations run in a transaction): on a large live table this copies every
-- row and builds six indexes while it holds payment_processes' insert lock; run it at a quiet
-- time (at 10,000,000 rows, a few minutes).
CREATE TABLE payment_search (
    id              bigint      PRIMARY KEY,
    tid             text        NOT NULL,
    mid             text        NOT NULL,
    mode            text        NOT NULL,
    requested_at    timestamptz NOT NULL,
    currency        char(3)     NOT NULL,
    amount          bigint      NOT NULL,
    order_id        text        NOT NULL,
    order_name      text,
    user_public_id  text        NOT NULL
);

CREATE FUNCTION index_payments_for_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payment_search
        (id, tid, mid, mode, requested_at, currency, amount, order_id, order_name,
         user_public_id)
    SELECT id, tid, mid, mode, requested_at, currency, amount, order_id, order_name,
           user_public_id
    FROM inserted;
    RETURN NULL;
END $$;

CREATE TRIGGER payment_processes_search
    AFTER INSERT ON payment_processes
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION index_payments_for_search();

-- From scratch, from payment_processes: for this migration, and after a bulk load with
-- triggers off (the bench, the million-row test).
CREATE FUNCTION rebuild_payment_search() RETURNS void LANGUAGE sql AS $$
    TRUNCATE payment_search;
    INSERT INTO payment_search
        (id, tid, mid, mode, requested_at, currency, amount, order_id, order_name,
         user_public_id)
    SELECT id, tid, mid, mode, requested_at, currency, amount, order_id, order_name,
           user_public_id
    FROM payment_processes;
$$;

SELECT rebuild_payment_search();

-- The same six indexes, same shapes (see migrations 0010, 0012 and 0014 for what each serves).
DROP INDEX payment_processes_currency_history_idx;
DROP INDEX payment_processes_amount_idx;
DROP INDEX payment_processes_order_id_idx;
DROP INDEX payment_processes_order_id_prefix_idx;
DROP INDEX payment_processes_order_name_prefix_idx;
DROP INDEX payment_processes_customer_prefix_idx;
CREATE INDEX payment_search_currency_history_idx
    ON payment_search (mid, mode, currency, requested_at DESC, id DESC);
CREATE INDEX payment_search_amount_idx ON payment_search (mid, mode, amount);
CREATE INDEX payment_search_order_id_idx ON payment_search (order_id);
CREATE INDEX payment_search_order_id_prefix_idx
    ON payment_search (mid, mode, order_id text_pattern_ops);
CREATE INDEX payment_search_order_name_prefix_idx
    ON payment_search (mid, mode, lower(order_name) text_pattern_ops) INCLUDE (order_name);
CREATE INDEX payment_search_customer_prefix_idx
    ON payment_search (mid, mode, user_public_id text_pattern_ops);
-- The walk by time for the currency and amount filters, on this table's own columns (a walk
-- of payment_processes' history index cannot read them without a join per row passed over).
CREATE INDEX payment_search_history_idx
    ON payment_search (mid, mode, requested_at DESC, id DESC);
ANALYZE payment_search;
