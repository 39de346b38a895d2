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

-- The steps of pgml_ingest_stats (sql/12_ingest.sql), which holds the payload as jsonb and hands
-- Python its header and then one row at a time.
CREATE FUNCTION pganalytics_ml._check_push(server_id text, header jsonb, rows_type text, n_rows integer,
                                           payload_bytes integer)
RETURNS TABLE (captured_at timestamptz, stats_reset timestamptz)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return [counters.check_push(plpy, server_id, header, rows_type, n_rows, payload_bytes)]
$$;
COMMENT ON FUNCTION pganalytics_ml._check_push(text, jsonb, text, integer, integer) IS
    'Checks a collector payload but its rows; returns its capture and reset times';
REVOKE ALL ON FUNCTION pganalytics_ml._check_push(text, jsonb, text, integer, integer) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._push_row(index integer, row_json jsonb)
RETURNS pganalytics_ml.stat_counters
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.push_row(plpy, index, row_json)
$$;
COMMENT ON FUNCTION pganalytics_ml._push_row(integer, jsonb) IS
    'Checks one row of a collector payload (stats.rows[index]) and returns it as stat_counters';
REVOKE ALL ON FUNCTION pganalytics_ml._push_row(integer, jsonb) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._check_pushed_plans(items jsonb, captured_at timestamptz)
RETURNS integer
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.check_pushed_plans(plpy, items, captured_at)
$$;
COMMENT ON FUNCTION pganalytics_ml._check_pushed_plans(jsonb, timestamptz) IS
    'Checks the plans and relation sizes some rows of a collector payload carry; returns how many';
REVOKE ALL ON FUNCTION pganalytics_ml._check_pushed_plans(jsonb, timestamptz) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._after_push(server_id text, captured_at timestamptz, items jsonb)
RETURNS void
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import counters
return counters.after_push(plpy, server_id, captured_at, items)
$$;
COMMENT ON FUNCTION pganalytics_ml._after_push(text, timestamptz, jsonb) IS
    'Parses the statements a push brought and stores its plans, then scores and forecasts as after every capture';
REVOKE ALL ON FUNCTION pganalytics_ml._after_push(text, timestamptz, jsonb) FROM PUBLIC;
