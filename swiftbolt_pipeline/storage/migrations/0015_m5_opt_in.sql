-- m5 (5-minute bars) is an opt-in raw timeframe beside m15: per symbol here (`watch add --m5`),
-- or for every watched stock with SWIFTBOLT_M5=1. Off by default: m5 triples a symbol's rows.
ALTER TABLE symbols ADD COLUMN IF NOT EXISTS m5 boolean NOT NULL DEFAULT false;
