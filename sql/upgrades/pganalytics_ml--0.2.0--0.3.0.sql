-- 0.2.0 -> 0.3.0

-- issue 19 (input hardening)
-- pgml_ingest_stats keeps the payload as jsonb and hands Python its header, then one row at a time
-- (its PL/Python steps _check_push, _push_row and _after_push come with the PL/Python functions below);
-- the rows are no longer converted in one piece.
DROP FUNCTION pganalytics_ml._counters_from_json(jsonb);

-- Refuses rows that repeat an entry, and statements whose counters, summed over their entries, would
-- not fit the bigint columns of query_stats.
CREATE FUNCTION pganalytics_ml._check_push_rows(p_rows pganalytics_ml.stat_counters[]) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at     bigint;
    v_first  bigint;
    v_query  bigint;
    v_sum    numeric;
BEGIN
    SELECT d.i, d.first, d.queryid INTO v_at, v_first, v_query
      FROM (SELECT r.ordinality - 1 AS i, r.queryid,
                   pg_catalog.first_value(r.ordinality - 1) OVER w AS first, pg_catalog.row_number() OVER w AS n
              FROM pg_catalog.unnest(p_rows) WITH ORDINALITY r
            WINDOW w AS (PARTITION BY r.queryid, r.userid, r.dbid, r.toplevel ORDER BY r.ordinality)) d
     WHERE d.n = 2
     ORDER BY d.i LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'stats.rows[%] (queryid %) repeats stats.rows[%]', v_at, v_query, v_first
            USING ERRCODE = '22023', HINT = 'Send each (queryid, userid, dbid, toplevel) entry once per capture.';
    END IF;
    SELECT s.queryid, s.top INTO v_query, v_sum
      FROM (SELECT r.queryid,
                   greatest(sum(r.calls), sum(r.rows), sum(r.shared_blks_hit), sum(r.shared_blks_read),
                            sum(r.shared_blks_dirtied), sum(r.shared_blks_written), sum(r.local_blks_hit),
                            sum(r.local_blks_read), sum(r.local_blks_dirtied), sum(r.local_blks_written),
                            sum(r.temp_blks_read), sum(r.temp_blks_written), sum(r.wal_records), sum(r.wal_fpi),
                            sum(r.plans)) AS top
              FROM pg_catalog.unnest(p_rows) r
             GROUP BY r.queryid) s
     WHERE s.top > 9223372036854775807
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the rows of queryid % sum a counter to %, out of the bigint range', v_query, v_sum
            USING ERRCODE = '22003',
                  HINT = 'A statement''s counters, summed over its entries (users, databases, levels), must stay '
                         'below 9223372036854775807: send each entry''s own cumulative counters.';
    END IF;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._check_push_rows(pganalytics_ml.stat_counters[]) IS
    'Refuses a push that repeats an entry or whose per-statement sums would pass a bigint';
REVOKE ALL ON FUNCTION pganalytics_ml._check_push_rows(pganalytics_ml.stat_counters[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.pgml_ingest_stats(server_id text, stats jsonb)
RETURNS integer
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind  text := pg_catalog.jsonb_typeof(stats);
    v_json  jsonb := CASE v_kind WHEN 'array' THEN stats WHEN 'object' THEN stats OPERATOR(pg_catalog.->) 'rows' END;
    v_times record;
    v_rows  pganalytics_ml.stat_counters[];
    v_done  record;
BEGIN
    SELECT * INTO v_times FROM pganalytics_ml._check_push(
        server_id,
        CASE v_kind WHEN 'array' THEN '{}'::jsonb WHEN 'object' THEN stats OPERATOR(pg_catalog.-) 'rows' ELSE stats END,
        pg_catalog.jsonb_typeof(v_json),
        CASE pg_catalog.jsonb_typeof(v_json) WHEN 'array' THEN pg_catalog.jsonb_array_length(v_json) END,
        pg_catalog.pg_column_size(stats));
    SELECT pg_catalog.array_agg(pganalytics_ml._push_row((e.ord - 1)::integer, e.value) ORDER BY e.ord)
      INTO v_rows
      FROM pg_catalog.jsonb_array_elements(v_json) WITH ORDINALITY e(value, ord);
    v_json := NULL;
    PERFORM pganalytics_ml._check_push_rows(v_rows);
    SELECT * INTO v_done FROM pganalytics_ml._capture(server_id, v_times.captured_at, v_rows, v_times.stats_reset);
    PERFORM pganalytics_ml._after_push(server_id, v_done.captured_at);
    RETURN pg_catalog.cardinality(v_rows);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) IS
    'Captures cumulative pg_stat_statements rows sent by a remote collector; returns the rows ingested';
REVOKE ALL ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) TO pgml_trainer;

