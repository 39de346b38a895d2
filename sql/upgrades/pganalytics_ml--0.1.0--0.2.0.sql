-- 0.1.0 -> 0.2.0
-- pgml_predict_json carries query_hash also as text: a JSON number above 2^53 loses digits in JavaScript.
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
               'timestamp', p.predicted_at)
      FROM @extschema@.pgml_predict(pgml_predict_json.query_hash, pgml_predict_json.server_id) p
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_json(bigint, text) IS
    'pgml_predict as the JSON document the pganalytics Go backend expects (query_hash_text: exact for JavaScript)';
