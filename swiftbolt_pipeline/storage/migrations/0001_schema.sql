-- The archive, the watchlist, the shared rate limiter, the cost ledger and checkpoints.

CREATE SCHEMA IF NOT EXISTS dagster;  -- Dagster's own instance storage (runs, events, schedules)

CREATE TABLE symbols (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticker      text NOT NULL UNIQUE CHECK (ticker ~ '^[A-Z][A-Z0-9]{0,5}([.-][A-Z0-9]{1,2})?$'),
    is_active   boolean NOT NULL DEFAULT true,
    window_days integer NOT NULL DEFAULT 730 CHECK (window_days > 0),
    priority    integer NOT NULL DEFAULT 0,
    added_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ohlc_bars_v2 (
    symbol_id   integer NOT NULL REFERENCES symbols (id),
    timeframe   text NOT NULL CHECK (timeframe IN ('m15', 'h1', 'h4', 'd1')),
    ts          timestamptz NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint NOT NULL CHECK (volume >= 0),
    vwap        double precision,
    trade_count bigint,
    provider    text NOT NULL CHECK (provider IN ('polygon', 'tradier', 'alpaca')),
    is_intraday boolean NOT NULL DEFAULT false,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol_id, timeframe, ts),
    CHECK (low <= high)
);

-- A token bucket per provider. `capacity` is also the most grants allowed in any `window_s`
-- seconds: a plain bucket would let 2x capacity through in its first window.
CREATE TABLE rate_buckets (
    provider       text PRIMARY KEY,
    capacity       integer NOT NULL CHECK (capacity > 0),
    refill_per_min numeric NOT NULL CHECK (refill_per_min > 0),
    tokens         numeric NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- 60 s plus a margin for the time between taking a token and the request reaching the server.
    window_s       numeric NOT NULL DEFAULT 61 CHECK (window_s > 0)
);

INSERT INTO rate_buckets (provider, capacity, refill_per_min, tokens) VALUES
    ('polygon', 5, 5, 5),
    ('tradier', 120, 120, 120),
    ('alpaca', 200, 200, 200),
    ('yahoo', 2000, 2000, 2000),
    ('finnhub', 60, 60, 60);

CREATE TABLE rate_grants (
    provider   text NOT NULL REFERENCES rate_buckets (provider) ON DELETE CASCADE,
    granted_at timestamptz NOT NULL
);
CREATE INDEX rate_grants_provider_time ON rate_grants (provider, granted_at);

-- `p_at` is for tests and replays; by default the time is read after the lock is held, so a
-- grant is stamped when it really happens, not when the caller started waiting for the lock.
CREATE FUNCTION take_token(p_provider text, p_at timestamptz DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    b rate_buckets%ROWTYPE;
    refilled numeric;
    recent integer;
BEGIN
    -- The row lock serializes every taker of this provider, across processes and machines.
    SELECT * INTO b FROM rate_buckets WHERE provider = p_provider FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown rate-limited provider %', p_provider USING ERRCODE = 'P0002';
    END IF;
    p_at := coalesce(p_at, clock_timestamp());
    refilled := least(
        b.capacity,
        b.tokens + greatest(0, extract(epoch FROM p_at - b.updated_at)) * b.refill_per_min / 60
    );
    SELECT count(*) INTO recent FROM rate_grants
     WHERE provider = p_provider AND granted_at > p_at - make_interval(secs => b.window_s);
    IF refilled >= 1 AND recent < b.capacity THEN
        UPDATE rate_buckets SET tokens = refilled - 1, updated_at = greatest(p_at, b.updated_at)
         WHERE provider = p_provider;
        INSERT INTO rate_grants (provider, granted_at) VALUES (p_provider, p_at);
        DELETE FROM rate_grants
         WHERE provider = p_provider AND granted_at <= p_at - make_interval(secs => 2 * b.window_s);
        RETURN true;
    END IF;
    UPDATE rate_buckets SET tokens = refilled, updated_at = greatest(p_at, b.updated_at)
     WHERE provider = p_provider;
    RETURN false;
END;
$$;

CREATE FUNCTION get_token_status(p_provider text, p_at timestamptz DEFAULT clock_timestamp())
RETURNS TABLE (
    provider text,
    available_tokens numeric,
    capacity integer,
    refill_rate numeric,
    seconds_until_full numeric
) LANGUAGE sql STABLE AS $$
    WITH b AS (
        SELECT r.*,
               least(r.capacity, r.tokens + greatest(0, extract(epoch FROM p_at - r.updated_at))
                     * r.refill_per_min / 60) AS refilled,
               (SELECT count(*) FROM rate_grants g
                 WHERE g.provider = r.provider
                   AND g.granted_at > p_at - make_interval(secs => r.window_s)) AS recent
          FROM rate_buckets r WHERE r.provider = p_provider
    )
    SELECT b.provider,
           round(greatest(0, least(b.refilled, b.capacity - b.recent)), 3),
           b.capacity,
           b.refill_per_min,
           round((b.capacity - b.refilled) * 60 / b.refill_per_min, 3)
      FROM b;
$$;

CREATE TABLE job_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         text NOT NULL,
    provider       text NOT NULL,
    symbol         text NOT NULL,
    timeframe      text NOT NULL,
    range_start    date NOT NULL,
    range_end      date NOT NULL,
    status         text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    expected_cost  integer NOT NULL,
    actual_cost    integer NOT NULL DEFAULT 0,
    rows_written   bigint NOT NULL DEFAULT 0,
    error_code     text,
    error_message  text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX job_runs_run_id ON job_runs (run_id);
CREATE INDEX job_runs_symbol ON job_runs (symbol, started_at);

CREATE TABLE provider_checkpoints (
    provider     text NOT NULL,
    symbol       text NOT NULL,
    timeframe    text NOT NULL,
    range_start  date NOT NULL,  -- first day of the fetch this checkpoint belongs to
    last_ts      timestamptz NOT NULL,
    bars_written bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, symbol, timeframe)
);

CREATE FUNCTION get_chart_data_v2(
    p_ticker text, p_timeframe text, p_start timestamptz, p_end timestamptz
) RETURNS TABLE (
    ts timestamptz,
    open double precision,
    high double precision,
    low double precision,
    close double precision,
    volume bigint,
    vwap double precision,
    trade_count bigint,
    provider text,
    is_intraday boolean
) LANGUAGE sql STABLE AS $$
    SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count,
           b.provider, b.is_intraday
      FROM ohlc_bars_v2 b
      JOIN symbols s ON s.id = b.symbol_id
     WHERE s.ticker = upper(p_ticker)
       AND b.timeframe = p_timeframe
       AND b.ts >= p_start AND b.ts <= p_end
     ORDER BY b.ts;
$$;
