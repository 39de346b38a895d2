-- Plans of captured statements (EXPLAIN as the statement's own role, never executed) and their changes.

-- One row per distinct plan shape (fingerprint) a statement has had; features are the latest seen for it.
CREATE TABLE pganalytics_ml.plans (
    server_id     text NOT NULL,
    queryid       bigint NOT NULL,
    fingerprint   text NOT NULL,        -- node types, join strategies, relations, index names; not costs
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    planned_as    text,                 -- the role the plan was made as (local), NULL when pushed
    summary       text NOT NULL,        -- the shape in words
    total_cost    double precision NOT NULL,
    plan_rows     double precision NOT NULL,
    plan_width    integer NOT NULL,
    depth         integer NOT NULL,
    relations     text[] NOT NULL,
    indexes       text[] NOT NULL,
    features      jsonb NOT NULL,       -- the PLAN feature group (docs/model.md), relation sizes included
    plan          jsonb NOT NULL,       -- EXPLAIN (FORMAT JSON, VERBOSE) without the output lists
    PRIMARY KEY (server_id, queryid, fingerprint)
);
COMMENT ON TABLE pganalytics_ml.plans IS
    'Each plan shape a statement has had, with its costs, relation sizes and features as last seen';

-- Where the plan capture of each statement stands: its current plan, or why it has none.
CREATE TABLE pganalytics_ml.plan_capture (
    server_id            text NOT NULL,
    queryid              bigint NOT NULL,
    fingerprint          text,          -- the current plan; NULL until one is captured
    outcome              text NOT NULL, -- planned, or the reason it was skipped (docs/sql-reference.md)
    detail               text,          -- the error a skip came from, at most 200 characters
    attempted_at         timestamptz NOT NULL,
    planned_at           timestamptz,   -- last time a plan was captured
    unfinished_attempts  integer NOT NULL DEFAULT 0,  -- started but never finished (the worker died)
    PRIMARY KEY (server_id, queryid)
);
COMMENT ON TABLE pganalytics_ml.plan_capture IS
    'Per statement: the current plan fingerprint, the outcome of the last plan capture and when';

-- A statement's plan shape changed: detected when a capture finds a fingerprint other than the current one.
CREATE TABLE pganalytics_ml.plan_events (
    server_id        text NOT NULL,
    queryid          bigint NOT NULL,
    detected_at      timestamptz NOT NULL,
    previous_seen_at timestamptz NOT NULL,  -- the old plan was last seen then: the change lies in between
    old_fingerprint  text NOT NULL,
    new_fingerprint  text NOT NULL,
    PRIMARY KEY (server_id, queryid, detected_at)
);
COMMENT ON TABLE pganalytics_ml.plan_events IS 'Plan changes: a statement''s plan fingerprint changed';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plans', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_capture', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_events', '');

-- Mean time of a statement over the intervals of [p_from, p_to] (calls-weighted), for plan_changes.
CREATE FUNCTION pganalytics_ml._mean_ms_between(p_server_id text, p_queryid bigint,
                                                p_from timestamptz, p_to timestamptz)
RETURNS TABLE (mean_ms double precision, calls bigint)
LANGUAGE sql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sum(q.total_exec_time) / nullif(sum(q.calls), 0), sum(q.calls)::bigint
      FROM pganalytics_ml.query_stats q
     WHERE q.server_id = p_server_id AND q.queryid = p_queryid
       AND q.interval_start >= coalesce(p_from, '-infinity') AND q.interval_end <= coalesce(p_to, 'infinity')
$$;
COMMENT ON FUNCTION pganalytics_ml._mean_ms_between(text, bigint, timestamptz, timestamptz) IS
    'Calls-weighted mean time of a statement over the captured intervals lying within a time range';
REVOKE ALL ON FUNCTION pganalytics_ml._mean_ms_between(text, bigint, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._mean_ms_between(text, bigint, timestamptz, timestamptz) TO pgml_reader;

-- Before: the intervals of the old plan, since the change before it; after: those wholly after the
-- detection, up to the next change. NULL until an interval is known.
CREATE VIEW pganalytics_ml.plan_changes AS
SELECT e.server_id,
       e.queryid AS query_hash,
       s.query,
       e.old_fingerprint,
       e.new_fingerprint,
       o.summary AS old_summary,
       n.summary AS new_summary,
       o.total_cost AS old_total_cost,
       n.total_cost AS new_total_cost,
       e.previous_seen_at,
       e.detected_at,
       b.mean_ms AS mean_ms_before,
       b.calls AS calls_before,
       a.mean_ms AS mean_ms_after,
       a.calls AS calls_after
  FROM (SELECT x.*,
               pg_catalog.lag(x.detected_at) OVER w AS previous_change_at,
               pg_catalog.lead(x.previous_seen_at) OVER w AS next_change_from
          FROM pganalytics_ml.plan_events x
        WINDOW w AS (PARTITION BY x.server_id, x.queryid ORDER BY x.detected_at)) e
  LEFT JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) e.server_id AND s.queryid OPERATOR(pg_catalog.=) e.queryid
  LEFT JOIN pganalytics_ml.plans o
    ON o.server_id OPERATOR(pg_catalog.=) e.server_id AND o.queryid OPERATOR(pg_catalog.=) e.queryid
   AND o.fingerprint OPERATOR(pg_catalog.=) e.old_fingerprint
  LEFT JOIN pganalytics_ml.plans n
    ON n.server_id OPERATOR(pg_catalog.=) e.server_id AND n.queryid OPERATOR(pg_catalog.=) e.queryid
   AND n.fingerprint OPERATOR(pg_catalog.=) e.new_fingerprint
  CROSS JOIN LATERAL pganalytics_ml._mean_ms_between(e.server_id, e.queryid, e.previous_change_at,
                                                     e.previous_seen_at) b
  CROSS JOIN LATERAL pganalytics_ml._mean_ms_between(e.server_id, e.queryid, e.detected_at,
                                                     e.next_change_from) a;
COMMENT ON VIEW pganalytics_ml.plan_changes IS
    'Plan changes per statement: old and new fingerprint and shape, when, and the mean time before and after';

GRANT SELECT ON pganalytics_ml.plans, pganalytics_ml.plan_capture, pganalytics_ml.plan_events,
                pganalytics_ml.plan_changes TO pgml_reader;

-- Records one statement's plan capture: a plan (p_payload, from capture/plan_features.describe) or the
-- reason it has none. A plan whose fingerprint differs from the statement's current one is a plan change.
-- Returns whether it was one.
CREATE FUNCTION pganalytics_ml._store_plan(p_server_id text, p_queryid bigint, p_outcome text, p_detail text,
                                           p_payload jsonb, p_role text, p_at timestamptz DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at      timestamptz := coalesce(p_at, clock_timestamp());
    v_current pganalytics_ml.plan_capture;
    v_new     text := p_payload->>'fingerprint';
    v_changed boolean := false;
BEGIN
    SELECT * INTO v_current FROM pganalytics_ml.plan_capture
     WHERE server_id = p_server_id AND queryid = p_queryid FOR UPDATE;
    IF p_outcome = 'planned' THEN
        INSERT INTO pganalytics_ml.plans AS p (server_id, queryid, fingerprint, first_seen, last_seen, planned_as,
                                               summary, total_cost, plan_rows, plan_width, depth, relations,
                                               indexes, features, plan)
        VALUES (p_server_id, p_queryid, v_new, v_at, v_at, p_role, p_payload->>'summary',
                (p_payload->>'total_cost')::float8, (p_payload->>'plan_rows')::float8,
                (p_payload->>'plan_width')::integer, (p_payload->>'depth')::integer,
                ARRAY(SELECT jsonb_array_elements_text(p_payload->'relations')),
                ARRAY(SELECT jsonb_array_elements_text(p_payload->'indexes')),
                p_payload->'features', p_payload->'plan')
        ON CONFLICT (server_id, queryid, fingerprint) DO UPDATE
           SET last_seen = EXCLUDED.last_seen, planned_as = EXCLUDED.planned_as, total_cost = EXCLUDED.total_cost,
               plan_rows = EXCLUDED.plan_rows, plan_width = EXCLUDED.plan_width, features = EXCLUDED.features,
               plan = EXCLUDED.plan;
        IF v_current.fingerprint IS NOT NULL AND v_current.fingerprint <> v_new THEN
            INSERT INTO pganalytics_ml.plan_events
                   (server_id, queryid, detected_at, previous_seen_at, old_fingerprint, new_fingerprint)
            SELECT p_server_id, p_queryid, v_at, v_current.planned_at, v_current.fingerprint, v_new
            ON CONFLICT DO NOTHING;
            v_changed := true;
        END IF;
    END IF;
    INSERT INTO pganalytics_ml.plan_capture AS c (server_id, queryid, fingerprint, outcome, detail, attempted_at,
                                                  planned_at, unfinished_attempts)
    VALUES (p_server_id, p_queryid, v_new, p_outcome, left(p_detail, 200), v_at,
            CASE WHEN p_outcome = 'planned' THEN v_at END, 0)
    ON CONFLICT (server_id, queryid) DO UPDATE
       SET fingerprint = coalesce(EXCLUDED.fingerprint, c.fingerprint), outcome = EXCLUDED.outcome,
           detail = EXCLUDED.detail, planned_at = coalesce(EXCLUDED.planned_at, c.planned_at),
           -- a stalled statement keeps its count and time: it is retried a day after the attempt that stalled
           attempted_at = CASE WHEN EXCLUDED.outcome = 'stalled' THEN c.attempted_at ELSE EXCLUDED.attempted_at END,
           unfinished_attempts = CASE WHEN EXCLUDED.outcome = 'stalled' THEN c.unfinished_attempts ELSE 0 END;
    RETURN v_changed;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._store_plan(text, bigint, text, text, jsonb, text, timestamptz) IS
    'Stores a statement''s captured plan (or why it has none) and records a plan change';
REVOKE ALL ON FUNCTION pganalytics_ml._store_plan(text, bigint, text, text, jsonb, text, timestamptz) FROM PUBLIC;
