-- Checkout's reads, cheaper (bench.sse: the session read was 40 % of PostgreSQL's busy
-- samples while settling).
--
-- 1. An empty payment_processes must not look "analyzed and empty" to the planner.
-- Migration 0014 ends with ANALYZE payment_processes; on a new database that records
-- reltuples = 0, and the planner then costs the table as empty (a sequential scan is free).
-- Each pooled connection caches a generic plan of a statement after five runs, so a session
-- read planned before the first payments existed seq-scanned payment_processes on every
-- call for as long as that plan lived (until autovacuum next analyzed the table): 2.4 ms and
-- 155 buffers per read at 5,000 payments, growing with the table, against 0.1 ms and 8
-- buffers through payment_processes_checkout_session_key. Cleared, the table counts as never
-- analyzed (reltuples = -1) and is costed at ten pages at least until autovacuum measures
-- it, so the plans use its indexes from the start. Only an empty table is touched (a filled
-- one keeps its statistics), and only where PostgreSQL has the function (18 and later).
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 180000
       AND NOT EXISTS (SELECT 1 FROM payment_processes) THEN
        PERFORM pg_clear_relation_stats('public', 'payment_processes');
    END IF;
END $$;

-- 2. A session's notice says the state it announces: NOTIFY checkout
-- '<public id> <version> <session status> <payment status>', the payment status being '-'
-- when the session has no payment (open, scanned, canceled, expired) and '?' when the notice
-- cannot tell (a confirmed session's change made by something other than its payment). A
-- web process's streams send the change from the notice alone and read the session only for
-- a final state, an unknown one, or an old two-word notice.
CREATE OR REPLACE FUNCTION notify_checkout_session() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payment text := '-';
BEGIN
    IF current_setting('hamster.checkout_notify', true) IS DISTINCT FROM 'after_commit' THEN
        IF NEW.status = 'confirmed' THEN
            payment := coalesce(
                nullif(current_setting('hamster.checkout_payment_status', true), ''), '?');
        END IF;
        PERFORM pg_notify(
            'checkout', NEW.public_id || ' ' || NEW.version || ' ' || NEW.status || ' ' || payment);
    END IF;
    RETURN NULL;
END $$;

-- A payment's change of status raises its session's version and hands the new status to the
-- notice above (a setting local to the transaction, cleared right after).
CREATE OR REPLACE FUNCTION bump_checkout_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('hamster.checkout_payment_status', NEW.status, true);
    UPDATE checkout_sessions SET version = version + 1, updated_at = now()
    WHERE id = NEW.checkout_session_id;
    PERFORM set_config('hamster.checkout_payment_status', '', true);
    RETURN NULL;
END $$;
