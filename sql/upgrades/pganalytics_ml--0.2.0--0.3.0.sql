-- 0.2.0 -> 0.3.0

-- issue 12 (forecasting)
-- The extension's own statements, flagged at parse time; existing ones by the same pattern as
-- capture.counters.INTERNAL_PATTERN.
ALTER TABLE pganalytics_ml.statements ADD COLUMN is_internal boolean NOT NULL DEFAULT false;
UPDATE pganalytics_ml.statements SET is_internal = query ~* '(\mpgml_\w+\s*\(|\mpganalytics_ml\.|\mcron\.\w)' WHERE query IS NOT NULL;

ALTER TABLE pganalytics_ml.forecasts
    ADD COLUMN forecaster text,
    ADD COLUMN expert_ms double precision[],
    ADD COLUMN consecutive_above integer NOT NULL DEFAULT 0,
    ADD COLUMN reference_upper_ms double precision,
    ADD COLUMN server_shift double precision,
    ADD COLUMN alarm_upper_ms double precision;
ALTER TABLE pganalytics_ml.predictions ADD COLUMN forecaster text, ADD COLUMN expert_ms double precision[];
ALTER TYPE pganalytics_ml.prediction ADD ATTRIBUTE forecaster text;

-- issue 12: what the online combination and calibration learn, per statement and per server.
CREATE TABLE pganalytics_ml.forecaster_state (
    server_id      text NOT NULL,
    queryid        bigint NOT NULL,
    weights        double precision[] NOT NULL,   -- the statement's own weights, combination.FORECASTERS order
    updates        integer NOT NULL,              -- how many validated intervals updated them
    expert_ms      double precision[] NOT NULL,   -- what each forecaster proposed for the next interval
    combined_ms    double precision NOT NULL,     -- the combination, unrounded
    half_log       double precision NOT NULL,     -- half-width of its 90% interval, in log space
    based_on       timestamptz NOT NULL,          -- end of the latest interval they knew
    err_scale      double precision NOT NULL,     -- EWMA of the combination's |log error|
    correction     double precision NOT NULL,     -- the statement's own conformal correction
    seg_n          double precision NOT NULL,     -- the segment since the last detected change:
    seg_mean       double precision NOT NULL,     --   count, mean and sum of squares of log means,
    seg_m2         double precision NOT NULL,
    seg_flag       double precision NOT NULL,     --   side of a first deviation awaiting confirmation,
    seg_last       double precision NOT NULL,     --   and the latest log mean
    longrun_calls  double precision NOT NULL,     -- all calls and time observed: the long-run mean
    longrun_ms     double precision NOT NULL,
    load_mu        double precision NOT NULL,     -- the server-load forecaster: the statement's slow average,
    load_sdl       double precision NOT NULL,     --   and the sums of its regression on the server's load level
    load_sll       double precision NOT NULL,
    alarm_scale    double precision NOT NULL,     -- EWMA of |log error| beyond what the server's load explains
    season_seconds double precision CHECK (season_seconds OPERATOR(pg_catalog.>) 0),  -- a known cycle
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (server_id, queryid)
);
COMMENT ON TABLE pganalytics_ml.forecaster_state IS
    'Per statement: online weights of the forecasters, their latest proposals, and the interval calibration';

CREATE TABLE pganalytics_ml.forecaster_pool (
    server_id     text PRIMARY KEY,
    weights       double precision[] NOT NULL,    -- pooled weights, lent to statements with little history
    q             double precision NOT NULL,      -- the tracked quantile of normalized scores
    q_start       double precision NOT NULL,      -- its start value (a training holdout, or the default)
    recent_scores double precision[] NOT NULL,    -- the latest live scores, for `confidence`
    load_level    double precision NOT NULL,      -- the server's load level at the latest capture (log)
    updates       integer NOT NULL,
    updated_at    timestamptz NOT NULL
);
COMMENT ON TABLE pganalytics_ml.forecaster_pool IS
    'Per server: pooled forecaster weights and the live-calibrated interval quantile';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.forecaster_state', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.forecaster_pool', '');

DROP VIEW pganalytics_ml.regressions;
DROP VIEW pganalytics_ml.prediction_accuracy;

