-- Every statement the engine runs, by name. `engine/queries.py` parses the `-- name --` headers.
-- A line under each header says what it does and what $1..$n are.

-- insert_payment --
-- Accept a payment. Returns the row, or nothing when (mid, order_id) exists (idempotent replay).
-- $1 public_id, $2 tid, $3 mid, $4 order_id, $5 user_public_id, $6 amount, $7 currency,
-- $8 echo, $9 request_digest, $10 webhook_url
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (mid, order_id) DO NOTHING
RETURNING *;

-- get_payment_by_order --
-- The payment a merchant already has for an order. $1 mid, $2 order_id
SELECT * FROM payment_processes WHERE mid = $1 AND order_id = $2;

-- get_payment_by_tid --
-- One payment by transaction id. $1 tid
SELECT * FROM payment_processes WHERE tid = $1;

-- claim_pending --
-- Claim up to $2 due PENDING (or UNRESOLVED, to inquire again) rows for worker $1, leased for
-- $3 seconds; returns them.
UPDATE payment_processes p
SET status = 'PROCESSING',
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3),
    processing_started_at = coalesce(p.processing_started_at, now()),
    attempts = p.attempts + 1,
    updated_at = now()
-- = ANY(ARRAY(...)), not IN (...): the array is built once, so LIMIT bounds the statement.
-- With IN, the planner may run the subquery once per outer row (a nested-loop semi-join),
-- each run skipping the rows already locked and taking the next: far more than $2 rows.
WHERE p.id = ANY(ARRAY(
        -- The partial index on claimable rows serves this; finished rows are never read.
        SELECT id FROM payment_processes
        WHERE status IN ('PENDING', 'UNRESOLVED') AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT $2
        -- Rows another worker is claiming right now are skipped, not waited for.
        FOR UPDATE SKIP LOCKED))
  -- Compare-and-set: the row must still be waiting when we write it.
  AND p.status IN ('PENDING', 'UNRESOLVED')
RETURNING p.id, p.tid, p.amount, p.currency, p.order_id, p.attempts, p.provider,
          p.outcome_unknown_since;

-- settle_batch --
-- PROCESSING -> SUCCESS/FAILED for rows still leased by worker $5, and the webhook to send,
-- in one statement (so one transaction): a payment is never final without its outbox row.
-- $1 ids, $2 statuses, $3 approval numbers, $4 fail reasons (arrays of equal length), $5 owner
WITH outcome AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
        AS o(id, status, approval_no, fail_reason)
), settled AS (
    UPDATE payment_processes p
    SET status = o.status,
        approval_no = o.approval_no,
        fail_reason = o.fail_reason,
        processed_at = now(),
        lease_owner = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM outcome o
    -- Compare-and-set on state and lease: a worker that lost its lease changes nothing.
    WHERE p.id = o.id AND p.status = 'PROCESSING' AND p.lease_owner = $5
    RETURNING p.id, p.public_id, p.tid, p.status, p.webhook_url
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url FROM settled
)
SELECT id, tid, status FROM settled;

-- release_batch --
-- Give rows held by worker $2 back to the queue, due again in $3 seconds. $1 ids;
-- $4 true when a call was in flight (it may have charged: inquire before charging again).
UPDATE payment_processes
SET status = 'PENDING',
    lease_owner = NULL,
    lease_expires_at = NULL,
    next_attempt_at = now() + make_interval(secs => $3),
    outcome_unknown_since = CASE WHEN $4 THEN coalesce(outcome_unknown_since, now())
                                 ELSE outcome_unknown_since END,
    updated_at = now()
WHERE id = ANY($1::bigint[]) AND status = 'PROCESSING' AND lease_owner = $2
RETURNING id, tid;

-- requeue_batch --
-- Rows held by worker $6 that got no outcome go back to $2 status (PENDING or UNRESOLVED),
-- due after $3 seconds (null: never by itself), marked unknown when $4, with reason $5.
-- $1 ids; $2..$5 arrays of the same length.
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::boolean[], $5::text[])
        AS r(id, status, delay, unknown, reason)
)
UPDATE payment_processes p
SET status = r.status,
    lease_owner = NULL,
    lease_expires_at = NULL,
    next_attempt_at = CASE WHEN r.delay IS NULL THEN 'infinity'::timestamptz
                           ELSE now() + make_interval(secs => r.delay) END,
    outcome_unknown_since = CASE WHEN r.unknown THEN coalesce(p.outcome_unknown_since, now())
                                 ELSE p.outcome_unknown_since END,
    unresolved_reason = r.reason,
    updated_at = now()
FROM r
WHERE p.id = r.id AND p.status = 'PROCESSING' AND p.lease_owner = $6
RETURNING p.id, p.tid, p.status;

