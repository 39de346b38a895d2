-- 0.2.0 -> 0.3.0

-- issue 18 (partitioned history)
-- query_stats and predictions become partitioned by day. Each existing table is renamed and attached,
-- as it is, as the new parent's default partition: no row is copied during the update, and its rows
-- move into day partitions at the first clean-up job (docs/operations.md, "Partitioned history").
-- History partitioned by time: query_stats by interval_end and predictions by predicted_at, one
-- partition per UTC day (<table>_pYYYYMMDD) plus a default partition that takes any row no day
-- partition holds yet, so a capture or a push never fails for want of a partition. The clean-up job
-- (pganalytics_ml._cleanup) creates the coming days' partitions ahead, moves rows out of the default
-- one, and retires history by detaching and dropping whole days.
--
-- Keys and indexes are declared per partition, not on the parent: day partitions are created after
-- CREATE EXTENSION, so they are not extension members and pg_dump writes them as ordinary tables
-- attached to the parent. An index on the parent would make the restore's ATTACH create the
-- partition's index, and the dump's own copy of it would then fail. Each day's key still includes
-- its partition key, so per-partition uniqueness is uniqueness over the whole table.
-- Partitions get no grants: readers reach them only through the parent.

CREATE FUNCTION pganalytics_ml._history_partition_key(p_parent text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_parent WHEN 'query_stats' THEN 'interval_end' WHEN 'predictions' THEN 'predicted_at' END
$$;
COMMENT ON FUNCTION pganalytics_ml._history_partition_key(text) IS
    'The time column a partitioned history table (query_stats, predictions) is partitioned by';
REVOKE ALL ON FUNCTION pganalytics_ml._history_partition_key(text) FROM PUBLIC;

-- The key and indexes of one partition of a history table.
CREATE FUNCTION pganalytics_ml._index_history_partition(p_parent text, p_partition text) RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_parent = 'query_stats' THEN
        EXECUTE format('ALTER TABLE pganalytics_ml.%I ADD CONSTRAINT %I PRIMARY KEY (server_id, queryid, interval_end)',
                       p_partition, p_partition || '_pkey');
        EXECUTE format('CREATE INDEX %I ON pganalytics_ml.%I (server_id, interval_end)',
                       p_partition || '_server_end', p_partition);
    ELSIF p_parent = 'predictions' THEN
        -- prediction_id comes from one sequence: unique in each partition is unique everywhere.
        EXECUTE format('ALTER TABLE pganalytics_ml.%I ADD CONSTRAINT %I PRIMARY KEY (prediction_id)',
                       p_partition, p_partition || '_pkey');
        EXECUTE format('CREATE INDEX %I ON pganalytics_ml.%I (server_id, queryid) WHERE validated_at IS NULL',
                       p_partition || '_unvalidated', p_partition);
    ELSE
        RAISE EXCEPTION '% is not a partitioned history table', p_parent USING ERRCODE = '22023',
            HINT = 'The partitioned history tables are query_stats and predictions.';
    END IF;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._index_history_partition(text, text) IS
    'Adds the primary key and indexes every partition of query_stats or predictions carries';
REVOKE ALL ON FUNCTION pganalytics_ml._index_history_partition(text, text) FROM PUBLIC;

-- Creates the partition of one UTC day, empty, and attaches it. Attaching takes only a SHARE UPDATE
-- EXCLUSIVE lock on the parent, so captures into other partitions go on; the default partition is
-- locked and checked for rows of that day (the caller has moved them out).
CREATE FUNCTION pganalytics_ml._create_history_partition(p_parent text, p_day date) RETURNS boolean
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text := p_parent || '_p' || to_char(p_day, 'YYYYMMDD');
BEGIN
    IF to_regclass(format('pganalytics_ml.%I', v_name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE pganalytics_ml.%I (LIKE pganalytics_ml.%I INCLUDING CONSTRAINTS)', v_name, p_parent);
    PERFORM pganalytics_ml._index_history_partition(p_parent, v_name);
    EXECUTE format('ALTER TABLE pganalytics_ml.%I ATTACH PARTITION pganalytics_ml.%I FOR VALUES FROM (%L) TO (%L)',
                   p_parent, v_name, p_day::timestamp AT TIME ZONE 'UTC', (p_day + 1)::timestamp AT TIME ZONE 'UTC');
    EXECUTE format('COMMENT ON TABLE pganalytics_ml.%I IS %L', v_name,
                   format('%s of %s (UTC), created by partition maintenance', p_parent, p_day));
    RETURN true;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._create_history_partition(text, date) IS
    'Creates and attaches the partition of one UTC day of query_stats or predictions, unless it exists';
REVOKE ALL ON FUNCTION pganalytics_ml._create_history_partition(text, date) FROM PUBLIC;

-- Partition upkeep of one history table, run by the clean-up job:
--   1. retires every day partition wholly older than the retention (DETACH, then DROP: no row is read);
--   2. deletes expired rows from the default partition;
--   3. creates the partitions of today and the next p_ahead_days days;
--   4. moves any rows left in the default partition into day partitions. With rows to move, the default
--      partition is detached for the move, which locks the parent (captures wait) for as long as the
--      move takes: after an upgrade from 0.2.0, once; otherwise only when rows outside any day
--      partition arrived (a capture before the first upkeep, or a collector's late push).
-- A row lives until its whole day is past the retention, so history is kept up to a day longer.
CREATE FUNCTION pganalytics_ml._maintain_history_partitions(p_parent text, p_retention interval,
                                                            p_ahead_days integer DEFAULT 2)
RETURNS TABLE (partitions_dropped integer, rows_deleted bigint, partitions_created integer, rows_moved bigint)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key     text := pganalytics_ml._history_partition_key(p_parent);
    v_default text := p_parent || '_default';
    v_cutoff  timestamptz := now() - p_retention;
    v_today   date := (now() AT TIME ZONE 'UTC')::date;
    v_part    record;
    v_day     date;
    v_dropped integer := 0;
    v_created integer := 0;
    v_deleted bigint;
    v_moved   bigint := 0;
    v_left    boolean;
BEGIN
    IF v_key IS NULL THEN
        RAISE EXCEPTION '% is not a partitioned history table', p_parent USING ERRCODE = '22023',
            HINT = 'The partitioned history tables are query_stats and predictions.';
    END IF;
    -- One upkeep at a time per table (two clean-up jobs would race on the same partitions).
    PERFORM pg_advisory_xact_lock(hashtextextended('pganalytics_ml.partitions:' || p_parent, 0));

    FOR v_part IN
        SELECT c.relname, to_date(right(c.relname, 8), 'YYYYMMDD') AS day
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = format('pganalytics_ml.%I', p_parent)::regclass
           AND c.relname ~ ('^' || p_parent || '_p[0-9]{8}$')
         ORDER BY 2
    LOOP
        EXIT WHEN (v_part.day + 1)::timestamp AT TIME ZONE 'UTC' > v_cutoff;
        EXECUTE format('ALTER TABLE pganalytics_ml.%I DETACH PARTITION pganalytics_ml.%I', p_parent, v_part.relname);
        EXECUTE format('DROP TABLE pganalytics_ml.%I', v_part.relname);
        v_dropped := v_dropped + 1;
    END LOOP;

    EXECUTE format('DELETE FROM pganalytics_ml.%I WHERE %I < $1', v_default, v_key) USING v_cutoff;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;

    EXECUTE format('SELECT EXISTS (SELECT FROM pganalytics_ml.%I)', v_default) INTO v_left;
    IF NOT v_left THEN
        BEGIN
            FOR v_day IN SELECT pg_catalog.generate_series(v_today, v_today + greatest(p_ahead_days, 0), '1 day')::date
            LOOP
                IF pganalytics_ml._create_history_partition(p_parent, v_day) THEN
                    v_created := v_created + 1;
                END IF;
            END LOOP;
        EXCEPTION WHEN check_violation THEN  -- a row of one of those days reached the default partition meanwhile
            v_created := 0;
            v_left := true;
        END;
    END IF;

    IF v_left THEN
        -- The parent first, as captures lock it: no capture can hold the default partition and wait for us.
        EXECUTE format('LOCK TABLE pganalytics_ml.%I IN ACCESS EXCLUSIVE MODE', p_parent);
        EXECUTE format('ALTER TABLE pganalytics_ml.%I DETACH PARTITION pganalytics_ml.%I', p_parent, v_default);
        FOR v_day IN EXECUTE format('SELECT DISTINCT (%I AT TIME ZONE ''UTC'')::date FROM pganalytics_ml.%I'
                                    ' UNION SELECT pg_catalog.generate_series($1, $2, ''1 day'')::date',
                                    v_key, v_default)
                     USING v_today, v_today + greatest(p_ahead_days, 0) LOOP
            IF pganalytics_ml._create_history_partition(p_parent, v_day) THEN
                v_created := v_created + 1;
            END IF;
        END LOOP;
        EXECUTE format('INSERT INTO pganalytics_ml.%I SELECT * FROM pganalytics_ml.%I', p_parent, v_default);
        GET DIAGNOSTICS v_moved = ROW_COUNT;
        EXECUTE format('TRUNCATE pganalytics_ml.%I', v_default);
        EXECUTE format('ALTER TABLE pganalytics_ml.%I ATTACH PARTITION pganalytics_ml.%I DEFAULT', p_parent, v_default);
    END IF;
    RETURN QUERY SELECT v_dropped, v_deleted, v_created, v_moved;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._maintain_history_partitions(text, interval, integer) IS
    'Retires whole day partitions of query_stats or predictions past their retention, creates the coming days'' '
    'partitions and moves rows out of the default partition';
REVOKE ALL ON FUNCTION pganalytics_ml._maintain_history_partitions(text, interval, integer) FROM PUBLIC;

ALTER TABLE pganalytics_ml.query_stats RENAME TO query_stats_default;
ALTER TABLE pganalytics_ml.query_stats_default RENAME CONSTRAINT query_stats_pkey TO query_stats_default_pkey;
ALTER INDEX pganalytics_ml.query_stats_interval_end RENAME TO query_stats_default_server_end;
REVOKE ALL ON pganalytics_ml.query_stats_default FROM pgml_reader;
-- The constraints are named as a fresh install names them (the renamed table keeps those names).
CREATE TABLE pganalytics_ml.query_stats (
    server_id           text NOT NULL,
    queryid             bigint NOT NULL,
    interval_start      timestamptz NOT NULL,
    interval_end        timestamptz NOT NULL,
    database            text,
    calls               bigint NOT NULL CONSTRAINT query_stats_calls_check CHECK (calls OPERATOR(pg_catalog.>) 0),
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
COMMENT ON TABLE pganalytics_ml.query_stats IS
    'Per statement and captured interval: what happened in it (deltas of the cumulative counters); times in ms';
ALTER TABLE pganalytics_ml.query_stats ATTACH PARTITION pganalytics_ml.query_stats_default DEFAULT;
COMMENT ON TABLE pganalytics_ml.query_stats_default IS
    'Rows of query_stats no day partition holds yet; the clean-up job moves them into day partitions';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.query_stats', '');
GRANT SELECT ON pganalytics_ml.query_stats TO pgml_reader;

ALTER TABLE pganalytics_ml.predictions RENAME TO predictions_default;
ALTER TABLE pganalytics_ml.predictions_default RENAME CONSTRAINT predictions_pkey TO predictions_default_pkey;
ALTER INDEX pganalytics_ml.predictions_unvalidated RENAME TO predictions_default_unvalidated;
DROP INDEX pganalytics_ml.predictions_predicted_at;
REVOKE ALL ON pganalytics_ml.predictions_default FROM pgml_reader;
CREATE TABLE pganalytics_ml.predictions (
    prediction_id  bigint NOT NULL DEFAULT pg_catalog.nextval('pganalytics_ml.predictions_prediction_id_seq'),
    server_id      text NOT NULL,
    queryid        bigint NOT NULL,
    predicted_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    predicted_ms   double precision NOT NULL,
    lower_ms       double precision NOT NULL,
    upper_ms       double precision NOT NULL,
    confidence     double precision NOT NULL,
    model_id       bigint,
    model_version  integer,
    source         text NOT NULL,
    based_on       timestamptz NOT NULL,
    actual_ms      double precision,
    error_percent  double precision,
    accuracy_score double precision,
    within_interval boolean,
    validated_at   timestamptz,
    validated_by   text CONSTRAINT predictions_validated_by_check CHECK (validated_by OPERATOR(pg_catalog.=) ANY (ARRAY['observed', 'manual']))
) PARTITION BY RANGE (predicted_at);
ALTER SEQUENCE pganalytics_ml.predictions_prediction_id_seq OWNED BY pganalytics_ml.predictions.prediction_id;
COMMENT ON TABLE pganalytics_ml.predictions IS
    'Every logged prediction and, once known, the actual mean it is scored against';
ALTER TABLE pganalytics_ml.predictions ATTACH PARTITION pganalytics_ml.predictions_default DEFAULT;
COMMENT ON TABLE pganalytics_ml.predictions_default IS
    'Rows of predictions no day partition holds yet; the clean-up job moves them into day partitions';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.predictions', '');
GRANT SELECT ON pganalytics_ml.predictions TO pgml_reader;
-- The views read the new parent (they were bound to the renamed table).
CREATE OR REPLACE VIEW pganalytics_ml.prediction_accuracy AS
SELECT p.server_id,
       p.model_id,
       p.source,
       CAST(pg_catalog.timezone('UTC', p.predicted_at) AS pg_catalog.date) AS day,
       pg_catalog.count(*) AS predictions,
       pg_catalog.avg(p.accuracy_score) AS mean_accuracy,
       pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.error_percent) AS median_error_percent,
       pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY p.error_percent) AS p95_error_percent,
       pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.q_error) AS q_error_p50,
       pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY p.q_error) AS q_error_p90,
       pg_catalog.avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END) AS interval_coverage
  FROM (SELECT v.*, pg_catalog.float8larger(pg_catalog.float8div(v.predicted_ms, v.actual_ms),
                                            pg_catalog.float8div(v.actual_ms, v.predicted_ms)) AS q_error
          FROM pganalytics_ml.predictions v
         WHERE v.validated_at IS NOT NULL) p
 GROUP BY p.server_id, p.model_id, p.source, CAST(pg_catalog.timezone('UTC', p.predicted_at) AS pg_catalog.date);
