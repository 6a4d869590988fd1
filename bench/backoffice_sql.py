"""The back-office bench's fill: N payments by generate_series, refunds, with triggers off."""

from __future__ import annotations

# Indexes of payment_processes and refunds that back no constraint: dropped for the fill,
# rebuilt after from their own definitions (loading first and indexing after is several times
# faster than keeping every index up row by row).
PLAIN_INDEXES = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.tablename IN ('payment_processes', 'payment_search', 'refunds') AND NOT EXISTS (
    SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexname::regclass)
"""

# Rows $1..$2 of $3, spread over the 90 days before $4 (row 1 newest). 60 % belong to
# bo_big, the rest to nine others; 1 in 5 is test mode. Statuses, currencies, amounts, names
# and customers are drawn from hashes of the row number, so they do not follow the merchant.
# SUCCESS 79 %, FAILED 15 % (four reasons), CANCELED 2 %, REFUNDED 1 %, PARTIALLY_REFUNDED 1 %,
# UNRESOLVED 1 in 10,000, PENDING the newest 200. KRW 90 %, USD 9 %, JPY 1 %.
FILL = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, provider, last_actor, status, approval_no, fail_reason, requested_at,
     processed_at, attempts, next_attempt_at, mode, order_name, canceled_at, refunded_amount,
     refund_reserved, outcome_unknown_since, unresolved_reason)
SELECT 'BO' || lpad(g::text, 12, '0'), 'BO_20260101_' || lpad(g::text, 10, '0'),
       CASE WHEN g % 10 < 6 THEN 'bo_big' ELSE 'bo_m' || (g % 10) END,
       'O' || g, 'CUST_' || (h2 % 100000), 1000 + (h2 % 200000),
       CASE WHEN h3 < 90 THEN 'KRW' WHEN h3 < 99 THEN 'USD' ELSE 'JPY' END,
       '{}'::jsonb, 'digest', 'http://127.0.0.1:9/none', 'card', 'bench:backoffice',
       st, CASE WHEN st IN ('SUCCESS', 'REFUNDED', 'PARTIALLY_REFUNDED') THEN 'AP' || g END,
       CASE WHEN st = 'FAILED' THEN (ARRAY['DECLINED', 'INSUFFICIENT_BALANCE', 'EXPIRED_CARD',
                                          'LIMIT_EXCEEDED'])[1 + h2 % 4] END,
       at,
       CASE WHEN st NOT IN ('PENDING', 'UNRESOLVED', 'CANCELED')
            THEN at + make_interval(secs => 0.05 + (h2 % 3000) / 1000.0 * (1 + h3 % 3)) END,
       1,
       CASE WHEN st = 'UNRESOLVED' THEN 'infinity'::timestamptz ELSE at END,
       CASE WHEN g % 5 = 0 THEN 'test' ELSE 'live' END,
       (ARRAY['Blue', 'Red', 'Green', 'Black', 'White'])[1 + h2 % 5] || ' '
           || (ARRAY['Shirt', 'Shoes', 'Hat', 'Scarf', 'Socks'])[1 + (h2 / 5) % 5] || ' '
           || (h2 % 1000),
       CASE WHEN st = 'CANCELED' THEN at + interval '1 minute' END,
       CASE WHEN st = 'REFUNDED' THEN 1000 + (h2 % 200000)
            WHEN st = 'PARTIALLY_REFUNDED' THEN 500 ELSE 0 END,
       CASE WHEN st = 'REFUNDED' THEN 1000 + (h2 % 200000)
            WHEN st = 'PARTIALLY_REFUNDED' THEN 500 ELSE 0 END,
       CASE WHEN st = 'UNRESOLVED' THEN at END,
       CASE WHEN st = 'UNRESOLVED' THEN 'PROVIDER_HTTP_401' END
FROM (
    SELECT g, h2, h3, $4::timestamptz - make_interval(days => 90) * (g::float8 / $3) AS at,
           CASE WHEN g <= 200 THEN 'PENDING'
                WHEN g % 10000 = 7 THEN 'UNRESOLVED'
                WHEN h1 < 79 THEN 'SUCCESS'
                WHEN h1 < 94 THEN 'FAILED'
                WHEN h1 < 96 THEN 'CANCELED'
                WHEN h1 < 97 THEN 'REFUNDED'
                WHEN h1 < 98 THEN 'PARTIALLY_REFUNDED'
                ELSE 'SUCCESS' END AS st
    FROM (
        SELECT g, abs(hashint8(g)) % 100 AS h1, abs(hashint8(g + 7919)) AS h2,
               abs(hashint8(g * 31)) % 100 AS h3
        FROM generate_series($1::bigint, $2::bigint) AS g
    ) hashed
) drawn
"""

# One refund per refunded payment (its whole amount), one per partially refunded (500).
REFUNDS = """
INSERT INTO refunds
    (public_id, payment_id, mid, amount, currency, reason, idempotency_key, request_digest,
     status, requested_at, processed_at, mode, provider_refund_no)
SELECT 'RF' || p.id, p.id, p.mid, p.refunded_amount, p.currency, 'bench', 'k' || p.id, 'd',
       'REFUNDED', p.requested_at + interval '1 hour', p.requested_at + interval '1 hour',
       p.mode, 'RN' || p.id
FROM payment_processes p
WHERE p.status IN ('REFUNDED', 'PARTIALLY_REFUNDED')
"""
