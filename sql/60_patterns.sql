-- Workload patterns: cycles, trends, spikes, level shifts and plan changes found in the captured history.
-- pgml_detect_patterns (plpython/65_patterns.sql) computes them on demand; the 'patterns' job keeps the
-- latest in pganalytics_ml.patterns, and the cycles it found in pganalytics_ml.seasonal_profiles.

CREATE TABLE pganalytics_ml.patterns (
    server_id     text NOT NULL,
    type          text NOT NULL CHECK (type OPERATOR(pg_catalog.=) ANY (ARRAY[
                      'daily_cycle', 'weekly_cycle', 'trend', 'spike', 'level_shift', 'plan_change'])),
    query_hash    bigint,                -- NULL: server-wide
    statement     text,                  -- the statement's normalized text; NULL server-wide
    metric        text NOT NULL,         -- calls, mean_time, total_time or plan
    description   text NOT NULL,
    confidence    double precision NOT NULL
                  CHECK (confidence OPERATOR(pg_catalog.>=) 0 AND confidence OPERATOR(pg_catalog.<=) 1),
    metadata      jsonb NOT NULL,
    lookback_days integer NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    detected_at   timestamptz NOT NULL
);
CREATE INDEX patterns_server ON pganalytics_ml.patterns (server_id, type);
COMMENT ON TABLE pganalytics_ml.patterns IS
    'The workload patterns the latest ''patterns'' job found per server (pgml_detect_patterns computes them on demand)';
GRANT SELECT ON pganalytics_ml.patterns TO pgml_reader;
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.patterns', '');

-- One cycle per (server, statement, metric): the factor by which the metric is above (>1) or below (<1)
-- its level at each phase. Phase p of period 24 is the UTC hour p; of period 168, hour p of the week
-- counted from Monday 00:00 UTC. The factors' geometric mean is 1.
CREATE TABLE pganalytics_ml.seasonal_profiles (
    server_id     text NOT NULL,
    query_hash    bigint,                -- NULL: server-wide
    metric        text NOT NULL,
    period_hours  integer NOT NULL CHECK (period_hours OPERATOR(pg_catalog.=) ANY (ARRAY[24, 168])),
    factors       double precision[] NOT NULL
                  CHECK (pg_catalog.cardinality(factors) OPERATOR(pg_catalog.=) period_hours),
    strength      double precision NOT NULL,
    lookback_days integer NOT NULL,
    window_end    timestamptz NOT NULL,
    detected_at   timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (server_id, query_hash, metric)
);
COMMENT ON TABLE pganalytics_ml.seasonal_profiles IS
    'Detected daily or weekly cycle per server, statement and metric: a multiplicative factor per UTC hour '
    '(period 24) or hour of the week from Monday 00:00 UTC (period 168), for seasonal forecasters';
GRANT SELECT ON pganalytics_ml.seasonal_profiles TO pgml_reader;
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.seasonal_profiles', '');