CREATE VIEW pganalytics_ml.prediction_accuracy AS
WITH scored AS (
    SELECT v.*, pg_catalog.float8larger(pg_catalog.float8div(v.predicted_ms, v.actual_ms),
                                        pg_catalog.float8div(v.actual_ms, v.predicted_ms)) AS q_error,
           CAST(pg_catalog.timezone('UTC', v.predicted_at) AS pg_catalog.date) AS day
      FROM pganalytics_ml.predictions v
     WHERE v.validated_at IS NOT NULL
       AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                        WHERE s.server_id OPERATOR(pg_catalog.=) v.server_id
                          AND s.queryid OPERATOR(pg_catalog.=) v.queryid AND s.is_internal)
), per_forecaster AS (
    SELECT f.server_id, f.model_id, f.source, f.day, f.forecaster,
           pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY f.q) AS p50,
           pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY f.q) AS p90,
           pg_catalog.count(*) AS n
      FROM (SELECT sc.server_id, sc.model_id, sc.source, sc.day, e.forecaster,
                   pg_catalog.float8larger(pg_catalog.float8div(e.ms, sc.actual_ms),
                                           pg_catalog.float8div(sc.actual_ms, e.ms)) AS q
              FROM scored sc
             CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(sc.expert_ms), pg_catalog.unnest(
                   ARRAY['last', 'ewma', 'since_change', 'longrun', 'trend', 'server_load', 'seasonal', 'model'])) AS e(ms, forecaster)
             WHERE e.ms OPERATOR(pg_catalog.>) 0) f
     GROUP BY f.server_id, f.model_id, f.source, f.day, f.forecaster
)
SELECT p.server_id,
       p.model_id,
       p.source,
       p.day,
       pg_catalog.count(*) AS predictions,
       pg_catalog.avg(p.accuracy_score) AS mean_accuracy,
       pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.error_percent) AS median_error_percent,
       pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY p.error_percent) AS p95_error_percent,
       pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.q_error) AS q_error_p50,
       pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY p.q_error) AS q_error_p90,
       pg_catalog.avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END) AS interval_coverage,
       (SELECT pg_catalog.jsonb_object_agg(pf.forecaster, pg_catalog.jsonb_build_object(
                   'q_error_p50', pf.p50, 'q_error_p90', pf.p90, 'predictions', pf.n))
          FROM per_forecaster pf
         WHERE pf.server_id OPERATOR(pg_catalog.=) p.server_id AND pf.day OPERATOR(pg_catalog.=) p.day
           AND pf.source OPERATOR(pg_catalog.=) p.source
           AND (pf.model_id OPERATOR(pg_catalog.=) p.model_id OR (pf.model_id IS NULL AND p.model_id IS NULL)))
       AS forecaster_q_errors
  FROM scored p
 GROUP BY p.server_id, p.model_id, p.source, p.day;
COMMENT ON VIEW pganalytics_ml.prediction_accuracy IS
    'Validated predictions per server, model and day (UTC), the extension''s own statements left out: accuracy, '
    'error percentiles, q-error, interval coverage, and the live q-errors of each forecaster';

CREATE VIEW pganalytics_ml.regressions AS
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
       f.consecutive_above AS intervals_above,
       pg_catalog.exp(f.server_shift) AS server_slowdown
  FROM pganalytics_ml.forecasts f
  JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) f.server_id AND s.queryid OPERATOR(pg_catalog.=) f.queryid
 WHERE f.consecutive_above OPERATOR(pg_catalog.>=) 2 AND NOT s.is_internal;
COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose last two or more interval means lay above the upper bound forecast before they began, '
    'beyond the whole server''s slowdown: by how much, since when (the extension''s own statements left out)';

GRANT SELECT ON pganalytics_ml.prediction_accuracy, pganalytics_ml.regressions, pganalytics_ml.forecasts,
                pganalytics_ml.predictions, pganalytics_ml.forecaster_state, pganalytics_ml.forecaster_pool
   TO pgml_reader;


CREATE OR REPLACE FUNCTION @extschema@.pgml_predict(query_hash bigint, server_id text DEFAULT 'local')
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f        pganalytics_ml.forecasts;
    v_id     bigint;
    v_at     timestamptz := now();
    v_logged boolean := false;
