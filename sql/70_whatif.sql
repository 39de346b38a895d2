-- What-if predictions: a statement never run (pgml_predict_sql), a known one under a scenario
-- (pgml_predict / pgml_predict_json with a scenario). Planning runs code, so the caller's text is planned,
-- and the caller's hypothetical indexes are created, only here, in SECURITY INVOKER functions: with the
-- caller's own privileges, search_path and row security. The PL/Python steps around them
-- (plpython/72_whatif.sql) plan nothing the caller wrote.

-- EXPLAIN of the caller's text as the caller: in a subtransaction that is always rolled back, read only,
-- with $n parameters bound to NULL in a generic plan. Never executed.
CREATE FUNCTION pganalytics_ml._explain_as_caller(p_sql text, p_params integer, p_search_path text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_prepare text := 'PREPARE pganalytics_ml_what_if AS ' || p_sql;
    v_explain text := 'EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE pganalytics_ml_what_if';
    v_plan text;
    v_state text; v_message text; v_detail text;
BEGIN
    IF p_params > 0 THEN
        v_explain := v_explain || '(' || array_to_string(array_fill('NULL'::text, ARRAY[p_params]), ', ') || ')';
    END IF;
    IF EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'pganalytics_ml_what_if') THEN
        DEALLOCATE pganalytics_ml_what_if;
    END IF;
    BEGIN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
        PERFORM pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true);
        PERFORM pg_catalog.set_config('lock_timeout', '500ms', true);
        -- From here to the rollback only the caller's text runs under the caller's search_path: nothing
        -- below names an operator or an unqualified function.
        PERFORM pg_catalog.set_config('search_path', p_search_path, true);
        EXECUTE v_prepare;
        EXECUTE v_explain INTO v_plan;
        RAISE EXCEPTION USING ERRCODE = 'PGW01';  -- rolls back whatever planning did, the settings too
    EXCEPTION
        WHEN SQLSTATE 'PGW01' THEN
            NULL;
        WHEN OTHERS THEN  -- (the rollback gave the pinned search_path back; pgspot cannot tell, so qualified)
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
            IF EXISTS (SELECT FROM pg_catalog.pg_prepared_statements
                        WHERE name OPERATOR(pg_catalog.=) 'pganalytics_ml_what_if') THEN
                DEALLOCATE pganalytics_ml_what_if;
            END IF;
            RAISE EXCEPTION USING ERRCODE = v_state,
                MESSAGE = 'pganalytics_ml: the statement does not plan: ' OPERATOR(pg_catalog.||) v_message,
                DETAIL = coalesce(v_detail, ''),
                HINT = 'It is planned (never run) with your own privileges and search_path: the tables it names '
                       'must exist and be readable by you; $n parameters are planned as unknown values.';
    END;
    DEALLOCATE pganalytics_ml_what_if;
    RETURN v_plan::pg_catalog.jsonb;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._explain_as_caller(text, integer, text) IS
    'EXPLAIN of the caller''s text with the caller''s privileges, rolled back, never executed';
