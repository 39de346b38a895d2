-- Training and model management: the PL/Python bodies of the learning loop's public functions, which
-- sql/60_entry_points.sql wraps (errors meant for the caller arrive without a Python traceback).

CREATE FUNCTION pganalytics_ml._train(lookback_days integer DEFAULT 90, model_type text DEFAULT 'random_forest',
                                       server_id text DEFAULT 'local')
RETURNS SETOF pganalytics_ml.training_result
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import training
return training.train_sql(plpy, lookback_days, model_type, server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._train(integer, text, text) IS
    'Body of pgml_train in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._train(integer, text, text) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._activate_model(model_id bigint)
RETURNS SETOF pganalytics_ml.model_summary
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import models
return models.activate(plpy, model_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._activate_model(bigint) IS
    'Body of pgml_activate_model in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._activate_model(bigint) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._cleanup_models(keep_count integer DEFAULT 5)
RETURNS integer
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import models
return models.cleanup(plpy, keep_count)
$$;
COMMENT ON FUNCTION pganalytics_ml._cleanup_models(integer) IS
    'Body of pgml_cleanup_models in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._cleanup_models(integer) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._check_train_arguments(lookback_days integer, model_type text,
                                                      server_id text DEFAULT 'local')
RETURNS jsonb
LANGUAGE plpython3u
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import training
return training.check_train_arguments_sql(plpy, lookback_days, model_type, server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._check_train_arguments(integer, text, text) IS
    'Validates training arguments as pgml_train does, without training';
REVOKE ALL ON FUNCTION pganalytics_ml._check_train_arguments(integer, text, text) FROM PUBLIC;
