-- Crypto pairs join the watchlist: Polygon's `X:` tickers (X:BTCUSD), a base currency of 1 to 10
-- letters or digits, then a quote currency (`core.models.CRYPTO_PATTERN`, the same rule). The program validates them first (`core.models.normalize_ticker`,
-- with a specific message); this CHECK keeps any other writer to the same rule.
ALTER TABLE symbols DROP CONSTRAINT IF EXISTS symbols_ticker_check;
ALTER TABLE symbols ADD CONSTRAINT symbols_ticker_check
    CHECK (ticker ~ '^[A-Z][A-Z0-9]{0,5}([.-][A-Z0-9]{1,2})?$' OR ticker ~ '^X:[A-Z0-9]{1,10}(USDT|USDC|USD|EUR|GBP|BTC|ETH)$');
