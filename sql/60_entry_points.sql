-- The public functions whose work is done in PL/Python. Each is a PL/pgSQL wrapper around its PL/Python
-- body (pganalytics_ml._<name>, plpython/): an error PL/Python raises carries the Python traceback as its
-- CONTEXT, which reads like a crash. An error the extension raised for the caller (its message starts
-- with "pganalytics_ml: ": bad arguments, no data, a missing prerequisite) is raised again here with its
-- SQLSTATE, message, detail and hint, and only PL/pgSQL's context; any other error passes on as it was,
-- traceback included, since that one is a defect to report. The two committing procedures, at the end,
-- check their caller and arguments before their PL/Python bodies run.

CREATE FUNCTION pganalytics_ml._raise_for_caller(p_sqlstate text, p_message text, p_detail text, p_hint text)
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- RAISE takes no NULL option, and an empty one would still print an empty DETAIL or HINT line.
    IF p_detail <> '' AND p_hint <> '' THEN
        RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, DETAIL = p_detail, HINT = p_hint;
    ELSIF p_hint <> '' THEN
        RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, HINT = p_hint;
    ELSIF p_detail <> '' THEN
        RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, DETAIL = p_detail;
    END IF;
    RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._raise_for_caller(text, text, text, text) IS
    'Raises an error meant for the caller again, without the Python traceback it came with';
