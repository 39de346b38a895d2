-- Prediction is a lookup of the current forecast plus one row in the log: plain SQL, no Python.

CREATE FUNCTION pganalytics_ml._no_forecast(p_server_id text, p_queryid bigint) RETURNS void
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pganalytics_ml.statements s WHERE s.server_id = p_server_id AND s.queryid = p_queryid) THEN
        RAISE EXCEPTION 'statement % of server "%" has no execution history yet', p_queryid, p_server_id
            USING ERRCODE = 'P0002',
                  HINT = 'It was seen but not yet run between two captures; run pgml_snapshot() after it runs.';
    END IF;
    RAISE EXCEPTION 'unknown query_hash % for server "%"', p_queryid,
        CASE WHEN length(p_server_id) > 63 THEN left(p_server_id, 60) || '...' ELSE p_server_id END
        USING ERRCODE = 'P0002',
              HINT = 'query_hash is pg_stat_statements.queryid of a statement captured by pgml_snapshot() '
                     'or pgml_ingest_stats(); SELECT queryid, query FROM pganalytics_ml.statements lists them.';
END
$$;
COMMENT ON FUNCTION pganalytics_ml._no_forecast(text, bigint) IS
    'Raises the P0002 error that explains why a statement has no forecast';
REVOKE ALL ON FUNCTION pganalytics_ml._no_forecast(text, bigint) FROM PUBLIC;

