-- A payment that waits for the customer elsewhere (issue 14): Atom's hosted payment page.
-- PENDING -> PROCESSING -> REQUIRES_ACTION (the provider answered with a token and the page to
-- send the customer to) -> SUCCESS | FAILED, by Atom's callback or by our inquiry; a token the
-- customer walked away from ends FAILED with fail_reason ACTION_EXPIRED (never charged).
-- Existing rows keep their status: this only widens the set of allowed ones.

ALTER TABLE payment_processes DROP CONSTRAINT payment_processes_status_check;
ALTER TABLE payment_processes ADD CONSTRAINT payment_processes_status_check
    CHECK (status IN ('PENDING', 'PROCESSING', 'REQUIRES_ACTION', 'SUCCESS', 'FAILED',
                      'UNRESOLVED', 'CANCELED', 'PARTIALLY_REFUNDED', 'REFUNDED'));

-- The seed's columns: Atom's token for its payment page, then (from the callback or the
-- inquiry) Atom's transaction id and the way the customer paid.
ALTER TABLE payment_processes ADD COLUMN atom_token_id text;
ALTER TABLE payment_processes ADD COLUMN atom_txn_id text;
ALTER TABLE payment_processes ADD COLUMN payment_method text;
-- Where the customer is sent (the provider's page), and until when we wait for them.
ALTER TABLE payment_processes ADD COLUMN action_url text;
ALTER TABLE payment_processes ADD COLUMN action_expires_at timestamptz;

-- The worker's inquiry pass walks only payments waiting for the customer, by when they are
-- due (next_attempt_at: the next inquiry, or the expiry).
CREATE INDEX payment_processes_requires_action_idx
    ON payment_processes (next_attempt_at, id) WHERE status = 'REQUIRES_ACTION';

-- A signed callback that came after the payment was already final the other way (Atom
-- charged a payment we expired): recorded as it came and flagged for a person, never applied.
CREATE TABLE late_callbacks (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id    bigint      NOT NULL REFERENCES payment_processes (id),
    provider      text        NOT NULL,
    -- What the callback said: SUCCESS or FAILED, Atom's transaction id, the decline reason.
    status        text        NOT NULL CHECK (status IN ('SUCCESS', 'FAILED')),
    atom_txn_id   text,
    reason        text,
    amount        bigint      NOT NULL,
    currency      text        NOT NULL,
    -- The payment's status when it came.
    payment_status text       NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- Set by the person who dealt with it.
    reviewed_at   timestamptz,
    -- A repeat of the same late callback is one row.
    UNIQUE (payment_id, status)
);
CREATE INDEX late_callbacks_open_idx ON late_callbacks (id) WHERE reviewed_at IS NULL;
