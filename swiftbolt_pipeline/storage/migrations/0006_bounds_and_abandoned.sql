-- Watchlist windows bounded like the API's, and `abandoned` fetches in the ledger.

-- A window is calendar days back from today, at most ten years (3660 days): longer windows
-- reach past any archive, and a huge one overflowed the calendar and made every gap-sensor tick
-- fail for all symbols. Rows written before this bound are clamped into it first, so that the
-- constraint can be added; 3660 days still covers everything such a row asked for.
UPDATE symbols SET window_days = least(greatest(window_days, 1), 3660)
 WHERE window_days NOT BETWEEN 1 AND 3660;
ALTER TABLE symbols DROP CONSTRAINT symbols_window_days_check,
    ADD CONSTRAINT symbols_window_days_check CHECK (window_days BETWEEN 1 AND 3660);

-- Who owns a `running` fetch: the database session of the process that opened the row. That
-- process is alive exactly while its session is (a killed process's connection closes), so a
-- row whose session is gone is abandoned: `abandon_orphans` in storage/ledger.py marks it. A
-- pid alone is reused; pid plus the session's start time identifies one session on the server,
-- whichever host the process runs on.
CREATE FUNCTION session_started_at(p_pid integer) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT backend_start FROM pg_stat_get_activity(p_pid);
$$;

-- Added without defaults first, so existing rows are not stamped with the migrator's session.
ALTER TABLE job_runs ADD COLUMN owner_pid integer, ADD COLUMN owner_started_at timestamptz;
-- Defaults, not an argument of the insert: every writer records its session, whatever code
-- version inserts the row.
ALTER TABLE job_runs ALTER COLUMN owner_pid SET DEFAULT pg_backend_pid(),
    ALTER COLUMN owner_started_at SET DEFAULT session_started_at(pg_backend_pid());

ALTER TABLE job_runs DROP CONSTRAINT job_runs_status_check,
    ADD CONSTRAINT job_runs_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned'));

-- Rows still `running` from before this migration have no recorded owner, so nothing can ever
-- prove them alive or dead: they are marked abandoned now. Should their process still be
-- running, its `finish_fetch` records the real outcome over this mark.
UPDATE job_runs SET status = 'abandoned', finished_at = now(),
       error_message = 'still running when the ledger started recording owners; owner unknown'
 WHERE status = 'running';

-- The sweep runs on every gap-sensor tick; the ledger grows with every fetch.
CREATE INDEX job_runs_running ON job_runs (id) WHERE status = 'running';
