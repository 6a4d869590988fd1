-- Every statement the engine runs, by name. `engine/store/queries.py` parses the `-- name --` headers.
-- A line under each header says what it does and what $1..$n are.

-- insert_payment --
-- Accept a payment. Returns the row, or nothing when (mid, order_id) exists (idempotent replay).
-- $1 public_id, $2 tid, $3 mid, $4 order_id, $5 user_public_id, $6 amount, $7 currency,
-- $8 echo, $9 request_digest, $10 webhook_url asked for (or null), $11 provider,
-- $12 order_name, $13 actor, $14 default webhook url, $15 mode, $16 the endpoint the asked
-- url belongs to (the intake checked it is this merchant's and mode's) or null. With no url
-- asked for, the merchant's newest active endpoint of this mode is used (looked up here: no
-- extra round trip), else the operator's default receiver (endpoint null).
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, endpoint_id, provider, order_name, last_actor, mode)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9,
       coalesce($10, d.url, $14),
       CASE WHEN $10::text IS NULL THEN d.id ELSE $16::bigint END,
       $11, $12, $13, $15
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT e.id, e.url FROM webhook_endpoints e
                   WHERE e.mid = $3 AND e.mode = $15 AND e.deleted_at IS NULL
                   ORDER BY e.id DESC LIMIT 1) d ON $10::text IS NULL
ON CONFLICT (mid, mode, order_id) DO NOTHING
RETURNING *;

-- insert_payments --
-- insert_payment for many requests in one statement (one transaction, one WAL flush): the
-- intake's group commit. Each $n is an array with one element per request, in the order of
-- insert_payment's parameters ($8 echo as JSON text). Returns the rows inserted. A request
-- gets no row when its (mid, order_id) exists already (or came earlier in the same batch), or
-- when its random tid is taken: DO NOTHING without a target, so one taken tid does not fail
-- the whole batch. The intake tells the two apart by looking the order up.
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, endpoint_id, provider, order_name, last_actor, mode)
SELECT r.public_id, r.tid, r.mid, r.order_id, r.user_public_id, r.amount, r.currency,
       r.echo::jsonb, r.request_digest,
       coalesce(r.webhook_url, d.url, r.default_url),
       CASE WHEN r.webhook_url IS NULL THEN d.id ELSE r.endpoint_id END,
       r.provider, r.order_name, r.actor, r.mode
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::text[], $15::text[], $16::bigint[])
     WITH ORDINALITY AS r(public_id, tid, mid, order_id, user_public_id, amount, currency,
                          echo, request_digest, webhook_url, provider, order_name, actor,
                          default_url, mode, endpoint_id, n)
LEFT JOIN LATERAL (SELECT e.id, e.url FROM webhook_endpoints e
                   WHERE e.mid = r.mid AND e.mode = r.mode AND e.deleted_at IS NULL
                   ORDER BY e.id DESC LIMIT 1) d ON r.webhook_url IS NULL
ORDER BY r.n
ON CONFLICT DO NOTHING
RETURNING *;

-- get_payment_by_order --
-- The payment a merchant already has for an order in mode $3. $1 mid, $2 order_id
SELECT * FROM payment_processes WHERE mid = $1 AND order_id = $2 AND mode = $3;

-- get_payment_by_tid --
-- One payment of merchant $2 in mode $3 by transaction id $1 (another merchant's, or the
-- other mode's, is not found).
SELECT * FROM payment_processes WHERE tid = $1 AND mid = $2 AND mode = $3;

-- claim_pending --
-- Claim up to $2 due PENDING (or UNRESOLVED, to inquire again) rows for worker $1, leased for
-- $3 seconds; returns them.
UPDATE payment_processes p
SET status = 'PROCESSING',
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3),
    processing_started_at = coalesce(p.processing_started_at, now()),
    attempts = p.attempts + 1,
    -- The history names who made each change: here and below, the worker.
    last_actor = $1,
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
          p.outcome_unknown_since, p.mode;

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
        last_actor = $5,
        updated_at = now()
    FROM outcome o
    -- Compare-and-set on state and lease: a worker that lost its lease changes nothing.
    WHERE p.id = o.id AND p.status = 'PROCESSING' AND p.lease_owner = $5
    RETURNING p.id, p.public_id, p.tid, p.status, p.webhook_url, p.endpoint_id
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url, endpoint_id)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url, endpoint_id
    FROM settled
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
    last_actor = $2,
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
    last_actor = $6,
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
    outcome_unknown_since = coalesce(p.outcome_unknown_since, now()), last_actor = 'reaper',
    updated_at = now()
FROM expired
WHERE p.id = expired.id AND p.status = 'PROCESSING' AND p.lease_expires_at < now()
RETURNING p.id, p.tid, expired.lease_owner;

