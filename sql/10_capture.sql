-- Capture of query history: cumulative pg_stat_statements counters become per-interval deltas.

-- One pg_stat_statements entry, as read locally or sent by a remote collector.
CREATE TYPE pganalytics_ml.stat_counters AS (
    userid              oid,
    dbid                oid,
    toplevel            boolean,
    queryid             bigint,
    query               text,
    datname             text,
    calls               bigint,
    total_exec_time     double precision,
    sum_sq_exec_time    double precision,   -- calls * (stddev^2 + mean^2): lets an interval have a spread
    rows                bigint,
    shared_blks_hit     bigint,
    shared_blks_read    bigint,
    shared_blks_dirtied bigint,
    shared_blks_written bigint,
    local_blks_hit      bigint,
    local_blks_read     bigint,
    local_blks_dirtied  bigint,
    local_blks_written  bigint,
    temp_blks_read      bigint,
    temp_blks_written   bigint,
    blk_read_time       double precision,
    blk_write_time      double precision,
    wal_records         bigint,
    wal_fpi             bigint,
    wal_bytes           numeric,
    plans               bigint,
    total_plan_time     double precision
);
COMMENT ON TYPE pganalytics_ml.stat_counters IS
    'Cumulative counters of one pg_stat_statements entry, the input of every capture';

CREATE SEQUENCE pganalytics_ml.snapshots_snapshot_id_seq;
CREATE TABLE pganalytics_ml.snapshots (
    snapshot_id       bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pganalytics_ml.snapshots_snapshot_id_seq'),
    server_id         text NOT NULL,
    captured_at       timestamptz NOT NULL,
    interval_start    timestamptz,          -- previous capture of the server; NULL for the first (baseline)
    statements        integer NOT NULL,
    new_statements    integer NOT NULL,
    active_statements integer NOT NULL,
    content_digest    bytea,                -- of a push's counters (a collector's retry has the same); NULL when local
    -- The server's totals over the interval, summed over its statements (training's load features):
    server_calls      double precision,
    server_exec_time  double precision,     -- ms
    server_blks_read  double precision,     -- shared blocks read
    UNIQUE (server_id, captured_at)
);
ALTER SEQUENCE pganalytics_ml.snapshots_snapshot_id_seq OWNED BY pganalytics_ml.snapshots.snapshot_id;
COMMENT ON TABLE pganalytics_ml.snapshots IS
    'One row per capture of pg_stat_statements (local) or per ingested collector payload (remote)';

CREATE TABLE pganalytics_ml.statements (
    server_id          text NOT NULL,
    queryid            bigint NOT NULL,
    query              text,                 -- as pg_stat_statements normalized it, string literals as '***'
    database           text,
    first_seen         timestamptz NOT NULL,
    last_active_at     timestamptz,          -- end of the latest interval in which it was called
    parse_ok           boolean,              -- NULL: not parsed yet; false: kept, but the parser refused it
    parse_error        text,
    statement_kind     text,                 -- select, insert, update, delete, merge, utility
    command            text,                 -- the parser's statement node, e.g. SelectStmt, VacuumStmt
    tables             text[],
    n_tables           integer,
    n_joins            integer,
    n_subqueries       integer,
    n_aggregates       integer,
    n_window_functions integer,
    n_ctes             integer,
    has_group_by       boolean,
    has_order_by       boolean,
    has_limit          boolean,
    has_distinct       boolean,
    -- The extension's own statements and pg_cron's bookkeeping, set at parse time: captured, but kept
    -- out of pgml_predict_all, the regressions view, the accuracy summaries and pgml_status.
    is_internal        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (server_id, queryid)
) WITH (fillfactor = 70);  -- every capture updates last_active_at: room on the page keeps it a HOT update
CREATE INDEX statements_unparsed ON pganalytics_ml.statements (server_id) WHERE parse_ok IS NULL;
COMMENT ON TABLE pganalytics_ml.statements IS
    'Every statement seen, once, with its normalized text and structure from the SQL parser';

