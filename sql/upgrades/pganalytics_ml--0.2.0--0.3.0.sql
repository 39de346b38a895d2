-- 0.2.0 -> 0.3.0

-- issue 16 (patterns): workload patterns, their table and the cycles for seasonal forecasters; a 'patterns'
-- job kind, scheduled hourly by pgml_schedule.
ALTER TABLE pganalytics_ml.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE pganalytics_ml.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'patterns']));

CREATE TABLE pganalytics_ml.patterns (
    server_id     text NOT NULL,
    type          text NOT NULL CHECK (type OPERATOR(pg_catalog.=) ANY (ARRAY[
                      'daily_cycle', 'weekly_cycle', 'trend', 'spike', 'level_shift', 'plan_change'])),
    query_hash    bigint,                -- NULL: server-wide
    statement     text,                  -- the statement's normalized text; NULL server-wide
    metric        text NOT NULL,         -- calls, mean_time, total_time or plan
    description   text NOT NULL,
    confidence    double precision NOT NULL
                  CHECK (confidence OPERATOR(pg_catalog.>=) 0 AND confidence OPERATOR(pg_catalog.<=) 1),
    metadata      jsonb NOT NULL,
    lookback_days integer NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    detected_at   timestamptz NOT NULL
);
CREATE INDEX patterns_server ON pganalytics_ml.patterns (server_id, type);
COMMENT ON TABLE pganalytics_ml.patterns IS
    'The workload patterns the latest ''patterns'' job found per server (pgml_detect_patterns computes them on demand)';
GRANT SELECT ON pganalytics_ml.patterns TO pgml_reader;
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.patterns', '');

-- One cycle per (server, statement, metric): the factor by which the metric is above (>1) or below (<1)
-- its level at each phase. Phase p of period 24 is the UTC hour p; of period 168, hour p of the week
-- counted from Monday 00:00 UTC. The factors' geometric mean is 1.
CREATE TABLE pganalytics_ml.seasonal_profiles (
    server_id     text NOT NULL,
    query_hash    bigint,                -- NULL: server-wide
    metric        text NOT NULL,
    period_hours  integer NOT NULL CHECK (period_hours OPERATOR(pg_catalog.=) ANY (ARRAY[24, 168])),
    factors       double precision[] NOT NULL
                  CHECK (pg_catalog.cardinality(factors) OPERATOR(pg_catalog.=) period_hours),
    strength      double precision NOT NULL,
    lookback_days integer NOT NULL,
    window_end    timestamptz NOT NULL,
    detected_at   timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (server_id, query_hash, metric)
);
COMMENT ON TABLE pganalytics_ml.seasonal_profiles IS
    'Detected daily or weekly cycle per server, statement and metric: a multiplicative factor per UTC hour '
    '(period 24) or hour of the week from Monday 00:00 UTC (period 168), for seasonal forecasters';
GRANT SELECT ON pganalytics_ml.seasonal_profiles TO pgml_reader;
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.seasonal_profiles', '');