-- reap_expired_payments --
-- PROCESSING rows whose worker died (lease expired) go back to PENDING. It may have died
-- mid-call, so the outcome is unknown: the next attempt inquires first. $1 limit
-- The CTE is materialized (run once, so LIMIT holds) and keeps the old owner for the log.
WITH expired AS MATERIALIZED (
    SELECT id, lease_owner FROM payment_processes
    WHERE status = 'PROCESSING' AND lease_expires_at < now()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE payment_processes p
SET status = 'PENDING', lease_owner = NULL, lease_expires_at = NULL,
    outcome_unknown_since = coalesce(p.outcome_unknown_since, now()), updated_at = now()
FROM expired
WHERE p.id = expired.id AND p.status = 'PROCESSING' AND p.lease_expires_at < now()
RETURNING p.id, p.tid, expired.lease_owner;

-- settle_manual --
-- Manual trigger: settle a payment not yet final with status $2, and queue its webhook.
-- $1 tid, $2 status, $3 approval_no, $4 fail_reason. Returns nothing if it was final already.
WITH settled AS (
    UPDATE payment_processes
    SET status = $2, approval_no = $3, fail_reason = $4, processed_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE tid = $1 AND status IN ('PENDING', 'PROCESSING', 'UNRESOLVED')
    RETURNING id, public_id, tid, status, webhook_url
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url FROM settled
)
SELECT id, tid, status FROM settled;

-- enqueue_resend --
-- Queue the webhook of a final payment again (same event id). $1 tid, $2 expected status
INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url)
SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url
FROM payment_processes
WHERE tid = $1 AND status = $2
RETURNING id;

-- claim_deliveries --
-- Claim up to $2 due webhook deliveries for worker $1, leased for $3 seconds, with what the
-- payload needs from the payment.
UPDATE webhook_deliveries d
SET status = 'SENDING',
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3),
    attempts = d.attempts + 1,
    updated_at = now()