-- settle_manual --
-- Manual trigger: settle a TEST payment that is still PENDING with status $2, and queue its
-- webhook. Only PENDING: once a worker has claimed it (PROCESSING) or lost track of it
-- (UNRESOLVED), money may have moved at the provider, and a hand-written outcome could
-- contradict it. Only test mode: settling by hand moves no money.
-- $1 tid, $2 status, $3 approval_no, $4 fail_reason, $5 mid, $6 actor.
-- Returns nothing if it was not PENDING (or is not this merchant's test payment).
WITH settled AS (
    UPDATE payment_processes
    SET status = $2, approval_no = $3, fail_reason = $4, processed_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, last_actor = $6, updated_at = now()
    WHERE tid = $1 AND mid = $5 AND mode = 'test' AND status = 'PENDING'
    RETURNING id, public_id, tid, status, webhook_url, endpoint_id
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url, endpoint_id)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url, endpoint_id
    FROM settled
)
SELECT id, tid, status FROM settled;

-- lock_payment --
-- Serialize changes to payment $1 of merchant $2 in mode $3 that count before they write
-- (the resend limit): a count and an insert in one statement do not see a concurrent
-- twin's uncommitted row, so both would pass. NO KEY UPDATE: the outbox inserts of a worker
-- (which take KEY SHARE on the payment) are not held up.
SELECT id FROM payment_processes WHERE tid = $1 AND mid = $2 AND mode = $3
FOR NO KEY UPDATE;

-- lock_merchant --
-- Serialize the key and endpoint inserts of merchant $1, which count before they write (the
-- caps), for the same reason as lock_payment.
SELECT id FROM merchants WHERE mid = $1 FOR NO KEY UPDATE;

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
-- Mark the deliveries in $1 (held by worker $2) DELIVERED, record each attempt and the
-- payments' webhook columns: one statement for a whole pass. $3 response codes, $4 attempt
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
), payment AS (
    UPDATE payment_processes p
    SET webhook_sent_at = now(), webhook_response_code = done.code, updated_at = now()
    FROM done WHERE p.id = done.payment_id
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
), payment AS (
    UPDATE payment_processes p
    SET webhook_response_code = $3, updated_at = now()
    FROM failed WHERE p.id = failed.payment_id AND $3::integer IS NOT NULL
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

-- list_unresolved --
-- UNRESOLVED payments of merchant $3 in mode $4 after id $1, oldest first, at most $2.
SELECT * FROM payment_processes
WHERE status = 'UNRESOLVED' AND id > $1 AND mid = $3 AND mode = $4
ORDER BY id
LIMIT $2;

-- next_node_id --
-- A Snowflake node id for this process.
SELECT nextval('snowflake_node_seq') % 1024 AS node_id;

-- endpoint_secrets --
-- The active signing secrets of each delivery's endpoint, newest first. The endpoint must be
-- the paying merchant's, in the payment's mode, and not deleted: a secret is never chosen by
-- url. $1 endpoint ids, $2 their payments' mids, $3 their payments' modes (arrays alike).
SELECT e.id AS endpoint_id, s.secret
FROM (SELECT DISTINCT * FROM unnest($1::bigint[], $2::text[], $3::text[])
          AS w(endpoint_id, mid, mode)) w
JOIN webhook_endpoints e
    ON e.id = w.endpoint_id AND e.mid = w.mid AND e.mode = w.mode AND e.deleted_at IS NULL
JOIN webhook_endpoint_secrets s
    ON s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())
ORDER BY e.id, s.created_at DESC, s.id DESC;

-- insert_endpoint --
-- Register url $3 for merchant $1 in mode $2 with description $4 and first secret $5, unless
-- the merchant already has $6 active endpoints in that mode (then nothing is returned). The
-- unique index refuses a url registered twice.
WITH e AS (
    INSERT INTO webhook_endpoints (mid, mode, url, description)
    SELECT $1, $2, $3, $4
    WHERE (SELECT count(*) FROM webhook_endpoints
           WHERE mid = $1 AND mode = $2 AND deleted_at IS NULL) < $6
    RETURNING *
), s AS (
    INSERT INTO webhook_endpoint_secrets (endpoint_id, secret)
    SELECT id, $5 FROM e
)
SELECT * FROM e;

-- list_endpoints --
-- Merchant $1's active endpoints in mode $2, oldest first, with how many secrets are active.
SELECT e.*, (SELECT count(*) FROM webhook_endpoint_secrets s
             WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now()))
           AS active_secrets
FROM webhook_endpoints e
WHERE e.mid = $1 AND e.mode = $2 AND e.deleted_at IS NULL
ORDER BY e.id;

