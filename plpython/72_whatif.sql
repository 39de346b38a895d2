-- What-if predictions (sql/70_whatif.sql runs the caller's step between these). They run as the extension
-- owner and are granted to pgml_reader, so each treats what it is handed as untrusted: texts are only
-- parsed, plans are held to a pushed plan's bounds, and a known statement is planned only as its own role.

CREATE FUNCTION pganalytics_ml._what_if_request(p_caller text, p_sql text, p_query_hash bigint, p_scenario jsonb, p_server_id text, p_search_path text)
RETURNS jsonb
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.whatif import predict
return predict.request_sql(plpy, p_caller, p_sql, p_query_hash, p_scenario, p_server_id, p_search_path)
$$;
COMMENT ON FUNCTION pganalytics_ml._what_if_request(text, text, bigint, jsonb, text, text) IS
    'What-if, step 1: the text and scenario checked; what the caller''s step must plan and create (plans nothing)';
REVOKE ALL ON FUNCTION pganalytics_ml._what_if_request(text, text, bigint, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._what_if_request(text, text, bigint, jsonb, text, text) TO pgml_reader;

CREATE FUNCTION pganalytics_ml._what_if_choose(p_current_plan text, p_trials text)
RETURNS jsonb
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.whatif import predict
return predict.choose_sql(plpy, p_current_plan, p_trials)
$$;
COMMENT ON FUNCTION pganalytics_ml._what_if_choose(text, text) IS
    'What-if ''optimized'': the candidate indexes worth keeping, from their trial plans';
REVOKE ALL ON FUNCTION pganalytics_ml._what_if_choose(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._what_if_choose(text, text) TO pgml_reader;

CREATE FUNCTION pganalytics_ml._what_if_plan_known(p_request text, p_query_hash bigint, p_server_id text)
RETURNS jsonb
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.whatif import predict
return predict.plan_known_entry(plpy, p_request, p_query_hash, p_server_id)
$$;
COMMENT ON FUNCTION pganalytics_ml._what_if_plan_known(text, bigint, text) IS
    'What-if for a known statement: its plan now, as the role that ran it, before any hypothetical index';
REVOKE ALL ON FUNCTION pganalytics_ml._what_if_plan_known(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._what_if_plan_known(text, bigint, text) TO pgml_reader;

CREATE FUNCTION pganalytics_ml._what_if_answer_sql(p_request text, p_sql text, p_server_id text, p_current_plan text, p_scenario_plan text, p_chosen text)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.whatif import predict
return predict.answer_sql_entry(plpy, p_request, p_sql, p_server_id, p_current_plan, p_scenario_plan, p_chosen)
$$;
COMMENT ON FUNCTION pganalytics_ml._what_if_answer_sql(text, text, text, text, text, text) IS
    'What-if, last step of pgml_predict_sql: the estimate from the caller''s plans';
REVOKE ALL ON FUNCTION pganalytics_ml._what_if_answer_sql(text, text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._what_if_answer_sql(text, text, text, text, text, text) TO pgml_reader;

CREATE FUNCTION pganalytics_ml._what_if_answer_known(p_request text, p_query_hash bigint, p_server_id text, p_created text[], p_current_plan text)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.whatif import predict
return predict.answer_known_entry(plpy, p_request, p_query_hash, p_server_id, p_created, p_current_plan)
$$;
COMMENT ON FUNCTION pganalytics_ml._what_if_answer_known(text, bigint, text, text[], text) IS
    'What-if, last step for a known statement: its forecast scaled by the scenario';
REVOKE ALL ON FUNCTION pganalytics_ml._what_if_answer_known(text, bigint, text, text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._what_if_answer_known(text, bigint, text, text[], text) TO pgml_reader;
