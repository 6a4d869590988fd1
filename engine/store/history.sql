-- Each payment's state changes (GET /api/payments/{tid}/events). The listing of payments,
-- cancels and refunds is the back office's payments page: engine/store/reports.sql.

-- history_payment_events --
-- The timeline of payment $1 (its id), oldest first; refund_id is the refund's public id.
SELECT e.id, e.from_status, e.to_status, e.actor, e.at, r.public_id AS refund_id
FROM payment_events e LEFT JOIN refunds r ON r.id = e.refund_id
WHERE e.payment_id = $1
ORDER BY e.id;