COMMENT ON VIEW pganalytics_ml.prediction_accuracy IS
    'Validated predictions per server, model and day (UTC): accuracy, error percentiles, q-error, interval coverage';

CREATE OR REPLACE VIEW pganalytics_ml.regressions AS
SELECT f.server_id,
       f.queryid AS query_hash,
       s.query,
       f.checked_observed_ms AS observed_ms,
       f.checked_predicted_ms AS predicted_ms,
       f.checked_upper_ms AS upper_bound_ms,
       pg_catalog.float8mi(f.checked_observed_ms, f.checked_upper_ms) AS excess_ms,
       pg_catalog.float8div(f.checked_observed_ms, f.checked_upper_ms) AS times_upper_bound,
       f.above_upper_since AS since,
       f.checked_interval_end AS observed_at
  FROM pganalytics_ml.forecasts f
  JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) f.server_id AND s.queryid OPERATOR(pg_catalog.=) f.queryid
 WHERE f.above_upper_since IS NOT NULL;
COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose latest observed mean lies above the upper bound predicted for it, by how much, since when';

-- A collector's retry is recognized by the digest of what it sent.
ALTER TABLE pganalytics_ml.snapshots ADD COLUMN content_digest bytea;
CREATE OR REPLACE FUNCTION pganalytics_ml._capture(
    p_server_id   text,
    p_captured_at timestamptz,
    p_rows        pganalytics_ml.stat_counters[],
    p_stats_reset timestamptz DEFAULT NULL)
