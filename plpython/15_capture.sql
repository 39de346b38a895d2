-- The PL/Python bodies of capture's public functions (wrapped in sql/60_entry_points.sql). Bodies only load
-- the package and call one function.

CREATE FUNCTION pganalytics_ml._snapshot()
RETURNS TABLE (captured_at timestamptz, statements integer, new_statements integer,
               active_statements integer, interval_seconds double precision)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.snapshot(plpy)
$$;
COMMENT ON FUNCTION pganalytics_ml._snapshot() IS
    'Body of pgml_snapshot in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._snapshot() FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._ingest_stats(server_id text, stats jsonb)
RETURNS integer
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.ingest(plpy, server_id, stats)
$$;
COMMENT ON FUNCTION pganalytics_ml._ingest_stats(text, jsonb) IS
    'Body of pgml_ingest_stats in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._ingest_stats(text, jsonb) FROM PUBLIC;
