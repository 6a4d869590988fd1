-- NOTIFY inside the inserting transaction made every commit wait for PostgreSQL's single
-- notification lock (pgbench: 7,136 tps for a one-row insert alone, 1,024 with pg_notify in
-- the same transaction). The processes now notify after commit, coalesced (engine/wakeup.py);
-- the scheduled poll remains the safety net.
DROP TRIGGER payment_processes_notify ON payment_processes;
DROP TRIGGER webhook_deliveries_notify ON webhook_deliveries;
DROP TRIGGER refunds_notify ON refunds;
DROP FUNCTION notify_payments_pending();
DROP FUNCTION notify_webhooks_pending();
DROP FUNCTION notify_refunds_pending();
