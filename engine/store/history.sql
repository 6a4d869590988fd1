-- A merchant's transaction history: each payment's timeline, and the listing of payments,
-- cancels and refunds (GET /api/payments/{tid}/events, GET /api/payments).

-- history_payment_events --
-- The timeline of payment $1 (its id), oldest first; refund_id is the refund's public id.
SELECT e.id, e.from_status, e.to_status, e.actor, e.at, r.public_id AS refund_id
FROM payment_events e LEFT JOIN refunds r ON r.id = e.refund_id
WHERE e.payment_id = $1
ORDER BY e.id;

-- history_custom_plans --
-- Plan the listing for the values it runs with, never with a cached generic plan: only then do
-- the unused filters below fold away and a prefix search becomes an index range.
SET LOCAL plan_cache_mode = force_custom_plan;

-- history_list --
-- Merchant $1's history, newest first by (created_at, kind, id): payments (not canceled; at
-- requested_at), cancels (canceled payments; at canceled_at, else updated_at) and refunds (at
-- their requested_at). $2 kinds (text[] of payment, cancel, refund); null means no filter for
-- $3 statuses (text[]), $4 created_at >= , $5 created_at < , $6 amount >= , $7 amount <= ,
-- $8 prefix of order_id, of lower(order_name) (compared lowered) or of user_public_id;
-- $9, $10, $11 the (created_at, kind, id) the page starts after (null, '', 0 for the first);
-- $12 how many rows, $13 the mode.
-- Each branch walks its own index in the page's order and stops after $12 rows, so the final
-- sort never sees more than 4 * $12 rows, however long the history.
-- (x, 'kind', id) < ($9, $10, $11) is exact; its index bound is x <= $9.
SELECT kind, id, tid, refund_id, order_id, order_name, user_public_id, amount, currency,
       status, created_at
FROM (
    (SELECT 'payment' AS kind, p.id, p.tid, NULL::text AS refund_id, p.order_id, p.order_name,
            p.user_public_id, p.amount, p.currency, p.status, p.requested_at AS created_at
     FROM payment_processes p
     WHERE 'payment' = ANY($2::text[]) AND p.mid = $1 AND p.mode = $13 AND p.status <> 'CANCELED'
       AND ($3::text[] IS NULL OR p.status = ANY($3::text[]))
       AND ($4::timestamptz IS NULL OR p.requested_at >= $4)
       AND ($5::timestamptz IS NULL OR p.requested_at < $5)
       AND ($6::bigint IS NULL OR p.amount >= $6)
       AND ($7::bigint IS NULL OR p.amount <= $7)
       AND ($8::text IS NULL OR p.order_id ^@ $8 OR lower(p.order_name) ^@ lower($8)
            OR p.user_public_id ^@ $8)
       AND (p.requested_at, 'payment', p.id) <
           (coalesce($9::timestamptz, 'infinity'), $10::text, $11::bigint)
     ORDER BY p.requested_at DESC, p.id DESC
     LIMIT $12)
    UNION ALL
    (SELECT 'cancel', p.id, p.tid, NULL, p.order_id, p.order_name, p.user_public_id, p.amount,
            p.currency, p.status, p.canceled_at
     FROM payment_processes p
     WHERE 'cancel' = ANY($2::text[]) AND p.mid = $1 AND p.mode = $13 AND p.status = 'CANCELED'
       AND p.canceled_at IS NOT NULL
       AND ($3::text[] IS NULL OR 'CANCELED' = ANY($3::text[]))
       AND ($4::timestamptz IS NULL OR p.canceled_at >= $4)
       AND ($5::timestamptz IS NULL OR p.canceled_at < $5)
       AND ($6::bigint IS NULL OR p.amount >= $6)
       AND ($7::bigint IS NULL OR p.amount <= $7)
       AND ($8::text IS NULL OR p.order_id ^@ $8 OR lower(p.order_name) ^@ lower($8)
            OR p.user_public_id ^@ $8)
       AND (p.canceled_at, 'cancel', p.id) <
           (coalesce($9::timestamptz, 'infinity'), $10::text, $11::bigint)
     ORDER BY p.canceled_at DESC, p.id DESC
     LIMIT $12)
    UNION ALL
    -- Canceled without a canceled_at: timed by updated_at (expected to be none or very few).
    (SELECT 'cancel', p.id, p.tid, NULL, p.order_id, p.order_name, p.user_public_id, p.amount,
            p.currency, p.status, p.updated_at
     FROM payment_processes p
     WHERE 'cancel' = ANY($2::text[]) AND p.mid = $1 AND p.mode = $13 AND p.status = 'CANCELED'
       AND p.canceled_at IS NULL
       AND ($3::text[] IS NULL OR 'CANCELED' = ANY($3::text[]))
       AND ($4::timestamptz IS NULL OR p.updated_at >= $4)
       AND ($5::timestamptz IS NULL OR p.updated_at < $5)
       AND ($6::bigint IS NULL OR p.amount >= $6)
       AND ($7::bigint IS NULL OR p.amount <= $7)
       AND ($8::text IS NULL OR p.order_id ^@ $8 OR lower(p.order_name) ^@ lower($8)
            OR p.user_public_id ^@ $8)
       AND (p.updated_at, 'cancel', p.id) <
           (coalesce($9::timestamptz, 'infinity'), $10::text, $11::bigint)
     ORDER BY p.updated_at DESC, p.id DESC
     LIMIT $12)
    UNION ALL
    (SELECT 'refund', r.id, p.tid, r.public_id, p.order_id, p.order_name, p.user_public_id,
            r.amount, r.currency, r.status, r.requested_at
     FROM refunds r JOIN payment_processes p ON p.id = r.payment_id AND p.mid = r.mid
     WHERE 'refund' = ANY($2::text[]) AND r.mid = $1 AND r.mode = $13
       AND ($3::text[] IS NULL OR r.status = ANY($3::text[]))
       AND ($4::timestamptz IS NULL OR r.requested_at >= $4)
       AND ($5::timestamptz IS NULL OR r.requested_at < $5)
       AND ($6::bigint IS NULL OR r.amount >= $6)
       AND ($7::bigint IS NULL OR r.amount <= $7)
       AND ($8::text IS NULL OR p.order_id ^@ $8 OR lower(p.order_name) ^@ lower($8)
            OR p.user_public_id ^@ $8)
       AND (r.requested_at, 'refund', r.id) <
           (coalesce($9::timestamptz, 'infinity'), $10::text, $11::bigint)
     ORDER BY r.requested_at DESC, r.id DESC
     LIMIT $12)
) h
ORDER BY created_at DESC, kind DESC, id DESC
LIMIT $12;