-- The history as pattern detection reads it: hourly buckets (UTC, whatever the session's TimeZone) of
-- the lookback window ending at the server's latest capture; per bucket, the seconds the captures in it
-- covered (NULL: nothing captured, a gap), how many captures, and the calls and execution time summed
-- (per statement also the sum of each interval's calls squared: how many intervals its mean time is worth). One row server-wide (query_hash NULL), then one per
-- statement among the p_statements with the most execution time in the window.
CREATE FUNCTION pganalytics_ml._pattern_series(p_server_id text, p_lookback_days integer, p_statements integer)
RETURNS TABLE (query_hash bigint, statement text, first_hour timestamptz, last_capture timestamptz,
               covered_seconds double precision[], captures double precision[], calls double precision[],
               total_ms double precision[], calls_squared double precision[])
LANGUAGE sql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
WITH grid AS (
    SELECT pg_catalog.date_bin(interval '1 hour', l.at - pg_catalog.make_interval(days => p_lookback_days),
                               timestamptz '1970-01-01 00:00+00') + interval '1 hour' AS first_hour,
           pg_catalog.date_bin(interval '1 hour', l.at, timestamptz '1970-01-01 00:00+00') AS last_hour, l.at
      FROM (SELECT max(s.captured_at) AS at FROM pganalytics_ml.snapshots s WHERE s.server_id = p_server_id) l
     WHERE l.at IS NOT NULL
), hours AS (
    SELECT h, row_number() OVER (ORDER BY h) AS i
      FROM grid g, pg_catalog.generate_series(g.first_hour, g.last_hour, interval '1 hour') h
), covered AS (
    SELECT pg_catalog.date_bin(interval '1 hour', s.captured_at, timestamptz '1970-01-01 00:00+00') AS h,
           sum(EXTRACT(epoch FROM s.captured_at - s.interval_start))::float8 AS seconds, count(*)::float8 AS n
      FROM pganalytics_ml.snapshots s, grid g
     WHERE s.server_id = p_server_id AND s.captured_at >= g.first_hour AND s.interval_start IS NOT NULL
     GROUP BY 1
), top AS (  -- few groups: a statement each, no hourly table of every statement
    SELECT q.queryid FROM pganalytics_ml.query_stats q, grid g
     WHERE q.server_id = p_server_id AND q.interval_end >= g.first_hour
     GROUP BY q.queryid ORDER BY sum(q.total_exec_time) DESC, q.queryid LIMIT p_statements
), server_wide AS (
    SELECT pg_catalog.date_bin(interval '1 hour', q.interval_end, timestamptz '1970-01-01 00:00+00') AS h,
           sum(q.calls)::float8 AS calls, sum(q.total_exec_time) AS total_ms
      FROM pganalytics_ml.query_stats q, grid g
     WHERE q.server_id = p_server_id AND q.interval_end >= g.first_hour
     GROUP BY 1
), hourly AS (
    SELECT q.queryid, pg_catalog.date_bin(interval '1 hour', q.interval_end, timestamptz '1970-01-01 00:00+00') AS h,
           sum(q.calls)::float8 AS calls, sum(q.total_exec_time) AS total_ms,
           sum(q.calls::float8 * q.calls) AS calls_squared
      FROM pganalytics_ml.query_stats q JOIN top t ON t.queryid = q.queryid, grid g
     WHERE q.server_id = p_server_id AND q.interval_end >= g.first_hour
     GROUP BY 1, 2
)
SELECT NULL::bigint, NULL::text, (SELECT g.first_hour FROM grid g), (SELECT g.at FROM grid g),
       array_agg(c.seconds ORDER BY hs.i),
       array_agg(c.n ORDER BY hs.i),
       array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(w.calls, 0) END ORDER BY hs.i),
       array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(w.total_ms, 0) END ORDER BY hs.i),
       NULL::float8[]
  FROM hours hs
  LEFT JOIN covered c ON c.h = hs.h
  LEFT JOIN server_wide w ON w.h = hs.h
HAVING count(*) > 0
UNION ALL
SELECT * FROM (
    SELECT t.queryid, st.query, (SELECT g.first_hour FROM grid g), (SELECT g.at FROM grid g),
           array_agg(c.seconds ORDER BY hs.i),
           array_agg(c.n ORDER BY hs.i),
           array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(hr.calls, 0) END ORDER BY hs.i),
           array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(hr.total_ms, 0) END ORDER BY hs.i),
           array_agg(hr.calls_squared ORDER BY hs.i)
      FROM top t
     CROSS JOIN hours hs
      LEFT JOIN covered c ON c.h = hs.h
      LEFT JOIN hourly hr ON hr.queryid = t.queryid AND hr.h = hs.h
      LEFT JOIN pganalytics_ml.statements st ON st.server_id = p_server_id AND st.queryid = t.queryid
     GROUP BY t.queryid, st.query
     ORDER BY t.queryid) per_statement
$$;
COMMENT ON FUNCTION pganalytics_ml._pattern_series(text, integer, integer) IS
    'Hourly calls, execution time and captured seconds of a server and its top statements, as pattern detection reads them';
REVOKE ALL ON FUNCTION pganalytics_ml._pattern_series(text, integer, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.pgml_schedule(
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
    -- Checks the training arguments the way pgml_train does, without training.
    PERFORM pganalytics_ml._check_train_arguments(c.retrain_lookback_days, c.retrain_model_type);

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
              NULL]];
    FOREACH v_job SLICE 1 IN ARRAY v_jobs LOOP
        -- Five cron fields (pg_cron ignores what follows them) or a macro; then pg_cron's parser decides.
        v_valid := v_job[2] ~ '^\s*(@[a-z]+|([0-9A-Za-z*,/-]+\s+){4}[0-9A-Za-z*,/-]+)\s*$';
        IF v_valid THEN
            BEGIN
                EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING v_job[1], v_job[2], v_job[3];
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
    'hourly workload patterns; '
    'arguments left out keep the settings of the previous call (pganalytics_ml.schedule_config)';
