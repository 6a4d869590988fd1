-- The operators' console: recovery actions, merchants, search and the audit log. Every
-- action that changes something writes its operator_audit row in the same statement (so the
-- same transaction): an action without its audit row cannot commit, nor the other way round.
-- Loaded by engine/store/recovery.py (`queries.load("recovery")`).

-- unresolved --
-- UNRESOLVED payments of every merchant after id $1, oldest first, at most $2. parked: waits
-- for a person (never retried by itself); credentials_refused: the provider refused our
-- credentials (HTTP 401/403), parked until someone fixes them and releases it.
SELECT id, tid, mid, mode, provider, amount, currency, status, unresolved_reason,
       outcome_unknown_since, attempts, requested_at, updated_at,
       next_attempt_at = 'infinity' AS parked,
       coalesce(unresolved_reason IN ('PROVIDER_HTTP_401', 'PROVIDER_HTTP_403'), false)
           AS credentials_refused
FROM payment_processes
WHERE status = 'UNRESOLVED' AND id > $1
  AND ($3::boolean IS NULL OR (next_attempt_at = 'infinity') = $3)
  AND ($4::text IS NULL OR provider = $4)
  AND ($5::text IS NULL OR mode = $5)
ORDER BY id
LIMIT $2;

-- inquire_now --
-- Payment $1, if PENDING or UNRESOLVED, becomes due now (the next pass inquires it, or charges
-- it if no call may have moved money). By operator $2 ("operator:<name>"), reason $3.
WITH due AS (
    UPDATE payment_processes
    SET next_attempt_at = now(), last_actor = $2, updated_at = now()
    WHERE tid = $1 AND status IN ('PENDING', 'UNRESOLVED')
    RETURNING tid, mid, mode, status, outcome_unknown_since
), audit AS (
    INSERT INTO operator_audit (actor, action, target, reason, detail)
    SELECT $2, 'payment.inquire_now', 'payment:' || tid, $3,
           jsonb_build_object('mid', mid, 'mode', mode, 'status', status,
                              'outcomeUnknown', outcome_unknown_since IS NOT NULL)
    FROM due
)
SELECT tid, status FROM due;

-- release_parked --
-- Parked UNRESOLVED payments go back to the queue, due now: provider $1 and mode $2 (null:
-- any), only the tids $3 when given. One whose call may have moved money stays UNRESOLVED (it
-- is inquired first); the others are PENDING again. By $4, reason $5; the audit row is written
-- even when nothing matched (the operator did act), with the count and up to 1000 tids.
WITH released AS (
    UPDATE payment_processes
    SET status = CASE WHEN outcome_unknown_since IS NULL THEN 'PENDING' ELSE 'UNRESOLVED' END,
        next_attempt_at = now(), last_actor = $4, updated_at = now()
    WHERE status = 'UNRESOLVED' AND next_attempt_at = 'infinity'
      AND ($1::text IS NULL OR provider = $1)
      AND ($2::text IS NULL OR mode = $2)
      AND ($3::text[] IS NULL OR tid = ANY($3::text[]))
    RETURNING tid
), audit AS (
    INSERT INTO operator_audit (actor, action, target, reason, detail)
    SELECT $4, 'payments.release_parked',
           'parked:' || coalesce($2, '*') || ':' || coalesce($1, '*'), $5,
           jsonb_build_object('count', (SELECT count(*) FROM released),
                              'tids', coalesce((SELECT jsonb_agg(tid) FROM
                                                (SELECT tid FROM released LIMIT 1000) t),
                                               '[]'::jsonb),
                              'asked', to_jsonb($3::text[]))
)
SELECT tid FROM released;

-- resolve --
-- Settle payment $1 by hand as $2 (SUCCESS or FAILED) with approval_no $3 / fail_reason $4:
-- a compare-and-set from UNRESOLVED, or PENDING with an unknown outcome (never PROCESSING: a
-- worker holds it). The webhook is queued and the audit row written in the same statement.
-- By $5, reason $6. Returns nothing if the payment was not in such a state.
WITH settled AS (
    UPDATE payment_processes
    SET status = $2, approval_no = $3, fail_reason = $4, processed_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = now(),
        last_actor = $5, updated_at = now()
    WHERE tid = $1
      AND (status = 'UNRESOLVED' OR (status = 'PENDING' AND outcome_unknown_since IS NOT NULL))
    RETURNING id, public_id, tid, mid, mode, status, webhook_url, endpoint_id, unresolved_reason
), outbox AS (
    INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url, endpoint_id)
    SELECT id, 'evt_' || public_id || '_' || lower(status), status, webhook_url, endpoint_id
    FROM settled
), audit AS (
    INSERT INTO operator_audit (actor, action, target, reason, detail)
    SELECT $5, 'payment.resolve', 'payment:' || tid, $6,
           jsonb_build_object('mid', mid, 'mode', mode, 'status', status, 'approvalNo', $3,
                              'failReason', $4, 'unresolvedReason', unresolved_reason)
    FROM settled
)
SELECT id, tid, mid, mode, status FROM settled;

