-- The job queue in PL/Python: the bodies of queueing (wrapped in sql/60_entry_points.sql), the worker
-- procedure, sub-minute snapshots.

CREATE FUNCTION pganalytics_ml._train_async(lookback_days integer DEFAULT 90,
                                             model_type text DEFAULT 'random_forest',
                                             server_id text DEFAULT 'local')
RETURNS TABLE (job_id text, status text, created_at timestamptz)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
return queue.train_async(plpy, lookback_days, model_type, server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._train_async(integer, text, text) IS
    'Body of pgml_train_async in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._train_async(integer, text, text) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._job_enqueue(kind text, arguments jsonb DEFAULT '{}',
                                             max_attempts integer DEFAULT NULL, soft_limit interval DEFAULT NULL,
                                             hard_limit interval DEFAULT NULL, run_at timestamptz DEFAULT NULL)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
return queue.enqueue(plpy, kind, arguments, max_attempts, soft_limit, hard_limit, run_at)
$$;
COMMENT ON FUNCTION pganalytics_ml._job_enqueue(text, jsonb, integer, interval, interval, timestamptz) IS
    'Body of pgml_job_enqueue in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._job_enqueue(text, jsonb, integer, interval, interval, timestamptz)
    FROM PUBLIC;

-- The worker commits as it goes, and PostgreSQL forbids transaction control in a procedure that is
-- SECURITY DEFINER or has SET clauses: it runs with its caller's rights (a superuser: pg_cron's jobs run
-- as the user who called pgml_schedule) and pins search_path itself, for the session, while it runs.
-- These are the bodies of pganalytics_ml.run_jobs and run_snapshots (sql/60_entry_points.sql), which
-- check the caller and the arguments first.
CREATE PROCEDURE pganalytics_ml._run_jobs(max_jobs integer, max_seconds integer, kinds text[])
LANGUAGE plpython3u
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
queue.run_jobs(plpy, max_jobs, max_seconds, kinds)
$$;
COMMENT ON PROCEDURE pganalytics_ml._run_jobs(integer, integer, text[]) IS
    'Body of run_jobs in PL/Python, behind the procedure that checks its caller and arguments';
REVOKE ALL ON PROCEDURE pganalytics_ml._run_jobs(integer, integer, text[]) FROM PUBLIC;

CREATE PROCEDURE pganalytics_ml._run_snapshots(every_seconds integer, within_seconds integer)
LANGUAGE plpython3u
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
queue.run_snapshots(plpy, every_seconds, within_seconds)
$$;
COMMENT ON PROCEDURE pganalytics_ml._run_snapshots(integer, integer) IS
    'Body of run_snapshots in PL/Python, behind the procedure that checks its caller and arguments';
REVOKE ALL ON PROCEDURE pganalytics_ml._run_snapshots(integer, integer) FROM PUBLIC;
