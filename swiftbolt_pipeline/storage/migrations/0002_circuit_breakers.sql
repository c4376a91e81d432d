-- Circuit breaker per provider, shared by every worker.

CREATE TABLE provider_breakers (
    provider             text PRIMARY KEY,
    state                text NOT NULL DEFAULT 'closed'
                         CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_at            timestamptz,
    probe_started_at     timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

INSERT INTO provider_breakers (provider)
SELECT provider FROM rate_buckets ON CONFLICT DO NOTHING;
