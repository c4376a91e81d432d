-- Cash dividends of watched symbols, as the history provider reports them; fetched with the
-- symbol's splits in one corporate-action check (`corporate_action_checks`, which now also
-- counts the dividends found). A check replaces the symbol's rows, so re-fetching never
-- duplicates one and a dividend the provider withdrew disappears.

CREATE TABLE IF NOT EXISTS dividends (
    symbol      text NOT NULL,
    ex_date     date NOT NULL,
    -- CD regular, SC special, LT/ST capital gains: a special and a regular dividend may share
    -- an ex-date.
    type        text NOT NULL,
    record_date date,
    pay_date    date,
    cash_amount numeric NOT NULL CHECK (cash_amount >= 0),
    currency    text,
    frequency   integer CHECK (frequency >= 0),  -- payments a year; 0 one-time
    fetched_at  timestamptz NOT NULL,
    PRIMARY KEY (symbol, ex_date, type)
);

ALTER TABLE corporate_action_checks
    ADD COLUMN IF NOT EXISTS dividends_found integer NOT NULL DEFAULT 0;
