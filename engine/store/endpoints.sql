-- Merchants' webhook endpoints and their signing secrets (each endpoint a merchant's, in one
-- mode). A line under each header says what it does and what $1..$n are.

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
