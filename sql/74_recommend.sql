-- Index recommendations (issue 15): what pgml_recommend_indexes recommended, what it predicted for each
-- statement, and whether the index later appeared (checked at each local snapshot).

CREATE SEQUENCE pganalytics_ml.recommendations_recommendation_id_seq;
CREATE TABLE pganalytics_ml.recommendations (
    recommendation_id     bigint PRIMARY KEY
                          DEFAULT pg_catalog.nextval('pganalytics_ml.recommendations_recommendation_id_seq'),
    server_id             text NOT NULL,
    recommended_at        timestamptz NOT NULL,
    index_sql             text NOT NULL,          -- CREATE INDEX CONCURRENTLY ON schema.table (columns)
    relation              text NOT NULL,          -- schema-qualified, quoted as needed
    columns               text[] NOT NULL,        -- in index order
    estimated_size_bytes  bigint NOT NULL,        -- hypopg_relation_size
    saved_ms_per_s        double precision NOT NULL,  -- predicted, per second of the workload
    saved_lower_ms_per_s  double precision NOT NULL,
    saved_upper_ms_per_s  double precision NOT NULL,
    source                text NOT NULL,          -- whatif.estimate: plan_model or plan_cost
    model_id              bigint,                 -- the plan model, when it answered
    absent_until          timestamptz,            -- the last capture before the index was found
    appeared_at           timestamptz,            -- the capture that found an index with its table and leading columns
    appeared_index        text                    -- that index's name
);
ALTER SEQUENCE pganalytics_ml.recommendations_recommendation_id_seq
    OWNED BY pganalytics_ml.recommendations.recommendation_id;
CREATE INDEX recommendations_pending ON pganalytics_ml.recommendations (server_id) WHERE appeared_at IS NULL;
COMMENT ON TABLE pganalytics_ml.recommendations IS
    'Indexes pgml_recommend_indexes recommended, with the predicted saving, and when such an index appeared';

CREATE TABLE pganalytics_ml.recommendation_statements (
    recommendation_id bigint NOT NULL
                      REFERENCES pganalytics_ml.recommendations (recommendation_id) ON DELETE CASCADE,
    queryid           bigint NOT NULL,
    calls_per_s       double precision NOT NULL,  -- over the day before the recommendation
    current_ms        double precision NOT NULL,  -- its forecast without the index, and interval
    current_lower_ms  double precision NOT NULL,
    current_upper_ms  double precision NOT NULL,
    predicted_ms      double precision NOT NULL,  -- predicted with the recommended indexes, and interval
    lower_ms          double precision NOT NULL,
    upper_ms          double precision NOT NULL,
    current_cost      double precision NOT NULL,  -- the plans' total costs, without and with
    predicted_cost    double precision NOT NULL,
    PRIMARY KEY (recommendation_id, queryid)
);
COMMENT ON TABLE pganalytics_ml.recommendation_statements IS
    'Per recommended index, the statements it helps: their time now and predicted with the index';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.recommendations', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.recommendations_recommendation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.recommendation_statements', '');

-- At each local snapshot (capture/counters.py): pending recommendations whose index now exists (valid, on the
-- same table, with the recommended columns leading, made by anyone) are marked appeared. Nothing pending:
-- one index probe.
CREATE FUNCTION pganalytics_ml._note_recommended_indexes(p_captured_at timestamptz)
RETURNS integer
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_noted integer;
BEGIN
    IF NOT EXISTS (SELECT FROM pganalytics_ml.recommendations r
                    WHERE r.server_id = 'local' AND r.appeared_at IS NULL) THEN
        RETURN 0;
    END IF;
    UPDATE pganalytics_ml.recommendations AS r
       SET appeared_at = p_captured_at,
           appeared_index = f.index_name,
           absent_until = (SELECT max(s.captured_at) FROM pganalytics_ml.snapshots s
                            WHERE s.server_id = 'local' AND s.captured_at < p_captured_at)
      FROM (SELECT p.recommendation_id, x.index_name
              FROM pganalytics_ml.recommendations p
              CROSS JOIN LATERAL (
                    SELECT ic.relname::text AS index_name
                      FROM pg_catalog.pg_index i
                      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = pg_catalog.to_regclass(p.relation) AND i.indisvalid
                       AND i.indnkeyatts >= pg_catalog.cardinality(p.columns)
                       AND ARRAY(SELECT a.attname::text
                                   FROM pg_catalog.generate_series(0, pg_catalog.cardinality(p.columns) - 1) k
                                   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k]
                                  ORDER BY k) = p.columns
                     ORDER BY ic.relname LIMIT 1) x
             WHERE p.server_id = 'local' AND p.appeared_at IS NULL) f
     WHERE r.recommendation_id = f.recommendation_id;
    GET DIAGNOSTICS v_noted = ROW_COUNT;
    RETURN v_noted;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._note_recommended_indexes(timestamptz) IS
    'Marks the recommendations whose index now exists on this server; called by each local snapshot';
