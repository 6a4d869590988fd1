-- The payments' statements: intake, lookups, the worker's claim and settle, the reaper, manual
-- and callback settlement. `engine/store/queries.py` parses the `-- name --` headers; a line
-- under each says what it does and what $1..$n are.

-- insert_payment --
-- Accept a payment. Returns the row, or nothing when (mid, order_id) exists (idempotent replay).
-- $1 public_id, $2 tid, $3 mid, $4 order_id, $5 user_public_id, $6 amount, $7 currency,
-- $8 echo, $9 request_digest, $10 webhook_url asked for (or null), $11 provider,
-- $12 order_name, $13 actor, $14 default webhook url, $15 mode, $16 the endpoint the asked
-- url belongs to (the intake checked it is this merchant's and mode's) or null. With no url
-- asked for, the merchant's newest active endpoint of this mode is used (looked up here: no
-- extra round trip), else the operator's default receiver (endpoint null). $17 the checkout
-- session that makes it and $18 its customer's card token (null for any other payment): set
-- here, not by an update after the insert (a second version of a row with many indexes).
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, endpoint_id, provider, order_name, last_actor, mode, checkout_session_id,
     card_token)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9,
       coalesce($10, d.url, $14),
       CASE WHEN $10::text IS NULL THEN d.id ELSE $16::bigint END,
       $11, $12, $13, $15, $17::bigint, $18::text
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT e.id, e.url FROM webhook_endpoints e
                   WHERE e.mid = $3 AND e.mode = $15 AND e.deleted_at IS NULL
                   ORDER BY e.id DESC LIMIT 1) d ON $10::text IS NULL
ON CONFLICT (mid, mode, order_id) DO NOTHING
RETURNING *;

-- insert_payments --
-- insert_payment for many requests in one statement (one transaction, one WAL flush): the
-- intake's group commit. Each $n is an array with one element per request, in the order of
-- insert_payment's first sixteen parameters ($8 echo as JSON text). Returns the rows
-- inserted. A request gets no row when its (mid, order_id) exists already (or came earlier in
-- the same batch), or when its random tid is taken: DO NOTHING without a target, so one taken
-- tid does not fail the whole batch. The intake tells the two apart by looking the order up.
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
-- other mode's, is not found), with its webhook status as its deliveries hold it (migration
-- 0022): when one was last delivered, and the last response code any attempt got.
SELECT p.*,
       (SELECT max(d.delivered_at) FROM webhook_deliveries d
        WHERE d.payment_id = p.id) AS webhook_sent_at,
       (SELECT a.response_code FROM webhook_deliveries d
        JOIN webhook_attempts a ON a.delivery_id = d.id
        WHERE d.payment_id = p.id AND a.response_code IS NOT NULL
        ORDER BY a.id DESC LIMIT 1) AS webhook_response_code
FROM payment_processes p
WHERE p.tid = $1 AND p.mid = $2 AND p.mode = $3;

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
          p.outcome_unknown_since, p.mode, p.card_token, p.checkout_session_id;

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

-- list_unresolved --
-- UNRESOLVED payments of merchant $3 in mode $4 after id $1, oldest first, at most $2.
SELECT * FROM payment_processes
WHERE status = 'UNRESOLVED' AND id > $1 AND mid = $3 AND mode = $4
ORDER BY id
LIMIT $2;

-- cancel_payment --
-- PENDING -> CANCELED for merchant $2's payment $1 in mode $4, by $3. Only while nothing may
-- have been charged (no unknown outcome), so a cancel never leaves money behind. Returns the row.
UPDATE payment_processes
SET status = 'CANCELED', canceled_at = now(), last_actor = $3, updated_at = now()
WHERE tid = $1 AND mid = $2 AND mode = $4 AND status = 'PENDING'
  AND outcome_unknown_since IS NULL
RETURNING *;

