-- Checkout sessions: created by a merchant's server, opened, confirmed or canceled by a
-- customer's app, expired by time. Every transition is a compare-and-set on the status (and
-- the expiry) and raises `version`, which the table's trigger announces on NOTIFY checkout.

-- insert_session --
-- A new open session. Returns nothing when the merchant has this order (or this idempotency
-- key) in this mode already. $1 public_id, $2 client_secret, $3 mid, $4 mode, $5 order_id,
-- $6 order_name, $7 amount, $8 currency, $9 customer_ref, $10 success_url, $11 cancel_url,
-- $12 seconds until it expires, $13 idempotency_key, $14 request_digest, $15 actor
INSERT INTO checkout_sessions
    (public_id, client_secret, mid, mode, order_id, order_name, amount, currency, customer_ref,
     success_url, cancel_url, expires_at, idempotency_key, request_digest, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now() + make_interval(secs => $12),
        $13, $14, $15)
ON CONFLICT DO NOTHING
RETURNING public_id;

-- existing_session --
-- The session a create collided with: by idempotency key $4 if given, else by order $3, of
-- merchant $1 in mode $2.
SELECT public_id FROM checkout_sessions
WHERE mid = $1 AND mode = $2
  AND (CASE WHEN $4::text IS NULL THEN order_id = $3 ELSE idempotency_key = $4 END);

-- session --
-- A session with what its views show: the merchant's name and the payment it made, if any.
-- $1 public_id
SELECT s.*, m.name AS merchant_name, p.tid AS payment_tid, p.status AS payment_status,
       p.approval_no AS payment_approval_no, p.fail_reason AS payment_fail_reason,
       p.refunded_amount AS payment_refunded_amount, p.provider AS payment_provider,
       p.action_url AS payment_action_url
FROM checkout_sessions s
JOIN merchants m ON m.mid = s.mid
LEFT JOIN payment_processes p ON p.checkout_session_id = s.id
WHERE s.public_id = $1;

-- expire --
-- open|scanned -> expired once its time is up. $1 public_id. Returns its new version if this
-- call moved it.
UPDATE checkout_sessions
SET status = 'expired', version = version + 1, closed_at = now(), updated_at = now()
WHERE public_id = $1 AND status IN ('open', 'scanned') AND expires_at <= now()
RETURNING version;

-- expire_due --
-- The sweep: up to $1 sessions whose time is up, expired; sessions another sweep is expiring
-- right now are skipped. Returns their public ids.
UPDATE checkout_sessions
SET status = 'expired', version = version + 1, closed_at = now(), updated_at = now()
WHERE id = ANY(ARRAY(
        SELECT id FROM checkout_sessions
        WHERE status IN ('open', 'scanned') AND expires_at <= now()
        ORDER BY expires_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED))
  AND status IN ('open', 'scanned') AND expires_at <= now()
RETURNING public_id;

-- scan --
-- open -> scanned: customer $2 opened session $1 in the app (before it expired). Returns its
-- new version if this call moved it.
UPDATE checkout_sessions
SET status = 'scanned', version = version + 1, scanned_at = now(), customer_id = $2,
    updated_at = now()
WHERE public_id = $1 AND status = 'open' AND expires_at > now()
RETURNING version;

-- close --
-- open|scanned -> $3 ('confirmed' or 'canceled') by customer $2, while session $1 has not
-- expired. Returns what changed (its id, new version, and the columns this set) if this call
-- moved it: the caller's answer needs no read after it.
UPDATE checkout_sessions
SET status = $3, version = version + 1, closed_at = now(), customer_id = $2,
    updated_at = now()
WHERE public_id = $1 AND status IN ('open', 'scanned') AND expires_at > now()
RETURNING id, version, status, closed_at, customer_id, updated_at;

-- notify_after_commit --
-- This transaction's changes to sessions send their notices after its commit (migration 0015):
-- the caller sends them (Checkout.notices).
SET LOCAL hamster.checkout_notify = 'after_commit';

-- customer_payments --
-- Customer $1's payments across merchants, newest first, at most $2.
SELECT p.id, p.tid, p.amount, p.currency, p.status, p.requested_at, p.refunded_amount,
       p.approval_no, p.fail_reason, s.order_name, s.public_id AS session_id,
       m.name AS merchant_name
FROM checkout_sessions s
JOIN payment_processes p ON p.checkout_session_id = s.id
JOIN merchants m ON m.mid = s.mid
WHERE s.customer_id = $1 AND s.status = 'confirmed'
ORDER BY s.id DESC
LIMIT $2;

-- refunds_of --
-- The refunds of payments $1 (ids), oldest first.
SELECT payment_id, amount, currency, status, requested_at
FROM refunds WHERE payment_id = ANY($1::bigint[])
ORDER BY id;

-- return_view --
-- What the return page shows of payment $1 (mode $2) made by a checkout session: its state,
-- its session's order and links back, its merchant's name. Nothing for a payment of the other
-- mode, or one no session made.
SELECT p.tid, p.mode, p.mid, p.status, p.amount, p.currency, p.fail_reason, p.provider,
       s.public_id AS session_id, s.order_name, s.success_url, s.cancel_url,
       m.name AS merchant_name
FROM payment_processes p
JOIN checkout_sessions s ON s.id = p.checkout_session_id
JOIN merchants m ON m.mid = p.mid
WHERE p.tid = $1 AND p.mode = $2;
