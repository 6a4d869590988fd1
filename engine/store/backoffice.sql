-- What only the back office asks of payments, keys and webhooks (its delivery log, key names).
-- Loaded by engine/store/backoffice.py with queries.load("backoffice").

-- set_key_name --
-- Name key $3 of merchant $1 in mode $2 ("checkout server"); $4 the name. Returns its id.
UPDATE api_keys k SET name = $4
FROM merchants m
WHERE k.id = $3 AND k.merchant_id = m.id AND m.mid = $1 AND k.mode = $2
RETURNING k.id;

-- key_names --
-- The names of merchant $1's keys in mode $2: id -> name (unnamed keys left out).
SELECT k.id, k.name FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
WHERE m.mid = $1 AND k.mode = $2 AND k.name IS NOT NULL;

-- delivery_log --
-- Deliveries of merchant $1 in mode $2, newest first, below id $3 (0: from the newest), at
-- most $4. $5 state: null (any), 'delivered', 'failed' (an attempt failed, retries pending),
-- 'dead' (attempts used up) or 'pending' (not tried yet); $6 event type; $7 event id.
SELECT d.id, d.event_id, d.event_status, d.url, d.status, d.attempts, d.last_response_code,
       d.last_error, d.created_at, d.delivered_at, d.updated_at, p.tid
FROM webhook_deliveries d JOIN payment_processes p ON p.id = d.payment_id
WHERE p.mid = $1 AND p.mode = $2 AND ($3::bigint = 0 OR d.id < $3)
  AND ($5::text IS NULL OR CASE $5
        WHEN 'delivered' THEN d.status = 'DELIVERED'
        WHEN 'dead' THEN d.status = 'DEAD'
        WHEN 'failed' THEN d.status IN ('PENDING', 'SENDING') AND d.attempts > 0
        WHEN 'pending' THEN d.status IN ('PENDING', 'SENDING') AND d.attempts = 0
      END)
  AND ($6::text IS NULL OR d.event_status = $6)
  AND ($7::text IS NULL OR d.event_id = $7)
ORDER BY d.id DESC
LIMIT $4;

-- resend_deliveries --
-- Send again now every delivery of merchant $1 in mode $2 that the filter matches ($4 state,
-- $5 event type, $6 event id, as delivery_log; $3 one delivery's id, or 0 for all), at most $7:
-- a DEAD one starts over with a fresh attempt budget, one waiting out a backoff is due now, a
-- DELIVERED one is queued again as a new delivery of the same event (same event id, so the
-- merchant can deduplicate). One being sent right now is left alone. Returns how many.
WITH picked AS (
    SELECT d.id, d.status
    FROM webhook_deliveries d JOIN payment_processes p ON p.id = d.payment_id
    WHERE p.mid = $1 AND p.mode = $2 AND ($3::bigint = 0 OR d.id = $3)
      AND d.status IN ('DEAD', 'PENDING', 'DELIVERED')
      AND ($4::text IS NULL OR CASE $4
            WHEN 'delivered' THEN d.status = 'DELIVERED'
            WHEN 'dead' THEN d.status = 'DEAD'
            WHEN 'failed' THEN d.status = 'PENDING' AND d.attempts > 0
            WHEN 'pending' THEN d.status = 'PENDING' AND d.attempts = 0
          END)
      AND ($5::text IS NULL OR d.event_status = $5)
      AND ($6::text IS NULL OR d.event_id = $6)
    ORDER BY d.id DESC
    LIMIT $7
), again AS (
    UPDATE webhook_deliveries d
    SET status = 'PENDING', next_attempt_at = now(), updated_at = now(),
        attempts = CASE WHEN d.status = 'DEAD' THEN 0 ELSE d.attempts END
    FROM picked
    WHERE d.id = picked.id AND picked.status IN ('DEAD', 'PENDING') AND d.status = picked.status
    RETURNING d.id
), copied AS (
    INSERT INTO webhook_deliveries
        (payment_id, refund_id, event_id, event_status, url, endpoint_id)
    SELECT d.payment_id, d.refund_id, d.event_id, d.event_status, d.url, d.endpoint_id
    FROM webhook_deliveries d JOIN picked ON picked.id = d.id
    WHERE picked.status = 'DELIVERED'
    RETURNING id
), woken AS (
    SELECT pg_notify('webhooks_pending', '')
)
SELECT (SELECT count(*) FROM again) + (SELECT count(*) FROM copied) AS n,
       (SELECT count(*) FROM woken) AS woken;
