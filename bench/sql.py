"""The SQL the benchmark runs itself: pre-fills, pgbench scripts, and what it reads back."""

from __future__ import annotations

# Every table a phase writes; emptied between measurements so each starts alike.
TRUNCATE = (
    "TRUNCATE payment_processes, payment_search, webhook_deliveries, webhook_attempts,"
    " payment_events,"
    " refunds, bench_insert RESTART IDENTITY CASCADE"
)

CREATE_BENCH_INSERT = """
CREATE TABLE IF NOT EXISTS bench_insert (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client      integer     NOT NULL,
    amount      bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
)
"""

# pgbench: the physical limit, one row and one commit per transaction.
PGBENCH_INSERT = "INSERT INTO bench_insert (client, amount) VALUES (:client_id, 1000);\n"

# (No colon inside literals: pgbench would read it as a variable.)
# pgbench, informational: the engine's own insert_payment shape (same table, indexes,
# triggers, RETURNING *), at SQL speed with no HTTP and no Python in the way.
PGBENCH_PAYMENT = """\\set r random(1, 9000000000000000000)
INSERT INTO payment_processes (public_id, tid, mid, order_id, user_public_id, amount, \
currency, echo, request_digest, webhook_url, provider, last_actor, mode) \
VALUES ('PG' || :client_id || '_' || :r, \
'PGB_' || :client_id || '_' || :r, 'bench_pgbench', :client_id || '_' || :r, 'USR_1', 1000, \
'KRW', jsonb_build_object('mid', 'bench_pgbench'), 'digest', 'none', 'card', 'pgbench', 'test') \
ON CONFLICT (mid, mode, order_id) DO NOTHING RETURNING *;
"""

# The drain's pre-fill: N PENDING payments in one INSERT ... SELECT, triggers on (the per-row
# history trigger and the per-statement NOTIFY fire as for any insert).
# $1 mid, $2 order prefix, $3 webhook url, $4 n
PREFILL = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, provider, last_actor, mode)
SELECT 'BP' || lpad(g::text, 12, '0'),
       'BENCH_' || to_char(now(), 'YYYYMMDD') || '_' || lpad(g::text, 8, '0'),
       $1, $2 || '_' || g, 'USR_' || (g % 997), 1000 + g % 1000, 'KRW',
       jsonb_build_object('mid', $1::text, 'orderNumber', $2 || '_' || g),
       md5(g::text), $3, 'card', 'bench:prefill', 'test'
FROM generate_series(1, $4::int) AS g
"""

# The scale table: rows $1..$2, PENDING (due) when $3, else final (4 SUCCESS : 1 FAILED).
# Filled with triggers off (session_replication_role = replica): the history rows are not
# what a claim reads, and 10M of them would only make the fill slower.
SCALE_FILL = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, provider, last_actor, status, approval_no, fail_reason, requested_at,
     processed_at, attempts, next_attempt_at, mode)
SELECT 'SC' || lpad(g::text, 12, '0'),
       'SCALE_20260101_' || lpad(g::text, 10, '0'),
       'bench_scale', 'S_' || g, 'USR_' || (g % 997), 1000 + g % 1000, 'KRW',
       jsonb_build_object('mid', 'bench_scale', 'orderNumber', 'S_' || g),
       md5(g::text), 'http://127.0.0.1:9/none', 'card', 'bench:scale',
       CASE WHEN $3 THEN 'PENDING' WHEN g % 5 = 0 THEN 'FAILED' ELSE 'SUCCESS' END,
       CASE WHEN NOT $3 AND g % 5 <> 0 THEN 'AP' || g END,
       CASE WHEN NOT $3 AND g % 5 = 0 THEN 'INSUFFICIENT_BALANCE' END,
       now() - interval '1 day', CASE WHEN NOT $3 THEN now() - interval '1 day' END,
       CASE WHEN $3 THEN 0 ELSE 1 END, now() - interval '1 minute', 'test'
FROM generate_series($1::bigint, $2::bigint) AS g
"""

# Not done yet: work a worker still has to do. Each count is served by a partial index.
OPEN_WORK = """
SELECT (SELECT count(*) FROM payment_processes WHERE status IN ('PENDING', 'UNRESOLVED'))
     + (SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING') AS open,
       (SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING')
     + (SELECT count(*) FROM webhook_deliveries WHERE status = 'SENDING') AS undelivered
"""

