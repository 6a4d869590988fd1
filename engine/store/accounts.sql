-- The back office's accounts: users, sessions, failed logins, saved views, key names.
-- Loaded by engine/store/accounts.py with queries.load("accounts").

-- insert_user --
-- A user; nothing when the email is taken. $1 email (lower case), $2 password hash, $3 role,
-- $4 mid (null for an operator), $5 time zone or null.
INSERT INTO backoffice_users (email, password_hash, role, mid, time_zone)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (email) DO NOTHING
RETURNING id, email, role, mid, time_zone, created_at, disabled_at;

-- set_password --
-- A new password hash for user $1 (by email); returns the user.
UPDATE backoffice_users SET password_hash = $2 WHERE email = $1
RETURNING id, email, role, mid, time_zone, created_at, disabled_at;

-- user_for_login --
-- The enabled user with email $1 and its password hash; none while its merchant is suspended
-- (an operator has no merchant).
SELECT u.id, u.email, u.role, u.mid, u.time_zone, u.created_at, u.disabled_at, u.password_hash
FROM backoffice_users u
WHERE u.email = $1 AND u.disabled_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.mid = u.mid AND m.suspended_at IS NOT NULL);

-- users_of_merchant --
-- Merchant $1's users, oldest first.
SELECT id, email, role, mid, time_zone, created_at, disabled_at
FROM backoffice_users WHERE mid = $1 ORDER BY id;

-- login_lock --
-- Serialize the login attempts of one account (and of one address): counting and recording
-- happen under it, so parallel guesses cannot all slip under the limit. $1 a scope.
SELECT pg_advisory_xact_lock(hashtextextended($1, 72201011));

-- login_attempt --
-- Record an attempt under scopes $1 (account) and $2 (address), counted as failed until the
-- password proves right, and count each scope's attempts in the last $3 seconds, this one
-- included (the same transaction sees its own rows). Returns the new rows' ids, the counts,
-- and each scope's oldest attempt in the window (when the count goes down).
WITH new AS (
    INSERT INTO backoffice_login_failures (scope) VALUES ($1), ($2) RETURNING id
)
SELECT array(SELECT id FROM new) AS ids,
       count(*) FILTER (WHERE scope = $1) + 1 AS account,
       count(*) FILTER (WHERE scope = $2) + 1 AS address,
       coalesce(min(at) FILTER (WHERE scope = $1), now()) AS account_oldest,
       coalesce(min(at) FILTER (WHERE scope = $2), now()) AS address_oldest,
       now() AS now
FROM backoffice_login_failures
WHERE scope IN ($1, $2) AND at > now() - make_interval(secs => $3);

-- prune_login_failures --
-- Forget up to 500 attempts older than $1 seconds (every window has passed them).
DELETE FROM backoffice_login_failures
WHERE id IN (
    SELECT id FROM backoffice_login_failures
    WHERE at <= now() - make_interval(secs => $1) LIMIT 500
);

-- login_succeeded --
-- The password was right: attempt rows $1 were no failure, and account scope $2 starts over.
DELETE FROM backoffice_login_failures WHERE id = ANY($1::bigint[]) OR scope = $2;

-- insert_session --
-- A session for user $2 whose token hashes to $1, with CSRF token $3, ending in $4 seconds;
-- $5 the client's address.
INSERT INTO backoffice_sessions (token_hash, user_id, csrf_token, expires_at, address)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
RETURNING id;

-- touch_session --
-- The live session whose token hashes to $1 (not revoked, not past its end, used within the
-- last $2 seconds, its user enabled and its merchant not suspended), marked used now.
UPDATE backoffice_sessions s SET last_seen_at = now()
FROM backoffice_users u
WHERE s.token_hash = $1 AND u.id = s.user_id AND s.revoked_at IS NULL
  AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => $2)
  AND u.disabled_at IS NULL
  -- A suspended merchant's staff are out at once, like its keys.
  AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.mid = u.mid AND m.suspended_at IS NOT NULL)
RETURNING s.id, s.csrf_token, s.mode, s.expires_at,
          u.id AS user_id, u.email, u.role, u.mid, u.time_zone, u.created_at, u.disabled_at;

-- revoke_session --
-- Log out session $1.
UPDATE backoffice_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL;

-- revoke_user_sessions --
-- Log user $1 out everywhere; returns how many sessions ended.
WITH gone AS (
    UPDATE backoffice_sessions SET revoked_at = now()
    WHERE user_id = $1 AND revoked_at IS NULL RETURNING id
)
SELECT count(*) FROM gone;

-- set_session_mode --
-- Session $1 shows mode $2 from now on.
UPDATE backoffice_sessions SET mode = $2 WHERE id = $1 AND revoked_at IS NULL;

-- insert_view --
-- User $1's view $3 of mode $2 with query string $4; a view of the same name is replaced.
INSERT INTO backoffice_saved_views (user_id, mode, name, query) VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id, mode, name) DO UPDATE SET query = EXCLUDED.query, created_at = now()
RETURNING id, name, query, created_at;

-- list_views --
-- User $1's views of mode $2, by name.
SELECT id, name, query, created_at FROM backoffice_saved_views
WHERE user_id = $1 AND mode = $2 ORDER BY name;

-- delete_view --
-- User $1's view $3 of mode $2 is gone; returns it if it was there.
DELETE FROM backoffice_saved_views WHERE user_id = $1 AND mode = $2 AND id = $3 RETURNING id;