CREATE TABLE pganalytics_ml.query_stats (
    server_id           text NOT NULL,
    queryid             bigint NOT NULL,
    interval_start      timestamptz NOT NULL,
    interval_end        timestamptz NOT NULL,
    database            text,
    calls               bigint NOT NULL CHECK (calls OPERATOR(pg_catalog.>) 0),
    total_exec_time     double precision NOT NULL,
    mean_exec_time      double precision NOT NULL,
    stddev_exec_time    double precision,     -- NULL when the source did not report a spread
    rows                bigint NOT NULL,
    shared_blks_hit     bigint NOT NULL,
    shared_blks_read    bigint NOT NULL,
    shared_blks_dirtied bigint NOT NULL,
    shared_blks_written bigint NOT NULL,
    local_blks_hit      bigint NOT NULL,
    local_blks_read     bigint NOT NULL,
    local_blks_dirtied  bigint NOT NULL,
    local_blks_written  bigint NOT NULL,
    temp_blks_read      bigint NOT NULL,
    temp_blks_written   bigint NOT NULL,
    blk_read_time       double precision NOT NULL,
    blk_write_time      double precision NOT NULL,
    wal_records         bigint NOT NULL,
    wal_fpi             bigint NOT NULL,
    wal_bytes           numeric NOT NULL,
    plans               bigint NOT NULL,
    total_plan_time     double precision NOT NULL,
    mean_plan_time      double precision      -- NULL when the statement was not planned in the interval
) PARTITION BY RANGE (interval_end);
-- One partition per UTC day plus a default one; each partition carries its own key and index
-- (sql/25_partitions.sql says why they are not on the parent).
COMMENT ON TABLE pganalytics_ml.query_stats IS
    'Per statement and captured interval: what happened in it (deltas of the cumulative counters); times in ms';

-- The counters as last captured, to subtract at the next capture: per server, one array of every entry's
-- counters (their statement texts left out). A capture rewrites the whole baseline, and one wide value,
-- stored out of line and uncompressed, costs a fraction of a row and an index entry per entry.
CREATE TABLE pganalytics_ml.counter_baseline (
    server_id   text PRIMARY KEY,
    captured_at timestamptz NOT NULL,
    counters    pganalytics_ml.stat_counters[] NOT NULL
);
ALTER TABLE pganalytics_ml.counter_baseline ALTER COLUMN counters SET STORAGE EXTERNAL;
COMMENT ON TABLE pganalytics_ml.counter_baseline IS
    'Cumulative counters of each entry at the last capture, per server; the next capture subtracts them';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.snapshots_snapshot_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.statements', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.query_stats', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.counter_baseline', '');

-- The one code path from cumulative counters to interval rows, shared by local snapshots and ingestion.
-- p_captured_at NULL: the counters were read now (under the lock), and the capture is stamped then.
-- An entry counts as restarted (its delta is its whole current value) when it is new since the last
-- capture, when its calls or time went backwards (reset or eviction), or when the source reports a full
-- reset after the last capture. The first capture of a server only sets the baseline.
CREATE FUNCTION pganalytics_ml._capture(
    p_server_id   text,
    p_captured_at timestamptz,
    p_rows        pganalytics_ml.stat_counters[],
    p_stats_reset timestamptz DEFAULT NULL)
