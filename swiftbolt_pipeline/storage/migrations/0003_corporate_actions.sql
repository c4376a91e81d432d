-- Corporate actions of watched symbols (splits; `kind` leaves room for dividends) and when each
-- symbol was last checked, so the Polygon budget is spent at most once a day per symbol.

CREATE TABLE corporate_actions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticker               text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('split', 'dividend')),
    execution_date       date NOT NULL,
    split_from           numeric CHECK (split_from > 0),
    split_to             numeric CHECK (split_to > 0),
    first_seen_at        timestamptz NOT NULL DEFAULT now(),
    -- Stored bars before `execution_date` that were fetched before this instant predate the
    -- provider's adjustment for this action and must be re-fetched (compared with
    -- ohlc_bars_v2.fetched_at, both on the database clock).
    stale_before         timestamptz NOT NULL,
    refetch_requested_at timestamptz,
    -- Set once no stale bar is left: the action needs nothing more (never reset, since bars
    -- written later are always fetched after `stale_before`).
    settled_at           timestamptz,
    UNIQUE (ticker, kind, execution_date),
    CHECK (kind <> 'split' OR (split_from IS NOT NULL AND split_to IS NOT NULL))
);
CREATE INDEX corporate_actions_open ON corporate_actions (ticker) WHERE settled_at IS NULL;

CREATE TABLE corporate_action_checks (
    ticker        text PRIMARY KEY,
    checked_at    timestamptz NOT NULL,  -- the program's clock (SWIFTBOLT_NOW aware)
    status        text NOT NULL CHECK (status IN ('ok', 'failed')),
    splits_found  integer NOT NULL DEFAULT 0,
    error_code    text,
    error_message text
);