BEGIN
    IF pgml_predict.query_hash IS NULL OR pgml_predict.server_id IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN pgml_predict.query_hash IS NULL THEN 'query_hash' ELSE 'server_id' END
            USING ERRCODE = '22004', HINT = 'Pass pg_stat_statements.queryid of the statement to predict.';
    END IF;
    SELECT * INTO f FROM pganalytics_ml.forecasts fc
     WHERE fc.server_id = pgml_predict.server_id AND fc.queryid = pgml_predict.query_hash;
    IF NOT FOUND THEN
        PERFORM pganalytics_ml._no_forecast(pgml_predict.server_id, pgml_predict.query_hash);
    END IF;
    -- A hot standby cannot write the log: the prediction is still answered, marked as not logged.
    IF NOT pg_is_in_recovery() THEN
        INSERT INTO pganalytics_ml.predictions (server_id, queryid, predicted_ms, lower_ms, upper_ms, confidence,
                                                model_id, model_version, source, based_on, forecaster, expert_ms)
        VALUES (f.server_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence,
                f.model_id, f.model_version, f.source, f.based_on, f.forecaster, f.expert_ms)
        RETURNING predictions.prediction_id, predictions.predicted_at INTO v_id, v_at;
        v_logged := true;
    END IF;
    RETURN QUERY SELECT v_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
                        f.model_version, f.source, v_at, f.server_id, f.based_on, v_logged, f.forecaster;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict(bigint, text) IS
    'Predicted mean execution time (ms) of the statement''s next interval, with a 90% interval; logged for validation';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict(bigint, text) TO pgml_reader;