-- The statement's text as a prediction row shows it: at most 80 characters (pganalytics_ml.statements has it whole).
CREATE FUNCTION pganalytics_ml._short_query(p_server_id text, p_queryid bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN length(s.query) > 80 THEN left(s.query, 77) || '...' ELSE s.query END
      FROM pganalytics_ml.statements s WHERE s.server_id = p_server_id AND s.queryid = p_queryid
$$;
COMMENT ON FUNCTION pganalytics_ml._short_query(text, bigint) IS
    'A statement''s text shortened to 80 characters, as prediction rows show it';
REVOKE ALL ON FUNCTION pganalytics_ml._short_query(text, bigint) FROM PUBLIC;

-- The lookup and its log line, as the extension owner (callers cannot write the log themselves).
CREATE FUNCTION pganalytics_ml._predict(p_query_hash bigint, p_server_id text)
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
    IF p_query_hash IS NULL OR p_server_id IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN p_query_hash IS NULL THEN 'query_hash' ELSE 'server_id' END
            USING ERRCODE = '22004', HINT = 'Pass pg_stat_statements.queryid of the statement to predict.';
    END IF;
    SELECT * INTO f FROM pganalytics_ml.forecasts fc WHERE fc.server_id = p_server_id AND fc.queryid = p_query_hash;
    IF NOT FOUND THEN
        PERFORM pganalytics_ml._no_forecast(p_server_id, p_query_hash);
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
                        f.model_version, f.source, v_at, f.server_id, f.based_on, v_logged,
                        pganalytics_ml._short_query(f.server_id, f.queryid), f.forecaster, pl.total_cost,
                        pl.fingerprint, '{"scenario": "current"}'::jsonb, '{}'::text[], NULL::text
                   FROM (SELECT) one
                   LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = f.server_id AND c.queryid = f.queryid
                   LEFT JOIN pganalytics_ml.plans pl
                          ON pl.server_id = c.server_id AND pl.queryid = c.queryid AND pl.fingerprint = c.fingerprint;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._predict(bigint, text) IS
    'pgml_predict''s lookup of the current forecast and its line in the log, as the extension owner';
REVOKE ALL ON FUNCTION pganalytics_ml._predict(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._predict(bigint, text) TO pgml_reader;

-- pgml_predict and pgml_predict_json run as the caller (SECURITY INVOKER) and pin no search_path: a
-- scenario's index statements are the caller's, resolved and created as the caller would (sql/70_whatif.sql).
-- Every object they name is schema-qualified. Without a scenario they are the lookup above.
CREATE FUNCTION @extschema@.pgml_predict(query_hash bigint, server_id text DEFAULT 'local', scenario jsonb DEFAULT NULL)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    IF scenario IS NULL OR scenario OPERATOR(pg_catalog.=) '"current"'::pg_catalog.jsonb
       OR scenario OPERATOR(pg_catalog.=) '{}'::pg_catalog.jsonb THEN
        RETURN QUERY SELECT * FROM pganalytics_ml._predict(pgml_predict.query_hash, pgml_predict.server_id);
    ELSE
        RETURN QUERY SELECT * FROM pganalytics_ml._what_if('pgml_predict', NULL, pgml_predict.query_hash,
                                                            pgml_predict.scenario, pgml_predict.server_id,
                                                            pg_catalog.current_setting('search_path'));
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict(bigint, text, jsonb) IS
    'Predicted mean execution time (ms) of the statement''s next interval, with a 90% interval; logged for '
    'validation. With a scenario (''optimized'', {"indexes": ...}, {"growth": ...}, {"load": ...}): what-if, not logged';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict(bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict(bigint, text, jsonb) TO pgml_reader;

-- Numbers in the document keep every digit whatever the session's extra_float_digits (jsonb prints float8
-- with the session's setting).
CREATE FUNCTION @extschema@.pgml_predict_json(query_hash bigint, server_id text DEFAULT 'local',
                                              scenario jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
VOLATILE PARALLEL UNSAFE
SET extra_float_digits = 1
AS $$
    SELECT pg_catalog.jsonb_build_object(
               'prediction_id', p.prediction_id,
               'query_hash', p.query_hash,
               'query_hash_text', p.query_hash::pg_catalog.text,
               'predicted_execution_time_ms', p.predicted_execution_time_ms,
               'confidence', p.confidence,
               'range', pg_catalog.jsonb_build_object('min', p.lower_bound_ms, 'max', p.upper_bound_ms),
               'model_id', p.model_id,
               'model_version', p.model_version,
               'source', p.source,
               'server_id', p.server_id,
               'logged', p.logged,
               'forecaster', p.forecaster,
               'timestamp', p.predicted_at,
               'scenario', p.scenario,
               'recommended_indexes', pg_catalog.to_jsonb(p.recommended_indexes),
               'optimization_suggestion', p.optimization_suggestion)
      FROM @extschema@.pgml_predict($1, $2, $3) p
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_json(bigint, text, jsonb) IS
    'pgml_predict as the JSON document the pganalytics Go backend expects (query_hash_text: exact for JavaScript; '
    'recommended_indexes and optimization_suggestion filled for the ''optimized'' scenario)';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_json(bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_json(bigint, text, jsonb) TO pgml_reader;

CREATE FUNCTION @extschema@.pgml_predict_all(server_id text DEFAULT 'local', log boolean DEFAULT false)
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
        WITH logged AS (
            INSERT INTO pganalytics_ml.predictions AS p (server_id, queryid, predicted_ms, lower_ms, upper_ms,
                                                         confidence, model_id, model_version, source, based_on,
                                                         forecaster, expert_ms)
            SELECT f.server_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
                   f.model_version, f.source, f.based_on, f.forecaster, f.expert_ms
              FROM pganalytics_ml.forecasts f
             WHERE f.server_id = pgml_predict_all.server_id
               AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                                WHERE s.server_id = f.server_id AND s.queryid = f.queryid AND s.is_internal)
            RETURNING p.*)
        SELECT p.prediction_id, p.queryid, p.predicted_ms, p.lower_ms, p.upper_ms, p.confidence, p.model_id,
               p.model_version, p.source, p.predicted_at, p.server_id, p.based_on, true,
               pganalytics_ml._short_query(p.server_id, p.queryid), p.forecaster, pl.total_cost, pl.fingerprint,
               '{"scenario": "current"}'::jsonb, '{}'::text[], NULL::text
          FROM logged p
          LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = p.server_id AND c.queryid = p.queryid
          LEFT JOIN pganalytics_ml.plans pl
                 ON pl.server_id = c.server_id AND pl.queryid = c.queryid AND pl.fingerprint = c.fingerprint
         ORDER BY p.queryid;
    ELSE
        RETURN QUERY
        SELECT NULL::bigint, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
               f.model_version, f.source, now(), f.server_id, f.based_on, false,
               CASE WHEN length(s.query) > 80 THEN left(s.query, 77) || '...' ELSE s.query END, f.forecaster,
               pl.total_cost, pl.fingerprint, '{"scenario": "current"}'::jsonb, '{}'::text[], NULL::text
          FROM pganalytics_ml.forecasts f
          LEFT JOIN pganalytics_ml.statements s ON s.server_id = f.server_id AND s.queryid = f.queryid
          LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = f.server_id AND c.queryid = f.queryid
          LEFT JOIN pganalytics_ml.plans pl
                 ON pl.server_id = c.server_id AND pl.queryid = c.queryid AND pl.fingerprint = c.fingerprint
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

CREATE TYPE pganalytics_ml.validation AS (
    prediction_id               bigint,
    query_hash                  bigint,
    predicted_execution_time_ms double precision,
    actual_execution_time_ms    double precision,
    error_percent               double precision,
    accuracy_score              double precision,
    within_confidence_interval  boolean,
    validated_at                timestamptz
);
COMMENT ON TYPE pganalytics_ml.validation IS 'One scored prediction as pgml_validate returns it';

CREATE FUNCTION @extschema@.pgml_validate(prediction_id bigint, actual_execution_time_ms double precision)
RETURNS SETOF pganalytics_ml.validation
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_id     bigint := pgml_validate.prediction_id;
    p_actual double precision := pgml_validate.actual_execution_time_ms;
BEGIN
    IF p_id IS NULL OR p_actual IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN p_id IS NULL THEN 'prediction_id' ELSE 'actual_execution_time_ms' END
            USING ERRCODE = '22004', HINT = 'Pass the prediction_id pgml_predict returned and the measured time in ms.';
    END IF;
    -- Bounded like captured times, so that the error ratios below stay finite (NaN fails the upper bound).
    IF NOT (p_actual >= 1e-9 AND p_actual <= 1e15) THEN
        RAISE EXCEPTION 'actual_execution_time_ms must be a positive, finite number of milliseconds '
                        '(from 1e-9 to 1e15), got %', p_actual
            USING ERRCODE = '22023', HINT = 'Pass the measured execution time in milliseconds, e.g. 12.5.';
    END IF;
    RETURN QUERY
    UPDATE pganalytics_ml.predictions AS pr
       SET actual_ms = p_actual,
           error_percent = abs(pr.predicted_ms - p_actual) / p_actual * 100,
           accuracy_score = greatest(0, 1 - abs(pr.predicted_ms - p_actual) / p_actual),
           within_interval = p_actual BETWEEN pr.lower_ms AND pr.upper_ms,
           validated_at = now(),
           validated_by = 'manual'
     WHERE pr.prediction_id = p_id
    -- Rounded for reading (error to 0.01 %, accuracy to 4 decimals); the log keeps every digit.
    RETURNING pr.prediction_id, pr.queryid, pr.predicted_ms, pr.actual_ms,
              round(pr.error_percent::numeric, 2)::double precision,
              round(pr.accuracy_score::numeric, 4)::double precision,
              pr.within_interval, pr.validated_at;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown prediction_id %', p_id
            USING ERRCODE = 'P0002', HINT = 'Use a prediction_id returned by pgml_predict(); unlogged predictions have none.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_validate(bigint, double precision) IS
    'Scores a logged prediction against the measured time; a later validation replaces an earlier one';
REVOKE ALL ON FUNCTION @extschema@.pgml_validate(bigint, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_validate(bigint, double precision) TO pgml_trainer;

-- After each capture: score logged predictions whose target interval is now observed, and check each
-- current forecast against the interval it was made for (what the regressions view reads).
CREATE FUNCTION pganalytics_ml._after_capture(p_server_id text, p_captured_at timestamptz)
RETURNS TABLE (predictions_validated integer, forecasts_checked integer)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
-- Until a new server's rows are analyzed the planner expects one row of each, and nests loops over every
-- pair of its statements (500 statements: 0.3 s; 20,000: minutes). Hash and merge joins cost about the
-- same either way. JIT off too: the disabled path's cost would otherwise trigger it (0.9 s to compile).
SET enable_nestloop = off SET jit = off
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
    -- bound: its forecast times exp(3 * the statement's own error scale once the server's load and its own
    -- rate of calls are accounted for; online.SUMS's alarm_scale), at least 1.5 times the forecast (both
    -- set by forecasting.online as forecasts.alarm_upper_ms), moved by what explains a change without a
    -- regression:
    -- - the server's shift, the median log ratio of observed to predicted over its statements (when at
    --   least 5 ran), times the statement's learned sensitivity to load (at least 1 when the server slowed
    --   down: a server-wide slowdown excuses every statement as much as the median one);
    -- - the change of the statement's own log calls per second since the interval the forecast knew, times
    --   its learned elasticity to it (forecasting.alarm: lock waits on a hot row grow with its rate).
    -- While intervals stay above, the bound of the first is kept, so that the forecast learning the new
    -- level cannot hide it; a kept bound moves by the same two excuses counted from the first interval
    -- of the run: the change since then of the server's load level (the median over its statements of
    -- their log mean's distance from their slow average, what the server-load forecaster's sensitivity is
    -- learned on; forecasts that foresaw a cycle do not shift, the level does) and of the statement's
    -- rate. Counted from the start, not chained interval to interval, the kept bound does not drift.
    -- The regressions view shows a statement after two such intervals in a row.
    WITH checked AS (
        SELECT f.queryid, q.interval_start, q.interval_end, q.mean_exec_time AS observed, f.predicted_ms,
               coalesce(f.reference_upper_ms, f.alarm_upper_ms, f.upper_ms) AS reference_upper,
               f.reference_upper_ms IS NOT NULL AS kept, f.reference_upper_ms, f.reference_load, f.reference_rate,
               pg_catalog.ln(greatest(q.mean_exec_time, 1e-9) / greatest(f.predicted_ms, 1e-9)) AS residual,
               pg_catalog.ln(greatest(q.mean_exec_time, 1e-9)) - f.load_mu AS level,
               pg_catalog.ln(q.calls / greatest(extract(epoch FROM q.interval_end - q.interval_start)::float8, 1e-3))
                   AS rate,
               f.rate_log,
               coalesce(s.is_internal, false) AS is_internal,
               -- the statement's learned sensitivity to the server's load (1 until it has learned one) and
               -- its elasticity to its own rate of calls (0 until learned), as forecasting.online stored them
               coalesce(f.load_sensitivity, 1) AS sensitivity,
               coalesce(f.rate_elasticity, 0) AS elasticity
          FROM pganalytics_ml.query_stats q
          JOIN pganalytics_ml.forecasts f ON f.server_id = q.server_id AND f.queryid = q.queryid
          LEFT JOIN pganalytics_ml.statements s ON s.server_id = q.server_id AND s.queryid = q.queryid
         WHERE q.server_id = p_server_id AND q.interval_end = p_captured_at AND f.based_on < q.interval_end
    ), shift AS MATERIALIZED (
        -- Computed once: inlined, the planner may rescan it for every statement checked, a median
        -- over all of them each time (quadratic in the statements that ran).
        SELECT CASE WHEN count(*) >= 5 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY c.residual) ELSE 0 END AS up,
               CASE WHEN count(c.level) >= 5 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY c.level) END AS load
          FROM checked c WHERE NOT c.is_internal
    ), judged AS (
        SELECT c.*, sh.load, x.up,
               c.reference_upper * pg_catalog.exp(
                   CASE WHEN x.up > 0 THEN greatest(c.sensitivity, 1) ELSE c.sensitivity END * x.up
                   + c.elasticity * coalesce(c.rate - CASE WHEN c.kept THEN c.reference_rate ELSE c.rate_log END, 0))
                   AS bound
          FROM checked c CROSS JOIN shift sh
         CROSS JOIN LATERAL (SELECT CASE WHEN NOT c.kept THEN sh.up
                                         ELSE coalesce(sh.load - c.reference_load, 0) END AS up) x
    )
    UPDATE pganalytics_ml.forecasts AS f
       SET checked_interval_end = j.interval_end,
           checked_observed_ms = j.observed,
           checked_predicted_ms = j.predicted_ms,
           checked_upper_ms = j.bound,
           server_shift = j.up,
           consecutive_above = CASE WHEN j.observed > j.bound THEN f.consecutive_above + 1 ELSE 0 END,
           -- kept while above the bound before the excuses (an interval they excused still continues the run,
           -- so that peers adapting faster cannot make a statement look regressed later), with the load level
           -- and the rate of its first interval
           reference_upper_ms = CASE WHEN j.observed > j.reference_upper THEN coalesce(j.reference_upper_ms, j.bound) END,
           reference_load = CASE WHEN j.observed > j.reference_upper
                                 THEN CASE WHEN j.kept THEN j.reference_load ELSE j.load END END,
           reference_rate = CASE WHEN j.observed > j.reference_upper
                                 THEN CASE WHEN j.kept THEN j.reference_rate ELSE j.rate END END,
           above_upper_since = CASE WHEN j.observed > j.bound THEN coalesce(f.above_upper_since, j.interval_start) END
      FROM judged j
     WHERE f.server_id = p_server_id AND f.queryid = j.queryid;
    GET DIAGNOSTICS v_checked = ROW_COUNT;

    -- A statement that has not run in the server's last three captures is no longer running above its bound.
    UPDATE pganalytics_ml.forecasts AS f
       SET above_upper_since = NULL, consecutive_above = 0
     WHERE f.server_id = p_server_id AND f.above_upper_since IS NOT NULL
       AND f.checked_interval_end < (SELECT s.captured_at FROM pganalytics_ml.snapshots s
                                      WHERE s.server_id = p_server_id
                                      ORDER BY s.captured_at DESC OFFSET 2 LIMIT 1);
    RETURN QUERY SELECT v_validated, v_checked;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) IS
    'Validates logged predictions and checks forecasts against the interval a capture just observed';
