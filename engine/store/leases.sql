-- What payments and refunds share: both are queues of leased rows (status, lease_owner,
-- lease_expires_at, next_attempt_at, outcome_unknown_since), and these statements are the same
-- for both but for names. Each store fills the names in (`queries.leases`): {table}, its
-- {processing}, {pending} and {unresolved} states, and {reference}, the column the logs name
-- a row by (tid, public_id).

-- requeue --
-- Rows held by worker $6 that got no outcome go back to $2 status ({pending} or {unresolved}),
-- due after $3 seconds (null: never by itself), marked unknown when $4, with reason $5.
-- $1 ids; $2..$5 arrays of the same length.
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::boolean[], $5::text[])
        AS r(id, status, delay, unknown, reason)
)
UPDATE {table} q
SET status = r.status,
    lease_owner = NULL,
    lease_expires_at = NULL,
    next_attempt_at = CASE WHEN r.delay IS NULL THEN 'infinity'::timestamptz
                           ELSE now() + make_interval(secs => r.delay) END,
    outcome_unknown_since = CASE WHEN r.unknown THEN coalesce(q.outcome_unknown_since, now())
                                 ELSE q.outcome_unknown_since END,
    unresolved_reason = r.reason,
    last_actor = $6,
    updated_at = now()
FROM r
WHERE q.id = r.id AND q.status = '{processing}' AND q.lease_owner = $6
RETURNING q.id, q.{reference}, q.status;

-- reap_expired --
-- {processing} rows whose worker died (lease expired) go back to {pending}. It may have died
-- mid-call, so the outcome is unknown: the next attempt inquires first. $1 limit
-- The CTE is materialized (run once, so LIMIT holds) and keeps the old owner for the log.
WITH expired AS MATERIALIZED (
    SELECT id, lease_owner FROM {table}
    WHERE status = '{processing}' AND lease_expires_at < now()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE {table} q
SET status = '{pending}', lease_owner = NULL, lease_expires_at = NULL,
    outcome_unknown_since = coalesce(q.outcome_unknown_since, now()), last_actor = 'reaper',
    updated_at = now()
FROM expired
WHERE q.id = expired.id AND q.status = '{processing}' AND q.lease_expires_at < now()
RETURNING q.id, q.{reference}, expired.lease_owner;
