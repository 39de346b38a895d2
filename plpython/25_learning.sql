-- Training and model management: the PL/Python entry points of the learning loop.

CREATE FUNCTION @extschema@.pgml_train(lookback_days integer DEFAULT 90, model_type text DEFAULT 'random_forest',
                                       server_id text DEFAULT 'local')
RETURNS TABLE (model_id bigint, model_type text, server_id text, r_squared double precision, rmse double precision,
               mae double precision, training_samples integer, holdout_samples integer,
               q_error_p50 double precision, q_error_p90 double precision, q_error_p95 double precision,
               baseline_last_q_error_p90 double precision, baseline_longrun_q_error_p90 double precision,
               interval_coverage double precision, active_model_q_error_p90 double precision, activated boolean,
               feature_importance jsonb, combination_q_error_p50 double precision,
               combination_q_error_p90 double precision, model_weight double precision, forecasters jsonb,
               forecaster_note text)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import training
return training.train_sql(plpy, lookback_days, model_type, server_id)
$$;
COMMENT ON FUNCTION @extschema@.pgml_train(integer, text, text) IS
    'Trains a model on captured history, evaluates it on the latest part of the window, stores it, '
    'and activates it if it beats the active model there';
REVOKE ALL ON FUNCTION @extschema@.pgml_train(integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_train(integer, text, text) TO pgml_trainer;

CREATE FUNCTION @extschema@.pgml_activate_model(model_id bigint)
RETURNS SETOF pganalytics_ml.model_summary
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import models
return models.activate(plpy, model_id)
$$;
COMMENT ON FUNCTION @extschema@.pgml_activate_model(bigint) IS
    'Makes a model the active one of its server (also a rollback), after checking it loads';
REVOKE ALL ON FUNCTION @extschema@.pgml_activate_model(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_activate_model(bigint) TO pgml_admin;

CREATE FUNCTION @extschema@.pgml_cleanup_models(keep_count integer DEFAULT 5)
RETURNS integer
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import models
return models.cleanup(plpy, keep_count)
$$;
COMMENT ON FUNCTION @extschema@.pgml_cleanup_models(integer) IS
    'Deletes all but the newest keep_count models of each server; never an active model. Returns how many';
REVOKE ALL ON FUNCTION @extschema@.pgml_cleanup_models(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_cleanup_models(integer) TO pgml_admin;

CREATE FUNCTION pganalytics_ml._check_train_arguments(lookback_days integer, model_type text,
                                                      server_id text DEFAULT 'local')
RETURNS jsonb
LANGUAGE plpython3u
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import training
return training.check_train_arguments_sql(plpy, lookback_days, model_type, server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._check_train_arguments(integer, text, text) IS
    'Validates training arguments as pgml_train does, without training';
REVOKE ALL ON FUNCTION pganalytics_ml._check_train_arguments(integer, text, text) FROM PUBLIC;