REVOKE ALL ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) FROM PUBLIC;

-- Views are written fully qualified: they are parsed once, with the search_path of CREATE EXTENSION.
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
                   ARRAY['last', 'ewma', 'since_change', 'longrun', 'trend', 'server_load', 'seasonal', 'model',
                         'server_next'])) AS e(ms, forecaster)
             WHERE e.ms OPERATOR(pg_catalog.>) 0) f
     GROUP BY f.server_id, f.model_id, f.source, f.day, f.forecaster
)
SELECT p.server_id,
       p.model_id,
       p.source,
       p.day,
       pg_catalog.count(*) AS predictions,
       -- Rounded for reading: 4 decimals for accuracy, q-errors to 0.001, error percentages to 0.01
       -- (pgml_status() and the predictions table have the figures for programs).
       CAST(pg_catalog.round(CAST(pg_catalog.avg(p.accuracy_score) AS numeric), 4) AS double precision)
           AS mean_accuracy,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.error_percent)
           AS numeric), 2) AS double precision) AS median_error_percent,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY p.error_percent)
           AS numeric), 2) AS double precision) AS p95_error_percent,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.q_error)
           AS numeric), 3) AS double precision) AS q_error_p50,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY p.q_error)
           AS numeric), 3) AS double precision) AS q_error_p90,
       pg_catalog.round(pg_catalog.avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END), 3) AS interval_coverage,
       (SELECT pg_catalog.jsonb_object_agg(pf.forecaster, pg_catalog.jsonb_build_object(
                   'q_error_p50', pg_catalog.round(CAST(pf.p50 AS numeric), 3),
                   'q_error_p90', pg_catalog.round(CAST(pf.p90 AS numeric), 3), 'predictions', pf.n))
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
       -- issue 14: the plan change it started right after (found within the hour before it, or later
       -- but from a plan last seen before it was observed), NULL when none
       (SELECT pg_catalog.max(e.detected_at) FROM pganalytics_ml.plan_events e
         WHERE e.server_id OPERATOR(pg_catalog.=) f.server_id AND e.queryid OPERATOR(pg_catalog.=) f.queryid
           AND e.previous_seen_at OPERATOR(pg_catalog.<=) f.checked_interval_end
           AND e.detected_at OPERATOR(pg_catalog.>=)
               (f.above_upper_since OPERATOR(pg_catalog.-) CAST('1 hour' AS pg_catalog.interval))) AS plan_changed_at,
       f.consecutive_above AS intervals_above,
       pg_catalog.exp(f.server_shift) AS server_slowdown
  FROM pganalytics_ml.forecasts f
  JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) f.server_id AND s.queryid OPERATOR(pg_catalog.=) f.queryid
 WHERE f.consecutive_above OPERATOR(pg_catalog.>=) 2 AND NOT s.is_internal;
COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose last two or more interval means lay above the upper bound forecast before they began, '
    'beyond the whole server''s slowdown: by how much, since when, and the plan change it followed '
    '(plan_changed_at); the extension''s own statements left out, and a statement that has not run in the '
    'last three captures leaves it';

GRANT SELECT ON pganalytics_ml.prediction_accuracy, pganalytics_ml.regressions, pganalytics_ml.forecasts,
                pganalytics_ml.predictions, pganalytics_ml.forecaster_pool
   TO pgml_reader;

CREATE FUNCTION pganalytics_ml._models(p_server_id text)
RETURNS SETOF pganalytics_ml.model_summary
LANGUAGE sql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.model_id, m.server_id, m.model_type, m.version, m.created_at, m.is_active, m.activated_at,
           (m.metrics->>'training_samples')::integer, (m.metrics->>'r_squared')::float8,
           (m.metrics->>'rmse')::float8, (m.metrics->>'mae')::float8,
           (m.metrics->>'q_error_p50')::float8, (m.metrics->>'q_error_p90')::float8,
           (m.metrics->>'baseline_last_q_error_p90')::float8, (m.metrics->>'baseline_longrun_q_error_p90')::float8,
           (m.metrics->>'interval_coverage')::float8, m.sklearn_version, length(m.model)
      FROM pganalytics_ml.models m
     WHERE p_server_id IS NULL OR m.server_id = p_server_id
     ORDER BY m.server_id, m.model_id DESC