RETURNS TABLE (captured_at timestamptz, statements integer, new_statements integer,
               active_statements integer, interval_seconds double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The entries join the baseline's by hash: a nested loop over an array's elements compares every pair.
SET enable_nestloop = off SET jit = off
AS $$
DECLARE
    v_prev       timestamptz;
    v_reset      boolean;
    v_statements integer;
    v_new        integer;
    v_active     integer := 0;
    v_calls      double precision;
    v_time       double precision;
    v_reads      double precision;
    -- Only a capture that carries its own time can be a collector's retry; a local one is stamped now.
    v_digest     bytea := CASE WHEN p_captured_at IS NOT NULL THEN
                              pg_catalog.sha256(pg_catalog.convert_to(ROW(p_rows, p_stats_reset)::text, 'UTF8')) END;
    v_seen       bytea;
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pganalytics_ml cannot capture statistics on a hot standby'
            USING ERRCODE = '25006',
                  HINT = 'Capture on the primary; the standby receives the history by replication.';
    END IF;
    -- Captures of one server are serialized: each computes its deltas against the previous one.
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('pganalytics_ml.capture:' || p_server_id, 0));
    -- A capture without a time of its own is stamped now, once the lock is held: a capture that waited
    -- for another one is never stamped before it.
    p_captured_at := coalesce(p_captured_at, pg_catalog.clock_timestamp());

    -- A collector's retry of a capture already recorded (same time, same counters) is not counted again:
    -- no row comes back. The same time with other counters fails as out of order, below.
    SELECT s.content_digest INTO v_seen FROM pganalytics_ml.snapshots s
     WHERE s.server_id = p_server_id AND s.captured_at = p_captured_at;
    IF v_seen = v_digest THEN
        RETURN;
    END IF;
    SELECT max(s.captured_at) INTO v_prev FROM pganalytics_ml.snapshots s WHERE s.server_id = p_server_id;
    IF v_prev IS NOT NULL AND p_captured_at <= v_prev THEN
        RAISE EXCEPTION 'capture time % is not after the last capture of server "%" (%)',
            p_captured_at, p_server_id, v_prev
            USING ERRCODE = '22023',
                  HINT = 'Send each capture once and in order, each with the time it was read.';
    END IF;
    v_reset := v_prev IS NOT NULL AND p_stats_reset IS NOT NULL AND p_stats_reset > v_prev;

    WITH upserted AS (
        INSERT INTO pganalytics_ml.statements AS st (server_id, queryid, query, database, first_seen)
        SELECT DISTINCT ON (r.queryid) p_server_id, r.queryid, r.query, r.datname, p_captured_at
          FROM pg_catalog.unnest(p_rows) r
         WHERE r.queryid IS NOT NULL
         ORDER BY r.queryid, r.calls DESC
        ON CONFLICT (server_id, queryid) DO UPDATE
           SET query = EXCLUDED.query, parse_ok = NULL
         WHERE st.query IS NULL AND EXCLUDED.query IS NOT NULL
        RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted) INTO v_new FROM upserted;

    SELECT count(DISTINCT r.queryid) INTO v_statements
      FROM pg_catalog.unnest(p_rows) r WHERE r.queryid IS NOT NULL;

    IF v_prev IS NOT NULL THEN
        WITH joined AS (
            SELECT c, b.p,
                   (b.p IS NULL OR v_reset OR (c).calls < (b.p).calls
                    OR (c).total_exec_time < (b.p).total_exec_time) AS restarted
              FROM pg_catalog.unnest(p_rows) c
              LEFT JOIN (SELECT p FROM pganalytics_ml.counter_baseline cb, pg_catalog.unnest(cb.counters) p
                          WHERE cb.server_id = p_server_id) b
                ON (b.p).queryid = (c).queryid AND (b.p).userid = (c).userid
               AND (b.p).dbid = (c).dbid AND (b.p).toplevel = (c).toplevel
             WHERE (c).queryid IS NOT NULL
        ), delta AS (
            SELECT (c).queryid, (c).datname,
                   CASE WHEN restarted THEN (c).calls ELSE (c).calls - (p).calls END AS calls,
                   CASE WHEN restarted THEN (c).total_exec_time
                        ELSE (c).total_exec_time - (p).total_exec_time END AS total_exec_time,
                   CASE WHEN restarted THEN (c).sum_sq_exec_time
                        ELSE (c).sum_sq_exec_time - (p).sum_sq_exec_time END AS sum_sq_exec_time,
                   CASE WHEN restarted THEN (c).rows ELSE greatest((c).rows - (p).rows, 0) END AS rows,
                   CASE WHEN restarted THEN (c).shared_blks_hit
                        ELSE greatest((c).shared_blks_hit - (p).shared_blks_hit, 0) END AS shared_blks_hit,
                   CASE WHEN restarted THEN (c).shared_blks_read
                        ELSE greatest((c).shared_blks_read - (p).shared_blks_read, 0) END AS shared_blks_read,
                   CASE WHEN restarted THEN (c).shared_blks_dirtied
                        ELSE greatest((c).shared_blks_dirtied - (p).shared_blks_dirtied, 0) END AS shared_blks_dirtied,
                   CASE WHEN restarted THEN (c).shared_blks_written
                        ELSE greatest((c).shared_blks_written - (p).shared_blks_written, 0) END AS shared_blks_written,
                   CASE WHEN restarted THEN (c).local_blks_hit
                        ELSE greatest((c).local_blks_hit - (p).local_blks_hit, 0) END AS local_blks_hit,
                   CASE WHEN restarted THEN (c).local_blks_read
                        ELSE greatest((c).local_blks_read - (p).local_blks_read, 0) END AS local_blks_read,
                   CASE WHEN restarted THEN (c).local_blks_dirtied
                        ELSE greatest((c).local_blks_dirtied - (p).local_blks_dirtied, 0) END AS local_blks_dirtied,
                   CASE WHEN restarted THEN (c).local_blks_written
                        ELSE greatest((c).local_blks_written - (p).local_blks_written, 0) END AS local_blks_written,
                   CASE WHEN restarted THEN (c).temp_blks_read
                        ELSE greatest((c).temp_blks_read - (p).temp_blks_read, 0) END AS temp_blks_read,
                   CASE WHEN restarted THEN (c).temp_blks_written
                        ELSE greatest((c).temp_blks_written - (p).temp_blks_written, 0) END AS temp_blks_written,
                   CASE WHEN restarted THEN (c).blk_read_time
                        ELSE greatest((c).blk_read_time - (p).blk_read_time, 0) END AS blk_read_time,
                   CASE WHEN restarted THEN (c).blk_write_time
                        ELSE greatest((c).blk_write_time - (p).blk_write_time, 0) END AS blk_write_time,
                   CASE WHEN restarted THEN (c).wal_records
                        ELSE greatest((c).wal_records - (p).wal_records, 0) END AS wal_records,
                   CASE WHEN restarted THEN (c).wal_fpi ELSE greatest((c).wal_fpi - (p).wal_fpi, 0) END AS wal_fpi,
                   CASE WHEN restarted THEN (c).wal_bytes
                        ELSE greatest((c).wal_bytes - (p).wal_bytes, 0) END AS wal_bytes,
                   CASE WHEN restarted THEN (c).plans ELSE greatest((c).plans - (p).plans, 0) END AS plans,
                   CASE WHEN restarted THEN (c).total_plan_time
                        ELSE greatest((c).total_plan_time - (p).total_plan_time, 0) END AS total_plan_time
              FROM joined
        ), per_statement AS (
            SELECT d.queryid,
                   (pg_catalog.array_agg(d.datname ORDER BY d.calls DESC))[1] AS database,
                   sum(d.calls)::bigint AS calls,
                   greatest(sum(d.total_exec_time), 0) AS total_exec_time,
                   CASE WHEN bool_and(d.sum_sq_exec_time IS NOT NULL) THEN sum(d.sum_sq_exec_time) END AS sum_sq,
                   sum(d.rows)::bigint AS rows,
                   sum(d.shared_blks_hit)::bigint AS shared_blks_hit,
                   sum(d.shared_blks_read)::bigint AS shared_blks_read,
                   sum(d.shared_blks_dirtied)::bigint AS shared_blks_dirtied,
                   sum(d.shared_blks_written)::bigint AS shared_blks_written,
                   sum(d.local_blks_hit)::bigint AS local_blks_hit,
                   sum(d.local_blks_read)::bigint AS local_blks_read,
                   sum(d.local_blks_dirtied)::bigint AS local_blks_dirtied,
                   sum(d.local_blks_written)::bigint AS local_blks_written,
                   sum(d.temp_blks_read)::bigint AS temp_blks_read,
                   sum(d.temp_blks_written)::bigint AS temp_blks_written,
                   sum(d.blk_read_time) AS blk_read_time,
                   sum(d.blk_write_time) AS blk_write_time,
                   sum(d.wal_records)::bigint AS wal_records,
                   sum(d.wal_fpi)::bigint AS wal_fpi,
                   sum(d.wal_bytes) AS wal_bytes,
                   sum(d.plans)::bigint AS plans,
                   sum(d.total_plan_time) AS total_plan_time
              FROM delta d
             GROUP BY d.queryid
            HAVING sum(d.calls) > 0
        ), inserted AS (
            INSERT INTO pganalytics_ml.query_stats (
                server_id, queryid, interval_start, interval_end, database, calls,
                total_exec_time, mean_exec_time, stddev_exec_time, rows,
                shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written,
                local_blks_hit, local_blks_read, local_blks_dirtied, local_blks_written,
                temp_blks_read, temp_blks_written, blk_read_time, blk_write_time,
                wal_records, wal_fpi, wal_bytes, plans, total_plan_time, mean_plan_time)
            SELECT p_server_id, s.queryid, v_prev, p_captured_at, s.database, s.calls,
                   s.total_exec_time, s.total_exec_time / s.calls,
                   -- At most the spread of one call taking all the time: counters that disagree with
                   -- each other (a reset, a collector's rounding) cannot make a spread no calls could have.
                   CASE WHEN s.sum_sq IS NOT NULL THEN
                        least(sqrt(greatest(s.sum_sq / s.calls - (s.total_exec_time / s.calls) ^ 2, 0)),
                              s.total_exec_time / s.calls * sqrt(s.calls - 1)) END,
                   s.rows,
                   s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
                   s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
                   s.temp_blks_read, s.temp_blks_written, s.blk_read_time, s.blk_write_time,
                   s.wal_records, s.wal_fpi, s.wal_bytes, s.plans, s.total_plan_time,
                   s.total_plan_time / nullif(s.plans, 0)
              FROM per_statement s
            RETURNING queryid, calls, total_exec_time, shared_blks_read
        ), touched AS (
            UPDATE pganalytics_ml.statements st
               SET last_active_at = p_captured_at
              FROM inserted i
             WHERE st.server_id = p_server_id AND st.queryid = i.queryid
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM touched), coalesce(sum(i.calls), 0), coalesce(sum(i.total_exec_time), 0),
               coalesce(sum(i.shared_blks_read), 0)
          INTO v_active, v_calls, v_time, v_reads
          FROM inserted i;
    END IF;

    INSERT INTO pganalytics_ml.counter_baseline AS b (server_id, captured_at, counters)
    SELECT p_server_id, p_captured_at, coalesce(pg_catalog.array_agg(e.counters), '{}')
      FROM (SELECT DISTINCT ON ((c).queryid, (c).userid, (c).dbid, (c).toplevel)
                   pg_catalog.jsonb_populate_record(c, '{"query": null}') AS counters
              FROM pg_catalog.unnest(p_rows) c
             WHERE (c).queryid IS NOT NULL) e
    ON CONFLICT (server_id) DO UPDATE SET captured_at = EXCLUDED.captured_at, counters = EXCLUDED.counters;

    INSERT INTO pganalytics_ml.snapshots
        (server_id, captured_at, interval_start, statements, new_statements, active_statements, content_digest,
         server_calls, server_exec_time, server_blks_read)
    VALUES (p_server_id, p_captured_at, v_prev, v_statements, v_new, v_active, v_digest, v_calls, v_time, v_reads);

    RETURN QUERY SELECT p_captured_at, v_statements, v_new, v_active,
                        EXTRACT(epoch FROM p_captured_at - v_prev)::double precision;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._capture(text, timestamptz, pganalytics_ml.stat_counters[], timestamptz) IS
    'Turns cumulative counters into per-interval deltas in query_stats; shared by snapshot and ingestion';
REVOKE ALL ON FUNCTION pganalytics_ml._capture(text, timestamptz, pganalytics_ml.stat_counters[], timestamptz)
    FROM PUBLIC;

-- Reads the local pg_stat_statements, wherever its extension lives, and captures it as server 'local'.
CREATE FUNCTION pganalytics_ml._capture_local()
RETURNS TABLE (captured_at timestamptz, statements integer, new_statements integer,
               active_statements integer, interval_seconds double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema name;
    v_rows   pganalytics_ml.stat_counters[];
    v_reset  timestamptz;
BEGIN
    IF pg_catalog.current_setting('shared_preload_libraries')
           !~ '(^|[\s,"])pg_stat_statements($|[\s,"])' THEN
        RAISE EXCEPTION 'pg_stat_statements is not loaded by this server'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_stat_statements to shared_preload_libraries in postgresql.conf '
                         'and restart PostgreSQL.';
    END IF;
    SELECT n.nspname INTO v_schema
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_stat_statements';
    IF v_schema IS NULL THEN
        RAISE EXCEPTION 'the pg_stat_statements extension does not exist in database "%"',
            pg_catalog.current_database()
            USING ERRCODE = '55000',
                  HINT = 'Run CREATE EXTENSION pg_stat_statements; in this database.';
    END IF;

    -- The counters are read under the capture lock (_capture takes it again): a snapshot that waited for
    -- another one reads counters newer than the ones that one stored.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pganalytics_ml.capture:local', 0));
    EXECUTE pg_catalog.format($q$
        SELECT pg_catalog.array_agg(ROW(
                   s.userid, s.dbid, s.toplevel, s.queryid, s.query, d.datname,
                   s.calls, s.total_exec_time,
                   s.calls * (s.stddev_exec_time ^ 2 + s.mean_exec_time ^ 2),
                   s.rows, s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
                   s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
                   s.temp_blks_read, s.temp_blks_written, s.blk_read_time, s.blk_write_time,
                   s.wal_records, s.wal_fpi, s.wal_bytes, s.plans, s.total_plan_time
               )::pganalytics_ml.stat_counters),
               (SELECT i.stats_reset FROM %1$I.pg_stat_statements_info i)
          FROM %1$I.pg_stat_statements(true) s
          LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
         WHERE s.queryid IS NOT NULL$q$, v_schema)
    INTO v_rows, v_reset;

    RETURN QUERY SELECT * FROM pganalytics_ml._capture('local', NULL, coalesce(v_rows, '{}'), v_reset);
END
$$;
COMMENT ON FUNCTION pganalytics_ml._capture_local() IS
    'Reads pg_stat_statements of this server and captures it as server ''local''';
REVOKE ALL ON FUNCTION pganalytics_ml._capture_local() FROM PUBLIC;
