-- Trust boundaries (issue 10): test mode is a sandbox, and a webhook endpoint belongs to one
-- merchant in one mode.
--
-- 1. Every payment, refund, endpoint and history event records its mode ('test' or 'live'),
--    from the key that made it. A key sees and acts only on objects of its own mode; the
--    other mode's are as unknown to it as another merchant's. Idempotency keys are scoped the
--    same way: a test order never blocks, or reveals, a live order with the same id.
-- 2. Endpoints are rebuilt: one row per (merchant, mode, url), its signing secrets in their own
--    table. A delivery is signed with the secrets of its payment's endpoint, checked to be the
--    payment's merchant's and mode's, never looked up by url alone.
--
-- The backfills below read whole tables once. On a large live database run this migration at
-- a quiet time.

-- ===== modes =====

ALTER TABLE payment_processes ADD COLUMN mode text;
-- A payment's first history event names the key that made it ("merchant:sk_test_AbC12x").
-- Anything not provably made by a test key counts as live: a live payment wrongly marked test
-- could be settled by hand, a test payment wrongly marked live only hides from test keys.
UPDATE payment_processes p
SET mode = CASE WHEN EXISTS (
        SELECT 1 FROM payment_events e
        WHERE e.payment_id = p.id AND e.refund_id IS NULL AND e.from_status IS NULL
          AND e.actor LIKE 'merchant:sk\_test\_%'
    ) THEN 'test' ELSE 'live' END;
ALTER TABLE payment_processes ALTER COLUMN mode SET NOT NULL;
ALTER TABLE payment_processes ADD CONSTRAINT payment_processes_mode_check
    CHECK (mode IN ('live', 'test'));
ALTER TABLE payment_processes DROP CONSTRAINT payment_processes_mid_order_id_key;
ALTER TABLE payment_processes ADD CONSTRAINT payment_processes_mid_mode_order_id_key
    UNIQUE (mid, mode, order_id);

ALTER TABLE refunds ADD COLUMN mode text;
UPDATE refunds r SET mode = p.mode FROM payment_processes p WHERE p.id = r.payment_id;
ALTER TABLE refunds ALTER COLUMN mode SET NOT NULL;
ALTER TABLE refunds ADD CONSTRAINT refunds_mode_check CHECK (mode IN ('live', 'test'));
ALTER TABLE refunds DROP CONSTRAINT refunds_mid_idempotency_key_key;
ALTER TABLE refunds ADD CONSTRAINT refunds_mid_mode_idempotency_key_key
    UNIQUE (mid, mode, idempotency_key);

-- payment_events is append-only (its triggers refuse UPDATE): the backfill lifts them for
-- this one statement, inside this migration's transaction.
ALTER TABLE payment_events ADD COLUMN mode text;
ALTER TABLE payment_events DISABLE TRIGGER payment_events_no_update;
UPDATE payment_events e SET mode = p.mode FROM payment_processes p WHERE p.id = e.payment_id;
ALTER TABLE payment_events ENABLE TRIGGER payment_events_no_update;
ALTER TABLE payment_events ALTER COLUMN mode SET NOT NULL;

CREATE OR REPLACE FUNCTION record_payment_events_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payment_events (payment_id, from_status, to_status, actor, mode)
    SELECT n.id, NULL, n.status, coalesce(n.last_actor, n.lease_owner, 'engine'), n.mode
    FROM inserted n
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION record_payment_events_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payment_events (payment_id, from_status, to_status, actor, mode)
    SELECT n.id, o.status, n.status, coalesce(n.last_actor, n.lease_owner, 'engine'), n.mode
    FROM updated_new n JOIN updated_old o ON o.id = n.id
    WHERE o.status IS DISTINCT FROM n.status
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION record_refund_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payment_events (payment_id, refund_id, from_status, to_status, actor, mode)
    VALUES (NEW.payment_id, NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            NEW.status, coalesce(NEW.last_actor, NEW.lease_owner, 'engine'), NEW.mode);
    RETURN NULL;
END $$;

-- The history's indexes lead with (mid, mode) now: a key's listing walks only its own mode.
-- Same names as before (tests EXPLAIN the listing by index name).
DROP INDEX payment_processes_history_idx;
CREATE INDEX payment_processes_history_idx
    ON payment_processes (mid, mode, requested_at DESC, id DESC);
DROP INDEX payment_processes_canceled_idx;
CREATE INDEX payment_processes_canceled_idx
    ON payment_processes (mid, mode, canceled_at DESC, id DESC) WHERE status = 'CANCELED';