-- get_endpoint --
-- Endpoint $3 of merchant $1 in mode $2, if active.
SELECT e.*, (SELECT count(*) FROM webhook_endpoint_secrets s
             WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now()))
           AS active_secrets
FROM webhook_endpoints e
WHERE e.mid = $1 AND e.mode = $2 AND e.id = $3 AND e.deleted_at IS NULL;

-- endpoint_by_url --
-- The active endpoint of merchant $1 in mode $2 at url $3 (a payment's webhookUrl), if any.
SELECT id FROM webhook_endpoints
WHERE mid = $1 AND mode = $2 AND url = $3 AND deleted_at IS NULL;

-- roll_endpoint_secret --
-- Add secret $4 to endpoint $3 of merchant $1 in mode $2; its other active secrets expire in
-- $5 seconds (sooner ones keep theirs). Returns the endpoint, or nothing if it is not active.
WITH e AS (
    SELECT id FROM webhook_endpoints
    WHERE mid = $1 AND mode = $2 AND id = $3 AND deleted_at IS NULL
    FOR UPDATE
), expired AS (
    UPDATE webhook_endpoint_secrets s
    -- least() ignores NULL: a secret without expiry gets now() + $5.
    SET expires_at = least(s.expires_at, now() + make_interval(secs => $5))
    FROM e
    WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())
), added AS (
    INSERT INTO webhook_endpoint_secrets (endpoint_id, secret) SELECT id, $4 FROM e
)
SELECT id FROM e;

-- delete_endpoint --
-- Endpoint $3 of merchant $1 in mode $2 receives nothing more; its secrets stop at once.
-- Returns it if it was active.
WITH e AS (
    UPDATE webhook_endpoints SET deleted_at = now()
    WHERE mid = $1 AND mode = $2 AND id = $3 AND deleted_at IS NULL
    RETURNING *
), s AS (
    UPDATE webhook_endpoint_secrets s SET expires_at = now()
    FROM e WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())
)
SELECT *, 0::bigint AS active_secrets FROM e;

-- create_merchant --
-- A merchant. $1 mid, $2 name. Returns nothing if the mid exists.
INSERT INTO merchants (mid, name) VALUES ($1, $2)
ON CONFLICT (mid) DO NOTHING
RETURNING id, mid, name, created_at;

-- get_merchant --
-- A merchant by mid. $1 mid
SELECT id, mid, name, created_at FROM merchants WHERE mid = $1;

-- insert_api_key --
-- Store a key's hash. $1 merchant id, $2 mode, $3 prefix, $4 hash, $5 expires_at or null.
-- $6 the most keys of this mode the merchant may have working (not revoked, not expired):
-- past it nothing is stored or returned.
INSERT INTO api_keys (merchant_id, mode, prefix, key_hash, expires_at)
SELECT $1, $2, $3, $4, $5
WHERE (SELECT count(*) FROM api_keys
       WHERE merchant_id = $1 AND mode = $2 AND revoked_at IS NULL
         AND (expires_at IS NULL OR expires_at > now())) < $6
RETURNING id, mode, prefix, created_at, last_used_at, expires_at, revoked_at;

-- authenticate_key --
-- The key with hash $1 and its merchant; records use at most once a minute per key, so a busy
-- key does not write on every request.
WITH k AS (
    SELECT a.id, a.mode, a.prefix, a.expires_at, a.revoked_at, m.mid
    FROM api_keys a JOIN merchants m ON m.id = a.merchant_id
    -- A suspended merchant's keys authenticate as nothing (401), until it is unsuspended.
    WHERE a.key_hash = $1 AND m.suspended_at IS NULL
), touched AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM k)
      AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
      AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
)
SELECT k.*, (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS active
FROM k;

-- list_api_keys --
-- Every key of merchant $1 in mode $2 (prefixes only), newest first.
SELECT a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at
FROM api_keys a JOIN merchants m ON m.id = a.merchant_id
WHERE m.mid = $1 AND a.mode = $2
ORDER BY a.id DESC;

-- expire_api_key --
-- Key $2 of merchant $1 in mode $4 stops working after $3 seconds (never later than it
-- already would). Returns it if it was active.
UPDATE api_keys a
SET expires_at = LEAST(coalesce(a.expires_at, 'infinity'), now() + make_interval(secs => $3))
FROM merchants m
WHERE m.id = a.merchant_id AND m.mid = $1 AND a.id = $2 AND a.mode = $4
  AND a.revoked_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > now())
RETURNING a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at;

-- revoke_api_key --
-- Key $2 of merchant $1 in mode $3 stops working now. Returns it if it was not revoked already.
UPDATE api_keys a
SET revoked_at = now()
FROM merchants m
WHERE m.id = a.merchant_id AND m.mid = $1 AND a.id = $2 AND a.mode = $3
  AND a.revoked_at IS NULL
