-- Recurring work under pg_cron: named jobs 'pganalytics_ml:*', registered and removed idempotently.

CREATE FUNCTION pganalytics_ml._require_pg_cron() RETURNS void
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cron_database text := current_setting('cron.database_name', true);
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    IF current_setting('shared_preload_libraries') !~ '(^|[\s,"])pg_cron($|[\s,"])' THEN
        RAISE EXCEPTION 'pg_cron is not loaded by this server'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries in postgresql.conf, restart PostgreSQL, then run '
                         'CREATE EXTENSION pg_cron; in its database (cron.database_name). Without pg_cron, call '
                         'pgml_snapshot() and CALL pganalytics_ml.run_jobs() yourself.';
    ELSIF v_cron_database = current_database() THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = '55000',
                  HINT = 'This is pg_cron''s database (cron.database_name): run CREATE EXTENSION pg_cron; here, '
                         'then call pgml_schedule() again.';
    ELSE
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = '55000',
                  HINT = format('pg_cron runs in cron.database_name (%s): install pganalytics_ml there and call '
                                'pgml_schedule() in it, or schedule this database from there with '
                                'cron.schedule_in_database() (docs/operations.md). Without pg_cron, call '
                                'pgml_snapshot() and CALL pganalytics_ml.run_jobs() yourself.', v_cron_database);
    END IF;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._require_pg_cron() IS 'Fails with a hint when pg_cron is not in this database';
REVOKE ALL ON FUNCTION pganalytics_ml._require_pg_cron() FROM PUBLIC;

-- The settings pgml_schedule last registered. pg_dump keeps them (the pg_cron jobs live in cron.job, in the
-- cron database), so that after a restore SELECT * FROM pgml_schedule() registers the same schedules again.
CREATE TABLE pganalytics_ml.schedule_config (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    snapshot_seconds      integer NOT NULL,
    retrain_schedule      text NOT NULL,
    retrain_lookback_days integer NOT NULL,
    retrain_model_type    text NOT NULL,
    cleanup_schedule      text NOT NULL,
    job_ttl               interval NOT NULL,
    keep_models           integer NOT NULL,
    prediction_retention  interval NOT NULL,
    history_retention     interval NOT NULL,
    updated_at            timestamptz NOT NULL,
    updated_by            name NOT NULL
);
COMMENT ON TABLE pganalytics_ml.schedule_config IS
    'The settings of the pg_cron schedules as pgml_schedule last registered them; its defaults for the next call';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.schedule_config', '');
GRANT SELECT ON pganalytics_ml.schedule_config TO pgml_reader;

-- Every argument left out (NULL) keeps the value stored by the previous call, else takes the built-in
-- default shown in the comment. Everything is checked before anything is written.
CREATE FUNCTION @extschema@.pgml_schedule(
    snapshot_seconds      integer  DEFAULT NULL,  -- 300
    retrain_schedule      text     DEFAULT NULL,  -- '0 3 * * *'
    retrain_lookback_days integer  DEFAULT NULL,  -- 90
    retrain_model_type    text     DEFAULT NULL,  -- 'auto'
    cleanup_schedule      text     DEFAULT NULL,  -- '30 3 * * *'
    job_ttl               interval DEFAULT NULL,  -- 7 days
    keep_models           integer  DEFAULT NULL,  -- 5
    prediction_retention  interval DEFAULT NULL,  -- 30 days
    history_retention     interval DEFAULT NULL)  -- 90 days
RETURNS TABLE (job_name text, schedule text, command text)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c          pganalytics_ml.schedule_config;
    v_snapshot text;
    v_jobs     text[][];
    v_job      text[];
    v_valid    boolean;
