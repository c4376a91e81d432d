-- What the history provider answered for each past session, and symbols parked as dead.
--
-- Coverage needs more than "some bars exist": a session is complete for a raw timeframe only
-- once the history provider answered for it (after it ended) and every bar it served is still
-- stored. `bars = 0` records a session the provider confirmed empty (a halt, before a listing,
-- after a delisting), which is then no gap and is never requested again.

CREATE TABLE confirmed_sessions (
    symbol_id    integer NOT NULL REFERENCES symbols (id),
    timeframe    text NOT NULL CHECK (timeframe IN ('m5', 'm15')),
    day          date NOT NULL,
    bars         integer NOT NULL CHECK (bars >= 0),
    provider     text NOT NULL CHECK (provider IN ('polygon', 'alpaca')),
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol_id, timeframe, day)
);

-- An archive written before this table existed: its final (non-intraday) sessions are what
-- the history provider served, so they count as confirmed instead of being fetched again.
INSERT INTO confirmed_sessions (symbol_id, timeframe, day, bars, provider)
SELECT symbol_id, timeframe, (ts AT TIME ZONE 'America/New_York')::date, count(*), min(provider)
  FROM ohlc_bars_v2
 WHERE timeframe = 'm15' AND NOT is_intraday AND provider IN ('polygon', 'alpaca')
 GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;

-- A symbol that keeps answering SYMBOL_NOT_FOUND is parked: inactive, with the reason shown
-- by `watch list`, `status` and the API. `not_found_streak` counts such answers in a row;
-- `retry_after` (on the program's clock) holds the gap sensor off a symbol whose fetch failed.
ALTER TABLE symbols
    ADD COLUMN parked_reason    text,
    ADD COLUMN parked_at        timestamptz,
    ADD COLUMN not_found_streak integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_after      timestamptz;