-- The history as pattern detection reads it: hourly buckets (UTC, whatever the session's TimeZone) of
-- the lookback window ending at the server's latest capture; per bucket, the seconds the captures in it
-- covered (NULL: nothing captured, a gap), how many captures, and the calls and execution time summed
-- (per statement also the sum of each interval's calls squared: how many intervals its mean time is worth). One row server-wide (query_hash NULL), then one per
-- statement among the p_statements with the most execution time in the window.
CREATE FUNCTION pganalytics_ml._pattern_series(p_server_id text, p_lookback_days integer, p_statements integer)
RETURNS TABLE (query_hash bigint, statement text, first_hour timestamptz, last_capture timestamptz,
               covered_seconds double precision[], captures double precision[], calls double precision[],
               total_ms double precision[], calls_squared double precision[])
LANGUAGE sql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
WITH grid AS (
    SELECT pg_catalog.date_bin(interval '1 hour', l.at - pg_catalog.make_interval(days => p_lookback_days),
                               timestamptz '1970-01-01 00:00+00') + interval '1 hour' AS first_hour,
           pg_catalog.date_bin(interval '1 hour', l.at, timestamptz '1970-01-01 00:00+00') AS last_hour, l.at
      FROM (SELECT max(s.captured_at) AS at FROM pganalytics_ml.snapshots s WHERE s.server_id = p_server_id) l
     WHERE l.at IS NOT NULL
), hours AS (
    SELECT h, row_number() OVER (ORDER BY h) AS i
      FROM grid g, pg_catalog.generate_series(g.first_hour, g.last_hour, interval '1 hour') h
), covered AS (
    SELECT pg_catalog.date_bin(interval '1 hour', s.captured_at, timestamptz '1970-01-01 00:00+00') AS h,
           sum(EXTRACT(epoch FROM s.captured_at - s.interval_start))::float8 AS seconds, count(*)::float8 AS n
      FROM pganalytics_ml.snapshots s, grid g
     WHERE s.server_id = p_server_id AND s.captured_at >= g.first_hour AND s.interval_start IS NOT NULL
     GROUP BY 1
), top AS (  -- few groups: a statement each, no hourly table of every statement
    SELECT q.queryid FROM pganalytics_ml.query_stats q, grid g
     WHERE q.server_id = p_server_id AND q.interval_end >= g.first_hour
     GROUP BY q.queryid ORDER BY sum(q.total_exec_time) DESC, q.queryid LIMIT p_statements
), server_wide AS (
    SELECT pg_catalog.date_bin(interval '1 hour', q.interval_end, timestamptz '1970-01-01 00:00+00') AS h,
           sum(q.calls)::float8 AS calls, sum(q.total_exec_time) AS total_ms
      FROM pganalytics_ml.query_stats q, grid g
     WHERE q.server_id = p_server_id AND q.interval_end >= g.first_hour
     GROUP BY 1
), hourly AS (
    SELECT q.queryid, pg_catalog.date_bin(interval '1 hour', q.interval_end, timestamptz '1970-01-01 00:00+00') AS h,
           sum(q.calls)::float8 AS calls, sum(q.total_exec_time) AS total_ms,
           sum(q.calls::float8 * q.calls) AS calls_squared
      FROM pganalytics_ml.query_stats q JOIN top t ON t.queryid = q.queryid, grid g
     WHERE q.server_id = p_server_id AND q.interval_end >= g.first_hour
     GROUP BY 1, 2
)
SELECT NULL::bigint, NULL::text, (SELECT g.first_hour FROM grid g), (SELECT g.at FROM grid g),
       array_agg(c.seconds ORDER BY hs.i),
       array_agg(c.n ORDER BY hs.i),
       array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(w.calls, 0) END ORDER BY hs.i),
       array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(w.total_ms, 0) END ORDER BY hs.i),
       NULL::float8[]
  FROM hours hs
  LEFT JOIN covered c ON c.h = hs.h
  LEFT JOIN server_wide w ON w.h = hs.h
HAVING count(*) > 0
UNION ALL
SELECT * FROM (
    SELECT t.queryid, st.query, (SELECT g.first_hour FROM grid g), (SELECT g.at FROM grid g),
           array_agg(c.seconds ORDER BY hs.i),
           array_agg(c.n ORDER BY hs.i),
           array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(hr.calls, 0) END ORDER BY hs.i),
           array_agg(CASE WHEN c.seconds IS NOT NULL THEN coalesce(hr.total_ms, 0) END ORDER BY hs.i),
           array_agg(hr.calls_squared ORDER BY hs.i)
      FROM top t
     CROSS JOIN hours hs
      LEFT JOIN covered c ON c.h = hs.h
      LEFT JOIN hourly hr ON hr.queryid = t.queryid AND hr.h = hs.h
      LEFT JOIN pganalytics_ml.statements st ON st.server_id = p_server_id AND st.queryid = t.queryid
     GROUP BY t.queryid, st.query
     ORDER BY t.queryid) per_statement
$$;
COMMENT ON FUNCTION pganalytics_ml._pattern_series(text, integer, integer) IS
    'Hourly calls, execution time and captured seconds of a server and its top statements, as pattern detection reads them';
REVOKE ALL ON FUNCTION pganalytics_ml._pattern_series(text, integer, integer) FROM PUBLIC;