CREATE OR REPLACE FUNCTION @extschema@.pgml_predict_json(query_hash bigint, server_id text DEFAULT 'local')
RETURNS jsonb
LANGUAGE sql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
               'prediction_id', p.prediction_id,
               'query_hash', p.query_hash,
               'query_hash_text', p.query_hash::text,
               'predicted_execution_time_ms', p.predicted_execution_time_ms,
               'confidence', p.confidence,
               'range', jsonb_build_object('min', p.lower_bound_ms, 'max', p.upper_bound_ms),
               'model_id', p.model_id,
               'model_version', p.model_version,
               'source', p.source,
               'server_id', p.server_id,
               'logged', p.logged,
               'forecaster', p.forecaster,
               'timestamp', p.predicted_at)
      FROM @extschema@.pgml_predict(pgml_predict_json.query_hash, pgml_predict_json.server_id) p
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_json(bigint, text) IS
    'pgml_predict as the JSON document the pganalytics Go backend expects (query_hash_text: exact for JavaScript)';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_json(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_json(bigint, text) TO pgml_reader;


CREATE OR REPLACE FUNCTION @extschema@.pgml_predict_all(server_id text DEFAULT 'local', log boolean DEFAULT false)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pgml_predict_all.server_id IS NULL OR pgml_predict_all.log IS NULL THEN
        RAISE EXCEPTION 'server_id and log must not be NULL' USING ERRCODE = '22004',
            HINT = 'Call pgml_predict_all() for this server, or pgml_predict_all(''<server_id>'').';
    END IF;
    IF pgml_predict_all.log AND NOT pg_is_in_recovery() THEN
        RETURN QUERY
        INSERT INTO pganalytics_ml.predictions AS p (server_id, queryid, predicted_ms, lower_ms, upper_ms, confidence,
                                                     model_id, model_version, source, based_on, forecaster, expert_ms)
        SELECT f.server_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
               f.model_version, f.source, f.based_on, f.forecaster, f.expert_ms
          FROM pganalytics_ml.forecasts f
         WHERE f.server_id = pgml_predict_all.server_id
           AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                            WHERE s.server_id = f.server_id AND s.queryid = f.queryid AND s.is_internal)
         ORDER BY f.queryid
        RETURNING p.prediction_id, p.queryid, p.predicted_ms, p.lower_ms, p.upper_ms, p.confidence, p.model_id,
                  p.model_version, p.source, p.predicted_at, p.server_id, p.based_on, true, p.forecaster;
    ELSE
        RETURN QUERY
        SELECT NULL::bigint, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
               f.model_version, f.source, now(), f.server_id, f.based_on, false, f.forecaster
          FROM pganalytics_ml.forecasts f
         WHERE f.server_id = pgml_predict_all.server_id
           AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                            WHERE s.server_id = f.server_id AND s.queryid = f.queryid AND s.is_internal)
         ORDER BY f.queryid;
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_all(text, boolean) IS
    'Predictions for every statement of a server in one call (not the extension''s own); logged only when log is true';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_all(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_all(text, boolean) TO pgml_reader;


CREATE OR REPLACE FUNCTION pganalytics_ml._after_capture(p_server_id text, p_captured_at timestamptz)
RETURNS TABLE (predictions_validated integer, forecasts_checked integer)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_validated integer;
    v_checked   integer;
BEGIN
    WITH observed AS (
        SELECT p.prediction_id, o.mean_exec_time AS actual
          FROM pganalytics_ml.predictions p
          CROSS JOIN LATERAL (
                SELECT q.mean_exec_time FROM pganalytics_ml.query_stats q
                 WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end > p.based_on
                 ORDER BY q.interval_end LIMIT 1) o
         WHERE p.validated_at IS NULL AND p.server_id = p_server_id
    )
    UPDATE pganalytics_ml.predictions AS pr
       SET actual_ms = o.actual,
           error_percent = abs(pr.predicted_ms - o.actual) / o.actual * 100,
           accuracy_score = greatest(0, 1 - abs(pr.predicted_ms - o.actual) / o.actual),
           within_interval = o.actual BETWEEN pr.lower_ms AND pr.upper_ms,
           validated_at = p_captured_at,
           validated_by = 'observed'
      FROM observed o
     WHERE pr.prediction_id = o.prediction_id AND o.actual > 0;
    GET DIAGNOSTICS v_validated = ROW_COUNT;

    -- The regression alarm. An interval counts against a statement when its mean lies above the alarm
    -- bound: its forecast times exp(3 * the statement's own error scale once the server's load is
    -- accounted for; forecaster_state.alarm_scale), at least 1.5 times the forecast (both set by
    -- forecasting.online as forecasts.alarm_upper_ms), moved by what the server's change of load explains
    -- for it (the server's shift is the median log ratio of observed to predicted over its statements,
    -- when at least 5 ran, times the statement's learned sensitivity to load, at least 1 when the server
    -- slowed down: a server-wide slowdown excuses every statement as much as the median one). While intervals stay
    -- above, the bound of the first is kept (moved only by later shifts of load), so that the forecast
    -- learning the new level cannot hide it. The regressions view shows a statement after two such
    -- intervals in a row.
    WITH checked AS (
        SELECT f.queryid, q.interval_start, q.interval_end, q.mean_exec_time AS observed, f.predicted_ms,
               coalesce(f.reference_upper_ms, f.alarm_upper_ms, f.upper_ms) AS reference_upper,
               pg_catalog.ln(greatest(q.mean_exec_time, 1e-9) / greatest(f.predicted_ms, 1e-9)) AS residual,
               coalesce(s.is_internal, false) AS is_internal,
               -- the statement's learned sensitivity to the server's load (1 until it has learned one)
               coalesce(least(greatest((st.load_sdl + 0.02) / (st.load_sll + 0.02), 0), 3), 1) AS sensitivity
          FROM pganalytics_ml.query_stats q
          JOIN pganalytics_ml.forecasts f ON f.server_id = q.server_id AND f.queryid = q.queryid
          LEFT JOIN pganalytics_ml.statements s ON s.server_id = q.server_id AND s.queryid = q.queryid
          LEFT JOIN pganalytics_ml.forecaster_state st ON st.server_id = q.server_id AND st.queryid = q.queryid
         WHERE q.server_id = p_server_id AND q.interval_end = p_captured_at AND f.based_on < q.interval_end
    ), shift AS (
        SELECT CASE WHEN count(*) >= 5 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY c.residual) ELSE 0 END AS up
          FROM checked c WHERE NOT c.is_internal
    ), judged AS (
        SELECT c.*, sh.up,
               c.reference_upper * pg_catalog.exp(CASE WHEN sh.up > 0 THEN greatest(c.sensitivity, 1)
                                                       ELSE c.sensitivity END * sh.up) AS bound
          FROM checked c CROSS JOIN shift sh
    )
    UPDATE pganalytics_ml.forecasts AS f
       SET checked_interval_end = j.interval_end,
           checked_observed_ms = j.observed,
           checked_predicted_ms = j.predicted_ms,
           checked_upper_ms = j.bound,
           server_shift = j.up,
           consecutive_above = CASE WHEN j.observed > j.bound THEN f.consecutive_above + 1 ELSE 0 END,
           -- kept while above the bound before the shift: an interval the shift excused still moves the
           -- reference, so that peers adapting faster cannot make a statement look regressed later
           reference_upper_ms = CASE WHEN j.observed > j.reference_upper THEN j.bound END,
           above_upper_since = CASE WHEN j.observed > j.bound THEN coalesce(f.above_upper_since, j.interval_start) END
      FROM judged j
     WHERE f.server_id = p_server_id AND f.queryid = j.queryid;
    GET DIAGNOSTICS v_checked = ROW_COUNT;
    RETURN QUERY SELECT v_validated, v_checked;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) IS
    'Validates logged predictions and checks forecasts against the interval a capture just observed';
