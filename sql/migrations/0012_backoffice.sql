-- Back office (issue 12), the engine's side: what the merchant's pages and the operators'
-- console read and write.
--
-- 1. Merchants can be suspended: their keys then authenticate as nothing.
-- 2. operator_audit: every operator action, append-only, written in the action's transaction.
-- 3. webhook_attempts keep what was sent (headers, body) and an excerpt of the answer, so a
--    payment's timeline can show each attempt as it was.
-- 4. Indexes for the payments page's filters and the operators' search.
-- 5. A rollup of final outcomes per (merchant, mode, hour), kept by a statement trigger, so the
--    overview reads a few thousand rows whatever the table's size.
--
-- Plain CREATE INDEX (migrations run in a transaction): on a large live table run this at a
-- quiet time, or build the indexes CONCURRENTLY by hand first (same names).

-- ===== 1. suspension =====

ALTER TABLE merchants ADD COLUMN suspended_at timestamptz;

-- ===== 2. the operators' audit log =====

CREATE TABLE operator_audit (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- "operator:<name>": who did it.
    actor   text        NOT NULL CHECK (actor <> ''),
    -- What was done ("payment.resolve", "merchant.suspend", ...).
    action  text        NOT NULL,
    -- What it was done to ("payment:<tid>", "merchant:<mid>", "provider:<mode>:<name>").
    target  text        NOT NULL,
    -- Why, in the operator's words (required where the action changes money's state).
    reason  text,
    detail  jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE FUNCTION operator_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'operator_audit is append-only';
END $$;
CREATE TRIGGER operator_audit_no_update BEFORE UPDATE OR DELETE ON operator_audit
    FOR EACH ROW EXECUTE FUNCTION operator_audit_append_only();
CREATE TRIGGER operator_audit_no_truncate BEFORE TRUNCATE ON operator_audit
    FOR EACH STATEMENT EXECUTE FUNCTION operator_audit_append_only();

-- ===== 3. webhook attempts as sent =====

-- The request as it went out (headers including the signature, the exact body) and the first
-- bytes of the answer. NULL for attempts recorded before this migration.
ALTER TABLE webhook_attempts ADD COLUMN request_headers jsonb;
ALTER TABLE webhook_attempts ADD COLUMN request_body text;
ALTER TABLE webhook_attempts ADD COLUMN response_excerpt text;

-- ===== 4. indexes =====

-- A status filter walks only that status, newest first (a rare status such as UNRESOLVED
-- would otherwise walk the whole history). Status changes are never HOT already (the claim
-- indexes name status in their predicates), so this costs one more index entry per change.
CREATE INDEX payment_processes_status_history_idx
    ON payment_processes (mid, mode, status, requested_at DESC, id DESC);
-- A rare currency walks only its rows, newest first (currency never changes).
CREATE INDEX payment_processes_currency_history_idx
    ON payment_processes (mid, mode, currency, requested_at DESC, id DESC);
-- A narrow amount range: the matching rows, then sorted (amount never changes).
CREATE INDEX payment_processes_amount_idx ON payment_processes (mid, mode, amount);
-- The operators' search by order id across merchants.
CREATE INDEX payment_processes_order_id_idx ON payment_processes (order_id);
CREATE INDEX refunds_status_history_idx
    ON refunds (mid, mode, status, requested_at DESC, id DESC);
CREATE INDEX refunds_currency_history_idx
    ON refunds (mid, mode, currency, requested_at DESC, id DESC);
CREATE INDEX refunds_amount_idx ON refunds (mid, mode, amount);
CREATE INDEX operator_audit_target_idx ON operator_audit (target, id DESC);

-- ===== 5. the overview's rollup =====

-- Payments that reached an outcome, by the hour (UTC) they were created in.
-- outcome: SUCCESS (refunds later do not change it), FAILED (reason = fail_reason) or CANCELED.
CREATE TABLE payment_rollup (
    mid       text        NOT NULL,
    mode      text        NOT NULL,
    hour      timestamptz NOT NULL,
    currency  char(3)     NOT NULL,
    outcome   text        NOT NULL,
    reason    text        NOT NULL DEFAULT '',
    n         bigint      NOT NULL,
    amount    bigint      NOT NULL,
    PRIMARY KEY (mid, mode, hour, currency, outcome, reason)
);

