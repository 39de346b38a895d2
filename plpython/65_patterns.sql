-- Entry points of pattern detection. Bodies only load the package and call one function.

CREATE FUNCTION @extschema@.pgml_detect_patterns(lookback_days integer DEFAULT 7, server_id text DEFAULT 'local')
RETURNS TABLE (type text, query_hash bigint, statement text, metric text, description text,
               confidence double precision, metadata jsonb)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.patterns import detection
return detection.detect_sql(plpy, lookback_days, server_id)
$$;
COMMENT ON FUNCTION @extschema@.pgml_detect_patterns(integer, text) IS
    'Workload patterns of the last lookback_days of a server''s history: daily and weekly cycles, trends, spikes, '
    'level shifts and plan changes, server-wide and per top statement, each with a confidence from 0 to 1';
REVOKE ALL ON FUNCTION @extschema@.pgml_detect_patterns(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_detect_patterns(integer, text) TO pgml_reader;

CREATE FUNCTION @extschema@.pgml_detect_patterns_json(lookback_days integer DEFAULT 7, server_id text DEFAULT 'local')
RETURNS jsonb
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.patterns import detection
return detection.detect_json(plpy, lookback_days, server_id)
$$;
COMMENT ON FUNCTION @extschema@.pgml_detect_patterns_json(integer, text) IS
    'pgml_detect_patterns as the Go backend''s document: {patterns_detected, patterns: [{type, description, '
    'confidence, metadata}], timestamp}';
REVOKE ALL ON FUNCTION @extschema@.pgml_detect_patterns_json(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_detect_patterns_json(integer, text) TO pgml_reader;
