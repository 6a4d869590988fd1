-- The webhook outbox: the sender's claim and outcomes, the reaper, dead letters, resends.
-- A line under each header says what it does and what $1..$n are.

-- claim_deliveries --
-- Claim up to $2 due webhook deliveries for worker $1, leased for $3 seconds, with what the
-- payload needs from the payment (and the refund, for a refund's event).
WITH claimed AS (
    UPDATE webhook_deliveries d
    SET status = 'SENDING',
        lease_owner = $1,
        lease_expires_at = now() + make_interval(secs => $3),
        attempts = d.attempts + 1,
        updated_at = now()
    WHERE d.id = ANY(ARRAY(  -- built once: LIMIT bounds the statement (see claim_pending)
            SELECT id FROM webhook_deliveries
            WHERE status = 'PENDING' AND next_attempt_at <= now()
            ORDER BY next_attempt_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED))
      AND d.status = 'PENDING'
    RETURNING d.id, d.event_id, d.event_status, d.url, d.attempts, d.payment_id, d.refund_id,
              d.endpoint_id
)
SELECT c.id, c.event_id, c.event_status, c.url, c.attempts, c.payment_id, c.endpoint_id,
       p.mid, p.mode,
       p.tid, p.amount, p.currency, p.approval_no, p.fail_reason, p.echo, p.refunded_amount,
       r.public_id AS refund_public_id, r.amount AS refund_amount,
       r.provider_refund_no AS refund_no, r.fail_reason AS refund_fail_reason
FROM claimed c
JOIN payment_processes p ON p.id = c.payment_id
LEFT JOIN refunds r ON r.id = c.refund_id;

-- deliveries_succeeded --
-- Mark the deliveries in $1 (held by worker $2) DELIVERED and record each attempt: one
-- statement for a whole pass. (The payment's row is not written: its lookup reads the
-- webhook status from here, migration 0022.) $3 response codes, $4 attempt
-- starts, $5 attempt numbers, $6 request headers (JSON text), $7 request bodies, $8 answer
-- excerpts (arrays as long as $1). Returns the ids it marked.
WITH o AS (
    SELECT * FROM unnest($1::bigint[], $3::int[], $4::timestamptz[], $5::int[], $6::text[],
                         $7::text[], $8::text[])
        AS o(id, code, started, attempt_no, headers, body, excerpt)
), done AS (
    UPDATE webhook_deliveries d
    SET status = 'DELIVERED', delivered_at = now(), last_response_code = o.code,
        last_error = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM o
    WHERE d.id = o.id AND d.status = 'SENDING' AND d.lease_owner = $2
    RETURNING d.id, d.payment_id, o.code, o.started, o.attempt_no, o.headers, o.body, o.excerpt
), attempt AS (
    INSERT INTO webhook_attempts (delivery_id, attempt_no, started_at, response_code,
                                  request_headers, request_body, response_excerpt)
    SELECT id, attempt_no, started, code, headers::jsonb, body, excerpt FROM done
)
SELECT id FROM done;

-- delivery_failed --
-- Delivery $1 (held by worker $2) failed: DEAD once attempts reach $6, else due again after
-- $7 seconds. $3 response code or null, $4 error text, $5 attempt start; $8 request headers,
-- $9 request body, $10 answer excerpt (null when nothing was sent or read).
WITH failed AS (
    UPDATE webhook_deliveries
    SET status = CASE WHEN attempts >= $6 THEN 'DEAD' ELSE 'PENDING' END,
        next_attempt_at = now() + make_interval(secs => $7),
        last_response_code = $3, last_error = $4,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND status = 'SENDING' AND lease_owner = $2
    RETURNING id, payment_id, status, attempts
), attempt AS (
    INSERT INTO webhook_attempts (delivery_id, attempt_no, started_at, response_code, error,
                                  request_headers, request_body, response_excerpt)
    SELECT id, attempts, $5, $3, $4, $8::jsonb, $9, $10 FROM failed
)
SELECT status, attempts FROM failed;

-- hasten_deliveries --
-- Urls in $1 answered 2xx: their deliveries waiting out a backoff after a failure are due
-- now. Only rows due later are touched, which the due index finds (next_attempt_at > now()).
UPDATE webhook_deliveries
SET next_attempt_at = now(), updated_at = now()
WHERE status = 'PENDING' AND next_attempt_at > now() AND attempts > 0
  AND url = ANY($1::text[])
RETURNING id;

-- release_deliveries --
-- Give deliveries held by worker $2 back, due now, without counting an attempt. $1 ids
UPDATE webhook_deliveries
SET status = 'PENDING', attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL,
    updated_at = now()
WHERE id = ANY($1::bigint[]) AND status = 'SENDING' AND lease_owner = $2
RETURNING id;

-- reap_expired_deliveries --
-- Deliveries whose worker died mid-send go back to PENDING (the attempt counts). $1 limit
UPDATE webhook_deliveries d
SET status = 'PENDING', lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
WHERE d.id = ANY(ARRAY(  -- built once: LIMIT bounds the statement (see claim_pending)
        SELECT id FROM webhook_deliveries
        WHERE status = 'SENDING' AND lease_expires_at < now()
        LIMIT $1
        FOR UPDATE SKIP LOCKED))
  AND d.status = 'SENDING' AND d.lease_expires_at < now()
RETURNING d.id;

-- list_dead_deliveries --
-- DEAD deliveries of merchant $3 in mode $4, oldest first, after id $1, at most $2.
SELECT d.id, d.event_id, d.event_status, d.url, d.attempts, d.last_response_code, d.last_error,
       d.created_at, d.updated_at, p.tid
FROM webhook_deliveries d JOIN payment_processes p ON p.id = d.payment_id
WHERE d.status = 'DEAD' AND d.id > $1 AND p.mid = $3 AND p.mode = $4
ORDER BY d.id
LIMIT $2;

-- redeliver_dead --
-- DEAD -> PENDING for delivery $1 of merchant $2 in mode $3, with a fresh attempt budget.
-- Returns it if it was DEAD (and the merchant's).
UPDATE webhook_deliveries d
SET status = 'PENDING', attempts = 0, next_attempt_at = now(), updated_at = now()
FROM payment_processes p
WHERE d.id = $1 AND d.status = 'DEAD' AND p.id = d.payment_id AND p.mid = $2 AND p.mode = $3
RETURNING d.id;

-- deliveries_of_payment --
-- The deliveries of payment $1 after id $2, oldest first, at most $3.
SELECT d.id, d.event_id, d.event_status, d.url, d.status, d.attempts, d.last_response_code,
       d.last_error, d.created_at, d.delivered_at
FROM webhook_deliveries d
WHERE d.payment_id = $1 AND d.id > $2
ORDER BY d.id
LIMIT $3;

-- notify_webhooks --
-- Wake webhook senders (used when a delivery becomes due other than by insert).
SELECT pg_notify('webhooks_pending', '');

-- lock_payment --
-- Serialize changes to payment $1 of merchant $2 in mode $3 that count before they write
-- (the resend limit): a count and an insert in one statement do not see a concurrent
-- twin's uncommitted row, so both would pass. NO KEY UPDATE: the outbox inserts of a worker
-- (which take KEY SHARE on the payment) are not held up.
SELECT id FROM payment_processes WHERE tid = $1 AND mid = $2 AND mode = $3
FOR NO KEY UPDATE;

-- enqueue_resend --
-- Queue the webhook of a final payment again (same event id). $1 tid, $2 expected status,
-- $3 mid, $4 mode, $5 resends allowed per payment in the last $6 seconds. Returns the new
-- delivery's id, and `limited` true (and nothing queued) when the payment is over that rate.
WITH p AS (
    SELECT id, public_id, status, webhook_url, endpoint_id
    FROM payment_processes
    WHERE tid = $1 AND status = $2 AND mid = $3 AND mode = $4
), recent AS (
    SELECT count(*) AS n FROM webhook_deliveries d, p
    WHERE d.payment_id = p.id AND d.refund_id IS NULL
      AND d.created_at > now() - make_interval(secs => $6)
), queued AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url, endpoint_id)
    SELECT p.id, 'evt_' || p.public_id || '_' || lower(p.status), p.status, p.webhook_url,
           p.endpoint_id
    FROM p, recent WHERE recent.n < $5
    RETURNING id
)
SELECT (SELECT id FROM queued) AS id, recent.n >= $5 AS limited FROM p, recent;
