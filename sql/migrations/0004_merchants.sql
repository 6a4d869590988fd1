-- Merchants and their API keys. A key is shown once, at creation; only a keyed hash
-- (HMAC-SHA256 with the server's secret) and a short display prefix are stored.

CREATE TABLE merchants (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The seed's echo.mid: the merchant's public id.
    mid         text        NOT NULL UNIQUE CHECK (mid ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id   bigint      NOT NULL REFERENCES merchants (id),
    mode          text        NOT NULL CHECK (mode IN ('live', 'test')),
    -- What people see in lists: "sk_live_" and the first characters of the random part.
    prefix        text        NOT NULL,
    -- HMAC-SHA256(server secret, key): fast to check on every request, useless if stolen.
    key_hash      bytea       NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    -- Keys stop working at expires_at (set by a roll's grace period, or at creation).
    expires_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_merchant_idx ON api_keys (merchant_id, id);
