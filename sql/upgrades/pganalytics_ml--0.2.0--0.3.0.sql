-- 0.2.0 -> 0.3.0

-- issue 14 (plans)
-- Plans of captured statements (EXPLAIN as the statement's own role, never executed) and their changes.

-- One row per distinct plan shape (fingerprint) a statement has had; features are the latest seen for it.
CREATE TABLE pganalytics_ml.plans (
    server_id     text NOT NULL,
    queryid       bigint NOT NULL,
    fingerprint   text NOT NULL,        -- node types, join strategies, relations, index names; not costs
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    planned_as    text,                 -- the role the plan was made as (local), NULL when pushed
    summary       text NOT NULL,        -- the shape in words
    total_cost    double precision NOT NULL,
    plan_rows     double precision NOT NULL,
    plan_width    integer NOT NULL,
    depth         integer NOT NULL,
    relations     text[] NOT NULL,
    indexes       text[] NOT NULL,
    features      jsonb NOT NULL,       -- the PLAN feature group (docs/model.md), relation sizes included
    plan          jsonb NOT NULL,       -- EXPLAIN (FORMAT JSON, VERBOSE) without the output lists
    PRIMARY KEY (server_id, queryid, fingerprint)
);
COMMENT ON TABLE pganalytics_ml.plans IS
    'Each plan shape a statement has had, with its costs, relation sizes and features as last seen';

-- Where the plan capture of each statement stands: its current plan, or why it has none.
CREATE TABLE pganalytics_ml.plan_capture (
    server_id            text NOT NULL,
    queryid              bigint NOT NULL,
    fingerprint          text,          -- the current plan; NULL until one is captured
    outcome              text NOT NULL, -- planned, or the reason it was skipped (docs/sql-reference.md)
    detail               text,          -- the error a skip came from, at most 200 characters
    attempted_at         timestamptz NOT NULL,
    planned_at           timestamptz,   -- last time a plan was captured
    unfinished_attempts  integer NOT NULL DEFAULT 0,  -- started but never finished (the worker died)
    PRIMARY KEY (server_id, queryid)
);
COMMENT ON TABLE pganalytics_ml.plan_capture IS
    'Per statement: the current plan fingerprint, the outcome of the last plan capture and when';

-- A statement's plan shape changed: detected when a capture finds a fingerprint other than the current one.
CREATE TABLE pganalytics_ml.plan_events (
    server_id        text NOT NULL,
    queryid          bigint NOT NULL,
    detected_at      timestamptz NOT NULL,
    previous_seen_at timestamptz NOT NULL,  -- the old plan was last seen then: the change lies in between
    old_fingerprint  text NOT NULL,
    new_fingerprint  text NOT NULL,
    PRIMARY KEY (server_id, queryid, detected_at)
);
COMMENT ON TABLE pganalytics_ml.plan_events IS 'Plan changes: a statement''s plan fingerprint changed';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plans', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_capture', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_events', '');

-- Mean time of a statement over the intervals of [p_from, p_to] (calls-weighted), for plan_changes.
CREATE FUNCTION pganalytics_ml._mean_ms_between(p_server_id text, p_queryid bigint,
                                                p_from timestamptz, p_to timestamptz)
RETURNS TABLE (mean_ms double precision, calls bigint)
LANGUAGE sql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sum(q.total_exec_time) / nullif(sum(q.calls), 0), sum(q.calls)::bigint
      FROM pganalytics_ml.query_stats q
     WHERE q.server_id = p_server_id AND q.queryid = p_queryid
       AND q.interval_start >= coalesce(p_from, '-infinity') AND q.interval_end <= coalesce(p_to, 'infinity')
$$;
COMMENT ON FUNCTION pganalytics_ml._mean_ms_between(text, bigint, timestamptz, timestamptz) IS
    'Calls-weighted mean time of a statement over the captured intervals lying within a time range';
REVOKE ALL ON FUNCTION pganalytics_ml._mean_ms_between(text, bigint, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._mean_ms_between(text, bigint, timestamptz, timestamptz) TO pgml_reader;

-- Before: the intervals of the old plan, since the change before it; after: those wholly after the
-- detection, up to the next change. NULL until an interval is known.
CREATE VIEW pganalytics_ml.plan_changes AS
SELECT e.server_id,
       e.queryid AS query_hash,
       s.query,
       e.old_fingerprint,
       e.new_fingerprint,
       o.summary AS old_summary,
       n.summary AS new_summary,
       o.total_cost AS old_total_cost,
       n.total_cost AS new_total_cost,
       e.previous_seen_at,
       e.detected_at,
       b.mean_ms AS mean_ms_before,
       b.calls AS calls_before,
       a.mean_ms AS mean_ms_after,
       a.calls AS calls_after
  FROM (SELECT x.*,
               pg_catalog.lag(x.detected_at) OVER w AS previous_change_at,
               pg_catalog.lead(x.previous_seen_at) OVER w AS next_change_from
          FROM pganalytics_ml.plan_events x
        WINDOW w AS (PARTITION BY x.server_id, x.queryid ORDER BY x.detected_at)) e
  LEFT JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) e.server_id AND s.queryid OPERATOR(pg_catalog.=) e.queryid
  LEFT JOIN pganalytics_ml.plans o
    ON o.server_id OPERATOR(pg_catalog.=) e.server_id AND o.queryid OPERATOR(pg_catalog.=) e.queryid
   AND o.fingerprint OPERATOR(pg_catalog.=) e.old_fingerprint
  LEFT JOIN pganalytics_ml.plans n
    ON n.server_id OPERATOR(pg_catalog.=) e.server_id AND n.queryid OPERATOR(pg_catalog.=) e.queryid
   AND n.fingerprint OPERATOR(pg_catalog.=) e.new_fingerprint
  CROSS JOIN LATERAL pganalytics_ml._mean_ms_between(e.server_id, e.queryid, e.previous_change_at,
                                                     e.previous_seen_at) b
  CROSS JOIN LATERAL pganalytics_ml._mean_ms_between(e.server_id, e.queryid, e.detected_at,
                                                     e.next_change_from) a;
COMMENT ON VIEW pganalytics_ml.plan_changes IS
    'Plan changes per statement: old and new fingerprint and shape, when, and the mean time before and after';

GRANT SELECT ON pganalytics_ml.plans, pganalytics_ml.plan_capture, pganalytics_ml.plan_events,
                pganalytics_ml.plan_changes TO pgml_reader;

-- Records one statement's plan capture: a plan (p_payload, from capture/plan_features.describe) or the
-- reason it has none. A plan whose fingerprint differs from the statement's current one is a plan change.
-- Returns whether it was one.
CREATE FUNCTION pganalytics_ml._store_plan(p_server_id text, p_queryid bigint, p_outcome text, p_detail text,
                                           p_payload jsonb, p_role text, p_at timestamptz DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at      timestamptz := coalesce(p_at, clock_timestamp());
    v_current pganalytics_ml.plan_capture;
    v_new     text := p_payload->>'fingerprint';
    v_changed boolean := false;
BEGIN
    SELECT * INTO v_current FROM pganalytics_ml.plan_capture
     WHERE server_id = p_server_id AND queryid = p_queryid FOR UPDATE;
    IF p_outcome = 'planned' THEN
        INSERT INTO pganalytics_ml.plans AS p (server_id, queryid, fingerprint, first_seen, last_seen, planned_as,
                                               summary, total_cost, plan_rows, plan_width, depth, relations,
                                               indexes, features, plan)
        VALUES (p_server_id, p_queryid, v_new, v_at, v_at, p_role, p_payload->>'summary',
                (p_payload->>'total_cost')::float8, (p_payload->>'plan_rows')::float8,
                (p_payload->>'plan_width')::integer, (p_payload->>'depth')::integer,
                ARRAY(SELECT jsonb_array_elements_text(p_payload->'relations')),
                ARRAY(SELECT jsonb_array_elements_text(p_payload->'indexes')),
                p_payload->'features', p_payload->'plan')
        ON CONFLICT (server_id, queryid, fingerprint) DO UPDATE
           SET last_seen = EXCLUDED.last_seen, planned_as = EXCLUDED.planned_as, total_cost = EXCLUDED.total_cost,
               plan_rows = EXCLUDED.plan_rows, plan_width = EXCLUDED.plan_width, features = EXCLUDED.features,
               plan = EXCLUDED.plan;
        IF v_current.fingerprint IS NOT NULL AND v_current.fingerprint <> v_new THEN
            INSERT INTO pganalytics_ml.plan_events
                   (server_id, queryid, detected_at, previous_seen_at, old_fingerprint, new_fingerprint)
            SELECT p_server_id, p_queryid, v_at, v_current.planned_at, v_current.fingerprint, v_new
            ON CONFLICT DO NOTHING;
            v_changed := true;
        END IF;
    END IF;
    INSERT INTO pganalytics_ml.plan_capture AS c (server_id, queryid, fingerprint, outcome, detail, attempted_at,
                                                  planned_at, unfinished_attempts)
    VALUES (p_server_id, p_queryid, v_new, p_outcome, left(p_detail, 200), v_at,
            CASE WHEN p_outcome = 'planned' THEN v_at END, 0)
    ON CONFLICT (server_id, queryid) DO UPDATE
       SET fingerprint = coalesce(EXCLUDED.fingerprint, c.fingerprint), outcome = EXCLUDED.outcome,
           detail = EXCLUDED.detail, planned_at = coalesce(EXCLUDED.planned_at, c.planned_at),
           -- a stalled statement keeps its count and time: it is retried a day after the attempt that stalled
           attempted_at = CASE WHEN EXCLUDED.outcome = 'stalled' THEN c.attempted_at ELSE EXCLUDED.attempted_at END,
           unfinished_attempts = CASE WHEN EXCLUDED.outcome = 'stalled' THEN c.unfinished_attempts ELSE 0 END;
    RETURN v_changed;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._store_plan(text, bigint, text, text, jsonb, text, timestamptz) IS
    'Stores a statement''s captured plan (or why it has none) and records a plan change';
REVOKE ALL ON FUNCTION pganalytics_ml._store_plan(text, bigint, text, text, jsonb, text, timestamptz) FROM PUBLIC;

ALTER TABLE pganalytics_ml.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE pganalytics_ml.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'plans']));