DROP INDEX payment_processes_canceled_untimed_idx;
CREATE INDEX payment_processes_canceled_untimed_idx
    ON payment_processes (mid, mode, id) WHERE status = 'CANCELED' AND canceled_at IS NULL;
DROP INDEX payment_processes_order_id_prefix_idx;
CREATE INDEX payment_processes_order_id_prefix_idx
    ON payment_processes (mid, mode, order_id text_pattern_ops);
DROP INDEX payment_processes_order_name_prefix_idx;
CREATE INDEX payment_processes_order_name_prefix_idx
    ON payment_processes (mid, mode, lower(order_name) text_pattern_ops);
DROP INDEX payment_processes_customer_prefix_idx;
CREATE INDEX payment_processes_customer_prefix_idx
    ON payment_processes (mid, mode, user_public_id text_pattern_ops);
DROP INDEX refunds_history_idx;
CREATE INDEX refunds_history_idx ON refunds (mid, mode, requested_at DESC, id DESC);
DROP INDEX payment_processes_unresolved_idx;
CREATE INDEX payment_processes_unresolved_idx
    ON payment_processes (mid, mode, id) WHERE status = 'UNRESOLVED';

-- ===== endpoints =====

ALTER TABLE webhook_endpoints RENAME TO webhook_endpoints_old;
DROP INDEX webhook_endpoints_url_idx;
DROP INDEX webhook_endpoints_mid_idx;

CREATE TABLE webhook_endpoints (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mid          text        NOT NULL,
    mode         text        NOT NULL CHECK (mode IN ('live', 'test')),
    -- Where deliveries go; checked against the egress policy when registered and when sent.
    url          text        NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- A deleted endpoint receives nothing more; its row stays for the deliveries naming it.
    deleted_at   timestamptz
);
-- One live registration of a url per merchant and mode.
CREATE UNIQUE INDEX webhook_endpoints_active_url_key
    ON webhook_endpoints (mid, mode, url) WHERE deleted_at IS NULL;
-- A payment without webhookUrl goes to the merchant's newest active endpoint of its mode.
CREATE INDEX webhook_endpoints_mid_idx
    ON webhook_endpoints (mid, mode, id DESC) WHERE deleted_at IS NULL;

-- Several active rows are several valid secrets: during a roll every delivery carries a
-- signature for each, so the merchant can switch over without losing a webhook.
CREATE TABLE webhook_endpoint_secrets (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id  bigint      NOT NULL REFERENCES webhook_endpoints (id),
    secret       text        NOT NULL CHECK (starts_with(secret, 'whsec_')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Active while NULL or in the future; a roll sets it on the old secrets.
    expires_at   timestamptz
);
CREATE INDEX webhook_endpoint_secrets_endpoint_idx
    ON webhook_endpoint_secrets (endpoint_id, id DESC);

-- Old endpoints that named a merchant carry over into both modes (they served both until
-- now), with their secrets. Rows without a merchant are dropped: they signed for whoever named
-- their url, which is the hole this migration closes.
INSERT INTO webhook_endpoints (mid, mode, url, created_at)
SELECT o.mid, m.mode, o.url, min(o.created_at)
FROM webhook_endpoints_old o CROSS JOIN (VALUES ('live'), ('test')) AS m(mode)
WHERE o.mid IS NOT NULL
GROUP BY o.mid, m.mode, o.url;
INSERT INTO webhook_endpoint_secrets (endpoint_id, secret, created_at, expires_at)
SELECT e.id, o.secret, o.created_at, o.expires_at
FROM webhook_endpoints_old o
JOIN webhook_endpoints e ON e.mid = o.mid AND e.url = o.url;
DROP TABLE webhook_endpoints_old;

-- Which endpoint a payment reports to; NULL means the operator's default receiver
-- (ENGINE_DEFAULT_WEBHOOK_URL, signed with ENGINE_WEBHOOK_SECRET, shown to no merchant).
ALTER TABLE payment_processes ADD COLUMN endpoint_id bigint REFERENCES webhook_endpoints (id);
ALTER TABLE webhook_deliveries ADD COLUMN endpoint_id bigint REFERENCES webhook_endpoints (id);
UPDATE payment_processes p SET endpoint_id = e.id
FROM webhook_endpoints e
WHERE e.mid = p.mid AND e.mode = p.mode AND e.url = p.webhook_url AND e.deleted_at IS NULL;
UPDATE webhook_deliveries d SET endpoint_id = p.endpoint_id
FROM payment_processes p
WHERE p.id = d.payment_id AND p.endpoint_id IS NOT NULL;
