-- The back office's reads for a merchant's pages, every one scoped by (mid, mode):
-- the payments page and its export, a payment's timeline, the overview.
-- Loaded by engine/store/reports.py (`queries.load("reports")`).

-- custom_plans --
-- Plan the listing for the values it runs with, never with a cached generic plan: only then do
-- the unused filters below fold away and a prefix search becomes an index range. And without
-- parallel workers: a page is at most a few hundred rows read through indexes, and starting
-- workers cost more than that (at 10,000,000 payments a cancel branch estimated at 93,000
-- rows that found none planned a Gather Merge whose start took 11 of a first page's 16 ms).
SET LOCAL plan_cache_mode = force_custom_plan;
SET LOCAL max_parallel_workers_per_gather = 0;

-- payment_page --
-- Merchant $1's payments page (and the API's GET /api/payments, and the CSV export: one query),
-- newest first by (created_at, kind, id): payments (not canceled; at requested_at), cancels
-- (canceled payments; at canceled_at, else updated_at) and refunds (at their requested_at).
-- $2 kinds (text[] of payment, cancel, refund); null means no filter for
-- $3 statuses (text[]), $4 created_at >= , $5 created_at < , $6 amount >= , $7 amount <= ,
-- $8 prefix of order_id, of lower(order_name) (compared lowered) or of user_public_id;
-- $9, $10, $11 the (created_at, kind, id) the page starts after (null, '', 0 for the first);
-- $12 how many rows (null: all, for the export), $13 the mode, $14 the currency (compared as
-- $14::bpchar, the columns' char(3): compared as text, the column would be cast and its index
-- could not be searched); the search $8 also matches a tid exactly.
-- Four branches, each one `branch` below: each walks its own index in the page's order and
-- stops after $12 rows, so the final sort never sees more than 4 * $12 rows, however long the
-- history. engine/store/reports.py puts them in, with where each reads its rows.
SELECT kind, id, tid, refund_id, order_id, order_name, user_public_id, amount, currency,
       status, created_at
FROM (
{branches}
) h
ORDER BY created_at DESC, kind DESC, id DESC
LIMIT $12;