$$;
COMMENT ON FUNCTION pganalytics_ml._models(text) IS 'The model listing behind pgml_models';
REVOKE ALL ON FUNCTION pganalytics_ml._models(text) FROM PUBLIC;

CREATE FUNCTION @extschema@.pgml_models(server_id text DEFAULT NULL)
RETURNS SETOF pganalytics_ml.model_summary
LANGUAGE sql
STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM pganalytics_ml._models(pgml_models.server_id)
$$;
COMMENT ON FUNCTION @extschema@.pgml_models(text) IS 'Trained models with their holdout metrics, newest first';
REVOKE ALL ON FUNCTION @extschema@.pgml_models(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_models(text) TO pgml_reader;

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
    UPDATE pganalytics_ml.forecasts f
       SET season_seconds = pgml_set_season.period_seconds
     WHERE f.server_id = pgml_set_season.server_id
       AND (pgml_set_season.query_hash IS NULL OR f.queryid = pgml_set_season.query_hash);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 AND pgml_set_season.query_hash IS NOT NULL THEN
        RAISE EXCEPTION 'statement % of server "%" has no forecast yet', pgml_set_season.query_hash,
            pgml_set_season.server_id
            USING ERRCODE = 'P0002', HINT = 'Its forecast is made at the first capture in which it runs.';
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) IS
    'Tells the seasonal forecaster the cycle of a server''s statements (or of one); NULL clears it';
REVOKE ALL ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) TO pgml_trainer;
