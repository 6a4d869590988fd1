-- The refunds' statements: accept (reserve and insert), lookups, the worker's claim and
-- settle, the reaper. A line under each header says what it does and what $1..$n are.

-- refund_by_key --
-- Merchant $1's refund in mode $3 with idempotency key $2, with its payment's tid.
SELECT r.*, p.tid FROM refunds r JOIN payment_processes p ON p.id = r.payment_id
WHERE r.mid = $1 AND r.idempotency_key = $2 AND r.mode = $3;

-- reserve_refund --
-- Reserve $3 of merchant $2's payment $1 (mode $4) for a refund: a compare-and-set that holds
-- under concurrency, since the row lock serializes reservations and each re-checks the total.
UPDATE payment_processes
SET refund_reserved = refund_reserved + $3, updated_at = now()
WHERE tid = $1 AND mid = $2 AND mode = $4 AND status IN ('SUCCESS', 'PARTIALLY_REFUNDED')
  AND refund_reserved + $3 <= amount
RETURNING id, currency, amount, refund_reserved;

-- insert_refund --
-- A REFUND_PENDING refund. $1 public_id, $2 payment_id, $3 mid, $4 amount, $5 currency,
-- $6 reason, $7 idempotency key, $8 request digest, $9 actor, $10 mode
INSERT INTO refunds (public_id, payment_id, mid, amount, currency, reason, idempotency_key,
                     request_digest, last_actor, mode)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- refunds_of_payment --
-- The refunds of merchant $2's payment $1 in mode $3, oldest first.
SELECT r.*, p.tid FROM refunds r JOIN payment_processes p ON p.id = r.payment_id
WHERE p.tid = $1 AND p.mid = $2 AND p.mode = $3
ORDER BY r.id;

-- refund_by_public_id --
-- Merchant $2's refund $1 in mode $3.
SELECT r.*, p.tid FROM refunds r JOIN payment_processes p ON p.id = r.payment_id
WHERE r.public_id = $1 AND r.mid = $2 AND r.mode = $3;

-- claim_refunds --
-- Claim up to $2 due refunds for worker $1, leased for $3 seconds, with their payment's
-- reference and provider.
UPDATE refunds r
SET status = 'REFUND_PROCESSING',
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3),
    attempts = r.attempts + 1,
    last_actor = $1,
    updated_at = now()
FROM payment_processes p
WHERE r.id = ANY(ARRAY(  -- built once: LIMIT bounds the statement (see claim_pending)
        SELECT id FROM refunds
        WHERE status IN ('REFUND_PENDING', 'REFUND_UNRESOLVED') AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
  AND r.status IN ('REFUND_PENDING', 'REFUND_UNRESOLVED')
  AND p.id = r.payment_id
RETURNING r.id, r.public_id, r.payment_id, p.tid, r.amount, r.currency, r.attempts, p.provider,
          r.outcome_unknown_since, r.mode;

-- settle_refunds --
-- REFUND_PROCESSING -> REFUNDED/REFUND_FAILED for refunds still leased by worker $5; the
-- payment's refunded amount and status follow (a failed refund frees its reservation), and
-- the webhook is queued, all in one statement.
-- $1 ids, $2 statuses, $3 provider refund numbers, $4 fail reasons, $5 owner
WITH outcome AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
        AS o(id, status, refund_no, fail_reason)
), settled AS (
    UPDATE refunds r
    SET status = o.status, provider_refund_no = o.refund_no, fail_reason = o.fail_reason,
        processed_at = now(), lease_owner = NULL, lease_expires_at = NULL, last_actor = $5,
        updated_at = now()
    FROM outcome o
    WHERE r.id = o.id AND r.status = 'REFUND_PROCESSING' AND r.lease_owner = $5
    RETURNING r.id, r.public_id, r.payment_id, r.amount, r.status
), per_payment AS (
    SELECT payment_id,
           coalesce(sum(amount) FILTER (WHERE status = 'REFUNDED'), 0) AS done,
           coalesce(sum(amount) FILTER (WHERE status = 'REFUND_FAILED'), 0) AS failed
    FROM settled GROUP BY payment_id
), paid AS (
    UPDATE payment_processes p
    SET refunded_amount = p.refunded_amount + pp.done,
        refund_reserved = p.refund_reserved - pp.failed,
        status = CASE WHEN pp.done = 0 THEN p.status
                      WHEN p.refunded_amount + pp.done = p.amount THEN 'REFUNDED'
                      ELSE 'PARTIALLY_REFUNDED' END,
        last_actor = $5,
        updated_at = now()
    FROM per_payment pp
    WHERE p.id = pp.payment_id
    RETURNING p.id, p.webhook_url, p.endpoint_id
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, refund_id, event_id, event_status, url,
                                    endpoint_id)
    SELECT s.payment_id, s.id, 'evt_' || s.public_id || '_' || lower(s.status), s.status,
           paid.webhook_url, paid.endpoint_id
    FROM settled s JOIN paid ON paid.id = s.payment_id
)
SELECT s.id, s.public_id, s.status FROM settled s;

-- release_refunds --
-- Give refunds held by worker $2 back, due now; $3 true when a call was in flight. $1 ids
UPDATE refunds
SET status = 'REFUND_PENDING', lease_owner = NULL, lease_expires_at = NULL,
    outcome_unknown_since = CASE WHEN $3 THEN coalesce(outcome_unknown_since, now())
                                 ELSE outcome_unknown_since END,
    updated_at = now()
WHERE id = ANY($1::bigint[]) AND status = 'REFUND_PROCESSING' AND lease_owner = $2
RETURNING id;