REVOKE ALL ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) FROM PUBLIC;


-- issue 12: the hook through which a known cycle reaches the seasonal forecaster (pattern detection,
-- or an operator who knows the workload's period, sets it; NULL clears it).
CREATE FUNCTION @extschema@.pgml_set_season(period_seconds double precision, server_id text DEFAULT 'local',
                                            query_hash bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF pgml_set_season.server_id IS NULL THEN
        RAISE EXCEPTION 'server_id must not be NULL' USING ERRCODE = '22004',
            HINT = 'Use ''local'' for this server''s own statements.';
    END IF;
    IF NOT (pgml_set_season.period_seconds IS NULL
            OR (pgml_set_season.period_seconds > 0 AND pgml_set_season.period_seconds <= 366 * 86400)) THEN
        RAISE EXCEPTION 'period_seconds must be between 0 and one year (exclusive of 0), got %',
            pgml_set_season.period_seconds
            USING ERRCODE = '22023', HINT = 'Pass the length of the cycle in seconds, e.g. 86400 for a daily one; NULL clears it.';
    END IF;
    UPDATE pganalytics_ml.forecaster_state st
       SET season_seconds = pgml_set_season.period_seconds
     WHERE st.server_id = pgml_set_season.server_id
       AND (pgml_set_season.query_hash IS NULL OR st.queryid = pgml_set_season.query_hash);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 AND pgml_set_season.query_hash IS NOT NULL THEN
        RAISE EXCEPTION 'statement % of server "%" has no forecaster state yet', pgml_set_season.query_hash,
            pgml_set_season.server_id
            USING ERRCODE = 'P0002', HINT = 'Its state is created at the first capture in which it runs.';
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) IS
    'Tells the seasonal forecaster the cycle of a server''s statements (or of one); NULL clears it';
REVOKE ALL ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) TO pgml_trainer;


CREATE OR REPLACE FUNCTION @extschema@.pgml_status() RETURNS jsonb
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pgss_loaded    boolean := current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_stat_statements($|[\s,"])';
    v_pgss_installed boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements');
    v_cron_loaded    boolean := current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_cron($|[\s,"])';
    v_cron_installed boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron');
    v_problems       text[] := '{}';
    v_dead           bigint := (SELECT count(*) FROM pganalytics_ml.jobs WHERE dead_lettered);
BEGIN
    IF NOT v_pgss_loaded THEN
        v_problems := v_problems || 'pg_stat_statements is not in shared_preload_libraries'::text;
    ELSIF NOT v_pgss_installed THEN
        v_problems := v_problems || 'the pg_stat_statements extension is not created in this database'::text;
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
            'cron_database', current_setting('cron.database_name', true),
            'scheduled_jobs', pganalytics_ml._scheduled_jobs()),
        'pending_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'pending'),
        'training_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'training'),
        'running_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'running'),
        'failed_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'failed' AND NOT dead_lettered),
        'dead_lettered_jobs', v_dead,
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
        'last_snapshot_at', (SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'local'));
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_status() IS
    'Health and state of pganalytics_ml in this database, as JSON';
REVOKE ALL ON FUNCTION @extschema@.pgml_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_status() TO pgml_reader;


-- pgml_train returns five more columns; the PL/Python functions re-created below bring it back.
DROP FUNCTION @extschema@.pgml_train(integer, text, text);
