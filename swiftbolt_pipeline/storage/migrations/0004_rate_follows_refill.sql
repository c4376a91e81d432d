-- The rolling-window cap follows the sustained rate, not the burst size: `refill_per_min` R is
-- the sustained rate, `capacity` C the largest burst, and at most R * min(window_s, 60) / 60
-- grants (at least one, rounded down) happen in any `window_s` seconds. The free plan (C 5,
-- R 5, 61 s) keeps its 5 per 61 s; `--capacity 1 --refill-per-min 600` now means 10 per
-- second. A window over 60 s is a server's minute plus a safety margin: it still allows only
-- R, so a server counting R per rolling minute never sees R + 1 (a full bucket refilling
-- during the margin would otherwise send R * 61 / 60).
--
-- `take_token_or_wait` also says how long a refused caller should sleep: the later of the next
-- refilled token and the moment the window makes room. `take_token` keeps its contract.

COMMENT ON COLUMN rate_buckets.capacity IS 'largest burst (tokens stored)';
COMMENT ON COLUMN rate_buckets.refill_per_min IS 'sustained rate; also caps grants per window';

-- The 1e-9 absorbs rounding of a rate given as a float (e.g. 5 * 60 / 2.2 per minute).
CREATE OR REPLACE FUNCTION token_window_cap(p_refill_per_min numeric, p_window_s numeric)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(1, floor(p_refill_per_min * least(p_window_s, 60) / 60 + 1e-9))::integer;
$$;

-- 0 when a token was granted; otherwise the seconds until one is due (> 0).
CREATE OR REPLACE FUNCTION take_token_or_wait(p_provider text, p_at timestamptz DEFAULT NULL)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    b rate_buckets%ROWTYPE;
    refilled numeric;
    cap integer;
    blocking timestamptz;
    token_due numeric := 0;
    window_due numeric := 0;
BEGIN
    -- The row lock serializes every taker of this provider, across processes and machines.
    SELECT * INTO b FROM rate_buckets WHERE provider = p_provider FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown rate-limited provider %', p_provider USING ERRCODE = 'P0002';
    END IF;
    -- Read after the lock is held, so a grant is stamped when it really happens.
    p_at := coalesce(p_at, clock_timestamp());
    refilled := least(
        b.capacity,
        b.tokens + greatest(0, extract(epoch FROM p_at - b.updated_at)) * b.refill_per_min / 60
    );
    cap := token_window_cap(b.refill_per_min, b.window_s);
    -- The cap-th newest grant still in the window: while it is there, the window is full.
    SELECT granted_at INTO blocking FROM rate_grants
     WHERE provider = p_provider AND granted_at > p_at - make_interval(secs => b.window_s)
     ORDER BY granted_at DESC OFFSET cap - 1 LIMIT 1;
    IF refilled >= 1 AND blocking IS NULL THEN
        UPDATE rate_buckets SET tokens = refilled - 1, updated_at = greatest(p_at, b.updated_at)
         WHERE provider = p_provider;
        INSERT INTO rate_grants (provider, granted_at) VALUES (p_provider, p_at);
        DELETE FROM rate_grants
         WHERE provider = p_provider AND granted_at <= p_at - make_interval(secs => 2 * b.window_s);
        RETURN 0;
    END IF;
    UPDATE rate_buckets SET tokens = refilled, updated_at = greatest(p_at, b.updated_at)
     WHERE provider = p_provider;
    IF refilled < 1 THEN
        token_due := (1 - refilled) * 60 / b.refill_per_min;
    END IF;
    IF blocking IS NOT NULL THEN
        window_due := extract(epoch FROM blocking - p_at) + b.window_s;
    END IF;
    RETURN greatest(token_due, window_due, 1e-6)::double precision;
END;
$$;

CREATE OR REPLACE FUNCTION take_token(p_provider text, p_at timestamptz DEFAULT NULL)
RETURNS boolean LANGUAGE sql AS $$
    SELECT take_token_or_wait(p_provider, p_at) = 0;
$$;

CREATE OR REPLACE FUNCTION get_token_status(
    p_provider text, p_at timestamptz DEFAULT clock_timestamp()
) RETURNS TABLE (
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
           round(greatest(0, least(b.refilled,
                                   token_window_cap(b.refill_per_min, b.window_s) - b.recent)), 3),
           b.capacity,
           b.refill_per_min,
           round((b.capacity - b.refilled) * 60 / b.refill_per_min, 3)
      FROM b;
$$;