-- Regressions say which plan change they followed (a column added at the end).
CREATE OR REPLACE VIEW pganalytics_ml.regressions AS
SELECT f.server_id,
       f.queryid AS query_hash,
       s.query,
       f.checked_observed_ms AS observed_ms,
       f.checked_predicted_ms AS predicted_ms,
       f.checked_upper_ms AS upper_bound_ms,
       pg_catalog.float8mi(f.checked_observed_ms, f.checked_upper_ms) AS excess_ms,
       pg_catalog.float8div(f.checked_observed_ms, f.checked_upper_ms) AS times_upper_bound,
       f.above_upper_since AS since,
       f.checked_interval_end AS observed_at,
       -- issue 14: the plan change it started right after (found within the hour before it, or later
       -- but from a plan last seen before it was observed), NULL when none
       (SELECT pg_catalog.max(e.detected_at) FROM pganalytics_ml.plan_events e
         WHERE e.server_id OPERATOR(pg_catalog.=) f.server_id AND e.queryid OPERATOR(pg_catalog.=) f.queryid
           AND e.previous_seen_at OPERATOR(pg_catalog.<=) f.checked_interval_end
           AND e.detected_at OPERATOR(pg_catalog.>=)
               (f.above_upper_since OPERATOR(pg_catalog.-) CAST('1 hour' AS pg_catalog.interval))) AS plan_changed_at
  FROM pganalytics_ml.forecasts f
  JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) f.server_id AND s.queryid OPERATOR(pg_catalog.=) f.queryid
 WHERE f.above_upper_since IS NOT NULL;
COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose latest observed mean lies above the upper bound predicted for it, by how much, since when, '
    'and the plan change it followed (plan_changed_at)';

-- pgml_schedule also registers the hourly plan capture.
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
        -- Every statement planned again hourly (issue 14): finds plan changes; new ones are queued by snapshots.
        ARRAY['pganalytics_ml:plans', '17 * * * *',
              format('SELECT job_id FROM %I.pgml_job_enqueue(''plans'', ''{}'', soft_limit => ''4 min'', '
                     'hard_limit => ''5 min'')', '@extschema@'), NULL]];
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
    'hourly plan capture; '
    'arguments left out keep the settings of the previous call (pganalytics_ml.schedule_config)';