FROM payment_processes p
WHERE d.id = ANY(ARRAY(  -- built once: LIMIT bounds the statement (see claim_pending)
        SELECT id FROM webhook_deliveries
        WHERE status = 'PENDING' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
  AND d.status = 'PENDING'
  AND p.id = d.payment_id
RETURNING d.id, d.event_id, d.event_status, d.url, d.attempts, d.payment_id,
          p.tid, p.amount, p.currency, p.approval_no, p.fail_reason, p.echo;

-- delivery_succeeded --
-- Mark delivery $1 (held by worker $2) DELIVERED, record the attempt and the payment's
-- webhook columns. $3 response code, $4 attempt start, $5 attempt number
WITH done AS (
    UPDATE webhook_deliveries
    SET status = 'DELIVERED', delivered_at = now(), last_response_code = $3, last_error = NULL,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND status = 'SENDING' AND lease_owner = $2
    RETURNING id, payment_id
), attempt AS (
    INSERT INTO webhook_attempts (delivery_id, attempt_no, started_at, response_code)
    SELECT id, $5, $4, $3 FROM done
), payment AS (
    UPDATE payment_processes p
    SET webhook_sent_at = now(), webhook_response_code = $3, updated_at = now()
    FROM done WHERE p.id = done.payment_id
)
SELECT count(*) AS updated FROM done;

-- delivery_failed --
-- Delivery $1 (held by worker $2) failed: DEAD once attempts reach $6, else due again after
-- $7 seconds. $3 response code or null, $4 error text, $5 attempt start
WITH failed AS (
    UPDATE webhook_deliveries
    SET status = CASE WHEN attempts >= $6 THEN 'DEAD' ELSE 'PENDING' END,
        next_attempt_at = now() + make_interval(secs => $7),
        last_response_code = $3, last_error = $4,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND status = 'SENDING' AND lease_owner = $2
    RETURNING id, payment_id, status, attempts
), attempt AS (
    INSERT INTO webhook_attempts (delivery_id, attempt_no, started_at, response_code, error)
    SELECT id, attempts, $5, $3, $4 FROM failed
), payment AS (
    UPDATE payment_processes p
    SET webhook_response_code = $3, updated_at = now()
    FROM failed WHERE p.id = failed.payment_id AND $3::integer IS NOT NULL
)
SELECT status, attempts FROM failed;

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
-- DEAD deliveries, oldest first, after id $1, at most $2.
SELECT d.id, d.event_id, d.event_status, d.url, d.attempts, d.last_response_code, d.last_error,
       d.created_at, d.updated_at, p.tid
FROM webhook_deliveries d JOIN payment_processes p ON p.id = d.payment_id
WHERE d.status = 'DEAD' AND d.id > $1
ORDER BY d.id
LIMIT $2;

-- redeliver_dead --
-- DEAD -> PENDING for delivery $1, with a fresh attempt budget. Returns it if it was DEAD.
UPDATE webhook_deliveries
SET status = 'PENDING', attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE id = $1 AND status = 'DEAD'
RETURNING id;

-- deliveries_of_payment --
-- Every delivery of payment $1 with its attempts, oldest first.
SELECT d.id, d.event_id, d.event_status, d.url, d.status, d.attempts, d.last_response_code,
       d.last_error, d.created_at, d.delivered_at
FROM webhook_deliveries d
WHERE d.payment_id = $1
ORDER BY d.id;

-- notify_webhooks --
-- Wake webhook senders (used when a delivery becomes due other than by insert).
SELECT pg_notify('webhooks_pending', '');

-- list_unresolved --
-- UNRESOLVED payments after id $1, oldest first, at most $2.
SELECT * FROM payment_processes
WHERE status = 'UNRESOLVED' AND id > $1
ORDER BY id
LIMIT $2;

-- next_node_id --
-- A Snowflake node id for this process.
SELECT nextval('snowflake_node_seq') % 1024 AS node_id;

-- active_endpoint_secrets --
-- The active signing secrets of every endpoint whose url is in $1 (text[]), newest first.
SELECT url, secret
FROM webhook_endpoints
WHERE url = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > now())
ORDER BY url, created_at DESC, id DESC;

-- insert_endpoint --
-- Register a signing secret for an endpoint. $1 mid or null, $2 url, $3 secret
INSERT INTO webhook_endpoints (mid, url, secret)
VALUES ($1, $2, $3)
RETURNING *;

-- expire_endpoint_secrets --
-- Start a roll: the active secrets of url $1 expire in $2 seconds (sooner ones keep theirs).
-- Returns the rows it touched, so the new secret can keep their mid.
UPDATE webhook_endpoints
-- least() ignores NULL: a secret without expiry gets now() + $2.
SET expires_at = least(expires_at, now() + make_interval(secs => $2))
WHERE url = $1 AND (expires_at IS NULL OR expires_at > now())
RETURNING id, mid, created_at;

-- create_merchant --
-- A merchant. $1 mid, $2 name. Returns nothing if the mid exists.
INSERT INTO merchants (mid, name) VALUES ($1, $2)
ON CONFLICT (mid) DO NOTHING
RETURNING id, mid, name, created_at;

-- get_merchant --
-- A merchant by mid. $1 mid
SELECT id, mid, name, created_at FROM merchants WHERE mid = $1;

-- insert_api_key --
-- Store a key's hash. $1 merchant id, $2 mode, $3 prefix, $4 hash, $5 expires_at or null
INSERT INTO api_keys (merchant_id, mode, prefix, key_hash, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, mode, prefix, created_at, last_used_at, expires_at, revoked_at;

-- authenticate_key --
-- The key with hash $1 and its merchant; records use at most once a minute per key, so a busy
-- key does not write on every request.
WITH k AS (
    SELECT a.id, a.mode, a.prefix, a.expires_at, a.revoked_at, m.mid
    FROM api_keys a JOIN merchants m ON m.id = a.merchant_id
    WHERE a.key_hash = $1
), touched AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM k)
      AND revoked_at IS NULL
      AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
)
SELECT k.*, (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS active
FROM k;

-- list_api_keys --
-- Every key of merchant $1 (prefixes only), newest first.
SELECT a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at
FROM api_keys a JOIN merchants m ON m.id = a.merchant_id
WHERE m.mid = $1
ORDER BY a.id DESC;

-- expire_api_key --
-- Key $2 of merchant $1 stops working after $3 seconds (never later than it already would).
-- Returns it if it was active.
UPDATE api_keys a
SET expires_at = LEAST(coalesce(a.expires_at, 'infinity'), now() + make_interval(secs => $3))
FROM merchants m
WHERE m.id = a.merchant_id AND m.mid = $1 AND a.id = $2
  AND a.revoked_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > now())
RETURNING a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at;

-- revoke_api_key --
-- Key $2 of merchant $1 stops working now. Returns it if it was not revoked already.
UPDATE api_keys a
SET revoked_at = now()
FROM merchants m
WHERE m.id = a.merchant_id AND m.mid = $1 AND a.id = $2 AND a.revoked_at IS NULL
RETURNING a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at;

-- merchant_endpoint_url --
-- The newest active webhook endpoint of merchant $1, used when a payment names none.
SELECT url FROM webhook_endpoints
WHERE mid = $1 AND (expires_at IS NULL OR expires_at > now())
ORDER BY id DESC
LIMIT 1;