-- created -> final (SUCCESS or FAILED) latencies as a histogram: bucket b holds latencies in
-- [2^(b/2), 2^((b+1)/2)) milliseconds (bucket 0 also everything under 1 ms; the last bucket
-- everything from about 4.6 hours up).
CREATE TABLE payment_latency_rollup (
    mid     text        NOT NULL,
    mode    text        NOT NULL,
    hour    timestamptz NOT NULL,
    bucket  smallint    NOT NULL,
    n       bigint      NOT NULL,
    PRIMARY KEY (mid, mode, hour, bucket)
);

CREATE FUNCTION latency_bucket(latency interval) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(48, greatest(0, floor(2 * log(2.0, greatest(
        extract(epoch FROM latency) * 1000, 1)::numeric))))::smallint
$$;

-- One upsert per statement that made payments final; rows already final are left alone, so
-- each payment is counted once, at its first outcome. Keys are upserted in sorted order so two
-- statements never wait on each other's rows in opposite orders.
CREATE FUNCTION rollup_payment_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH done AS MATERIALIZED (
        SELECT n.mid, n.mode, date_trunc('hour', n.requested_at, 'UTC') AS hour, n.currency,
               n.status AS outcome,
               CASE WHEN n.status = 'FAILED' THEN coalesce(n.fail_reason, '') ELSE '' END
                   AS reason,
               n.amount,
               CASE WHEN n.status <> 'CANCELED' THEN n.processed_at - n.requested_at END
                   AS latency
        FROM rollup_new n JOIN rollup_old o ON o.id = n.id
        WHERE o.status IN ('PENDING', 'PROCESSING', 'UNRESOLVED')
          AND n.status IN ('SUCCESS', 'FAILED', 'CANCELED')
    ), counts AS (
        INSERT INTO payment_rollup AS r (mid, mode, hour, currency, outcome, reason, n, amount)
        SELECT mid, mode, hour, currency, outcome, reason, count(*), sum(amount)
        FROM done
        GROUP BY mid, mode, hour, currency, outcome, reason
        ORDER BY mid, mode, hour, currency, outcome, reason
        ON CONFLICT (mid, mode, hour, currency, outcome, reason)
        DO UPDATE SET n = r.n + excluded.n, amount = r.amount + excluded.amount
    )
    INSERT INTO payment_latency_rollup AS l (mid, mode, hour, bucket, n)
    SELECT mid, mode, hour, latency_bucket(latency), count(*)
    FROM done WHERE latency IS NOT NULL
    GROUP BY mid, mode, hour, latency_bucket(latency)
    ORDER BY mid, mode, hour, latency_bucket(latency)
    ON CONFLICT (mid, mode, hour, bucket) DO UPDATE SET n = l.n + excluded.n;
    RETURN NULL;
END $$;

CREATE TRIGGER payment_processes_rollup
    AFTER UPDATE ON payment_processes
    REFERENCING OLD TABLE AS rollup_old NEW TABLE AS rollup_new
    FOR EACH STATEMENT EXECUTE FUNCTION rollup_payment_outcomes();

-- The rollup from scratch, from payment_processes: for this migration's backfill and after a
-- bulk load with triggers off (the bench). Not for a live system (it does not lock out settles).
CREATE FUNCTION rebuild_payment_rollup() RETURNS void LANGUAGE sql AS $$
    DELETE FROM payment_rollup;
    DELETE FROM payment_latency_rollup;
    INSERT INTO payment_rollup (mid, mode, hour, currency, outcome, reason, n, amount)
    SELECT mid, mode, date_trunc('hour', requested_at, 'UTC'), currency,
           CASE WHEN status IN ('PARTIALLY_REFUNDED', 'REFUNDED') THEN 'SUCCESS' ELSE status END,
           CASE WHEN status = 'FAILED' THEN coalesce(fail_reason, '') ELSE '' END,
           count(*), sum(amount)
    FROM payment_processes
    WHERE status IN ('SUCCESS', 'FAILED', 'CANCELED', 'PARTIALLY_REFUNDED', 'REFUNDED')
    GROUP BY 1, 2, 3, 4, 5, 6;
    INSERT INTO payment_latency_rollup (mid, mode, hour, bucket, n)
    SELECT mid, mode, date_trunc('hour', requested_at, 'UTC'),
           latency_bucket(processed_at - requested_at), count(*)
    FROM payment_processes
    WHERE status IN ('SUCCESS', 'FAILED', 'PARTIALLY_REFUNDED', 'REFUNDED')
      AND processed_at IS NOT NULL
    GROUP BY 1, 2, 3, 4;
$$;

SELECT rebuild_payment_rollup();
