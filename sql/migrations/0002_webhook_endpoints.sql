-- Signing secrets of merchant webhook endpoints (Standard Webhooks, `whsec_<base64>`).
-- Several rows for one url are several active secrets: while a secret is rolled, deliveries
-- carry a signature for each, so the merchant can switch over without losing a webhook.
-- A url with no active row is signed with ENGINE_WEBHOOK_SECRET.

CREATE TABLE webhook_endpoints (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The merchant it belongs to, for people; deliveries are matched by url.
    mid         text,
    -- Compared exactly with a payment's webhook_url.
    url         text        NOT NULL,
    secret      text        NOT NULL CHECK (starts_with(secret, 'whsec_')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Active while NULL or in the future; a roll sets it on the old secrets.
    expires_at  timestamptz
);

CREATE INDEX webhook_endpoints_url_idx ON webhook_endpoints (url);
