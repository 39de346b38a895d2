-- Recurring work under pg_cron: named jobs 'pganalytics_ml:*', registered and removed idempotently.

CREATE FUNCTION pganalytics_ml._require_pg_cron() RETURNS void
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = '55000',
                  HINT = format('pg_cron runs in cron.database_name (%s): install pganalytics_ml there and call '
                                'pgml_schedule() in it, or schedule this database from there with '
                                'cron.schedule_in_database() (docs/operations.md). Without pg_cron, call '
                                'pgml_snapshot() and CALL pganalytics_ml.run_jobs() yourself.',
                                coalesce(current_setting('cron.database_name', true), 'not set: pg_cron is not loaded'));
    END IF;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._require_pg_cron() IS 'Fails with a hint when pg_cron is not in this database';
REVOKE ALL ON FUNCTION pganalytics_ml._require_pg_cron() FROM PUBLIC;

CREATE FUNCTION @extschema@.pgml_schedule(
    snapshot_seconds      integer  DEFAULT 300,
    retrain_schedule      text     DEFAULT '0 3 * * *',
    retrain_lookback_days integer  DEFAULT 90,
    retrain_model_type    text     DEFAULT 'auto',
    cleanup_schedule      text     DEFAULT '30 3 * * *',
    job_ttl               interval DEFAULT '7 days',
    keep_models           integer  DEFAULT 5,
    prediction_retention  interval DEFAULT '30 days',
    history_retention     interval DEFAULT '90 days')
RETURNS TABLE (job_name text, schedule text, command text)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_seconds  integer := pgml_schedule.snapshot_seconds;
    v_snapshot text;
    v_jobs     text[][];
    v_job      text[];
BEGIN
    PERFORM pganalytics_ml._require_pg_cron();
    IF v_seconds IS NULL OR retrain_schedule IS NULL OR cleanup_schedule IS NULL OR job_ttl IS NULL
       OR keep_models IS NULL OR prediction_retention IS NULL OR history_retention IS NULL
       OR retrain_lookback_days IS NULL OR retrain_model_type IS NULL THEN
        RAISE EXCEPTION 'the arguments of pgml_schedule must not be NULL' USING ERRCODE = '22004',
            HINT = 'Leave an argument out to take its default.';
    END IF;
    IF NOT ((v_seconds BETWEEN 1 AND 59 AND 60 % v_seconds = 0)
            OR (v_seconds BETWEEN 60 AND 3600 AND v_seconds % 60 = 0 AND 60 % (v_seconds / 60) = 0)) THEN
        RAISE EXCEPTION 'snapshot_seconds must divide a minute (1-59) or be whole minutes dividing an hour, got %',
            v_seconds USING ERRCODE = '22023', HINT = 'For example 10, 30, 60, 300 (the default) or 900.';
    END IF;
    IF keep_models < 0 THEN
        RAISE EXCEPTION 'keep_models must be 0 or more, got %', keep_models USING ERRCODE = '22023',
            HINT = 'The active model is always kept.';
    END IF;
    IF job_ttl <= interval '0' OR prediction_retention <= interval '0' OR history_retention <= interval '0' THEN
        RAISE EXCEPTION 'job_ttl, prediction_retention and history_retention must be positive'
            USING ERRCODE = '22023', HINT = 'The defaults are 7, 30 and 90 days.';
    END IF;
    -- Checks the training arguments the way pgml_train does, without training.
    PERFORM pganalytics_ml._check_train_arguments(retrain_lookback_days, retrain_model_type);

    v_snapshot := CASE WHEN v_seconds < 60
                       THEN format('CALL pganalytics_ml.run_snapshots(%s, 60)', v_seconds)
                       ELSE format('SELECT count(*) FROM %I.pgml_snapshot()', '@extschema@') END;
    v_jobs := ARRAY[
        ARRAY['pganalytics_ml:snapshot',
              CASE WHEN v_seconds <= 60 THEN '* * * * *' ELSE format('*/%s * * * *', v_seconds / 60) END,
              v_snapshot],
        ARRAY['pganalytics_ml:drain', '* * * * *', 'CALL pganalytics_ml.run_jobs(max_seconds => 50)'],
        ARRAY['pganalytics_ml:watchdog', '* * * * *', 'SELECT * FROM pganalytics_ml.rescue_jobs()'],
        ARRAY['pganalytics_ml:retrain', retrain_schedule,
              format('SELECT job_id FROM %I.pgml_train_async(%s, %L)', '@extschema@', retrain_lookback_days,
                     retrain_model_type)],
        ARRAY['pganalytics_ml:cleanup', cleanup_schedule,
              format('SELECT job_id FROM %I.pgml_job_enqueue(''cleanup'', %L)', '@extschema@',
                     jsonb_build_object('job_ttl', job_ttl::text, 'keep_models', keep_models,
                                        'prediction_retention', prediction_retention::text,
                                        'history_retention', history_retention::text))]];
    FOREACH v_job SLICE 1 IN ARRAY v_jobs LOOP
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING v_job[1], v_job[2], v_job[3];
        job_name := v_job[1];
        schedule := v_job[2];
        command := v_job[3];
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval) IS
    'Registers (or updates) the pg_cron jobs: snapshots, queue draining, watchdog, daily retraining, clean-up';
REVOKE ALL ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval)
    TO pgml_admin;

CREATE FUNCTION @extschema@.pgml_unschedule() RETURNS SETOF text
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text;
BEGIN
    PERFORM pganalytics_ml._require_pg_cron();
    FOR v_name IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname LIKE ''pganalytics\_ml:%'' ORDER BY jobname' LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING v_name;
        RETURN NEXT v_name;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_unschedule() IS 'Removes the pg_cron jobs pgml_schedule registered, and only those';
REVOKE ALL ON FUNCTION @extschema@.pgml_unschedule() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_unschedule() TO pgml_admin;

-- The scheduler as pgml_status reports it (NULL jobs without pg_cron in this database).
CREATE FUNCTION pganalytics_ml._scheduled_jobs() RETURNS jsonb
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_jobs jsonb;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN NULL;
    END IF;
    EXECUTE $q$
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'job_name', j.jobname, 'schedule', j.schedule, 'active', j.active,
                   'last_run_status', r.status, 'last_run_at', r.start_time) ORDER BY j.jobname), '[]')
          FROM cron.job j
          LEFT JOIN LATERAL (SELECT d.status, d.start_time FROM cron.job_run_details d
                              WHERE d.jobid = j.jobid ORDER BY d.start_time DESC NULLS LAST LIMIT 1) r ON true
         WHERE j.jobname LIKE 'pganalytics\_ml:%'$q$
    INTO v_jobs;
    RETURN v_jobs;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._scheduled_jobs() IS 'pganalytics_ml''s pg_cron jobs with their last run';
REVOKE ALL ON FUNCTION pganalytics_ml._scheduled_jobs() FROM PUBLIC;
