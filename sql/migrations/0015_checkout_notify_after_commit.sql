-- A NOTIFY inside a transaction holds PostgreSQL's single notification lock through that
-- transaction's commit, so every notifying commit waits for the one before it (bench.sse:
-- confirms topped out near 130/s and commit -> event p99 was 2 s at 500/s; the same limit as
-- migration 0008's). The customer's actions on a session (scan, confirm, cancel, expiry on
-- read) are one commit each, so they now send their notice after the commit, coalesced with
-- the others in flight (engine/store/notices.py): their transactions say so with
-- SET LOCAL hamster.checkout_notify = 'after_commit', and this trigger leaves them to it.
-- Every other change (the worker's claim and settle of a session's payment, the sweep) still
-- notifies here: those commits are batched, and they are the ones whose notice must survive
-- the process that made them.
CREATE OR REPLACE FUNCTION notify_checkout_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('hamster.checkout_notify', true) IS DISTINCT FROM 'after_commit' THEN
        PERFORM pg_notify('checkout', NEW.public_id || ' ' || NEW.version);
    END IF;
    RETURN NULL;
END $$;
