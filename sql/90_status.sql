-- pgml_status(): one JSON document for dashboards and health checks. Plain SQL: no Python to load.

CREATE FUNCTION @extschema@.pgml_status() RETURNS jsonb
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pgss_loaded    boolean := current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_stat_statements($|[\s,"])';
    v_pgss_installed boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements');
    v_cron_loaded    boolean := current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_cron($|[\s,"])';
    v_cron_installed boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron');
    v_cron_database  text := current_setting('cron.database_name', true);
    v_problems       text[] := '{}';
    v_dead           bigint := (SELECT count(*) FROM pganalytics_ml.jobs WHERE dead_lettered);
    v_cancelled      bigint := (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'failed' AND cancelled);
    v_scheduled      jsonb := pganalytics_ml._scheduled_jobs();
    v_scheduler      text;
    v_missing        text[];
    v_failing        text[];
    v_last_snapshot  timestamptz := (SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'local');
    -- The expected cadence of snapshots: what pgml_schedule() registered, else its default.
    v_cadence        integer := coalesce((SELECT snapshot_seconds FROM pganalytics_ml.schedule_config), 300);
    -- Forecast jobs queued by pushes (issue 18, sql/42_forecast_queue.sql): at most one waits per server.
    v_forecast_mode  text;
    v_forecast_wait  record;
BEGIN
    BEGIN
        v_forecast_mode := pganalytics_ml._push_forecast_mode();
    EXCEPTION WHEN invalid_parameter_value THEN
        v_forecast_mode := 'invalid setting';
        v_problems := v_problems || ('pganalytics_ml.push_forecasts is not auto, inline or queued: pushes fail until '
                                     'it is RESET')::text;
    END;
    SELECT count(*) AS servers, min(j.created_at) AS oldest INTO v_forecast_wait
      FROM pganalytics_ml.jobs j WHERE j.kind = 'forecast' AND j.status = 'pending';
    IF v_forecast_wait.oldest < now() - interval '10 minutes' THEN
        v_problems := v_problems || format('the forecasts of %s server(s) have waited %s for their refresh: is the job '
                                           'worker running? CALL pganalytics_ml.run_jobs()',
                                           v_forecast_wait.servers, date_trunc('second', now() - v_forecast_wait.oldest));
    END IF;
    IF NOT v_pgss_loaded THEN
        v_problems := v_problems || 'pg_stat_statements is not in shared_preload_libraries'::text;
    ELSIF NOT v_pgss_installed THEN
        v_problems := v_problems || 'the pg_stat_statements extension is not created in this database'::text;
    END IF;
    -- The scheduler: what runs snapshots and drains the queue when nobody calls them.
    IF NOT v_cron_loaded THEN
        v_scheduler := 'none';
        v_problems := v_problems || ('no scheduler: pg_cron is not in shared_preload_libraries, so snapshots and '
                                     'jobs run only when called (pgml_snapshot(), CALL pganalytics_ml.run_jobs())')::text;
    ELSIF NOT v_cron_installed AND v_cron_database = current_database() THEN
        v_scheduler := 'not installed';
        v_problems := v_problems || ('no scheduler: pg_cron is not created in this database (its cron.database_name): '
                                     'CREATE EXTENSION pg_cron; then SELECT * FROM pgml_schedule()')::text;
    ELSIF NOT v_cron_installed THEN
        -- Scheduled from pg_cron's own database, if at all: not visible from here; the snapshot age tells.
        v_scheduler := 'in another database';
    ELSE
        SELECT array_agg(n ORDER BY n) INTO v_missing
          FROM unnest(ARRAY['pganalytics_ml:snapshot', 'pganalytics_ml:drain', 'pganalytics_ml:watchdog']) n
         WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(v_scheduled) j
                            WHERE j->>'job_name' = n AND (j->>'active')::boolean);
        SELECT array_agg(j->>'job_name' ORDER BY j->>'job_name') INTO v_failing
          FROM jsonb_array_elements(v_scheduled) j WHERE j->>'last_run_status' = 'failed';
        v_scheduler := CASE WHEN jsonb_array_length(v_scheduled) = 0 THEN 'unscheduled' ELSE 'scheduled' END;
        IF jsonb_array_length(v_scheduled) = 0 THEN
            v_problems := v_problems || 'unscheduled: no pg_cron job of pganalytics_ml; SELECT * FROM pgml_schedule()'::text;
        ELSIF v_missing IS NOT NULL THEN
            v_problems := v_problems || format('scheduled jobs missing or inactive: %s; SELECT * FROM pgml_schedule()',
                                               array_to_string(v_missing, ', '));
        END IF;
        IF v_failing IS NOT NULL THEN
            v_problems := v_problems || format('the last run of %s failed: see cron.job_run_details',
                                               array_to_string(v_failing, ', '));
        END IF;
    END IF;
    IF v_last_snapshot IS NULL THEN
        v_problems := v_problems || 'no snapshot yet: SELECT * FROM pgml_snapshot() (twice, a while apart), or schedule it'::text;
    ELSIF v_last_snapshot < now() - 3 * v_cadence * interval '1 second' THEN
        v_problems := v_problems || format('the last snapshot is %s old, more than 3 times the expected %s seconds',
                                           date_trunc('second', now() - v_last_snapshot), v_cadence);
    END IF;
    IF v_dead > 0 THEN
        v_problems := v_problems || format('%s dead-lettered job(s): SELECT * FROM pgml_jobs(''dead_lettered'')', v_dead);
    END IF;
    RETURN jsonb_build_object(
        'service', 'pganalytics_ml',
        'status', CASE WHEN cardinality(v_problems) = 0 THEN 'healthy' ELSE 'degraded' END,
        'problems', to_jsonb(v_problems),
        'version', (SELECT extversion FROM pg_extension WHERE extname = 'pganalytics_ml'),
        'database', current_database(),
        'database_connected', true,
        'checked_at', now(),
        'pg_stat_statements', jsonb_build_object('loaded', v_pgss_loaded, 'installed', v_pgss_installed),
        'scheduler', jsonb_build_object(
            'pg_cron_loaded', v_cron_loaded,
            'pg_cron_installed', v_cron_installed,
            'cron_database', v_cron_database,
            'state', v_scheduler,
            'snapshot_seconds', v_cadence,
            'scheduled_jobs', v_scheduled),
        'pending_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'pending'),
        'training_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'training'),
        'running_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'running'),
        -- failed_jobs = dead_lettered_jobs (out of attempts, or past the hard limit) + cancelled_jobs
        'failed_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'failed'),
        'dead_lettered_jobs', v_dead,
        'cancelled_jobs', v_cancelled,
        -- How pushes refresh forecasts: 'inline' (in the push) or 'queued' (a forecast job per server, drained
        -- by the job worker; until it runs, pgml_predict answers from the previous refresh).
        'forecast_refresh', jsonb_build_object(
            'push_forecasts', v_forecast_mode,
            'servers_waiting', v_forecast_wait.servers,
            'oldest_waiting_since', v_forecast_wait.oldest),
        'active_model', (SELECT jsonb_build_object('model_id', m.model_id, 'server_id', m.server_id,
                                                   'model_type', m.model_type, 'version', m.version,
                                                   'created_at', m.created_at, 'activated_at', m.activated_at,
                                                   'q_error_p90', m.metrics->'q_error_p90')
                           FROM pganalytics_ml.models m WHERE m.is_active AND m.server_id = 'local'),
        'active_models', (SELECT count(*) FROM pganalytics_ml.models WHERE is_active),
        'prediction_accuracy_24h', (
            SELECT jsonb_build_object(
                       'validated', count(*),
                       'mean_accuracy', round(avg(p.accuracy_score)::numeric, 4),
                       'q_error_p50', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY
                           greatest(p.predicted_ms / p.actual_ms, p.actual_ms / p.predicted_ms)))::numeric, 4),
                       'q_error_p90', round((percentile_cont(0.9) WITHIN GROUP (ORDER BY
                           greatest(p.predicted_ms / p.actual_ms, p.actual_ms / p.predicted_ms)))::numeric, 4),
                       'interval_coverage', round(avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END), 4))
              FROM pganalytics_ml.predictions p
             WHERE p.validated_at > now() - interval '1 day'
               AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                                WHERE s.server_id = p.server_id AND s.queryid = p.queryid AND s.is_internal)),
        'regressions', (SELECT count(*) FROM pganalytics_ml.regressions),
        'statements_tracked', (SELECT count(*) FROM pganalytics_ml.statements),
        'servers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'server_id', s.server_id,
                              'statements', (SELECT count(*) FROM pganalytics_ml.statements st
                                              WHERE st.server_id = s.server_id),
                              'snapshots', s.snapshots,
                              'last_snapshot_at', s.last_snapshot_at) ORDER BY s.server_id), '[]')
                      FROM (SELECT server_id, count(*) AS snapshots, max(captured_at) AS last_snapshot_at
                              FROM pganalytics_ml.snapshots GROUP BY server_id) s),
        'last_snapshot_at', v_last_snapshot);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_status() IS
    'Health and state of pganalytics_ml in this database, as JSON';
REVOKE ALL ON FUNCTION @extschema@.pgml_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_status() TO pgml_reader;
