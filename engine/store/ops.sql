-- What operations read: the metrics snapshot, and a node id for each process.

-- metrics_snapshot --
-- Rows in each active state and the oldest waiting ages; every count is served by a partial
-- index on active states, so it stays cheap however many finished rows there are.
SELECT
    (SELECT count(*) FROM payment_processes WHERE status = 'PENDING') AS pending,
    (SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING') AS processing,
    (SELECT count(*) FROM payment_processes WHERE status = 'UNRESOLVED') AS unresolved,
    (SELECT count(*) FROM refunds WHERE status = 'REFUND_PENDING') AS refund_pending,
    (SELECT count(*) FROM refunds WHERE status = 'REFUND_PROCESSING') AS refund_processing,
    (SELECT count(*) FROM refunds WHERE status = 'REFUND_UNRESOLVED') AS refund_unresolved,
    (SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING') AS webhooks_pending,
    (SELECT count(*) FROM webhook_deliveries WHERE status = 'SENDING') AS webhooks_sending,
    (SELECT count(*) FROM webhook_deliveries WHERE status = 'DEAD') AS webhooks_dead,
    (SELECT extract(epoch FROM now() - min(requested_at)) FROM payment_processes
     WHERE status = 'PENDING') AS oldest_pending_age,
    (SELECT extract(epoch FROM now() - min(requested_at)) FROM payment_processes
     WHERE status = 'UNRESOLVED') AS oldest_unresolved_age;

-- next_node_id --
-- A Snowflake node id for this process.
SELECT nextval('snowflake_node_seq') % 1024 AS node_id;