REVOKE ALL ON FUNCTION pganalytics_ml._explain_as_caller(text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._explain_as_caller(text, integer, text) TO pgml_reader;

-- A hypothetical index (hypopg) from the caller's CREATE INDEX text, created as the caller.
CREATE FUNCTION pganalytics_ml._hypothetical_as_caller(p_hypopg text, p_index text, p_search_path text)
RETURNS oid
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_create text := format('SELECT indexrelid FROM %s.hypopg_create_index($1)', p_hypopg);
    v_table text := format('SELECT indrelid::regclass::text FROM %s.hypopg() WHERE indexrelid = $1', p_hypopg);
    v_id oid;
    v_relation text;
    v_message text;
BEGIN
    BEGIN
        -- Only the caller's index statement runs under the caller's search_path (no operator, no unqualified
        -- function until the path is back).
        PERFORM pg_catalog.set_config('search_path', p_search_path, true);
        EXECUTE v_create INTO v_id USING p_index;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'pganalytics_ml: the scenario''s index "' || left(p_index, 120) || '" cannot be made: ' || v_message,
            HINT = 'Each entry of "indexes" is a CREATE INDEX statement on a table you can read, as you would run it.';
    END;
    -- hypopg checks no privilege: a table the caller may not read gets no hypothetical index here.
    EXECUTE v_table INTO v_relation USING v_id;
    IF NOT has_table_privilege(v_relation, 'SELECT') THEN
        PERFORM pganalytics_ml._drop_hypothetical(p_hypopg, ARRAY[v_id]);
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'pganalytics_ml: permission denied for table ' || v_relation,
            HINT = 'A scenario''s index must be on a table you can SELECT from.';
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._hypothetical_as_caller(text, text, text) IS
    'Creates a hypothetical index (hypopg) from the caller''s CREATE INDEX text, as the caller';
REVOKE ALL ON FUNCTION pganalytics_ml._hypothetical_as_caller(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._hypothetical_as_caller(text, text, text) TO pgml_reader;

CREATE FUNCTION pganalytics_ml._drop_hypothetical(p_hypopg text, p_ids oid[])
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id oid;
BEGIN
    IF p_hypopg IS NULL THEN
        RETURN;
    END IF;
    FOREACH v_id IN ARRAY coalesce(p_ids, '{}') LOOP
        EXECUTE format('SELECT %s.hypopg_drop_index($1)', p_hypopg) USING v_id;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._drop_hypothetical(text, oid[]) IS
    'Drops the hypothetical indexes a what-if prediction created (never the session''s others)';
REVOKE ALL ON FUNCTION pganalytics_ml._drop_hypothetical(text, oid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._drop_hypothetical(text, oid[]) TO pgml_reader;

-- The caller's step re-raises the extension's errors without their Python traceback, as the owner's do.
GRANT EXECUTE ON FUNCTION pganalytics_ml._raise_for_caller(text, text, text, text) TO pgml_reader;

-- The caller's step of every what-if prediction: a text (p_sql) or a known statement (p_query_hash).
CREATE FUNCTION pganalytics_ml._what_if(p_caller text, p_sql text, p_query_hash bigint, p_scenario jsonb,
                                        p_server_id text, p_search_path text)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_request jsonb;
    v_hypopg text;
    v_current jsonb;
    v_scenario_plan jsonb;
    v_trials jsonb := '[]';
    v_chosen jsonb;
    v_created oid[] := '{}';
    v_item jsonb;
    v_id oid;
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    -- The request resolves names for 'optimized' candidates: "$user" there is the caller.
    v_request := pganalytics_ml._what_if_request(p_caller, p_sql, p_query_hash, p_scenario, p_server_id,
                                                 regexp_replace(p_search_path, '"?\$user"?', quote_ident(current_user), 'g'));
    v_hypopg := v_request->>'hypopg';
    IF p_query_hash IS NOT NULL AND v_request->'scenario'->>'scenario' = 'current' THEN
        RETURN QUERY SELECT * FROM pganalytics_ml._predict(p_query_hash, p_server_id);
        RETURN;
    END IF;
    IF p_sql IS NOT NULL THEN
        v_current := pganalytics_ml._explain_as_caller(p_sql, (v_request->>'n_params')::integer, p_search_path);
        FOR v_item IN SELECT * FROM jsonb_array_elements(v_request->'candidates') LOOP
            v_id := pganalytics_ml._hypothetical_as_caller(v_hypopg, v_item->>'index', p_search_path);
            v_created := ARRAY[v_id];
            v_trials := v_trials || jsonb_build_array(v_item || jsonb_build_object('plan',
                pganalytics_ml._explain_as_caller(p_sql, (v_request->>'n_params')::integer, p_search_path)));
            PERFORM pganalytics_ml._drop_hypothetical(v_hypopg, v_created);
            v_created := '{}';
        END LOOP;
        v_chosen := CASE WHEN v_request->'scenario'->>'scenario' = 'optimized'
                         THEN pganalytics_ml._what_if_choose(v_current::text, v_trials::text)
                         ELSE v_request->'indexes' END;
    ELSE
        v_current := pganalytics_ml._what_if_plan_known(v_request::text, p_query_hash, p_server_id);
        v_chosen := v_request->'indexes';
    END IF;
    FOR v_item IN SELECT * FROM jsonb_array_elements(v_chosen) LOOP
        v_created := v_created || pganalytics_ml._hypothetical_as_caller(v_hypopg, v_item #>> '{}', p_search_path);
    END LOOP;
    IF p_sql IS NOT NULL THEN
        IF cardinality(v_created) > 0 THEN
            v_scenario_plan := pganalytics_ml._explain_as_caller(p_sql, (v_request->>'n_params')::integer, p_search_path);
        END IF;
        RETURN QUERY SELECT (a).prediction_id, (a).query_hash, (a).predicted_execution_time_ms, (a).lower_bound_ms,
                            (a).upper_bound_ms, (a).confidence, (a).model_id, (a).model_version, (a).source, now(),
                            (a).server_id, coalesce((a).based_on, now()), (a).logged, (a).query, (a).forecaster,
                            (a).total_cost, (a).plan_fingerprint, (a).scenario, (a).recommended_indexes,
                            (a).optimization_suggestion
                       FROM pganalytics_ml._what_if_answer_sql(v_request::text, p_sql, p_server_id, v_current::text,
                                                               v_scenario_plan::text, v_chosen::text) a;
    ELSE
        RETURN QUERY SELECT (a).prediction_id, (a).query_hash, (a).predicted_execution_time_ms, (a).lower_bound_ms,
                            (a).upper_bound_ms, (a).confidence, (a).model_id, (a).model_version, (a).source, now(),
                            (a).server_id, coalesce((a).based_on, now()), (a).logged, (a).query, (a).forecaster,
                            (a).total_cost, (a).plan_fingerprint, (a).scenario, (a).recommended_indexes,
                            (a).optimization_suggestion
                       FROM pganalytics_ml._what_if_answer_known(v_request::text, p_query_hash, p_server_id,
                                                                 ARRAY(SELECT jsonb_array_elements_text(v_chosen)),
                                                                 v_current::text) a;
    END IF;
    PERFORM pganalytics_ml._drop_hypothetical(v_hypopg, v_created);
EXCEPTION WHEN OTHERS THEN
    -- Hypothetical indexes live in the backend's memory, not in the transaction: a rollback keeps them.
    PERFORM pganalytics_ml._drop_hypothetical(v_hypopg, v_created);
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION pganalytics_ml._what_if(text, text, bigint, jsonb, text, text) IS
    'The caller''s step of a what-if prediction: plans the caller''s text and creates its hypothetical indexes as the caller';
REVOKE ALL ON FUNCTION pganalytics_ml._what_if(text, text, bigint, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._what_if(text, text, bigint, jsonb, text, text) TO pgml_reader;

-- The public entry point passes the caller's own search_path on: it pins none, since the caller's text and
-- index statements must resolve as the caller would run them. It runs as the caller (SECURITY INVOKER)
-- and names every object with its schema. (pgml_predict and pgml_predict_json do the same: sql/30_predict.sql.)
CREATE FUNCTION @extschema@.pgml_predict_sql(sql text, scenario jsonb DEFAULT '{}', server_id text DEFAULT 'local')
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE sql
VOLATILE PARALLEL UNSAFE
AS $$
    SELECT * FROM pganalytics_ml._what_if('pgml_predict_sql', $1, NULL, $2, $3, pg_catalog.current_setting('search_path'))
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_sql(text, jsonb, text) IS
    'Predicted mean execution time (ms) of a statement that may never have run, from its plan (never executed), '
    'under a scenario';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_sql(text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_sql(text, jsonb, text) TO pgml_reader;
