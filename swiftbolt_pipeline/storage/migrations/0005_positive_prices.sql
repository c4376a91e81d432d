-- Prices are > 0: no stock trades at or below zero, so such a bar is bad provider data (the
-- cleaning rule `non_positive_price` drops and counts it before it gets here; this is the
-- guarantee for every other path into the table).
--
-- NOT VALID: the check applies to every row inserted or updated from now on, but the rows
-- already stored are not scanned. An archive that already holds a bad row still migrates
-- (instead of every command failing at startup), and a large archive is not read in full
-- under an exclusive lock. `ALTER TABLE ohlc_bars_v2 VALIDATE CONSTRAINT
-- ohlc_bars_v2_positive_prices` proves an archive clean once its bad rows are refetched.
ALTER TABLE ohlc_bars_v2
    ADD CONSTRAINT ohlc_bars_v2_positive_prices
    CHECK (open > 0 AND high > 0 AND low > 0 AND close > 0) NOT VALID;