RETURNS TABLE (captured_at timestamptz, statements integer, new_statements integer,
               active_statements integer, interval_seconds double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_prev       timestamptz;
    v_reset      boolean;
    v_statements integer;
    v_new        integer;
    v_active     integer := 0;
    v_digest     bytea := pg_catalog.sha256(pg_catalog.convert_to(ROW(p_rows, p_stats_reset)::text, 'UTF8'));
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
            SELECT c, b.counters AS p,
                   (b.server_id IS NULL OR v_reset
                    OR (c).calls < (b.counters).calls
                    OR (c).total_exec_time < (b.counters).total_exec_time) AS restarted
              FROM pg_catalog.unnest(p_rows) c
              LEFT JOIN pganalytics_ml.counter_baseline b
                ON b.server_id = p_server_id AND b.queryid = (c).queryid AND b.userid = (c).userid
               AND b.dbid = (c).dbid AND b.toplevel = (c).toplevel
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
            RETURNING queryid
        ), touched AS (
            UPDATE pganalytics_ml.statements st
               SET last_active_at = p_captured_at
              FROM inserted i
             WHERE st.server_id = p_server_id AND st.queryid = i.queryid
            RETURNING 1
        )
        SELECT count(*) INTO v_active FROM touched;
    END IF;

    DELETE FROM pganalytics_ml.counter_baseline b WHERE b.server_id = p_server_id;
    INSERT INTO pganalytics_ml.counter_baseline (server_id, captured_at, counters, userid, dbid, toplevel, queryid)
    SELECT DISTINCT ON ((c).queryid, (c).userid, (c).dbid, (c).toplevel)
           p_server_id, p_captured_at, pg_catalog.jsonb_populate_record(c, '{"query": null}'),
           (c).userid, (c).dbid, (c).toplevel, (c).queryid
      FROM pg_catalog.unnest(p_rows) c
     WHERE (c).queryid IS NOT NULL;

    INSERT INTO pganalytics_ml.snapshots
        (server_id, captured_at, interval_start, statements, new_statements, active_statements, content_digest)
    VALUES (p_server_id, p_captured_at, v_prev, v_statements, v_new, v_active, v_digest);

    RETURN QUERY SELECT p_captured_at, v_statements, v_new, v_active,
                        EXTRACT(epoch FROM p_captured_at - v_prev)::double precision;