REVOKE ALL ON FUNCTION pganalytics_ml._raise_for_caller(text, text, text, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.pgml_snapshot()
RETURNS TABLE (captured_at timestamptz, statements integer, new_statements integer,
               active_statements integer, interval_seconds double precision)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._snapshot();
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_snapshot() IS
    'Captures pg_stat_statements: one query_stats row per statement called since the last snapshot';
REVOKE ALL ON FUNCTION @extschema@.pgml_snapshot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_snapshot() TO pgml_trainer;

CREATE FUNCTION @extschema@.pgml_train(lookback_days integer DEFAULT 90, model_type text DEFAULT 'random_forest',
                                       server_id text DEFAULT 'local')
RETURNS SETOF pganalytics_ml.training_result
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._train(pgml_train.lookback_days, pgml_train.model_type,
                                                     pgml_train.server_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_train(integer, text, text) IS
    'Trains a model on captured history, evaluates it on the latest part of the window, stores it, '
    'and activates it if it beats the active model there';
REVOKE ALL ON FUNCTION @extschema@.pgml_train(integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_train(integer, text, text) TO pgml_trainer;

CREATE FUNCTION @extschema@.pgml_activate_model(model_id bigint)
RETURNS SETOF pganalytics_ml.model_summary
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._activate_model(pgml_activate_model.model_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_activate_model(bigint) IS
    'Makes a model the active one of its server (also a rollback), after checking it loads';
REVOKE ALL ON FUNCTION @extschema@.pgml_activate_model(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_activate_model(bigint) TO pgml_admin;

CREATE FUNCTION @extschema@.pgml_cleanup_models(keep_count integer DEFAULT 5)
RETURNS integer
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN pganalytics_ml._cleanup_models(pgml_cleanup_models.keep_count);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_cleanup_models(integer) IS
    'Deletes all but the newest keep_count models of each server; never an active model. Returns how many';
REVOKE ALL ON FUNCTION @extschema@.pgml_cleanup_models(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_cleanup_models(integer) TO pgml_admin;

CREATE FUNCTION @extschema@.pgml_train_async(lookback_days integer DEFAULT 90,
                                             model_type text DEFAULT 'random_forest',
                                             server_id text DEFAULT 'local')
RETURNS TABLE (job_id text, status text, created_at timestamptz)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._train_async(pgml_train_async.lookback_days,
                                                           pgml_train_async.model_type, pgml_train_async.server_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_train_async(integer, text, text) IS
    'Queues a training job (arguments checked as pgml_train does); returns its job_id, status pending';
REVOKE ALL ON FUNCTION @extschema@.pgml_train_async(integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_train_async(integer, text, text) TO pgml_trainer;

CREATE FUNCTION @extschema@.pgml_job_enqueue(kind text, arguments jsonb DEFAULT '{}',
                                             max_attempts integer DEFAULT NULL, soft_limit interval DEFAULT NULL,
                                             hard_limit interval DEFAULT NULL, run_at timestamptz DEFAULT NULL)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._job_enqueue(pgml_job_enqueue.kind, pgml_job_enqueue.arguments,
                                                           pgml_job_enqueue.max_attempts, pgml_job_enqueue.soft_limit,
                                                           pgml_job_enqueue.hard_limit, pgml_job_enqueue.run_at);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) IS
    'Queues a job of any kind (train, snapshot, validate, cleanup, sleep, patterns, plans, forecast) with optional '
    'limits and start time';
REVOKE ALL ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) TO pgml_admin;

-- The committing procedures cannot catch errors (a block with an exception handler cannot commit): the
-- caller and the arguments are checked here, in PL/pgSQL, before the PL/Python body runs. They cannot
-- have a SET clause either, so every operator is written schema-qualified, whatever the caller's
-- search_path. Only a superuser may run them: pg_cron runs them as the extension owner.
CREATE PROCEDURE pganalytics_ml.run_jobs(max_jobs integer DEFAULT 100, max_seconds integer DEFAULT 50,
                                         kinds text[] DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_unknown text;
BEGIN
    IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER),
                    false) THEN
        RAISE EXCEPTION 'pganalytics_ml: the job worker must run as a superuser' USING ERRCODE = '42501',
            HINT = 'pg_cron runs it as the extension owner (pgml_schedule() is SECURITY DEFINER); by hand, CALL it '
                   'as a superuser.';
    END IF;
    IF run_jobs.max_jobs IS NULL THEN
        RAISE EXCEPTION 'pganalytics_ml: max_jobs must not be NULL' USING ERRCODE = '22004',
            HINT = 'The default drains up to 100 jobs.';
    END IF;
    IF run_jobs.max_jobs OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'pganalytics_ml: max_jobs must be at least 1, got %', run_jobs.max_jobs USING ERRCODE = '22023',
            HINT = 'The default drains up to 100 jobs.';
    END IF;
    IF run_jobs.max_seconds IS NULL THEN
        RAISE EXCEPTION 'pganalytics_ml: max_seconds must not be NULL' USING ERRCODE = '22004',
            HINT = 'No new job is claimed after max_seconds (default 50).';
    END IF;
    IF run_jobs.max_seconds OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'pganalytics_ml: max_seconds must be 0 or more, got %', run_jobs.max_seconds
            USING ERRCODE = '22023',
                  HINT = 'No new job is claimed after max_seconds; a job already started runs to its end.';
    END IF;
    IF run_jobs.kinds IS NOT NULL THEN
        IF pg_catalog.cardinality(run_jobs.kinds) OPERATOR(pg_catalog.=) 0
           OR pg_catalog.array_position(run_jobs.kinds, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'pganalytics_ml: kinds must name at least one job kind, and no NULL' USING ERRCODE = '22023',
                HINT = 'Leave kinds out (NULL) to run every kind.';
        END IF;
        SELECT pg_catalog.string_agg(pg_catalog.quote_literal(pg_catalog.left(k, 40)), ', ' ORDER BY k)
          INTO v_unknown
          FROM pg_catalog.unnest(run_jobs.kinds) k
         WHERE k OPERATOR(pg_catalog.<>) ALL (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'patterns',
                                                     'plans', 'forecast']);
        IF v_unknown IS NOT NULL THEN
            RAISE EXCEPTION 'pganalytics_ml: unknown job kinds: %', v_unknown USING ERRCODE = '22023',
                HINT = 'Job kinds: train, snapshot, validate, cleanup, sleep, patterns, plans, forecast.';
        END IF;
    END IF;
    CALL pganalytics_ml._run_jobs(run_jobs.max_jobs, run_jobs.max_seconds, run_jobs.kinds);
END
$$;
COMMENT ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) IS
    'Drains the job queue: rescues lost jobs, then runs ready jobs until max_jobs or max_seconds. CALL it outside '
    'a transaction block (pg_cron does)';
REVOKE ALL ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) FROM PUBLIC;

CREATE PROCEDURE pganalytics_ml.run_snapshots(every_seconds integer, within_seconds integer DEFAULT 60)
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER),
                    false) THEN
        RAISE EXCEPTION 'pganalytics_ml: the job worker must run as a superuser' USING ERRCODE = '42501',
            HINT = 'pg_cron runs it as the extension owner (pgml_schedule() is SECURITY DEFINER); by hand, CALL it '
                   'as a superuser.';
    END IF;
    IF run_snapshots.every_seconds IS NULL OR run_snapshots.within_seconds IS NULL THEN
        RAISE EXCEPTION 'pganalytics_ml: % must not be NULL',
            CASE WHEN run_snapshots.every_seconds IS NULL THEN 'every_seconds' ELSE 'within_seconds' END
            USING ERRCODE = '22004', HINT = 'pgml_schedule(snapshot_seconds => ...) sets them for pg_cron.';
    END IF;
    IF run_snapshots.every_seconds OPERATOR(pg_catalog.<) 1 OR run_snapshots.every_seconds OPERATOR(pg_catalog.>) 3600 THEN
        RAISE EXCEPTION 'pganalytics_ml: every_seconds must be between 1 and 3600, got %', run_snapshots.every_seconds
            USING ERRCODE = '22023', HINT = 'pgml_schedule(snapshot_seconds => ...) sets it for pg_cron.';
    END IF;
    IF run_snapshots.within_seconds OPERATOR(pg_catalog.<) 0
       OR run_snapshots.within_seconds OPERATOR(pg_catalog.>) 3600 THEN
        RAISE EXCEPTION 'pganalytics_ml: within_seconds must be between 0 and 3600, got %', run_snapshots.within_seconds
            USING ERRCODE = '22023',
                  HINT = 'pg_cron starts the procedure every minute: 60 (the default) covers the minute.';
    END IF;
    CALL pganalytics_ml._run_snapshots(run_snapshots.every_seconds, run_snapshots.within_seconds);
END
$$;
COMMENT ON PROCEDURE pganalytics_ml.run_snapshots(integer, integer) IS
    'Takes a snapshot every every_seconds for within_seconds, committing each: capture finer than pg_cron''s minute';
REVOKE ALL ON PROCEDURE pganalytics_ml.run_snapshots(integer, integer) FROM PUBLIC;

-- Plan capture (issue 14) and workload patterns (issue 16).
CREATE FUNCTION @extschema@.pgml_detect_patterns(lookback_days integer DEFAULT 7, server_id text DEFAULT 'local')
RETURNS TABLE (type text, query_hash bigint, statement text, metric text, description text,
               confidence double precision, metadata jsonb)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._detect_patterns(pgml_detect_patterns.lookback_days,
                                                               pgml_detect_patterns.server_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_detect_patterns(integer, text) IS
    'Workload patterns of the last lookback_days of a server''s history: daily and weekly cycles, trends, spikes, '
    'level shifts and plan changes, server-wide and per top statement, each with a confidence from 0 to 1';
REVOKE ALL ON FUNCTION @extschema@.pgml_detect_patterns(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_detect_patterns(integer, text) TO pgml_reader;

CREATE FUNCTION @extschema@.pgml_detect_patterns_json(lookback_days integer DEFAULT 7, server_id text DEFAULT 'local')
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN pganalytics_ml._detect_patterns_json(pgml_detect_patterns_json.lookback_days,
                                                pgml_detect_patterns_json.server_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_detect_patterns_json(integer, text) IS
    'pgml_detect_patterns as the Go backend''s document: {patterns_detected, patterns: [{type, description, '
    'confidence, metadata}], timestamp}';
REVOKE ALL ON FUNCTION @extschema@.pgml_detect_patterns_json(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_detect_patterns_json(integer, text) TO pgml_reader;

CREATE FUNCTION @extschema@.pgml_capture_plans(only_new boolean DEFAULT false)
RETURNS TABLE (outcome text, statements integer)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._capture_plans(pgml_capture_plans.only_new);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_capture_plans(boolean) IS
    'EXPLAINs the local statements (only those never planned when only_new), each as the role that ran it, '
    'read only and rolled back, never executed; returns how many were planned, changed plan, and skipped by reason';
REVOKE ALL ON FUNCTION @extschema@.pgml_capture_plans(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_capture_plans(boolean) TO pgml_admin;
