-- Operator alerts (a failed run, a breaker that opened, a parked symbol) as an outbox: the
-- event is recorded in the transaction that makes it happen, so it is recorded exactly once
-- however many processes race, and a sender posts it to the webhook later (a slow or absent
-- webhook never holds up a fetch; an outage only delays delivery).

CREATE TABLE IF NOT EXISTS alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('run_failed', 'breaker_opened', 'symbol_parked')),
    subject         text NOT NULL,  -- run id, provider or ticker
    reason          text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Events that may be reported more than once (a run's failure, seen by every sensor tick
    -- that evaluates it) carry a key; recording the same key again does nothing.
    dedupe_key      text UNIQUE,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts (next_attempt_at) WHERE delivered_at IS NULL;
