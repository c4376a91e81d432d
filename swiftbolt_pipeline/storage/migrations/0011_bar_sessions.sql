-- What `ohlc_bars_v2` holds per symbol, timeframe and exchange day, kept by triggers.
--
-- Coverage (the gap sensor's tick, `swiftbolt coverage`, the API) asks per session how many bars
-- are stored, whether any is provisional, when they were written and which 15-minute slots of
-- the regular session hold an m15 bar. Computing that from the bars costs a time-zone
-- conversion per row: ~80 ms per symbol for two years of m15, so a 50-symbol watchlist made a
-- 5-second sensor tick. This table answers the same in one row per session.
--
-- Triggers on `ohlc_bars_v2` keep it exact for every writer (COPY, INSERT, UPDATE, DELETE,
-- TRUNCATE, a test's SQL): an insert adds its rows' counts; a delete or an update recounts the
-- sessions it touched from the bars that remain.

CREATE TABLE bar_sessions (
    symbol_id     integer NOT NULL REFERENCES symbols (id),
    timeframe     text NOT NULL,
    day           date NOT NULL,  -- the exchange's (America/New_York) calendar day
    bars          integer NOT NULL CHECK (bars > 0),
    intraday      boolean NOT NULL,  -- any provisional (is_intraday) bar
    first_written timestamptz NOT NULL,
    last_written  timestamptz NOT NULL,
    -- Bit k: a bar starts in [09:30 + 15k min, 09:30 + 15(k+1) min), k = 0..25 (09:30-16:00 ET).
    -- Which of them count as regular depends on the session's close (early closes), which the
    -- program's calendar knows and SQL does not.
    slots         bigint NOT NULL,
    PRIMARY KEY (symbol_id, timeframe, day)
);

-- Recount these sessions from the bars: upsert the ones that still hold bars, drop the rest.
-- Writers of one symbol and timeframe are serialized by the write path's advisory lock.
-- PL/pgSQL, not SQL: its plan is prepared once per connection, not at every write.
CREATE FUNCTION refresh_bar_sessions(p_symbol_ids integer[], p_timeframes text[], p_days date[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH keys AS (
        SELECT DISTINCT symbol_id, timeframe, day
          FROM unnest(p_symbol_ids, p_timeframes, p_days) AS k (symbol_id, timeframe, day)
    ), counted AS (
        SELECT k.symbol_id, k.timeframe, k.day, count(*) AS bars,
               bool_or(b.is_intraday) AS intraday, min(b.fetched_at) AS first_written,
               max(b.fetched_at) AS last_written,
               coalesce(bit_or(1::bigint << (l.since_open / 15))
                        FILTER (WHERE l.since_open >= 0 AND l.since_open < 390), 0) AS slots
          FROM keys k
          JOIN ohlc_bars_v2 b
            ON b.symbol_id = k.symbol_id AND b.timeframe = k.timeframe
           AND b.ts >= (k.day::timestamp AT TIME ZONE 'America/New_York')
           AND b.ts < ((k.day + 1)::timestamp AT TIME ZONE 'America/New_York'),
               LATERAL (SELECT (floor(date_part('epoch', b.ts AT TIME ZONE 'America/New_York')
                                      / 60)::bigint % 1440)::int - 570 AS since_open) AS l
         GROUP BY k.symbol_id, k.timeframe, k.day
    ), kept AS (
        INSERT INTO bar_sessions AS s
        SELECT * FROM counted
        ON CONFLICT (symbol_id, timeframe, day) DO UPDATE
           SET bars = EXCLUDED.bars, intraday = EXCLUDED.intraday,
               first_written = EXCLUDED.first_written, last_written = EXCLUDED.last_written,
               slots = EXCLUDED.slots
        RETURNING s.symbol_id, s.timeframe, s.day
    )
    DELETE FROM bar_sessions s
     USING keys k
     WHERE s.symbol_id = k.symbol_id AND s.timeframe = k.timeframe AND s.day = k.day
       AND NOT EXISTS (SELECT 1 FROM counted c
                        WHERE c.symbol_id = k.symbol_id AND c.timeframe = k.timeframe
                          AND c.day = k.day);
END $$;

-- Inserting only adds bars (the primary key forbids a second one at the same time), so the
-- new rows' own counts merge into the summary without reading the table back.
CREATE FUNCTION bar_sessions_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bar_sessions AS s
    SELECT n.symbol_id, n.timeframe, l.day, count(*), bool_or(n.is_intraday), min(n.fetched_at),
           max(n.fetched_at),
           coalesce(bit_or(1::bigint << (l.since_open / 15))
                    FILTER (WHERE l.since_open >= 0 AND l.since_open < 390), 0)
      FROM new_rows n,
           LATERAL (SELECT (n.ts AT TIME ZONE 'America/New_York')::date AS day,
                           (floor(date_part('epoch', n.ts AT TIME ZONE 'America/New_York') / 60)
                            ::bigint % 1440)::int - 570 AS since_open) AS l
     GROUP BY n.symbol_id, n.timeframe, l.day
    ON CONFLICT (symbol_id, timeframe, day) DO UPDATE
       SET bars = s.bars + EXCLUDED.bars, intraday = s.intraday OR EXCLUDED.intraday,
           first_written = least(s.first_written, EXCLUDED.first_written),
           last_written = greatest(s.last_written, EXCLUDED.last_written),
           slots = s.slots | EXCLUDED.slots;
    RETURN NULL;
END $$;

CREATE FUNCTION bar_sessions_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The write path deletes a range before every write, most often an empty one.
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    PERFORM refresh_bar_sessions(array_agg(symbol_id), array_agg(timeframe), array_agg(day))
       FROM (SELECT DISTINCT symbol_id, timeframe, (ts AT TIME ZONE 'America/New_York')::date AS day
               FROM old_rows) AS touched;
    RETURN NULL;
END $$;

CREATE FUNCTION bar_sessions_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_bar_sessions(array_agg(symbol_id), array_agg(timeframe), array_agg(day))
       FROM (SELECT DISTINCT symbol_id, timeframe, (ts AT TIME ZONE 'America/New_York')::date AS day
               FROM (SELECT symbol_id, timeframe, ts FROM new_rows
                     UNION ALL SELECT symbol_id, timeframe, ts FROM old_rows) AS both_sides)
            AS touched;
    RETURN NULL;
END $$;

CREATE FUNCTION bar_sessions_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE bar_sessions;
    RETURN NULL;
END $$;

CREATE TRIGGER bar_sessions_insert AFTER INSERT ON ohlc_bars_v2
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bar_sessions_after_insert();
CREATE TRIGGER bar_sessions_delete AFTER DELETE ON ohlc_bars_v2
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION bar_sessions_after_delete();
CREATE TRIGGER bar_sessions_update AFTER UPDATE ON ohlc_bars_v2
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bar_sessions_after_update();
CREATE TRIGGER bar_sessions_truncate AFTER TRUNCATE ON ohlc_bars_v2
    FOR EACH STATEMENT EXECUTE FUNCTION bar_sessions_after_truncate();

-- An archive written before this table: count it once.
INSERT INTO bar_sessions
SELECT b.symbol_id, b.timeframe, l.day, count(*), bool_or(b.is_intraday), min(b.fetched_at),
       max(b.fetched_at),
       coalesce(bit_or(1::bigint << (l.since_open / 15))
                FILTER (WHERE l.since_open >= 0 AND l.since_open < 390), 0)
  FROM ohlc_bars_v2 b,
       LATERAL (SELECT (b.ts AT TIME ZONE 'America/New_York')::date AS day,
                       (floor(date_part('epoch', b.ts AT TIME ZONE 'America/New_York') / 60)::bigint
                        % 1440)::int - 570 AS since_open) AS l
 GROUP BY b.symbol_id, b.timeframe, l.day;
