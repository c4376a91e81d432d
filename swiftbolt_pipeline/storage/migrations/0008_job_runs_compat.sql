-- The ledger answers the old system's monitoring queries unchanged: they read `created_at`,
-- `slice_from` / `slice_to` (timestamptz) and `status = 'success'`.

-- A finished fetch is 'success', the old system's word; rows written before say 'succeeded'.
ALTER TABLE job_runs DROP CONSTRAINT IF EXISTS job_runs_status_check;
UPDATE job_runs SET status = 'success' WHERE status = 'succeeded';
ALTER TABLE job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('running', 'success', 'failed', 'abandoned'));

-- Derived, never written: they cannot drift from the columns the pipeline writes. A slice
-- spans its sessions: stocks from the first day's 09:30 to the last day's 16:00 New York time
-- (an early close ends sooner inside it), crypto pairs over whole UTC days.
ALTER TABLE job_runs
    ADD COLUMN IF NOT EXISTS created_at timestamptz GENERATED ALWAYS AS (started_at) STORED,
    ADD COLUMN IF NOT EXISTS slice_from timestamptz GENERATED ALWAYS AS (
        CASE WHEN symbol LIKE 'X:%' THEN range_start::timestamp AT TIME ZONE 'UTC'
             ELSE (range_start + time '09:30') AT TIME ZONE 'America/New_York' END) STORED,
    ADD COLUMN IF NOT EXISTS slice_to timestamptz GENERATED ALWAYS AS (
        CASE WHEN symbol LIKE 'X:%' THEN (range_end + 1)::timestamp AT TIME ZONE 'UTC'
             ELSE (range_end + time '16:00') AT TIME ZONE 'America/New_York' END) STORED;

CREATE INDEX IF NOT EXISTS job_runs_created_at ON job_runs (created_at);
