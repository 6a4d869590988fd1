-- A payment's webhook status is read from its deliveries, no longer written on its row (issue
-- 15). Recording each delivery's answer also updated payment_processes (webhook_sent_at,
-- webhook_response_code): a third write of the wide row per payment, which fired the row's
-- statement triggers (history, rollup) once more. In a pure-SQL loop of the hot path (insert,
-- claim, settle, claim the webhook, record its answer; one connection, 6,000 payments, 3
-- rounds) PostgreSQL's CPU per payment went from 0.64-0.69 ms to 0.53-0.55 ms without that
-- update, and WAL from 7.7-7.9 KB to 6.9 KB.
--
-- Nothing is lost: both values are what webhook_deliveries and webhook_attempts already hold
-- (the latest delivered_at of the payment's deliveries; the latest response code any attempt
-- got), and the lookup reads them there (engine/store/payments.sql, get_payment_by_tid).
--
-- Deploying: stop the workers of the previous version before this migration. One still
-- running would fail its statement that records a delivery (it names these columns); the
-- delivery stays leased, and a current worker sends it again once the lease expires (a
-- webhook is delivered at least once; receivers deduplicate by its id).
ALTER TABLE payment_processes
    DROP COLUMN webhook_sent_at,
    DROP COLUMN webhook_response_code;
