-- Plan capture by hand. The job kind 'plans' (hourly under pgml_schedule, and queued by each snapshot that
-- finds statements never planned) calls the same code from the job worker.

CREATE FUNCTION @extschema@.pgml_capture_plans(only_new boolean DEFAULT false)
RETURNS TABLE (outcome text, statements integer)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.capture import plans
return plans.capture_plans(plpy, only_new)
$$;
COMMENT ON FUNCTION @extschema@.pgml_capture_plans(boolean) IS
    'EXPLAINs the local statements (only those never planned when only_new), each as the role that ran it, '
    'read only and rolled back, never executed; returns how many were planned, changed plan, and skipped by reason';
REVOKE ALL ON FUNCTION @extschema@.pgml_capture_plans(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_capture_plans(boolean) TO pgml_admin;
