-- Public entry points of capture. Bodies only load the package and call one function.

CREATE FUNCTION @extschema@.pgml_snapshot()
RETURNS TABLE (captured_at timestamptz, statements integer, new_statements integer,
               active_statements integer, interval_seconds double precision)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.snapshot(plpy)
$$;
COMMENT ON FUNCTION @extschema@.pgml_snapshot() IS
    'Captures pg_stat_statements: one query_stats row per statement called since the last snapshot';
REVOKE ALL ON FUNCTION @extschema@.pgml_snapshot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_snapshot() TO pgml_trainer;

CREATE FUNCTION @extschema@.pgml_ingest_stats(server_id text, stats jsonb)
RETURNS integer
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.ingest(plpy, server_id, stats)
$$;
COMMENT ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) IS
    'Captures cumulative pg_stat_statements rows sent by a remote collector; returns the rows ingested';
REVOKE ALL ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) TO pgml_trainer;