END
$$;

DROP FUNCTION pganalytics_ml._cleanup(interval, interval, interval);
CREATE FUNCTION pganalytics_ml._cleanup(p_job_ttl interval, p_prediction_retention interval,
                                        p_history_retention interval)
RETURNS TABLE (jobs integer, predictions integer, query_stats integer, snapshots integer,
               predictions_partitions_dropped integer, query_stats_partitions_dropped integer,
               partitions_created integer, rows_moved bigint)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_jobs integer;
    v_snapshots integer;
    v_predictions record;
    v_stats record;
BEGIN
    DELETE FROM pganalytics_ml.jobs WHERE status IN ('completed', 'failed') AND completed_at < now() - p_job_ttl;
    GET DIAGNOSTICS v_jobs = ROW_COUNT;
    SELECT * INTO v_predictions
      FROM pganalytics_ml._maintain_history_partitions('predictions', p_prediction_retention);
    SELECT * INTO v_stats FROM pganalytics_ml._maintain_history_partitions('query_stats', p_history_retention);
    DELETE FROM pganalytics_ml.snapshots s
     WHERE s.captured_at < now() - p_history_retention
       AND s.captured_at < (SELECT max(l.captured_at) FROM pganalytics_ml.snapshots l WHERE l.server_id = s.server_id);
    GET DIAGNOSTICS v_snapshots = ROW_COUNT;
    RETURN QUERY SELECT v_jobs, v_predictions.rows_deleted::integer, v_stats.rows_deleted::integer, v_snapshots,
                        v_predictions.partitions_dropped, v_stats.partitions_dropped,
                        v_predictions.partitions_created + v_stats.partitions_created,
                        v_predictions.rows_moved + v_stats.rows_moved;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._cleanup(interval, interval, interval) IS
    'Deletes finished jobs past their TTL and old snapshots; retires predictions and captured history past their '
    'retention by day partitions and creates the coming days'' partitions';
REVOKE ALL ON FUNCTION pganalytics_ml._cleanup(interval, interval, interval) FROM PUBLIC;
