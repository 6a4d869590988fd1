-- Cancel and refunds (pay-200, Atom seed), and an append-only history of every state change.

ALTER TABLE payment_processes DROP CONSTRAINT payment_processes_status_check;
ALTER TABLE payment_processes ADD CONSTRAINT payment_processes_status_check
    CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILED', 'UNRESOLVED', 'CANCELED',
                      'PARTIALLY_REFUNDED', 'REFUNDED'));

-- A merchant's name for the order (searchable in the history).
ALTER TABLE payment_processes ADD COLUMN order_name text;
ALTER TABLE payment_processes ADD COLUMN canceled_at timestamptz;
-- Refunds completed, and refunds accepted (pending + completed). Reserving at acceptance with
-- a compare-and-set on refund_reserved is what keeps the total within the captured amount.
ALTER TABLE payment_processes ADD COLUMN refunded_amount bigint NOT NULL DEFAULT 0;
ALTER TABLE payment_processes ADD COLUMN refund_reserved bigint NOT NULL DEFAULT 0;
ALTER TABLE payment_processes ADD CONSTRAINT payment_processes_refunds_within_amount
    CHECK (0 <= refunded_amount AND refunded_amount <= refund_reserved
           AND refund_reserved <= amount);
-- Who made the last state change ("engine:<worker>", "merchant:<key prefix>", "admin");
-- the history trigger records it with each change.
ALTER TABLE payment_processes ADD COLUMN last_actor text;

CREATE TABLE refunds (
    id                     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The refund's reference at the provider ("RF" + Snowflake), unique like a tid.
    public_id              text        NOT NULL UNIQUE,
    payment_id             bigint      NOT NULL REFERENCES payment_processes (id),
    mid                    text        NOT NULL,
    amount                 bigint      NOT NULL CHECK (amount > 0),
    currency               char(3)     NOT NULL,
    reason                 text,
    -- The merchant's Idempotency-Key: the same key again returns the same refund.
    idempotency_key        text        NOT NULL,
    request_digest         text        NOT NULL,
    status                 text        NOT NULL DEFAULT 'REFUND_PENDING'
        CHECK (status IN ('REFUND_PENDING', 'REFUND_PROCESSING', 'REFUNDED', 'REFUND_FAILED',
                          'REFUND_UNRESOLVED')),
    provider_refund_no     text,
    fail_reason            text,
    requested_at           timestamptz NOT NULL DEFAULT now(),
    processed_at           timestamptz,
    lease_owner            text,
    lease_expires_at       timestamptz,
    attempts               integer     NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    outcome_unknown_since  timestamptz,
    unresolved_reason      text,
    last_actor             text,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refunds_mid_idempotency_key_key UNIQUE (mid, idempotency_key)
) WITH (fillfactor = 80);
CREATE INDEX refunds_claimable_idx
    ON refunds (next_attempt_at, id) WHERE status IN ('REFUND_PENDING', 'REFUND_UNRESOLVED');
CREATE INDEX refunds_processing_lease_idx
    ON refunds (lease_expires_at) WHERE status = 'REFUND_PROCESSING';
CREATE INDEX refunds_payment_idx ON refunds (payment_id, id);
CREATE INDEX refunds_history_idx ON refunds (mid, requested_at DESC, id DESC);

CREATE FUNCTION notify_refunds_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('refunds_pending', '');
    RETURN NULL;
END $$;
CREATE TRIGGER refunds_notify AFTER INSERT ON refunds
    FOR EACH STATEMENT EXECUTE FUNCTION notify_refunds_pending();

-- Refund outcomes are webhooks too.
ALTER TABLE webhook_deliveries ADD COLUMN refund_id bigint REFERENCES refunds (id);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_status_check
    CHECK (event_status IN ('SUCCESS', 'FAILED', 'CANCELED', 'REFUNDED', 'REFUND_FAILED'));

-- Every state change, appended by triggers (so no code path can forget one), never edited.
CREATE TABLE payment_events (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id   bigint      NOT NULL REFERENCES payment_processes (id),
    refund_id    bigint      REFERENCES refunds (id),
    from_status  text,
    to_status    text        NOT NULL,
    actor        text        NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX payment_events_payment_idx ON payment_events (payment_id, id);

CREATE FUNCTION payment_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment_events is append-only';
END $$;
CREATE TRIGGER payment_events_no_update BEFORE UPDATE OR DELETE ON payment_events
    FOR EACH ROW EXECUTE FUNCTION payment_events_append_only();

CREATE FUNCTION record_payment_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payment_events (payment_id, from_status, to_status, actor)
    VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status,
            coalesce(NEW.last_actor, NEW.lease_owner, 'engine'));
    RETURN NULL;
END $$;
CREATE TRIGGER payment_processes_events
    AFTER INSERT ON payment_processes
    FOR EACH ROW EXECUTE FUNCTION record_payment_event();
CREATE TRIGGER payment_processes_status_events
    AFTER UPDATE OF status ON payment_processes
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION record_payment_event();

CREATE FUNCTION record_refund_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payment_events (payment_id, refund_id, from_status, to_status, actor)
    VALUES (NEW.payment_id, NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            NEW.status, coalesce(NEW.last_actor, NEW.lease_owner, 'engine'));
    RETURN NULL;
END $$;
CREATE TRIGGER refunds_events
    AFTER INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION record_refund_event();
CREATE TRIGGER refunds_status_events
    AFTER UPDATE OF status ON refunds
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION record_refund_event();