RETURNING a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at;

-- ===== cancel and refunds =====

-- cancel_payment --
-- PENDING -> CANCELED for merchant $2's payment $1 in mode $4, by $3. Only while nothing may
-- have been charged (no unknown outcome), so a cancel never leaves money behind. Returns the row.
UPDATE payment_processes
SET status = 'CANCELED', canceled_at = now(), last_actor = $3, updated_at = now()
WHERE tid = $1 AND mid = $2 AND mode = $4 AND status = 'PENDING'
  AND outcome_unknown_since IS NULL
RETURNING *;

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

-- requeue_refunds --
-- Refunds held by worker $6 that got no outcome go back to $2 status (REFUND_PENDING or
-- REFUND_UNRESOLVED), due after $3 seconds (null: never by itself), unknown when $4,
-- reason $5. $1 ids; $2..$5 arrays of the same length.
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::boolean[], $5::text[])
        AS r(id, status, delay, unknown, reason)
)
UPDATE refunds f
SET status = r.status,
    lease_owner = NULL,
    lease_expires_at = NULL,
    next_attempt_at = CASE WHEN r.delay IS NULL THEN 'infinity'::timestamptz
                           ELSE now() + make_interval(secs => r.delay) END,
    outcome_unknown_since = CASE WHEN r.unknown THEN coalesce(f.outcome_unknown_since, now())
                                 ELSE f.outcome_unknown_since END,
    unresolved_reason = r.reason,
    updated_at = now()
FROM r
WHERE f.id = r.id AND f.status = 'REFUND_PROCESSING' AND f.lease_owner = $6
RETURNING f.id, f.public_id, f.status;

-- reap_expired_refunds --
-- REFUND_PROCESSING refunds whose worker died go back to REFUND_PENDING, outcome unknown
-- (it may have died mid-call). $1 limit
WITH expired AS MATERIALIZED (
    SELECT id, lease_owner FROM refunds
    WHERE status = 'REFUND_PROCESSING' AND lease_expires_at < now()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE refunds r
SET status = 'REFUND_PENDING', lease_owner = NULL, lease_expires_at = NULL,
    outcome_unknown_since = coalesce(r.outcome_unknown_since, now()), last_actor = 'reaper',
    updated_at = now()
FROM expired
WHERE r.id = expired.id AND r.status = 'REFUND_PROCESSING'
RETURNING r.id, r.public_id, expired.lease_owner;

-- release_refunds --
-- Give refunds held by worker $2 back, due now; $3 true when a call was in flight. $1 ids
UPDATE refunds
SET status = 'REFUND_PENDING', lease_owner = NULL, lease_expires_at = NULL,
    outcome_unknown_since = CASE WHEN $3 THEN coalesce(outcome_unknown_since, now())
                                 ELSE outcome_unknown_since END,
    updated_at = now()
WHERE id = ANY($1::bigint[]) AND status = 'REFUND_PROCESSING' AND lease_owner = $2
RETURNING id;

-- ===== history =====
-- Each payment's state changes (GET /api/payments/{tid}/events). The listing of payments,
-- cancels and refunds is the back office's payments page: engine/store/reports.sql.

-- history_payment_events --
-- The timeline of payment $1 (its id), oldest first; refund_id is the refund's public id.
SELECT e.id, e.from_status, e.to_status, e.actor, e.at, r.public_id AS refund_id
FROM payment_events e LEFT JOIN refunds r ON r.id = e.refund_id
WHERE e.payment_id = $1
ORDER BY e.id;

-- ===== metrics =====

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

-- ===== provider callbacks =====

-- settle_from_callback --
-- A provider's verified callback settles payment $1 if it is that provider's ($5), for that
-- amount and currency ($6, $7), and not final yet: status $2, approval_no $3, fail_reason $4,
-- by $8, and only in the modes $9 whose credentials verified the callback (test mode's Atom
-- credentials can never settle a live payment). The webhook is queued in the same statement.
WITH settled AS (
    UPDATE payment_processes
    SET status = $2, approval_no = $3, fail_reason = $4, processed_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, last_actor = $8, updated_at = now()
    WHERE tid = $1 AND provider = $5 AND amount = $6 AND currency = $7
      AND mode = ANY($9::text[]) AND status IN ('PENDING', 'PROCESSING', 'UNRESOLVED')
    RETURNING id, public_id, tid, status, webhook_url, endpoint_id
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url, endpoint_id)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url, endpoint_id
    FROM settled
)
SELECT id, tid, status FROM settled;

-- provider_payment --
-- Payment $1 of provider $2 in one of the modes $3, whoever its merchant (a provider's
-- callback names no merchant).
SELECT * FROM payment_processes WHERE tid = $1 AND provider = $2 AND mode = ANY($3::text[]);
