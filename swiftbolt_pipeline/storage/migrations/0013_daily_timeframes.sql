-- d1 is now the provider's own daily bar, with w1 (exchange week) and mo1 (month) rolled up from
-- it; m5 is reserved for an opt-in finer raw timeframe. The CHECK takes the full list.
ALTER TABLE ohlc_bars_v2 DROP CONSTRAINT IF EXISTS ohlc_bars_v2_timeframe_check;
ALTER TABLE ohlc_bars_v2 ADD CONSTRAINT ohlc_bars_v2_timeframe_check
    CHECK (timeframe IN ('m5', 'm15', 'h1', 'h4', 'd1', 'w1', 'mo1'));

-- A d1 fetch confirms every session it covered: 1 (the official bar) or 0 (no bar: a halt,
-- before a listing), so a session without a daily bar is no coverage gap once answered.
ALTER TABLE confirmed_sessions DROP CONSTRAINT IF EXISTS confirmed_sessions_timeframe_check;
ALTER TABLE confirmed_sessions ADD CONSTRAINT confirmed_sessions_timeframe_check
    CHECK (timeframe IN ('m5', 'm15', 'd1'));