-- settle_from_callback --
-- A provider's verified callback settles payment $1 if it is that provider's ($5), for that
-- amount and currency ($6, $7), and not final yet: status $2, approval_no $3, fail_reason $4,
-- by $8, and only in the modes $9 whose credentials verified the callback (test mode's Atom
-- credentials can never settle a live payment); $10 Atom's transaction id and $11 the way
-- the customer paid, when the callback names them. A payment waiting for the customer
-- (REQUIRES_ACTION) is settled too, even past its expiry as long as the expiry pass has not
-- ended it: the provider charged, and that is the truth. The webhook is queued in the same
-- statement.
WITH settled AS (
    UPDATE payment_processes
    SET status = $2, approval_no = $3, fail_reason = $4, processed_at = now(),
        atom_txn_id = coalesce($10, atom_txn_id), payment_method = coalesce($11, payment_method),
        lease_owner = NULL, lease_expires_at = NULL, last_actor = $8, updated_at = now()
    WHERE tid = $1 AND provider = $5 AND amount = $6 AND currency = $7
      AND mode = ANY($9::text[])
      AND status IN ('PENDING', 'PROCESSING', 'REQUIRES_ACTION', 'UNRESOLVED')
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

-- require_action --
-- PROCESSING -> REQUIRES_ACTION for rows still leased by worker $5: the provider answered with
-- token $2[i] and page $3[i] for payment $1[i]. The customer has $4 seconds; the inquiry pass
-- looks first after $6 seconds (or at the expiry, if sooner). No webhook: nothing is final.
-- A new statement beside settle_batch (not a branch of it) so the hot path stays as it was.
UPDATE payment_processes p
SET status = 'REQUIRES_ACTION',
    atom_token_id = a.token,
    action_url = a.url,
    action_expires_at = now() + make_interval(secs => $4),
    next_attempt_at = now() + make_interval(secs => least($4, $6)),
    lease_owner = NULL,
    lease_expires_at = NULL,
    -- The charge has not happened: nothing to inquire about as "maybe charged".
    outcome_unknown_since = NULL,
    unresolved_reason = NULL,
    last_actor = $5,
    updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS a(id, token, url)
-- Compare-and-set on state and lease, as settle_batch.
WHERE p.id = a.id AND p.status = 'PROCESSING' AND p.lease_owner = $5
RETURNING p.id, p.tid, p.atom_token_id, p.action_expires_at;

-- claim_actions --
-- Up to $1 payments waiting for the customer whose next inquiry (or expiry) is due, pushed
-- $2 seconds on (or to their expiry, if sooner, so the last inquiry comes on time): that is
-- their lease, so another worker's pass skips them meanwhile, and if this one dies they are
-- simply due again. Past the expiry it is always $2 seconds: a provider we cannot reach is
-- not asked in a tight loop. The status stays REQUIRES_ACTION, so a callback can still
-- settle them by its own compare-and-set while we inquire. `expired` says their time is up.
-- Served by payment_processes_requires_action_idx.
UPDATE payment_processes p
SET next_attempt_at = CASE WHEN p.action_expires_at > now()
                           THEN least(now() + make_interval(secs => $2), p.action_expires_at)
                           ELSE now() + make_interval(secs => $2) END,
    attempts = p.attempts + 1,
    updated_at = now()
WHERE p.id = ANY(ARRAY(
        SELECT id FROM payment_processes
        WHERE status = 'REQUIRES_ACTION' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT $1
        FOR UPDATE SKIP LOCKED))
  AND p.status = 'REQUIRES_ACTION'
RETURNING p.id, p.tid, p.amount, p.currency, p.order_id, p.attempts, p.provider,
          p.outcome_unknown_since, p.mode, p.card_token, p.checkout_session_id,
          p.action_expires_at <= now() AS expired;

-- settle_actions --
-- REQUIRES_ACTION -> SUCCESS/FAILED by the inquiry pass ($7 the actor), with the webhook in
-- the same statement. $1 ids, $2 statuses, $3 approval numbers, $4 fail reasons, $5 Atom's
-- transaction ids, $6 payment methods (arrays of equal length). A fail reason of
-- ACTION_EXPIRED (the customer walked away) applies only once the expiry has passed.
WITH outcome AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[])
        AS o(id, status, approval_no, fail_reason, atom_txn_id, payment_method)
), settled AS (
    UPDATE payment_processes p
    SET status = o.status,
        approval_no = o.approval_no,
        fail_reason = o.fail_reason,
        atom_txn_id = coalesce(o.atom_txn_id, p.atom_txn_id),
        payment_method = coalesce(o.payment_method, p.payment_method),
        processed_at = now(),
        last_actor = $7,
        updated_at = now()
    FROM outcome o
    -- Compare-and-set: a callback that settled it meanwhile wins, and this changes nothing.
    WHERE p.id = o.id AND p.status = 'REQUIRES_ACTION'
      AND (o.fail_reason IS DISTINCT FROM 'ACTION_EXPIRED' OR p.action_expires_at <= now())
    RETURNING p.id, p.public_id, p.tid, p.status, p.webhook_url, p.endpoint_id
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url, endpoint_id)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url, endpoint_id
    FROM settled
)
SELECT id, tid, status FROM settled;

-- record_late_callback --
-- A verified callback for payment $1 that is final the other way ($8 its status now):
-- recorded for a person, never applied. $2 provider, $3 the callback's status, $4 Atom's
-- transaction id, $5 reason, $6 amount, $7 currency. A repeat adds nothing; returns the id
-- of a new record.
INSERT INTO late_callbacks
    (payment_id, provider, status, atom_txn_id, reason, amount, currency, payment_status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (payment_id, status) DO NOTHING
RETURNING id;

-- late_callbacks --
-- Late callbacks nobody has reviewed yet, oldest first, at most $1, with their payments.
SELECT l.id, l.status AS callback_status, l.atom_txn_id AS callback_atom_txn_id,
       l.received_at, l.payment_status, p.tid, p.mid, p.mode, p.provider, p.amount,
       p.currency, p.fail_reason
FROM late_callbacks l
JOIN payment_processes p ON p.id = l.payment_id
WHERE l.reviewed_at IS NULL
ORDER BY l.id
LIMIT $1;
