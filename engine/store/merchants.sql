-- Merchants and their API keys. A line under each header says what it does and what $1..$n
-- are.

-- lock_merchant --
-- Serialize the key and endpoint inserts of merchant $1, which count before they write (the
-- caps), for the same reason as lock_payment.
SELECT id FROM merchants WHERE mid = $1 FOR NO KEY UPDATE;

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
-- $6 the most keys of this mode and kind the merchant may have working (not revoked, not
-- expired): past it nothing is stored or returned. $7 kind: 'secret' or 'publishable'.
INSERT INTO api_keys (merchant_id, mode, prefix, key_hash, expires_at, kind)
SELECT $1, $2, $3, $4, $5, $7
WHERE (SELECT count(*) FROM api_keys
       WHERE merchant_id = $1 AND mode = $2 AND kind = $7 AND revoked_at IS NULL
         AND (expires_at IS NULL OR expires_at > now())) < $6
RETURNING id, mode, prefix, created_at, last_used_at, expires_at, revoked_at, kind;

-- authenticate_key --
-- The key with hash $1 and its merchant; records use at most once a minute per key, so a busy
-- key does not write on every request.
WITH k AS (
    SELECT a.id, a.mode, a.prefix, a.expires_at, a.revoked_at, m.mid, a.kind
    FROM api_keys a JOIN merchants m ON m.id = a.merchant_id
    WHERE a.key_hash = $1
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
SELECT a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at,
       a.kind
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
RETURNING a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at,
          a.kind;

-- revoke_api_key --
-- Key $2 of merchant $1 in mode $3 stops working now. Returns it if it was not revoked already.
UPDATE api_keys a
SET revoked_at = now()
FROM merchants m
WHERE m.id = a.merchant_id AND m.mid = $1 AND a.id = $2 AND a.mode = $3
  AND a.revoked_at IS NULL
RETURNING a.id, a.mode, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at,
          a.kind;