BEGIN
    PERFORM pganalytics_ml._require_pg_cron();
    -- Locked: concurrent calls apply one after the other.
    SELECT s.* INTO c FROM pganalytics_ml.schedule_config s FOR UPDATE;
    SELECT true,
           coalesce(pgml_schedule.snapshot_seconds, c.snapshot_seconds, 300),
           coalesce(pgml_schedule.retrain_schedule, c.retrain_schedule, '0 3 * * *'),
           coalesce(pgml_schedule.retrain_lookback_days, c.retrain_lookback_days, 90),
           coalesce(pgml_schedule.retrain_model_type, c.retrain_model_type, 'auto'),
           coalesce(pgml_schedule.cleanup_schedule, c.cleanup_schedule, '30 3 * * *'),
           coalesce(pgml_schedule.job_ttl, c.job_ttl, interval '7 days'),
           coalesce(pgml_schedule.keep_models, c.keep_models, 5),
           coalesce(pgml_schedule.prediction_retention, c.prediction_retention, interval '30 days'),
           coalesce(pgml_schedule.history_retention, c.history_retention, interval '90 days'),
           now(),
           session_user
      INTO c;

    IF NOT ((c.snapshot_seconds BETWEEN 1 AND 59 AND 60 % c.snapshot_seconds = 0)
            OR (c.snapshot_seconds BETWEEN 60 AND 3600 AND c.snapshot_seconds % 60 = 0
                AND 60 % (c.snapshot_seconds / 60) = 0)) THEN
        RAISE EXCEPTION 'snapshot_seconds must divide a minute (1-59) or be whole minutes dividing an hour, got %',
            c.snapshot_seconds USING ERRCODE = '22023', HINT = 'For example 10, 30, 60, 300 (the default) or 900.';
    END IF;
    -- The clean-up job checks the same ranges when pg_cron queues it.
    IF c.keep_models NOT BETWEEN 0 AND 1000000 THEN
        RAISE EXCEPTION 'keep_models must be from 0 to 1000000, got %', c.keep_models USING ERRCODE = '22023',
            HINT = 'The active model is always kept.';
    END IF;
    IF c.job_ttl <= interval '0' OR c.prediction_retention <= interval '0' OR c.history_retention <= interval '0'
       OR greatest(c.job_ttl, c.prediction_retention, c.history_retention) > interval '100 years' THEN
        RAISE EXCEPTION 'job_ttl, prediction_retention and history_retention must be positive and at most 100 years'
            USING ERRCODE = '22023', HINT = 'The defaults are 7, 30 and 90 days.';
    END IF;
    -- Checks the training arguments the way pgml_train does, without training (its errors without the
    -- Python traceback, as pgml_train's: sql/60_entry_points.sql).
    DECLARE
        v_state text; v_message text; v_detail text; v_hint text;
    BEGIN
        PERFORM pganalytics_ml._check_train_arguments(c.retrain_lookback_days, c.retrain_model_type);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
        IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
        PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
    END;

    INSERT INTO pganalytics_ml.schedule_config AS sc
    SELECT (c).*
    ON CONFLICT (singleton) DO UPDATE
       SET snapshot_seconds = EXCLUDED.snapshot_seconds, retrain_schedule = EXCLUDED.retrain_schedule,
           retrain_lookback_days = EXCLUDED.retrain_lookback_days, retrain_model_type = EXCLUDED.retrain_model_type,
           cleanup_schedule = EXCLUDED.cleanup_schedule, job_ttl = EXCLUDED.job_ttl,
           keep_models = EXCLUDED.keep_models, prediction_retention = EXCLUDED.prediction_retention,
           history_retention = EXCLUDED.history_retention, updated_at = EXCLUDED.updated_at,
           updated_by = EXCLUDED.updated_by;

    v_snapshot := CASE WHEN c.snapshot_seconds < 60
                       THEN format('CALL pganalytics_ml.run_snapshots(%s, 60)', c.snapshot_seconds)
                       ELSE format('SELECT count(*) FROM %I.pgml_snapshot()', '@extschema@') END;
    -- name, schedule, command, and the argument the schedule comes from
    v_jobs := ARRAY[
        ARRAY['pganalytics_ml:snapshot',
              CASE WHEN c.snapshot_seconds <= 60 THEN '* * * * *' ELSE format('*/%s * * * *', c.snapshot_seconds / 60) END,
              v_snapshot, 'snapshot_seconds'],
        ARRAY['pganalytics_ml:drain', '* * * * *', 'CALL pganalytics_ml.run_jobs(max_seconds => 50)', NULL],
        ARRAY['pganalytics_ml:watchdog', '* * * * *', 'SELECT * FROM pganalytics_ml.rescue_jobs()', NULL],
        ARRAY['pganalytics_ml:retrain', c.retrain_schedule,
              format('SELECT job_id FROM %I.pgml_train_async(%s, %L)', '@extschema@', c.retrain_lookback_days,
                     c.retrain_model_type),
              'retrain_schedule'],
        ARRAY['pganalytics_ml:cleanup', c.cleanup_schedule,
              format('SELECT job_id FROM %I.pgml_job_enqueue(''cleanup'', %L)', '@extschema@',
                     jsonb_build_object('job_ttl', c.job_ttl::text, 'keep_models', c.keep_models,
                                        'prediction_retention', c.prediction_retention::text,
                                        'history_retention', c.history_retention::text)),
              'cleanup_schedule'],
        -- Workload patterns of every server captured in the last week, refreshed hourly (pganalytics_ml.patterns).
        ARRAY['pganalytics_ml:patterns', '15 * * * *',
              format('SELECT job_id FROM %I.pgml_job_enqueue(''patterns'', ''{"lookback_days": 7}'')', '@extschema@'),
              NULL],
        -- Every statement planned again hourly (issue 14): finds plan changes; new ones are queued by snapshots.
        ARRAY['pganalytics_ml:plans', '17 * * * *',
              format('SELECT job_id FROM %I.pgml_job_enqueue(''plans'', ''{}'', soft_limit => ''4 min'', '
                     'hard_limit => ''5 min'')', '@extschema@'), NULL]];
    FOREACH v_job SLICE 1 IN ARRAY v_jobs LOOP
        -- Five cron fields (pg_cron ignores what follows them) or a macro; then pg_cron's parser decides.
        v_valid := v_job[2] ~ '^\s*(@[a-z]+|([0-9A-Za-z*,/-]+\s+){4}[0-9A-Za-z*,/-]+)\s*$';
        IF v_valid THEN
            BEGIN
                -- registered, and active again if someone deactivated it
                EXECUTE 'SELECT cron.alter_job(cron.schedule($1, $2, $3), active => true)'
                    USING v_job[1], v_job[2], v_job[3];
            EXCEPTION WHEN invalid_parameter_value THEN
                v_valid := false;
            END;
        END IF;
        IF NOT v_valid THEN  -- the error names the argument; everything is rolled back
            RAISE EXCEPTION '% is not a schedule pg_cron accepts: %', v_job[4],
                CASE WHEN length(v_job[2]) > 40 THEN quote_literal(left(v_job[2], 40)) || '...'
                     ELSE quote_literal(v_job[2]) END
                USING ERRCODE = '22023',
                      HINT = 'Use five cron fields (minute hour day-of-month month day-of-week), e.g. ''0 3 * * *'': '
                             'pg_cron 1.4 runs jobs at minute granularity.';
        END IF;
        job_name := v_job[1];
        schedule := v_job[2];
        command := v_job[3];
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval) IS
    'Registers (or updates) the pg_cron jobs: snapshots, queue draining, watchdog, daily retraining, clean-up, '
    'hourly workload patterns and plan capture; '
    'arguments left out keep the settings of the previous call (pganalytics_ml.schedule_config)';
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
COMMENT ON FUNCTION @extschema@.pgml_unschedule() IS
    'Removes the pg_cron jobs pgml_schedule registered, and only those; their settings stay for the next pgml_schedule()';
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
