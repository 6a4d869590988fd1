-- The back office's people (issue 12): merchant users (admin or viewer, each of one merchant)
-- and our operators, their server-side sessions, failed logins (throttling), saved filter
-- views, and a name for API keys issued from the back office.

CREATE TABLE backoffice_users (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stored lower-cased: one account per address, however it is typed.
    email          text        NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    -- Argon2id, in its PHC string form ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash  text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('admin', 'viewer', 'operator')),
    -- The merchant a merchant user belongs to; an operator belongs to none.
    mid            text        REFERENCES merchants (mid),
    -- An IANA zone name; null: the back office's default (ENGINE_BACKOFFICE_TIME_ZONE).
    time_zone      text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    CHECK ((role = 'operator') = (mid IS NULL))
);
CREATE INDEX backoffice_users_mid_idx ON backoffice_users (mid) WHERE mid IS NOT NULL;

-- A session is a random token in a cookie; only its SHA-256 is stored, so a copy of this
-- table opens no session. Revoking sets revoked_at (one row, or all of a user's).
CREATE TABLE backoffice_sessions (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    bytea       NOT NULL UNIQUE,
    user_id       bigint      NOT NULL REFERENCES backoffice_users (id),
    -- Sent back in every form and htmx request: a request without it changes nothing.
    csrf_token    text        NOT NULL,
    -- The mode the pages show: test or live, switched by the user.
    mode          text        NOT NULL DEFAULT 'test' CHECK (mode IN ('live', 'test')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    -- Absolute end; an idle session also ends (checked against last_seen_at).
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    address       text
);
CREATE INDEX backoffice_sessions_user_idx ON backoffice_sessions (user_id) WHERE revoked_at IS NULL;

-- Failed logins, by account (the email typed, known or not) and by client address; counted
-- over a sliding window to answer 429. Old rows are deleted as new ones arrive.
CREATE TABLE backoffice_login_failures (
    id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'account:<email>' or 'address:<ip>'
    scope  text        NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backoffice_login_failures_scope_idx ON backoffice_login_failures (scope, at);
-- Pruning finds the rows past every window without a scan.
CREATE INDEX backoffice_login_failures_at_idx ON backoffice_login_failures (at);

-- A user's named filters of the payments page: the query string, as the URL carries it.
CREATE TABLE backoffice_saved_views (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES backoffice_users (id),
    mode        text        NOT NULL CHECK (mode IN ('live', 'test')),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    query       text        NOT NULL CHECK (length(query) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, mode, name)
);

-- Keys issued from the back office carry a name a person chose ("checkout server").
ALTER TABLE api_keys ADD COLUMN name text CHECK (length(name) <= 80);