-- payment_state --
-- Status of payment $1 (any merchant), for telling an operator why an action did not apply.
SELECT status FROM payment_processes WHERE tid = $1;

-- notify --
-- Wake the workers of channel $1 (payments_pending, webhooks_pending) after an action commits.
SELECT pg_notify($1, '');

-- search_payments --
-- Payments of any merchant whose tid or order id is exactly $1, or whose merchant is $1,
-- newest first, at most $2. Each branch walks its own index and stops at $2.
SELECT * FROM (
    (SELECT id, tid, mid, mode, order_id, order_name, amount, currency, status, requested_at
     FROM payment_processes WHERE tid = $1)
    UNION
    (SELECT id, tid, mid, mode, order_id, order_name, amount, currency, status, requested_at
     FROM payment_processes
     WHERE id IN (SELECT id FROM payment_search WHERE order_id = $1)
     ORDER BY requested_at DESC, id DESC LIMIT $2)
    UNION
    (SELECT id, tid, mid, mode, order_id, order_name, amount, currency, status, requested_at
     FROM payment_processes WHERE mid = $1 AND mode = 'live'
     ORDER BY requested_at DESC, id DESC LIMIT $2)
    UNION
    (SELECT id, tid, mid, mode, order_id, order_name, amount, currency, status, requested_at
     FROM payment_processes WHERE mid = $1 AND mode = 'test'
     ORDER BY requested_at DESC, id DESC LIMIT $2)
) found
ORDER BY requested_at DESC, id DESC
LIMIT $2;

-- merchants --
-- Merchants after id $1, oldest first, at most $2; $3 a prefix of the mid or of the name (any
-- case), or null. With how many keys work now.
SELECT m.id, m.mid, m.name, m.created_at, m.suspended_at,
       (SELECT count(*) FROM api_keys a
        WHERE a.merchant_id = m.id AND a.revoked_at IS NULL
          AND (a.expires_at IS NULL OR a.expires_at > now())) AS active_keys
FROM merchants m
WHERE m.id > $1
  AND ($3::text IS NULL OR m.mid ^@ $3 OR lower(m.name) ^@ lower($3))
ORDER BY m.id
LIMIT $2;

-- create_merchant --
-- Merchant $1 named $2, by $3 (reason $4). Returns nothing if the mid exists.
WITH m AS (
    INSERT INTO merchants (mid, name) VALUES ($1, $2)
    ON CONFLICT (mid) DO NOTHING
    RETURNING id, mid, name, created_at, suspended_at
), audit AS (
    INSERT INTO operator_audit (actor, action, target, reason, detail)
    SELECT $3, 'merchant.create', 'merchant:' || mid, $4, jsonb_build_object('name', name)
    FROM m
)
SELECT *, 0::bigint AS active_keys FROM m;

-- suspend_merchant --
-- Merchant $1 is suspended ($2 true) or no longer ($2 false), by $3, reason $4: a
-- compare-and-set, so a repeat changes nothing and writes no audit row.
WITH m AS (
    UPDATE merchants
    SET suspended_at = CASE WHEN $2 THEN now() END
    WHERE mid = $1 AND (suspended_at IS NULL) = $2
    RETURNING id, mid, name, created_at, suspended_at
), audit AS (
    INSERT INTO operator_audit (actor, action, target, reason)
    SELECT $3, CASE WHEN $2 THEN 'merchant.suspend' ELSE 'merchant.unsuspend' END,
           'merchant:' || mid, $4
    FROM m
), logged_out AS (
    -- Suspended, its staff's back office sessions end for good: resuming revives none.
    UPDATE backoffice_sessions SET revoked_at = now()
    WHERE $2 AND revoked_at IS NULL
      AND user_id IN (SELECT u.id FROM backoffice_users u JOIN m ON u.mid = m.mid)
)
SELECT m.*, (SELECT count(*) FROM api_keys a
             WHERE a.merchant_id = m.id AND a.revoked_at IS NULL
               AND (a.expires_at IS NULL OR a.expires_at > now())) AS active_keys
FROM m;

-- record --
-- An audit row for an action whose change was written elsewhere (a key issued for a new
-- merchant). $1 actor, $2 action, $3 target, $4 reason, $5 detail.
INSERT INTO operator_audit (actor, action, target, reason, detail)
VALUES ($1, $2, $3, $4, $5)
RETURNING id;

-- audit_log --
-- The audit log newest first: ids below $1 (null: from the newest), at most $2, only target
-- $3 when given.
SELECT id, at, actor, action, target, reason, detail
FROM operator_audit
WHERE ($1::bigint IS NULL OR id < $1)
  AND ($3::text IS NULL OR target = $3)
ORDER BY id DESC
LIMIT $2;

-- merchant_exists --
-- Whether merchant $1 exists (for telling an operator why an action did not apply).
SELECT EXISTS (SELECT 1 FROM merchants WHERE mid = $1);