REVOKE ALL ON FUNCTION pganalytics_ml._note_recommended_indexes(timestamptz) FROM PUBLIC;

-- Predicted against actual, per recommended index and statement. Before: the statement's intervals in the
-- day up to the last capture without the index; after: those wholly after the capture that found it, for a
-- day. NULL until known (an index not created, or no interval yet since).
CREATE VIEW pganalytics_ml.recommendation_outcomes AS
SELECT r.recommendation_id,
       r.server_id,
       r.recommended_at,
       r.index_sql,
       r.relation,
       r.columns,
       r.appeared_at,
       r.appeared_index,
       rs.queryid AS query_hash,
       st.query,
       rs.current_ms AS predicted_ms_before,
       rs.predicted_ms AS predicted_ms_after,
       CASE WHEN rs.predicted_ms OPERATOR(pg_catalog.>) 0
            THEN rs.current_ms OPERATOR(pg_catalog./) rs.predicted_ms END AS predicted_speedup,
       b.mean_ms AS actual_ms_before,
       b.calls AS calls_before,
       a.mean_ms AS actual_ms_after,
       a.calls AS calls_after,
       CASE WHEN a.mean_ms OPERATOR(pg_catalog.>) 0
            THEN b.mean_ms OPERATOR(pg_catalog./) a.mean_ms END AS actual_speedup
  FROM pganalytics_ml.recommendations r
  JOIN pganalytics_ml.recommendation_statements rs
    ON rs.recommendation_id OPERATOR(pg_catalog.=) r.recommendation_id
  LEFT JOIN pganalytics_ml.statements st
    ON st.server_id OPERATOR(pg_catalog.=) r.server_id AND st.queryid OPERATOR(pg_catalog.=) rs.queryid
  LEFT JOIN LATERAL pganalytics_ml._mean_ms_between(
        r.server_id, rs.queryid, r.absent_until OPERATOR(pg_catalog.-) interval '1 day', r.absent_until) b
    ON r.appeared_at IS NOT NULL
  LEFT JOIN LATERAL pganalytics_ml._mean_ms_between(
        r.server_id, rs.queryid, r.appeared_at, r.appeared_at OPERATOR(pg_catalog.+) interval '1 day') a
    ON r.appeared_at IS NOT NULL;
COMMENT ON VIEW pganalytics_ml.recommendation_outcomes IS
    'Each recommended index and statement: the speed-up predicted, and the one measured once the index appeared';

GRANT SELECT ON pganalytics_ml.recommendations, pganalytics_ml.recommendation_statements,
                pganalytics_ml.recommendation_outcomes TO pgml_reader;

-- Planning a statement runs code (functions folded at plan time), and this plans other roles' statements,
-- each as its own role: like pgml_capture_plans, for pgml_admin only.
CREATE FUNCTION @extschema@.pgml_recommend_indexes(server_id text DEFAULT 'local', top_statements integer DEFAULT 50,
                                                   min_speedup double precision DEFAULT 1.5,
                                                   max_indexes integer DEFAULT 5)
RETURNS TABLE (recommendation_id bigint, index_sql text, table_name text, columns text[], query_hashes bigint[],
               saved_ms_per_s double precision, saved_lower_ms_per_s double precision,
               saved_upper_ms_per_s double precision, speedups double precision[], estimated_size_bytes bigint,
               source text, recommended_at timestamptz)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text; v_message text; v_detail text; v_hint text;
BEGIN
    RETURN QUERY SELECT * FROM pganalytics_ml._recommend_indexes(
        pgml_recommend_indexes.server_id, pgml_recommend_indexes.top_statements,
        pgml_recommend_indexes.min_speedup, pgml_recommend_indexes.max_indexes);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
    PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_recommend_indexes(text, integer, double precision, integer) IS
    'Indexes that would save the most time for the costliest statements, tried hypothetically (hypopg), each '
    'statement planned as its own role: CREATE INDEX CONCURRENTLY, statements helped, ms saved per second, '
    'speed-ups, size; recorded, never created';
REVOKE ALL ON FUNCTION @extschema@.pgml_recommend_indexes(text, integer, double precision, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_recommend_indexes(text, integer, double precision, integer) TO pgml_admin;
