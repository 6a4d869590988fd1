-- The seed's payment_processes table, plus what the engine needs to claim rows safely
-- (lease owner and expiry, attempts, next attempt time) and the webhook outbox.

CREATE TABLE payment_processes (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Snowflake id (time-ordered, unique across processes) in fixed-width Base62.
    public_id              text        NOT NULL UNIQUE,
    -- <prefix>_<YYYYMMDD>_<8 random digits>; a collision is retried by the intake.
    tid                    text        NOT NULL UNIQUE,
    mid                    text        NOT NULL,
    order_id               text        NOT NULL,
    user_public_id         text        NOT NULL,
    -- Money is an integer in the currency's minor unit, never a float.
    amount                 bigint      NOT NULL CHECK (amount > 0),
    currency               char(3)     NOT NULL DEFAULT 'KRW',
    status                 text        NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILED')),
    approval_no            text,
    fail_reason            text,
    echo                   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Digest of the request as accepted: the same orderId with another body is a conflict.
    request_digest         text        NOT NULL,
    webhook_url            text        NOT NULL,
    webhook_sent_at        timestamptz,
    webhook_response_code  integer,
    requested_at           timestamptz NOT NULL DEFAULT now(),
    processing_started_at  timestamptz,
    processed_at           timestamptz,
    -- A claim is a lease: the worker that holds the row and until when.
    lease_owner            text,
    lease_expires_at       timestamptz,
    attempts               integer     NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    -- Idempotency: one payment per order of a merchant.
    CONSTRAINT payment_processes_mid_order_id_key UNIQUE (mid, order_id),
    CONSTRAINT payment_processes_final_has_outcome CHECK (
        (status <> 'SUCCESS' OR approval_no IS NOT NULL)
        AND (status <> 'FAILED' OR fail_reason IS NOT NULL)
    )
) WITH (fillfactor = 80);  -- room on the page for HOT updates of the state columns

-- Only rows that still need work are indexed, so finished rows never slow a claim.
CREATE INDEX payment_processes_pending_idx
    ON payment_processes (next_attempt_at, id) WHERE status = 'PENDING';
CREATE INDEX payment_processes_processing_lease_idx
    ON payment_processes (lease_expires_at) WHERE status = 'PROCESSING';

-- The outbox: a row is written in the same transaction as the final state it reports.
CREATE TABLE webhook_deliveries (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id          bigint      NOT NULL REFERENCES payment_processes (id),
    -- Stable across retries and resends of the same event, so a merchant can deduplicate.
    event_id            text        NOT NULL,
    -- The outcome being reported (SUCCESS or FAILED).
    event_status        text        NOT NULL CHECK (event_status IN ('SUCCESS', 'FAILED')),
    url                 text        NOT NULL,
    status              text        NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'SENDING', 'DELIVERED', 'DEAD')),
    attempts            integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner         text,
    lease_expires_at    timestamptz,
    last_response_code  integer,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    delivered_at        timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

CREATE INDEX webhook_deliveries_due_idx
    ON webhook_deliveries (next_attempt_at, id) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_sending_lease_idx
    ON webhook_deliveries (lease_expires_at) WHERE status = 'SENDING';
CREATE INDEX webhook_deliveries_dead_idx
    ON webhook_deliveries (id) WHERE status = 'DEAD';
CREATE INDEX webhook_deliveries_payment_idx ON webhook_deliveries (payment_id);

-- Every attempt, kept: when, what came back, how long it took.
CREATE TABLE webhook_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    bigint      NOT NULL REFERENCES webhook_deliveries (id),
    attempt_no     integer     NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    response_code  integer,
    error          text
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);

-- Snowflake node ids: each process takes the next one, so ids never collide across processes.
CREATE SEQUENCE snowflake_node_seq;

-- Wake the pollers when work arrives (delivered at commit, once per statement).
CREATE FUNCTION notify_payments_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payments_pending', '');
    RETURN NULL;
END $$;
CREATE TRIGGER payment_processes_notify AFTER INSERT ON payment_processes
    FOR EACH STATEMENT EXECUTE FUNCTION notify_payments_pending();

CREATE FUNCTION notify_webhooks_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhooks_pending', '');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_webhooks_pending();
