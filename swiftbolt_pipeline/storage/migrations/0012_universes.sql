-- Universe mode: named lists of symbols backfilled together, one Dagster partition per
-- universe x session instead of one per symbol x session. Members reference `symbols` rows
-- (inserted inactive when new, so they never join the watchlist); their bars live in
-- `ohlc_bars_v2` like every other bar.

CREATE TABLE IF NOT EXISTS universes (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS universe_members (
    universe  text NOT NULL REFERENCES universes (name) ON DELETE CASCADE,
    symbol_id integer NOT NULL REFERENCES symbols (id) ON DELETE CASCADE,
    -- The member's outcome in the last universe run that fetched it (NULL: never fetched).
    -- A fetch that served nothing (SYMBOL_NOT_FOUND) is a success in `job_runs` (the request
    -- was answered); here it is the member's failure, without failing the other members.
    last_run_id        text,
    last_range_start   date,
    last_range_end     date,
    last_error_code    text,
    last_error_message text,
    last_fetched_at    timestamptz,
    PRIMARY KEY (universe, symbol_id)
);
