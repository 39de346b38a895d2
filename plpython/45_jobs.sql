-- Entry points of the job queue: queueing, the worker procedure, sub-minute snapshots.

CREATE FUNCTION @extschema@.pgml_train_async(lookback_days integer DEFAULT 90,
                                             model_type text DEFAULT 'random_forest',
                                             server_id text DEFAULT 'local')
RETURNS TABLE (job_id text, status text, created_at timestamptz)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
return queue.train_async(plpy, lookback_days, model_type, server_id)
$$;
COMMENT ON FUNCTION @extschema@.pgml_train_async(integer, text, text) IS
    'Queues a training job (arguments checked as pgml_train does); returns its job_id, status pending';
REVOKE ALL ON FUNCTION @extschema@.pgml_train_async(integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_train_async(integer, text, text) TO pgml_trainer;

CREATE FUNCTION @extschema@.pgml_job_enqueue(kind text, arguments jsonb DEFAULT '{}',
                                             max_attempts integer DEFAULT NULL, soft_limit interval DEFAULT NULL,
                                             hard_limit interval DEFAULT NULL, run_at timestamptz DEFAULT NULL)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
return queue.enqueue(plpy, kind, arguments, max_attempts, soft_limit, hard_limit, run_at)
$$;
COMMENT ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) IS
    'Queues a job of any kind (train, snapshot, validate, cleanup, sleep, patterns) with optional limits and start time';
REVOKE ALL ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz)
    TO pgml_admin;

-- The worker commits as it goes, and PostgreSQL forbids transaction control in a procedure that is
-- SECURITY DEFINER or has SET clauses: it runs with its caller's rights (a superuser: pg_cron's jobs run
-- as the user who called pgml_schedule) and pins search_path itself, for the session, while it runs.
CREATE PROCEDURE pganalytics_ml.run_jobs(max_jobs integer DEFAULT 100, max_seconds integer DEFAULT 50,
                                         kinds text[] DEFAULT NULL)
LANGUAGE plpython3u
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
queue.run_jobs(plpy, max_jobs, max_seconds, kinds)
$$;
COMMENT ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) IS
    'Drains the job queue: rescues lost jobs, then runs ready jobs until max_jobs or max_seconds. CALL it outside '
    'a transaction block (pg_cron does)';
REVOKE ALL ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) FROM PUBLIC;

CREATE PROCEDURE pganalytics_ml.run_snapshots(every_seconds integer, within_seconds integer DEFAULT 60)
LANGUAGE plpython3u
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.jobs import queue
queue.run_snapshots(plpy, every_seconds, within_seconds)
$$;
COMMENT ON PROCEDURE pganalytics_ml.run_snapshots(integer, integer) IS
    'Takes a snapshot every every_seconds for within_seconds, committing each: capture finer than pg_cron''s minute';
REVOKE ALL ON PROCEDURE pganalytics_ml.run_snapshots(integer, integer) FROM PUBLIC;
