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
    PRIMARY KEY (universe, symbol_id)
);
