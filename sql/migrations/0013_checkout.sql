-- Pay with the phone (issue 13): publishable keys, checkout sessions, customers and their
-- cards, and the link from a payment to the session that made it.

-- ===== publishable keys =====
-- A publishable key (pk_test_/pk_live_) lives beside the secret keys, told apart by kind: it
-- may only start and follow checkout sessions of its merchant and mode.
ALTER TABLE api_keys ADD COLUMN kind text NOT NULL DEFAULT 'secret'
    CHECK (kind IN ('secret', 'publishable'));

-- ===== customers =====
CREATE TABLE customers (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id      text        NOT NULL UNIQUE,
    email          text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- Argon2id, in its own encoded form (parameters and salt included).
    password_hash  text        NOT NULL,
    name           text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));

-- A card is what the acquirer gave back for it: a token, the brand and the last four digits.
-- No card number is ever stored here.
CREATE TABLE customer_cards (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES customers (id),
    token        text        NOT NULL UNIQUE CHECK (token ~ '^card_[A-Za-z0-9]{8,64}$'),
    brand        text        NOT NULL,
    last4        text        NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX customer_cards_customer_idx ON customer_cards (customer_id, id DESC)
    WHERE deleted_at IS NULL;

-- A signed-in customer's app: the cookie holds a random token; only its hash is kept.
CREATE TABLE customer_sessions (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES customers (id),
    token_hash   bytea       NOT NULL UNIQUE,
    -- The form token of this login (double submit is not needed: it is checked server side).
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX customer_sessions_expiry_idx ON customer_sessions (expires_at);

-- ===== checkout sessions =====
CREATE TABLE checkout_sessions (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id        text        NOT NULL UNIQUE CHECK (public_id ~ '^cs_[A-Za-z0-9]{1,64}$'),
    -- Handed to the browser (with the publishable key) to read this session and its stream.
    client_secret    text        NOT NULL,
    mid              text        NOT NULL,
    mode             text        NOT NULL CHECK (mode IN ('live', 'test')),
    order_id         text        NOT NULL,
    order_name       text        NOT NULL,
    amount           bigint      NOT NULL CHECK (amount > 0),
    currency         text        NOT NULL,
    customer_ref     text,
    success_url      text,
    cancel_url       text,
    -- open -> scanned -> confirmed | canceled | expired, each a compare-and-set.
    status           text        NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'scanned', 'confirmed', 'canceled', 'expired')),
    -- Goes up on every change of the session or of its payment: the SSE event id.
    version          integer     NOT NULL DEFAULT 1,
    idempotency_key  text,
    request_digest   text        NOT NULL,
    actor            text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    scanned_at       timestamptz,
    closed_at        timestamptz,
    -- The customer who opened it last, then the one who confirmed or canceled it.
    customer_id      bigint      REFERENCES customers (id),
    UNIQUE (mid, mode, order_id)
);
CREATE UNIQUE INDEX checkout_sessions_idempotency_key
    ON checkout_sessions (mid, mode, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The expiry sweep walks only sessions still waiting.
CREATE INDEX checkout_sessions_due_idx ON checkout_sessions (expires_at)
    WHERE status IN ('open', 'scanned');
-- A customer's usage history.
CREATE INDEX checkout_sessions_customer_idx ON checkout_sessions (customer_id, id DESC)
    WHERE customer_id IS NOT NULL;

-- A payment made by a session names it; at most one payment per session, whatever happens.
ALTER TABLE payment_processes ADD COLUMN checkout_session_id bigint
    REFERENCES checkout_sessions (id);
-- The acquirer's token of the customer's card (never a card number).
ALTER TABLE payment_processes ADD COLUMN card_token text;
CREATE UNIQUE INDEX payment_processes_checkout_session_key
    ON payment_processes (checkout_session_id) WHERE checkout_session_id IS NOT NULL;

-- ===== change notices =====
-- Every change of a session (or of its payment's status) raises its version and sends
-- NOTIFY checkout '<public id> <version>', delivered when the transaction commits: the web
-- processes' single LISTEN connection fans it out to the open SSE streams. Ordinary payments
-- (no session) never reach these triggers, so the intake's commits are not slowed.
CREATE FUNCTION notify_checkout_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('checkout', NEW.public_id || ' ' || NEW.version);
    RETURN NULL;
END $$;

CREATE TRIGGER checkout_sessions_notify
    AFTER UPDATE ON checkout_sessions
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION notify_checkout_session();

CREATE FUNCTION bump_checkout_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE checkout_sessions SET version = version + 1, updated_at = now()
    WHERE id = NEW.checkout_session_id;
    RETURN NULL;
END $$;

CREATE TRIGGER payment_processes_checkout_changed
    AFTER UPDATE OF status ON payment_processes
    FOR EACH ROW
    WHEN (NEW.checkout_session_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION bump_checkout_session();
