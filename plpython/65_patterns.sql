-- Entry points of pattern detection. Bodies only load the package and call one function.

CREATE FUNCTION pganalytics_ml._detect_patterns(lookback_days integer DEFAULT 7, server_id text DEFAULT 'local')
RETURNS TABLE (type text, query_hash bigint, statement text, metric text, description text,
               confidence double precision, metadata jsonb)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.patterns import detection
return detection.detect_sql(plpy, lookback_days, server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._detect_patterns(integer, text) IS
    'Body of pgml_detect_patterns in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._detect_patterns(integer, text) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._detect_patterns_json(lookback_days integer DEFAULT 7, server_id text DEFAULT 'local')
RETURNS jsonb
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.patterns import detection
return detection.detect_json(plpy, lookback_days, server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._detect_patterns_json(integer, text) IS
    'Body of pgml_detect_patterns_json in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._detect_patterns_json(integer, text) FROM PUBLIC;
