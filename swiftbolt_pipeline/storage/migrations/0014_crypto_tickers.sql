-- Crypto pairs join the watchlist: Polygon's `X:` tickers (X:BTCUSD), base then quote currency,
-- letters and digits only. The program validates them first (`core.models.normalize_ticker`,
-- with a specific message); this CHECK keeps any other writer to the same rule.
ALTER TABLE symbols DROP CONSTRAINT IF EXISTS symbols_ticker_check;
ALTER TABLE symbols ADD CONSTRAINT symbols_ticker_check
    CHECK (ticker ~ '^[A-Z][A-Z0-9]{0,5}([.-][A-Z0-9]{1,2})?$' OR ticker ~ '^X:[A-Z0-9]{2,12}$');