-- branch --
-- One branch of payment_page: the rows of one kind, at one time column, read from `source`
-- (row names the table that has the amount, currency and status: p, or r for refunds; p
-- always has the payment's columns). Every filter is applied alike in every branch.
-- (at, 'kind', id) < ($9, $10, $11) is exact; its index bound is at <= $9.
(SELECT '{kind}' AS kind, {row}.id, p.tid, {refund_id} AS refund_id, p.order_id, p.order_name,
        p.user_public_id, {row}.amount, {row}.currency, {row}.status, {at} AS created_at
 FROM {source}
 WHERE '{kind}' = ANY($2::text[]) AND {row}.mid = $1 AND {row}.mode = $13 AND {state}
   AND ($3::text[] IS NULL OR {status} = ANY($3::text[]))
   AND ($4::timestamptz IS NULL OR {at} >= $4)
   AND ($5::timestamptz IS NULL OR {at} < $5)
   AND ($6::bigint IS NULL OR {row}.amount >= $6)
   AND ($7::bigint IS NULL OR {row}.amount <= $7)
   AND ($8::text IS NULL OR p.tid = $8 OR p.order_id ^@ $8
        OR lower(p.order_name) ^@ lower($8) OR p.user_public_id ^@ $8)
   AND ($14::text IS NULL OR {row}.currency = $14::bpchar)
   AND ({at}, '{kind}', {row}.id) <
       (coalesce($9::timestamptz, 'infinity'), $10::text, $11::bigint)
 ORDER BY {at} DESC, {row}.id DESC
 LIMIT $12)

-- export_csv --
-- The CSV export's lines, for COPY (...) TO STDOUT (FORMAT csv) with every column quoted but
-- the amount (ReportsStore.export_csv; the columns are CSV_COLUMNS in engine/store/reports.py):
-- the rows of the payment_page statement that page_statement chose (put in below as `page`,
-- its parameters inlined: COPY takes none), in its order.
-- A text cell that a spreadsheet would take for a formula (it begins with =, +, -, @, a tab
-- or a carriage return; ascii() is the first character's code) gets a ' in front (OWASP's
-- advice against CSV injection): the ids and the merchant's or customer's words. Kind, status
-- and currency are the engine's own words, the amount a number (a minus stays a minus), the
-- time formatted here: ISO 8601 in UTC with microseconds, as engine.reports.utc_iso writes it,
-- so that every line ends in Z" (ReportsStore.export_csv finds the line ends by it).
SELECT kind,
       CASE WHEN ascii(tid) IN (61, 43, 45, 64, 9, 13) THEN '''' || tid ELSE tid END AS tid,
       CASE WHEN ascii(refund_id) IN (61, 43, 45, 64, 9, 13) THEN '''' || refund_id
            ELSE coalesce(refund_id, '') END AS refund_id,
       CASE WHEN ascii(order_id) IN (61, 43, 45, 64, 9, 13) THEN '''' || order_id
            ELSE order_id END AS order_id,
       CASE WHEN ascii(order_name) IN (61, 43, 45, 64, 9, 13) THEN '''' || order_name
            ELSE coalesce(order_name, '') END AS order_name,
       CASE WHEN ascii(user_public_id) IN (61, 43, 45, 64, 9, 13) THEN '''' || user_public_id
            ELSE user_public_id END AS customer_id,
       amount, currency, status,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
FROM ({page}) h
ORDER BY h.created_at DESC, h.kind DESC, h.id DESC

-- matched --
-- The head of payment_page for a search or an amount range with few matches: the ids and
-- times of the payments the statement below it lists (search_ids or amount_ids, put in by
-- engine/store/reports.py), from the narrow payment_search, kept (materialized), so that no
-- branch walks the merchant's history by time looking for them: a walk's estimate cannot know
-- how many rows it passes over, the matches' count can (search_size, amount_size). Only the
-- rows a page shows are then read from payment_processes: the payments branch sorts the
-- matches by time and reads rows until its page is full (matched_payments); the cancels and
-- the refunds are looked up among all the matches by the payment's id (the index of canceled
-- payments' ids, migration 0023, and canceled_untimed_idx; refunds_payment_idx), each kept apart so that the planner
-- cannot instead walk every cancel or refund by time with the ids as a filter. At 10,000,000
-- payments, reading every match's wide row first took 54 of a 4,411-match search's 97 ms.
-- (An amount range's page does not read matched_refunds: PostgreSQL runs no CTE unread.)
WITH matched AS MATERIALIZED (
{ids}
),
matched_cancels AS MATERIALIZED (
    SELECT * FROM payment_processes
    WHERE id = ANY (ARRAY(SELECT id FROM matched)) AND status = 'CANCELED'
      AND canceled_at IS NOT NULL
    UNION ALL
    SELECT * FROM payment_processes
    WHERE mid = $1 AND mode = $13 AND id = ANY (ARRAY(SELECT id FROM matched))
      AND status = 'CANCELED' AND canceled_at IS NULL
),
matched_refunds AS MATERIALIZED (
    SELECT * FROM refunds WHERE payment_id = ANY (ARRAY(SELECT id FROM matched))
)

-- search_ids --
-- Merchant $1's payments in mode $13 that the search $8 (not null) matches, with their time:
-- a range of each prefix index, read from the index alone (each carries the id and the time,
-- migration 0024; a bitmap of the three read a payment_search page per match), and the tid's.
SELECT s.id, s.requested_at FROM payment_search s
WHERE s.mid = $1 AND s.mode = $13 AND s.order_id ^@ $8::text
UNION
SELECT s.id, s.requested_at FROM payment_search s
WHERE s.mid = $1 AND s.mode = $13 AND lower(s.order_name) ^@ lower($8::text)
UNION
SELECT s.id, s.requested_at FROM payment_search s
WHERE s.mid = $1 AND s.mode = $13 AND s.user_public_id ^@ $8::text
UNION
SELECT t.id, t.requested_at FROM payment_processes t
WHERE t.tid = $8::text AND t.mid = $1 AND t.mode = $13

-- amount_ids --
-- Merchant $1's payments in mode $13 whose amount is within $6..$7, with their time, found
-- through payment_search's amount index, so that the cancel branches do not walk every cancel
-- by time looking for the few in the range (at 10,000,000 payments: 80,000 cancels passed
-- over, 589 ms for a first page).
SELECT s.id, s.requested_at FROM payment_search s
WHERE s.mid = $1 AND s.mode = $13
  AND ($6::bigint IS NULL OR s.amount >= $6) AND ($7::bigint IS NULL OR s.amount <= $7)

-- matched_payments --
-- The payments branch's rows for matched: the matches sorted by time (a sorted subquery, kept
-- as one, so the planner reads payment_processes for them in that order and stops when the
-- page is full), their id and time from the match (so the page's cursor is compared before a
-- row is read), the rest from payment_processes.
(SELECT m.id, p.tid, p.mid, p.mode, p.order_id, p.order_name, p.user_public_id, p.amount,
        p.currency, p.status, m.requested_at, p.canceled_at, p.updated_at
 FROM (SELECT id, requested_at FROM matched ORDER BY requested_at DESC, id DESC) m
 JOIN payment_processes p ON p.id = m.id)

-- searched --
-- payment_page's payments for a currency or amount filter, or a search with many matches: the
-- unchanging columns (and the order by time) from payment_search, where the indexes for those
-- filters are and whose narrow rows a walk by time passes over cheaply; the state from
-- payment_processes, read for the rows that pass. The id is payment_search's too, so that the
-- page's cursor, (requested_at, kind, id), bounds the walk of its index: with the id from
-- payment_processes it was a filter after the join, and the 20th page of a search walked
-- all the rows before it again (at 10,000,000 payments: 92,000 rows, 86 ms).
(SELECT s.id, s.tid, s.mid, s.mode, s.order_id, s.order_name, s.user_public_id, s.amount,
        s.currency, p.status, s.requested_at, p.canceled_at, p.updated_at
 FROM payment_search s JOIN payment_processes p ON p.id = s.id)

-- search_size --
-- How many of merchant $1's payments in mode $2 the search $3 matches by a prefix, counted up
-- to $4 (a tid adds one at most): ranges of the prefix indexes, the cheap ones first, stopping
-- at $4.
SELECT count(*) FROM (
    (SELECT 1 FROM payment_search WHERE mid = $1 AND mode = $2 AND order_id ^@ $3)
    UNION ALL
    (SELECT 1 FROM payment_search WHERE mid = $1 AND mode = $2 AND user_public_id ^@ $3)
    UNION ALL
    (SELECT 1 FROM payment_search
     WHERE mid = $1 AND mode = $2 AND lower(order_name) ^@ lower($3))
    LIMIT $4
) m;

-- amount_size --
-- How many of merchant $1's payments in mode $2 have an amount within $3..$4 (either null: no
-- bound), counted up to $5 from payment_search's amount index alone.
SELECT count(*) FROM (
    SELECT 1 FROM payment_search
    WHERE mid = $1 AND mode = $2
      AND ($3::bigint IS NULL OR amount >= $3) AND ($4::bigint IS NULL OR amount <= $4)
    LIMIT $5
) m;

-- find_exact --
-- The tid of merchant $1's payment in mode $2 whose tid or order id is exactly $3 (a pasted
-- reference opens the payment). A tid wins over an order id.
SELECT tid FROM payment_processes
WHERE mid = $1 AND mode = $2 AND (tid = $3 OR order_id = $3)
ORDER BY (tid = $3) DESC
LIMIT 1;

-- timeline --
-- Everything that happened to merchant $2's payment $1 in mode $3, oldest first: every state
-- change of the payment and of its refunds (a cancel is the change to CANCELED; a refund's
-- first change carries its amount and reason), and every webhook attempt as it was sent.
-- seq breaks ties in time: state changes before attempts, each by id.
WITH p AS (
    SELECT id FROM payment_processes WHERE tid = $1 AND mid = $2 AND mode = $3
)
SELECT e.at, 0 AS seq, e.id,
       CASE WHEN e.refund_id IS NOT NULL THEN 'refund'
            WHEN e.to_status = 'CANCELED' THEN 'cancel'
            ELSE 'state' END AS kind,
       e.actor, e.from_status, e.to_status, r.public_id AS refund_id,
       CASE WHEN r.id IS NULL THEN '{}'::jsonb
            ELSE jsonb_build_object('amount', r.amount, 'currency', r.currency,
                                    'reason', r.reason) END AS detail
FROM p JOIN payment_events e ON e.payment_id = p.id
LEFT JOIN refunds r ON r.id = e.refund_id
UNION ALL
SELECT a.started_at, 1, a.id, 'webhook', 'engine', NULL, d.event_status, f.public_id,
       jsonb_build_object(
           'deliveryId', d.id, 'eventId', d.event_id, 'url', d.url,
           'attempt', a.attempt_no, 'finishedAt', a.finished_at,
           'responseCode', a.response_code, 'error', a.error,
           'requestHeaders', a.request_headers, 'requestBody', a.request_body,
           'responseExcerpt', a.response_excerpt)
FROM p JOIN webhook_deliveries d ON d.payment_id = p.id
JOIN webhook_attempts a ON a.delivery_id = d.id
LEFT JOIN refunds f ON f.id = d.refund_id
ORDER BY 1, 2, 3;

-- overview_counts --
-- Merchant $1's payments in mode $2 created in [$3, $4), per $6 ('hour' or 'day') in time zone
-- $5, per currency and outcome: from the rollup for those with an outcome (and its deltas not
-- folded yet, migration 0019), and counted directly for those still open (few; the status
-- index finds them).
SELECT date_trunc($6, hour, $5) AS bucket, currency, outcome, reason,
       sum(n)::bigint AS n, sum(amount)::bigint AS amount
FROM (
    SELECT hour, currency, outcome, reason, n, amount FROM payment_rollup
    WHERE mid = $1 AND mode = $2 AND hour >= $3 AND hour < $4
    UNION ALL
    SELECT hour, currency, outcome, reason, n, amount FROM payment_rollup_delta
    WHERE mid = $1 AND mode = $2 AND hour >= $3 AND hour < $4
) r
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT date_trunc($6, p.requested_at, $5), p.currency, 'OPEN', '', count(*),
       sum(p.amount)::bigint
-- One status at a time, so each is a range of the status index (an IN list let the planner
-- walk the merchant's whole range by time instead).
FROM unnest(ARRAY['PENDING', 'PROCESSING', 'REQUIRES_ACTION', 'UNRESOLVED']) AS s(status)
JOIN LATERAL (
    SELECT requested_at, currency, amount FROM payment_processes
    WHERE mid = $1 AND mode = $2 AND status = s.status
      AND requested_at >= $3 AND requested_at < $4
) p ON true
GROUP BY 1, 2;

-- overview_latency --
-- The created -> final latency histogram of the same payments (see latency_bucket in
-- sql/migrations/0012_backoffice.sql), per bucket of time.
SELECT date_trunc($6, hour, $5) AS bucket, bucket AS le, sum(n)::bigint AS n
FROM (
    SELECT hour, bucket, n FROM payment_latency_rollup
    WHERE mid = $1 AND mode = $2 AND hour >= $3 AND hour < $4
    UNION ALL
    SELECT hour, bucket, n FROM payment_latency_delta
    WHERE mid = $1 AND mode = $2 AND hour >= $3 AND hour < $4
) l
GROUP BY 1, 2;

-- fold_rollup --
-- Move the overview's committed deltas into its rollup (migration 0019); how many it moved.
SELECT fold_payment_rollup();