-- The session setting pganalytics_ml.job_max_attempts is held to the bounds of max_attempts.
CREATE OR REPLACE FUNCTION pganalytics_ml._enqueue(
    p_kind text, p_arguments jsonb, p_max_attempts integer DEFAULT NULL, p_soft_limit interval DEFAULT NULL,
    p_hard_limit interval DEFAULT NULL, p_run_at timestamptz DEFAULT NULL, p_backoff_base interval DEFAULT NULL,
    p_backoff_cap interval DEFAULT NULL)
RETURNS pganalytics_ml.jobs
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job  pganalytics_ml.jobs;
    v_hard interval := coalesce(p_hard_limit, pganalytics_ml._setting('job_hard_limit', '10 min')::interval);
    v_soft interval := coalesce(p_soft_limit, pganalytics_ml._setting('job_soft_limit', '9 min')::interval);
    v_base interval := coalesce(p_backoff_base, pganalytics_ml._setting('job_backoff_base', '10 s')::interval);
    v_cap  interval := coalesce(p_backoff_cap, pganalytics_ml._setting('job_backoff_cap', '10 min')::interval);
    v_attempts_setting text := pganalytics_ml._setting('job_max_attempts', '3');
BEGIN
    IF coalesce(p_max_attempts, 1) < 1 OR coalesce(p_max_attempts, 1) > 100 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 100, got %', p_max_attempts
            USING ERRCODE = '22023', HINT = 'Three attempts is the default.';
    END IF;
    -- The setting may be set by any session, so it is held to the same bounds (ASCII digits only).
    IF p_max_attempts IS NULL AND v_attempts_setting !~ '^\s*([1-9][0-9]?|100)\s*$' THEN
        RAISE EXCEPTION 'the setting pganalytics_ml.job_max_attempts must be an integer from 1 to 100, got %',
            pg_catalog.quote_literal(pg_catalog.left(v_attempts_setting, 40))
            USING ERRCODE = '22023',
                  HINT = 'RESET pganalytics_ml.job_max_attempts (the default is 3), or set it from 1 to 100.';
    END IF;
    IF v_hard <= interval '0' OR v_soft <= interval '0' OR v_soft > v_hard THEN
        RAISE EXCEPTION 'time limits must be positive with the soft limit (%) at most the hard limit (%)', v_soft, v_hard
            USING ERRCODE = '22023', HINT = 'The defaults are a soft limit of 9 minutes and a hard limit of 10.';
    END IF;
    -- Bounded so that the watchdog's and the backoff's time arithmetic stays far from overflowing.
    IF v_hard > interval '7 days' THEN
        RAISE EXCEPTION 'time limits must be at most 7 days, got a hard limit of %', v_hard
            USING ERRCODE = '22023', HINT = 'The defaults are a soft limit of 9 minutes and a hard limit of 10.';
    END IF;
    IF v_base <= interval '0' OR v_base > interval '1 day' OR v_cap < v_base OR v_cap > interval '7 days' THEN
        RAISE EXCEPTION 'the retry backoff must start between 0 and 1 day and be capped at 7 days at most, got % and %',
            v_base, v_cap
            USING ERRCODE = '22023',
                  HINT = 'Check pganalytics_ml.job_backoff_base and job_backoff_cap (defaults 10 s and 10 min).';
    END IF;
    IF p_run_at IS NOT NULL AND NOT isfinite(p_run_at) THEN
        RAISE EXCEPTION 'run_at must be a finite time, got %', p_run_at
            USING ERRCODE = '22023', HINT = 'Leave run_at out to run the job as soon as a worker is free.';
    END IF;
    INSERT INTO pganalytics_ml.jobs (kind, arguments, max_attempts, soft_limit, hard_limit, run_at,
                                     backoff_base, backoff_cap)
    VALUES (p_kind, coalesce(p_arguments, '{}'),
            coalesce(p_max_attempts, v_attempts_setting::integer),
            v_soft, v_hard, coalesce(p_run_at, now()), v_base, v_cap)
    RETURNING * INTO v_job;
    RETURN v_job;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._enqueue(text, jsonb, integer, interval, interval, timestamptz, interval, interval) IS
    'Queues one job with the default limits, attempts and backoff unless given';
REVOKE ALL ON FUNCTION pganalytics_ml._enqueue(text, jsonb, integer, interval, interval, timestamptz, interval, interval)
    FROM PUBLIC;
