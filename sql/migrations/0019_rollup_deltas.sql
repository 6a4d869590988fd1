-- The overview's rollup without a lock shared by every settle (issue 15). The trigger of
-- migration 0012 upserted its counts into payment_rollup inside each settling statement, so
-- two workers settling payments of the same merchant, hour and outcome queued on that row
-- until the first committed. A pure-SQL drain of 20,000 payments by 4 concurrent drainers:
-- 18 % of the sessions' samples waited on Lock:transactionid, 1,817 payments/s; without the
-- trigger 2,387/s and no such wait.
--
-- Each settling statement now appends its counts to a delta table (an insert: nobody waits),
-- and fold_payment_rollup() moves the deltas into payment_rollup: the worker runs it every
-- few seconds (engine/worker/process.py), and the overview reads the rollup plus the deltas
-- not folded yet, so it is exact at every moment. Two folds at once count each delta once:
-- a delta is deleted by one of them (the other waits for it and finds it gone).
CREATE TABLE payment_rollup_delta (
    mid       text        NOT NULL,
    mode      text        NOT NULL,
    hour      timestamptz NOT NULL,
    currency  char(3)     NOT NULL,
    outcome   text        NOT NULL,
    reason    text        NOT NULL DEFAULT '',
    n         bigint      NOT NULL,
    amount    bigint      NOT NULL
);
CREATE INDEX payment_rollup_delta_idx ON payment_rollup_delta (mid, mode, hour);

CREATE TABLE payment_latency_delta (
    mid     text        NOT NULL,
    mode    text        NOT NULL,
    hour    timestamptz NOT NULL,
    bucket  smallint    NOT NULL,
    n       bigint      NOT NULL
);
CREATE INDEX payment_latency_delta_idx ON payment_latency_delta (mid, mode, hour);

CREATE OR REPLACE FUNCTION rollup_payment_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
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
        WHERE o.status IN ('PENDING', 'PROCESSING', 'REQUIRES_ACTION', 'UNRESOLVED')
          AND n.status IN ('SUCCESS', 'FAILED', 'CANCELED')
    ), counts AS (
        INSERT INTO payment_rollup_delta (mid, mode, hour, currency, outcome, reason, n, amount)
        SELECT mid, mode, hour, currency, outcome, reason, count(*), sum(amount)
        FROM done
        GROUP BY mid, mode, hour, currency, outcome, reason
    )
    INSERT INTO payment_latency_delta (mid, mode, hour, bucket, n)
    SELECT mid, mode, hour, latency_bucket(latency), count(*)
    FROM done WHERE latency IS NOT NULL
    GROUP BY mid, mode, hour, latency_bucket(latency);
    RETURN NULL;
END $$;

-- Move every committed delta into the rollup; returns how many delta rows it moved.
CREATE FUNCTION fold_payment_rollup() RETURNS bigint LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM payment_rollup_delta RETURNING *
    ), folded AS (
        INSERT INTO payment_rollup AS r (mid, mode, hour, currency, outcome, reason, n, amount)
        SELECT mid, mode, hour, currency, outcome, reason, sum(n), sum(amount)
        FROM moved
        GROUP BY mid, mode, hour, currency, outcome, reason
        ORDER BY mid, mode, hour, currency, outcome, reason
        ON CONFLICT (mid, mode, hour, currency, outcome, reason)
        DO UPDATE SET n = r.n + excluded.n, amount = r.amount + excluded.amount
    ), latency_moved AS (
        DELETE FROM payment_latency_delta RETURNING *
    ), latency_folded AS (
        INSERT INTO payment_latency_rollup AS l (mid, mode, hour, bucket, n)
        SELECT mid, mode, hour, bucket, sum(n)
        FROM latency_moved
        GROUP BY mid, mode, hour, bucket
        ORDER BY mid, mode, hour, bucket
        ON CONFLICT (mid, mode, hour, bucket) DO UPDATE SET n = l.n + excluded.n
    )
    SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM latency_moved);
$$;

-- Whatever sat in the deltas is counted again by the rebuild: it drops them.
CREATE OR REPLACE FUNCTION rebuild_payment_rollup() RETURNS void LANGUAGE sql AS $$
    DELETE FROM payment_rollup_delta;
    DELETE FROM payment_latency_delta;
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
