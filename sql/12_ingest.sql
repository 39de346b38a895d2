-- pgml_ingest_stats: a collector's payload stays jsonb in SQL; Python checks its header, then each row
-- as SQL reads it, so memory follows the number of rows and no Python object holds them all.

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

CREATE FUNCTION @extschema@.pgml_ingest_stats(server_id text, stats jsonb)
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
    v_plans jsonb;
    v_state text; v_message text; v_detail text; v_hint text;
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
    -- The optional plans and relation sizes of some rows (issue 14), checked before anything is written.
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'index', e.ord - 1, 'queryid', e.value OPERATOR(pg_catalog.->) 'queryid',
               'plan', e.value OPERATOR(pg_catalog.->) 'plan', 'relations', e.value OPERATOR(pg_catalog.->) 'relations')
             ORDER BY e.ord)
      INTO v_plans
      FROM pg_catalog.jsonb_array_elements(v_json) WITH ORDINALITY e(value, ord)
     WHERE e.value OPERATOR(pg_catalog.?) 'plan' OR e.value OPERATOR(pg_catalog.?) 'relations';
    v_json := NULL;
    PERFORM pganalytics_ml._check_push_rows(v_rows);
    IF v_plans IS NOT NULL THEN
        PERFORM pganalytics_ml._check_pushed_plans(v_plans, v_times.captured_at);
    END IF;
    SELECT * INTO v_done FROM pganalytics_ml._capture(server_id, v_times.captured_at, v_rows, v_times.stats_reset);
    IF NOT FOUND THEN  -- a collector's retry of a capture already recorded: counted once
        RAISE NOTICE 'the capture of server % at % was already ingested; it is not counted again',
            pg_catalog.quote_literal(server_id),
            pg_catalog.to_char(v_times.captured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"');
        RETURN 0;
    END IF;
    PERFORM pganalytics_ml._after_push(server_id, v_done.captured_at, v_plans);
    RETURN pg_catalog.cardinality(v_rows);
EXCEPTION WHEN OTHERS THEN
    -- As the wrappers of sql/60_entry_points.sql: an error meant for the caller, without its traceback.
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) IS
    'Captures cumulative pg_stat_statements rows sent by a remote collector; returns the rows ingested';
REVOKE ALL ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_ingest_stats(text, jsonb) TO pgml_trainer;