# The drain's result: when the last payment became final and its webhook delivered.
DRAIN_RESULT = """
SELECT (SELECT count(*) FROM payment_processes WHERE status IN ('SUCCESS', 'FAILED')) AS final,
       (SELECT max(processed_at) FROM payment_processes) AS last_final,
       (SELECT count(*) FROM webhook_deliveries WHERE status = 'DELIVERED') AS delivered,
       (SELECT count(*) FROM webhook_deliveries WHERE status = 'DEAD') AS dead,
       (SELECT max(delivered_at) FROM webhook_deliveries WHERE status = 'DELIVERED')
           AS last_delivered
"""

# End to end, for the payments whose orderId starts with $1: accept -> webhook delivered.
E2E_RESULT = """
WITH p AS (
    SELECT p.requested_at, p.processing_started_at, p.processed_at, d.delivered_at
    FROM payment_processes p
    LEFT JOIN webhook_deliveries d ON d.payment_id = p.id AND d.status = 'DELIVERED'
    WHERE p.order_id LIKE $1 || '%'
), span AS (
    SELECT min(requested_at) AS first_req, max(requested_at) AS last_req FROM p
)
SELECT count(*) AS accepted,
       count(p.delivered_at) AS delivered,
       span.first_req, span.last_req,
       max(p.delivered_at) AS last_delivered,
       count(*) FILTER (WHERE p.delivered_at <= span.last_req) AS delivered_in_window,
       count(*) FILTER (WHERE p.delivered_at > span.first_req
                          + (span.last_req - span.first_req) / 2
                        AND p.delivered_at <= span.last_req) AS delivered_second_half,
       1000 * percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM p.delivered_at - p.requested_at)) AS p50_ms,
       1000 * percentile_cont(0.99) WITHIN GROUP (
           ORDER BY extract(epoch FROM p.delivered_at - p.requested_at)) AS p99_ms,
       -- Where the time goes: waiting to be claimed, claimed -> final (acquirer call and
       -- settle), final -> webhook delivered (outbox claim, POST, record).
       1000 * percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM p.processing_started_at - p.requested_at)) AS queue_ms,
       1000 * percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM p.processed_at - p.processing_started_at)) AS settle_ms,
       1000 * percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM p.delivered_at - p.processed_at)) AS webhook_ms
FROM p, span
GROUP BY span.first_req, span.last_req
"""

# The light run's slowest payments (accept -> webhook at or above the p99): when each came
# (seconds after the first) and how long each leg took, to tell a warm-up (early), a pause or
# a checkpoint (clustered in time) and a queue (a leg that grows) apart.
LIGHT_TAIL = """
WITH p AS (
    SELECT p.requested_at,
           extract(epoch FROM d.delivered_at - p.requested_at) AS total,
           extract(epoch FROM p.processing_started_at - p.requested_at) AS queue,
           extract(epoch FROM p.processed_at - p.processing_started_at) AS settle,
           extract(epoch FROM d.delivered_at - p.processed_at) AS webhook
    FROM payment_processes p
    JOIN webhook_deliveries d ON d.payment_id = p.id AND d.status = 'DELIVERED'
    WHERE p.order_id LIKE $1 || '%'
), cut AS (
    SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY total) AS p99,
           min(requested_at) AS first FROM p
)
SELECT extract(epoch FROM p.requested_at - cut.first) AS at_s, 1000 * total AS total_ms,
       1000 * queue AS queue_ms, 1000 * settle AS settle_ms, 1000 * webhook AS webhook_ms
FROM p, cut
WHERE total >= cut.p99
ORDER BY p.requested_at
"""

# What PostgreSQL did in the background (sampled before and after a run): checkpoints, and
# autovacuum or autoanalyze passes over the hot tables.
BACKGROUND = """
SELECT (SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints,
       (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)
        FROM pg_stat_user_tables) AS autovacuums
"""

DEAD_COUNT = "SELECT count(*) FROM webhook_deliveries WHERE status = 'DEAD'"

ROW_COUNT = "SELECT count(*) FROM payment_processes"

COUNT_PREFIX = "SELECT count(*) FROM payment_processes WHERE order_id LIKE $1 || '%'"

# --statements: what ran since the reset, per payment ($1), the bench's own queries left out.
STATEMENTS = """
SELECT calls::float8 / $1 AS per_payment, mean_exec_time AS mean_ms,
       total_exec_time / 1000 AS total_s,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE '%FROM payment_processes) AS%'
  AND calls >= $1 / 100
ORDER BY calls DESC, total_exec_time DESC
LIMIT 20
"""
