-- Plan capture by hand. The job kind 'plans' (hourly under pgml_schedule, and queued by each snapshot that
-- finds statements never planned) calls the same code from the job worker.

CREATE FUNCTION pganalytics_ml._capture_plans(only_new boolean DEFAULT false)
RETURNS TABLE (outcome text, statements integer)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import plans
return plans.capture_plans(plpy, only_new)
$$;
COMMENT ON FUNCTION pganalytics_ml._capture_plans(boolean) IS
    'Body of pgml_capture_plans in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._capture_plans(boolean) FROM PUBLIC;
