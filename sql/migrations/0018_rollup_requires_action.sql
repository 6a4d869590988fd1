-- A payment that waited for the customer at the provider's page (REQUIRES_ACTION, migration
-- 0016) reaches its outcome from that state: the overview's rollup counts it like any other.
-- Only the list of open states changes; the rest is migration 0012's function as it was.
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
