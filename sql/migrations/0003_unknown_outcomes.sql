-- Unknown outcomes: an acquirer call that timed out, was reset or got a 5xx may have charged
-- the card. Such a payment is never failed and never charged again blindly: it is resolved by
-- a status inquiry. If that takes longer than the configured window it becomes UNRESOLVED
-- (listed, counted, still inquired at a slow pace), never silently FAILED.

ALTER TABLE payment_processes DROP CONSTRAINT payment_processes_status_check;
ALTER TABLE payment_processes ADD CONSTRAINT payment_processes_status_check
    CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILED', 'UNRESOLVED'));

-- Which provider settles this payment (a registry name in the engine; card is the first).
ALTER TABLE payment_processes ADD COLUMN provider text NOT NULL DEFAULT 'card';
-- Set when a call may have moved money without us hearing the answer; the next attempt
-- asks the provider what happened before it may send the charge again.
ALTER TABLE payment_processes ADD COLUMN outcome_unknown_since timestamptz;
-- Why a payment is UNRESOLVED (or was, on its way to a final state).
ALTER TABLE payment_processes ADD COLUMN unresolved_reason text;

-- UNRESOLVED rows are still inquired (at the slow end of the backoff), so they share the
-- claim index with PENDING. A flagged row that must wait for a person has next_attempt_at
-- 'infinity' and is never claimed.
DROP INDEX payment_processes_pending_idx;
CREATE INDEX payment_processes_claimable_idx
    ON payment_processes (next_attempt_at, id) WHERE status IN ('PENDING', 'UNRESOLVED');
CREATE INDEX payment_processes_unresolved_idx
    ON payment_processes (id) WHERE status = 'UNRESOLVED';
