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
-- issue 13 (bounded training): each capture keeps the server's totals over its interval, so that training
-- reads the load features of any capture from here instead of summing every statement's interval
-- (captures before the upgrade have none: training sums their intervals, as before).
ALTER TABLE pganalytics_ml.snapshots ADD COLUMN server_calls double precision,
    ADD COLUMN server_exec_time double precision, ADD COLUMN server_blks_read double precision;
-- issue 13 (statements at scale): the rows every capture rewrites leave room on their pages, so that a
-- rewrite is a HOT update (no new index entry). Pages written before the update get the room as they
-- are rewritten.
ALTER TABLE pganalytics_ml.statements SET (fillfactor = 70);
ALTER TABLE pganalytics_ml.forecasts SET (fillfactor = 30);  -- two new versions per row and capture (20_models.sql)
-- The counter baseline becomes one row per server holding every entry's counters (sql/10_capture.sql).
CREATE TABLE pganalytics_ml.counter_baseline_per_server (
    server_id   text PRIMARY KEY,
    captured_at timestamptz NOT NULL,
    counters    pganalytics_ml.stat_counters[] NOT NULL
);
ALTER TABLE pganalytics_ml.counter_baseline_per_server ALTER COLUMN counters SET STORAGE EXTERNAL;
INSERT INTO pganalytics_ml.counter_baseline_per_server (server_id, captured_at, counters)
SELECT b.server_id, max(b.captured_at), pg_catalog.array_agg(b.counters ORDER BY b.queryid, b.userid, b.dbid, b.toplevel)
  FROM pganalytics_ml.counter_baseline b GROUP BY b.server_id;
ALTER EXTENSION pganalytics_ml DROP TABLE pganalytics_ml.counter_baseline;  -- and from the tables pg_dump saves
DROP TABLE pganalytics_ml.counter_baseline;
ALTER TABLE pganalytics_ml.counter_baseline_per_server RENAME TO counter_baseline;
ALTER TABLE pganalytics_ml.counter_baseline RENAME CONSTRAINT counter_baseline_per_server_pkey TO counter_baseline_pkey;
COMMENT ON TABLE pganalytics_ml.counter_baseline IS
    'Cumulative counters of each entry at the last capture, per server; the next capture subtracts them';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.counter_baseline', '');

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

-- issue 19 (operations hardening)

-- Captures are stamped once they hold the server's capture lock (a NULL time means now, then).
CREATE OR REPLACE FUNCTION pganalytics_ml._capture(
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

CREATE OR REPLACE FUNCTION pganalytics_ml._capture_local()
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

-- Prediction rows show the statement's text; pgml_predict_json keeps every digit; readable rounding.
ALTER TYPE pganalytics_ml.prediction ADD ATTRIBUTE query text;

CREATE FUNCTION pganalytics_ml._short_query(p_server_id text, p_queryid bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN length(s.query) > 80 THEN left(s.query, 77) || '...' ELSE s.query END
      FROM pganalytics_ml.statements s WHERE s.server_id = p_server_id AND s.queryid = p_queryid
$$;
COMMENT ON FUNCTION pganalytics_ml._short_query(text, bigint) IS
    'A statement''s text shortened to 80 characters, as prediction rows show it';
REVOKE ALL ON FUNCTION pganalytics_ml._short_query(text, bigint) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.pgml_predict(bigint, text) IS
    'Predicted mean execution time (ms) of the statement''s next interval, with a 90% interval; logged for validation';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict(bigint, text) TO pgml_reader;

COMMENT ON FUNCTION @extschema@.pgml_predict_json(bigint, text) IS
    'pgml_predict as the JSON document the pganalytics Go backend expects (query_hash_text: exact for JavaScript)';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_json(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_json(bigint, text) TO pgml_reader;

COMMENT ON FUNCTION @extschema@.pgml_predict_all(text, boolean) IS
    'Predictions for every statement of a server in one call; logged for validation only when log is true';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_all(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_all(text, boolean) TO pgml_reader;

CREATE OR REPLACE FUNCTION @extschema@.pgml_validate(prediction_id bigint, actual_execution_time_ms double precision)
RETURNS SETOF pganalytics_ml.validation
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_id     bigint := pgml_validate.prediction_id;
    p_actual double precision := pgml_validate.actual_execution_time_ms;
BEGIN
    IF p_id IS NULL OR p_actual IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN p_id IS NULL THEN 'prediction_id' ELSE 'actual_execution_time_ms' END
            USING ERRCODE = '22004', HINT = 'Pass the prediction_id pgml_predict returned and the measured time in ms.';
    END IF;
    -- Bounded like captured times, so that the error ratios below stay finite (NaN fails the upper bound).
    IF NOT (p_actual >= 1e-9 AND p_actual <= 1e15) THEN
        RAISE EXCEPTION 'actual_execution_time_ms must be a positive, finite number of milliseconds '
                        '(from 1e-9 to 1e15), got %', p_actual
            USING ERRCODE = '22023', HINT = 'Pass the measured execution time in milliseconds, e.g. 12.5.';
    END IF;
    RETURN QUERY
    UPDATE pganalytics_ml.predictions AS pr
       SET actual_ms = p_actual,
           error_percent = abs(pr.predicted_ms - p_actual) / p_actual * 100,
           accuracy_score = greatest(0, 1 - abs(pr.predicted_ms - p_actual) / p_actual),
           within_interval = p_actual BETWEEN pr.lower_ms AND pr.upper_ms,
           validated_at = now(),
           validated_by = 'manual'
     WHERE pr.prediction_id = p_id
    -- Rounded for reading (error to 0.01 %, accuracy to 4 decimals); the log keeps every digit.
    RETURNING pr.prediction_id, pr.queryid, pr.predicted_ms, pr.actual_ms,
              round(pr.error_percent::numeric, 2)::double precision,
              round(pr.accuracy_score::numeric, 4)::double precision,
              pr.within_interval, pr.validated_at;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown prediction_id %', p_id
            USING ERRCODE = 'P0002', HINT = 'Use a prediction_id returned by pgml_predict(); unlogged predictions have none.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_validate(bigint, double precision) IS
    'Scores a logged prediction against the measured time; a later validation replaces an earlier one';
REVOKE ALL ON FUNCTION @extschema@.pgml_validate(bigint, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_validate(bigint, double precision) TO pgml_trainer;

COMMENT ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) IS
    'Validates logged predictions and checks forecasts against the interval a capture just observed';
REVOKE ALL ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) FROM PUBLIC;

CREATE OR REPLACE VIEW pganalytics_ml.prediction_accuracy AS
SELECT p.server_id,
       p.model_id,
       p.source,
       CAST(pg_catalog.timezone('UTC', p.predicted_at) AS pg_catalog.date) AS day,
       pg_catalog.count(*) AS predictions,
       -- Rounded for reading: 4 decimals for accuracy, q-errors to 0.001, error percentages to 0.01
       -- (pgml_status() and the predictions table have the figures for programs).
       CAST(pg_catalog.round(CAST(pg_catalog.avg(p.accuracy_score) AS numeric), 4) AS double precision)
           AS mean_accuracy,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.error_percent)
           AS numeric), 2) AS double precision) AS median_error_percent,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY p.error_percent)
           AS numeric), 2) AS double precision) AS p95_error_percent,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.q_error)
           AS numeric), 3) AS double precision) AS q_error_p50,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY p.q_error)
           AS numeric), 3) AS double precision) AS q_error_p90,
       pg_catalog.round(pg_catalog.avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END), 3) AS interval_coverage
  FROM (SELECT v.*, pg_catalog.float8larger(pg_catalog.float8div(v.predicted_ms, v.actual_ms),
                                            pg_catalog.float8div(v.actual_ms, v.predicted_ms)) AS q_error
          FROM pganalytics_ml.predictions v
         WHERE v.validated_at IS NOT NULL) p
 GROUP BY p.server_id, p.model_id, p.source, CAST(pg_catalog.timezone('UTC', p.predicted_at) AS pg_catalog.date);
COMMENT ON VIEW pganalytics_ml.prediction_accuracy IS
    'Validated predictions per server, model and day (UTC): accuracy, error percentiles, q-error, interval coverage';

COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose latest observed mean lies above the upper bound predicted for it, by how much, since when; '
    'a statement leaves it when it runs within its bound again or has not run in the last three captures';

-- pgml_jobs(status, max_rows, details, "limit"): compact by default; "limit" kept for calls that quote it.
CREATE FUNCTION pganalytics_ml._job_summary(s pganalytics_ml.job_status) RETURNS pganalytics_ml.job_status
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(s.job_id, s.kind, s.status, s.created_at, s.updated_at, s.started_at, s.completed_at, s.attempts,
               s.max_attempts, s.next_run_at,
               CASE WHEN length(s.error) > 120 THEN left(s.error, 117) || '...' ELSE s.error END,
               (SELECT jsonb_object_agg(r.key, CASE WHEN jsonb_typeof(r.value) = 'string' AND length(r.value #>> '{}') > 60
                                                    THEN to_jsonb(left(r.value #>> '{}', 57) || '...')
                                                    WHEN jsonb_typeof(r.value) = 'number'
                                                    THEN to_jsonb(round((r.value #>> '{}')::numeric, 4))
                                                    ELSE r.value END)
                  FROM jsonb_each(s.result) r
                 WHERE jsonb_typeof(r.value) NOT IN ('object', 'array')
                   -- of a training, the figures a person reads first (details => true has them all)
                   AND (s.kind <> 'train' OR r.key = ANY (ARRAY['model_id', 'model_type', 'server_id', 'activated',
                        'q_error_p50', 'q_error_p90', 'baseline_last_q_error_p90', 'combination_q_error_p90',
                        'training_samples', 'sampled', 'model_weight', 'forecaster_note']))),
               s.progress, s.dead_lettered, s.cancelled,
               (SELECT jsonb_object_agg(a.key, CASE WHEN jsonb_typeof(a.value) = 'string' AND length(a.value #>> '{}') > 40
                                                    THEN to_jsonb(left(a.value #>> '{}', 37) || '...') ELSE a.value END)
                  FROM jsonb_each(s.arguments) a),
               NULL)::pganalytics_ml.job_status
$$;
COMMENT ON FUNCTION pganalytics_ml._job_summary(pganalytics_ml.job_status) IS
    'A job as pgml_jobs lists it by default: latest error, long arguments and long result texts shortened, '
    'result numbers to 4 decimals and without nested parts, no history';
REVOKE ALL ON FUNCTION pganalytics_ml._job_summary(pganalytics_ml.job_status) FROM PUBLIC;

DROP FUNCTION @extschema@.pgml_jobs(text, integer);

CREATE FUNCTION @extschema@.pgml_jobs(status text DEFAULT NULL, max_rows integer DEFAULT 100,
                                      details boolean DEFAULT false, "limit" integer DEFAULT NULL)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rows integer := coalesce(pgml_jobs."limit", pgml_jobs.max_rows);
BEGIN
    IF pgml_jobs.status IS NOT NULL
       AND pgml_jobs.status NOT IN ('pending', 'training', 'running', 'completed', 'failed', 'dead_lettered') THEN
        RAISE EXCEPTION 'unknown job status %', pg_catalog.left(pgml_jobs.status, 40) USING ERRCODE = '22023',
            HINT = 'Use pending, training, running, completed, failed or dead_lettered, or NULL for all.';
    END IF;
    IF v_rows IS NULL OR pgml_jobs.details IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN v_rows IS NULL THEN 'max_rows' ELSE 'details' END
            USING ERRCODE = '22004', HINT = 'The defaults are max_rows => 100 and details => false.';
    END IF;
    IF v_rows < 1 OR v_rows > 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000, got %', v_rows USING ERRCODE = '22023',
            HINT = 'The default is 100.';
    END IF;
    RETURN QUERY
    SELECT (CASE WHEN pgml_jobs.details THEN pganalytics_ml._job_status(j)
                 ELSE pganalytics_ml._job_summary(pganalytics_ml._job_status(j)) END).*
      FROM pganalytics_ml.jobs j
     WHERE pgml_jobs.status IS NULL
        OR (pgml_jobs.status = 'dead_lettered' AND j.dead_lettered)
        OR j.status = pgml_jobs.status
     ORDER BY j.job_seq DESC
     LIMIT v_rows;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_jobs(text, integer, boolean, integer) IS
    'Jobs, newest first, optionally of one status (or dead_lettered); compact unless details => true';
REVOKE ALL ON FUNCTION @extschema@.pgml_jobs(text, integer, boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_jobs(text, integer, boolean, integer) TO pgml_reader;

-- The scheduler's hint and the status say what is wrong.
CREATE OR REPLACE FUNCTION pganalytics_ml._require_pg_cron() RETURNS void
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cron_database text := current_setting('cron.database_name', true);
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    IF current_setting('shared_preload_libraries') !~ '(^|[\s,"])pg_cron($|[\s,"])' THEN
        RAISE EXCEPTION 'pg_cron is not loaded by this server'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries in postgresql.conf, restart PostgreSQL, then run '
                         'CREATE EXTENSION pg_cron; in its database (cron.database_name). Without pg_cron, call '
                         'pgml_snapshot() and CALL pganalytics_ml.run_jobs() yourself.';
    ELSIF v_cron_database = current_database() THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = '55000',
                  HINT = 'This is pg_cron''s database (cron.database_name): run CREATE EXTENSION pg_cron; here, '
                         'then call pgml_schedule() again.';
    ELSE
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = '55000',
                  HINT = format('pg_cron runs in cron.database_name (%s): install pganalytics_ml there and call '
                                'pgml_schedule() in it, or schedule this database from there with '
                                'cron.schedule_in_database() (docs/operations.md). Without pg_cron, call '
                                'pgml_snapshot() and CALL pganalytics_ml.run_jobs() yourself.', v_cron_database);
    END IF;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._require_pg_cron() IS 'Fails with a hint when pg_cron is not in this database';
REVOKE ALL ON FUNCTION pganalytics_ml._require_pg_cron() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval) IS
    'Registers (or updates) the pg_cron jobs: snapshots, queue draining, watchdog, daily retraining, clean-up; '
    'arguments left out keep the settings of the previous call (pganalytics_ml.schedule_config)';
REVOKE ALL ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval)
    TO pgml_admin;

COMMENT ON FUNCTION @extschema@.pgml_status() IS
    'Health and state of pganalytics_ml in this database, as JSON';
REVOKE ALL ON FUNCTION @extschema@.pgml_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_status() TO pgml_reader;

-- Functions run in PL/Python get PL/pgSQL wrappers: errors for the caller arrive without a traceback.
-- Their PL/Python bodies (pganalytics_ml._snapshot ...) are created with the other PL/Python functions below.
-- issue 13 (bounded training): the result also reports the sample trained on (samples_available,
-- samples_used, sampled, estimated_memory_mb); its settings are read with current_setting(), nothing to create.
CREATE TYPE pganalytics_ml.training_result AS (
    model_id                     bigint,
    model_type                   text,
    server_id                    text,
    r_squared                    double precision,
    rmse                         double precision,
    mae                          double precision,
    training_samples             integer,
    holdout_samples              integer,
    q_error_p50                  double precision,
    q_error_p90                  double precision,
    q_error_p95                  double precision,
    baseline_last_q_error_p90    double precision,
    baseline_longrun_q_error_p90 double precision,
    interval_coverage            double precision,
    active_model_q_error_p90     double precision,
    activated                    boolean,
    feature_importance           jsonb,
    samples_available            bigint,
    samples_used                 integer,
    sampled                      boolean,
    estimated_memory_mb          double precision,
    combination_q_error_p50      double precision,
    combination_q_error_p90      double precision,
    model_weight                 double precision,
    forecasters                  jsonb,
    forecaster_note              text
);
COMMENT ON TYPE pganalytics_ml.training_result IS 'One trained model as pgml_train returns it';

DROP FUNCTION @extschema@.pgml_train(integer, text, text);

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

CREATE OR REPLACE FUNCTION @extschema@.pgml_snapshot()
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

CREATE OR REPLACE FUNCTION @extschema@.pgml_activate_model(model_id bigint)
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

CREATE OR REPLACE FUNCTION @extschema@.pgml_cleanup_models(keep_count integer DEFAULT 5)
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

CREATE OR REPLACE FUNCTION @extschema@.pgml_train_async(lookback_days integer DEFAULT 90,
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

CREATE OR REPLACE FUNCTION @extschema@.pgml_job_enqueue(kind text, arguments jsonb DEFAULT '{}',
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
    'Queues a job of any kind (train, snapshot, validate, cleanup, sleep, patterns, plans) with optional limits and start time';
REVOKE ALL ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) TO pgml_admin;

COMMENT ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) IS
    'Drains the job queue: rescues lost jobs, then runs ready jobs until max_jobs or max_seconds. CALL it outside '
    'a transaction block (pg_cron does)';
REVOKE ALL ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) FROM PUBLIC;

CREATE OR REPLACE PROCEDURE pganalytics_ml.run_snapshots(every_seconds integer, within_seconds integer DEFAULT 60)
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

-- issue 16 (patterns): workload patterns, their table and the cycles for seasonal forecasters; a 'patterns'
-- job kind, scheduled hourly by pgml_schedule.
ALTER TABLE pganalytics_ml.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE pganalytics_ml.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'patterns']));

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

COMMENT ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval) IS
    'Registers (or updates) the pg_cron jobs: snapshots, queue draining, watchdog, daily retraining, clean-up, '
    'hourly workload patterns; '
    'arguments left out keep the settings of the previous call (pganalytics_ml.schedule_config)';


-- issue 14 (plans)
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

ALTER TABLE pganalytics_ml.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE pganalytics_ml.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'patterns', 'plans']));

-- Regressions say which plan change they followed (a column added at the end).
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
       f.checked_interval_end AS observed_at,
       -- issue 14: the plan change it started right after (found within the hour before it, or later
       -- but from a plan last seen before it was observed), NULL when none
       (SELECT pg_catalog.max(e.detected_at) FROM pganalytics_ml.plan_events e
         WHERE e.server_id OPERATOR(pg_catalog.=) f.server_id AND e.queryid OPERATOR(pg_catalog.=) f.queryid
           AND e.previous_seen_at OPERATOR(pg_catalog.<=) f.checked_interval_end
           AND e.detected_at OPERATOR(pg_catalog.>=)
               (f.above_upper_since OPERATOR(pg_catalog.-) CAST('1 hour' AS pg_catalog.interval))) AS plan_changed_at
  FROM pganalytics_ml.forecasts f
  JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) f.server_id AND s.queryid OPERATOR(pg_catalog.=) f.queryid
 WHERE f.above_upper_since IS NOT NULL;
COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose latest observed mean lies above the upper bound predicted for it, by how much, since when, '
    'and the plan change it followed (plan_changed_at)';

-- pgml_schedule also registers the hourly plan capture.
CREATE OR REPLACE FUNCTION @extschema@.pgml_schedule(
    snapshot_seconds      integer  DEFAULT NULL,  -- 300
    retrain_schedule      text     DEFAULT NULL,  -- '0 3 * * *'
    retrain_lookback_days integer  DEFAULT NULL,  -- 90
    retrain_model_type    text     DEFAULT NULL,  -- 'auto'
    cleanup_schedule      text     DEFAULT NULL,  -- '30 3 * * *'
    job_ttl               interval DEFAULT NULL,  -- 7 days
    keep_models           integer  DEFAULT NULL,  -- 5
    prediction_retention  interval DEFAULT NULL,  -- 30 days
    history_retention     interval DEFAULT NULL)  -- 90 days
RETURNS TABLE (job_name text, schedule text, command text)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c          pganalytics_ml.schedule_config;
    v_snapshot text;
    v_jobs     text[][];
    v_job      text[];
    v_valid    boolean;
BEGIN
    PERFORM pganalytics_ml._require_pg_cron();
    -- Locked: concurrent calls apply one after the other.
    SELECT s.* INTO c FROM pganalytics_ml.schedule_config s FOR UPDATE;
    SELECT true,
           coalesce(pgml_schedule.snapshot_seconds, c.snapshot_seconds, 300),
           coalesce(pgml_schedule.retrain_schedule, c.retrain_schedule, '0 3 * * *'),
           coalesce(pgml_schedule.retrain_lookback_days, c.retrain_lookback_days, 90),
           coalesce(pgml_schedule.retrain_model_type, c.retrain_model_type, 'auto'),
           coalesce(pgml_schedule.cleanup_schedule, c.cleanup_schedule, '30 3 * * *'),
           coalesce(pgml_schedule.job_ttl, c.job_ttl, interval '7 days'),
           coalesce(pgml_schedule.keep_models, c.keep_models, 5),
           coalesce(pgml_schedule.prediction_retention, c.prediction_retention, interval '30 days'),
           coalesce(pgml_schedule.history_retention, c.history_retention, interval '90 days'),
           now(),
           session_user
      INTO c;

    IF NOT ((c.snapshot_seconds BETWEEN 1 AND 59 AND 60 % c.snapshot_seconds = 0)
            OR (c.snapshot_seconds BETWEEN 60 AND 3600 AND c.snapshot_seconds % 60 = 0
                AND 60 % (c.snapshot_seconds / 60) = 0)) THEN
        RAISE EXCEPTION 'snapshot_seconds must divide a minute (1-59) or be whole minutes dividing an hour, got %',
            c.snapshot_seconds USING ERRCODE = '22023', HINT = 'For example 10, 30, 60, 300 (the default) or 900.';
    END IF;
    -- The clean-up job checks the same ranges when pg_cron queues it.
    IF c.keep_models NOT BETWEEN 0 AND 1000000 THEN
        RAISE EXCEPTION 'keep_models must be from 0 to 1000000, got %', c.keep_models USING ERRCODE = '22023',
            HINT = 'The active model is always kept.';
    END IF;
    IF c.job_ttl <= interval '0' OR c.prediction_retention <= interval '0' OR c.history_retention <= interval '0'
       OR greatest(c.job_ttl, c.prediction_retention, c.history_retention) > interval '100 years' THEN
        RAISE EXCEPTION 'job_ttl, prediction_retention and history_retention must be positive and at most 100 years'
            USING ERRCODE = '22023', HINT = 'The defaults are 7, 30 and 90 days.';
    END IF;
    -- Checks the training arguments the way pgml_train does, without training (its errors without the
    -- Python traceback, as pgml_train's: sql/60_entry_points.sql).
    DECLARE
        v_state text; v_message text; v_detail text; v_hint text;
    BEGIN
        PERFORM pganalytics_ml._check_train_arguments(c.retrain_lookback_days, c.retrain_model_type);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
        IF v_message NOT LIKE 'pganalytics\_ml: %' THEN RAISE; END IF;
        PERFORM pganalytics_ml._raise_for_caller(v_state, v_message, v_detail, v_hint);
    END;

    INSERT INTO pganalytics_ml.schedule_config AS sc
    SELECT (c).*
    ON CONFLICT (singleton) DO UPDATE
       SET snapshot_seconds = EXCLUDED.snapshot_seconds, retrain_schedule = EXCLUDED.retrain_schedule,
           retrain_lookback_days = EXCLUDED.retrain_lookback_days, retrain_model_type = EXCLUDED.retrain_model_type,
           cleanup_schedule = EXCLUDED.cleanup_schedule, job_ttl = EXCLUDED.job_ttl,
           keep_models = EXCLUDED.keep_models, prediction_retention = EXCLUDED.prediction_retention,
           history_retention = EXCLUDED.history_retention, updated_at = EXCLUDED.updated_at,
           updated_by = EXCLUDED.updated_by;

    v_snapshot := CASE WHEN c.snapshot_seconds < 60
                       THEN format('CALL pganalytics_ml.run_snapshots(%s, 60)', c.snapshot_seconds)
                       ELSE format('SELECT count(*) FROM %I.pgml_snapshot()', '@extschema@') END;
    -- name, schedule, command, and the argument the schedule comes from
    v_jobs := ARRAY[
        ARRAY['pganalytics_ml:snapshot',
              CASE WHEN c.snapshot_seconds <= 60 THEN '* * * * *' ELSE format('*/%s * * * *', c.snapshot_seconds / 60) END,
              v_snapshot, 'snapshot_seconds'],
        ARRAY['pganalytics_ml:drain', '* * * * *', 'CALL pganalytics_ml.run_jobs(max_seconds => 50)', NULL],
        ARRAY['pganalytics_ml:watchdog', '* * * * *', 'SELECT * FROM pganalytics_ml.rescue_jobs()', NULL],
        ARRAY['pganalytics_ml:retrain', c.retrain_schedule,
              format('SELECT job_id FROM %I.pgml_train_async(%s, %L)', '@extschema@', c.retrain_lookback_days,
                     c.retrain_model_type),
              'retrain_schedule'],
        ARRAY['pganalytics_ml:cleanup', c.cleanup_schedule,
              format('SELECT job_id FROM %I.pgml_job_enqueue(''cleanup'', %L)', '@extschema@',
                     jsonb_build_object('job_ttl', c.job_ttl::text, 'keep_models', c.keep_models,
                                        'prediction_retention', c.prediction_retention::text,
                                        'history_retention', c.history_retention::text)),
              'cleanup_schedule'],
        -- Workload patterns of every server captured in the last week, refreshed hourly (pganalytics_ml.patterns).
        ARRAY['pganalytics_ml:patterns', '15 * * * *',
              format('SELECT job_id FROM %I.pgml_job_enqueue(''patterns'', ''{"lookback_days": 7}'')', '@extschema@'),
              NULL],
        -- Every statement planned again hourly (issue 14): finds plan changes; new ones are queued by snapshots.
        ARRAY['pganalytics_ml:plans', '17 * * * *',
              format('SELECT job_id FROM %I.pgml_job_enqueue(''plans'', ''{}'', soft_limit => ''4 min'', '
                     'hard_limit => ''5 min'')', '@extschema@'), NULL]];
    FOREACH v_job SLICE 1 IN ARRAY v_jobs LOOP
        -- Five cron fields (pg_cron ignores what follows them) or a macro; then pg_cron's parser decides.
        v_valid := v_job[2] ~ '^\s*(@[a-z]+|([0-9A-Za-z*,/-]+\s+){4}[0-9A-Za-z*,/-]+)\s*$';
        IF v_valid THEN
            BEGIN
                -- registered, and active again if someone deactivated it
                EXECUTE 'SELECT cron.alter_job(cron.schedule($1, $2, $3), active => true)'
                    USING v_job[1], v_job[2], v_job[3];
            EXCEPTION WHEN invalid_parameter_value THEN
                v_valid := false;
            END;
        END IF;
        IF NOT v_valid THEN  -- the error names the argument; everything is rolled back
            RAISE EXCEPTION '% is not a schedule pg_cron accepts: %', v_job[4],
                CASE WHEN length(v_job[2]) > 40 THEN quote_literal(left(v_job[2], 40)) || '...'
                     ELSE quote_literal(v_job[2]) END
                USING ERRCODE = '22023',
                      HINT = 'Use five cron fields (minute hour day-of-month month day-of-week), e.g. ''0 3 * * *'': '
                             'pg_cron 1.4 runs jobs at minute granularity.';
        END IF;
        job_name := v_job[1];
        schedule := v_job[2];
        command := v_job[3];
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_schedule(integer, text, integer, text, text, interval, integer, interval, interval) IS
    'Registers (or updates) the pg_cron jobs: snapshots, queue draining, watchdog, daily retraining, clean-up, '
    'hourly workload patterns and plan capture; '
    'arguments left out keep the settings of the previous call (pganalytics_ml.schedule_config)';

-- issue 12 (forecasting)
-- The extension's own statements, flagged at parse time; existing ones by the same pattern as
-- capture.counters.INTERNAL_PATTERN.
ALTER TABLE pganalytics_ml.statements ADD COLUMN is_internal boolean NOT NULL DEFAULT false;
UPDATE pganalytics_ml.statements SET is_internal = query ~* '(\mpgml_\w+\s*\(|\mpganalytics_ml\.|\mcron\.\w)' WHERE query IS NOT NULL;

ALTER TABLE pganalytics_ml.forecasts
    ADD COLUMN forecaster text,
    ADD COLUMN expert_ms double precision[],
    ADD COLUMN consecutive_above integer NOT NULL DEFAULT 0,
    ADD COLUMN reference_upper_ms double precision,
    ADD COLUMN server_shift double precision,
    ADD COLUMN alarm_upper_ms double precision,
    ADD COLUMN reference_load double precision,
    ADD COLUMN reference_rate double precision,
    -- what the online combination learns of each statement (as in 20_models.sql)
    ADD COLUMN load_mu double precision,
    ADD COLUMN rate_log double precision,
    ADD COLUMN load_sensitivity double precision,
    ADD COLUMN rate_elasticity double precision,
    ADD COLUMN season_seconds double precision CHECK (season_seconds OPERATOR(pg_catalog.>) 0),
    ADD COLUMN packed bytea;
COMMENT ON TABLE pganalytics_ml.forecasts IS
    'Current forecast of each statement''s next interval mean, refreshed at each capture and activation, '
    'and what the online combination has learned to make it';
ALTER TABLE pganalytics_ml.predictions ADD COLUMN forecaster text, ADD COLUMN expert_ms double precision[];
ALTER TYPE pganalytics_ml.prediction ADD ATTRIBUTE forecaster text;

-- issue 12: what the online combination and calibration learn per server (per statement: in forecasts).
CREATE TABLE pganalytics_ml.forecaster_pool (
    server_id     text PRIMARY KEY,
    weights       double precision[] NOT NULL,    -- pooled weights, lent to statements with little history
    q             double precision NOT NULL,      -- the tracked quantile of normalized scores
    q_start       double precision NOT NULL,      -- its start value (a training holdout, or the default)
    recent_scores double precision[] NOT NULL,    -- the latest live scores, for `confidence`
    load_level    double precision NOT NULL,      -- the server's load level at the latest capture (log)
    load_ar       double precision[],             -- its AR(1) fit: count, means, covariance, variance, capture
    load_levels   double precision[],             -- its latest levels, oldest first (at most 120)
    updates       integer NOT NULL,
    updated_at    timestamptz NOT NULL
);
COMMENT ON TABLE pganalytics_ml.forecaster_pool IS
    'Per server: pooled forecaster weights and the live-calibrated interval quantile';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.forecaster_pool', '');

DROP VIEW pganalytics_ml.regressions;
DROP VIEW pganalytics_ml.prediction_accuracy;

CREATE VIEW pganalytics_ml.prediction_accuracy AS
WITH scored AS (
    SELECT v.*, pg_catalog.float8larger(pg_catalog.float8div(v.predicted_ms, v.actual_ms),
                                        pg_catalog.float8div(v.actual_ms, v.predicted_ms)) AS q_error,
           CAST(pg_catalog.timezone('UTC', v.predicted_at) AS pg_catalog.date) AS day
      FROM pganalytics_ml.predictions v
     WHERE v.validated_at IS NOT NULL
       AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                        WHERE s.server_id OPERATOR(pg_catalog.=) v.server_id
                          AND s.queryid OPERATOR(pg_catalog.=) v.queryid AND s.is_internal)
), per_forecaster AS (
    SELECT f.server_id, f.model_id, f.source, f.day, f.forecaster,
           pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY f.q) AS p50,
           pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY f.q) AS p90,
           pg_catalog.count(*) AS n
      FROM (SELECT sc.server_id, sc.model_id, sc.source, sc.day, e.forecaster,
                   pg_catalog.float8larger(pg_catalog.float8div(e.ms, sc.actual_ms),
                                           pg_catalog.float8div(sc.actual_ms, e.ms)) AS q
              FROM scored sc
             CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(sc.expert_ms), pg_catalog.unnest(
                   ARRAY['last', 'ewma', 'since_change', 'longrun', 'trend', 'server_load', 'seasonal', 'model',
                         'server_next'])) AS e(ms, forecaster)
             WHERE e.ms OPERATOR(pg_catalog.>) 0) f
     GROUP BY f.server_id, f.model_id, f.source, f.day, f.forecaster
)
SELECT p.server_id,
       p.model_id,
       p.source,
       p.day,
       pg_catalog.count(*) AS predictions,
       -- Rounded for reading: 4 decimals for accuracy, q-errors to 0.001, error percentages to 0.01
       -- (pgml_status() and the predictions table have the figures for programs).
       CAST(pg_catalog.round(CAST(pg_catalog.avg(p.accuracy_score) AS numeric), 4) AS double precision)
           AS mean_accuracy,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.error_percent)
           AS numeric), 2) AS double precision) AS median_error_percent,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY p.error_percent)
           AS numeric), 2) AS double precision) AS p95_error_percent,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY p.q_error)
           AS numeric), 3) AS double precision) AS q_error_p50,
       CAST(pg_catalog.round(CAST(pg_catalog.percentile_cont(0.9) WITHIN GROUP (ORDER BY p.q_error)
           AS numeric), 3) AS double precision) AS q_error_p90,
       pg_catalog.round(pg_catalog.avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END), 3) AS interval_coverage,
       (SELECT pg_catalog.jsonb_object_agg(pf.forecaster, pg_catalog.jsonb_build_object(
                   'q_error_p50', pg_catalog.round(CAST(pf.p50 AS numeric), 3),
                   'q_error_p90', pg_catalog.round(CAST(pf.p90 AS numeric), 3), 'predictions', pf.n))
          FROM per_forecaster pf
         WHERE pf.server_id OPERATOR(pg_catalog.=) p.server_id AND pf.day OPERATOR(pg_catalog.=) p.day
           AND pf.source OPERATOR(pg_catalog.=) p.source
           AND (pf.model_id OPERATOR(pg_catalog.=) p.model_id OR (pf.model_id IS NULL AND p.model_id IS NULL)))
       AS forecaster_q_errors
  FROM scored p
 GROUP BY p.server_id, p.model_id, p.source, p.day;
COMMENT ON VIEW pganalytics_ml.prediction_accuracy IS
    'Validated predictions per server, model and day (UTC), the extension''s own statements left out: accuracy, '
    'error percentiles, q-error, interval coverage, and the live q-errors of each forecaster';

CREATE VIEW pganalytics_ml.regressions AS
SELECT f.server_id,
       f.queryid AS query_hash,
       s.query,
       f.checked_observed_ms AS observed_ms,
       f.checked_predicted_ms AS predicted_ms,
       f.checked_upper_ms AS upper_bound_ms,
       pg_catalog.float8mi(f.checked_observed_ms, f.checked_upper_ms) AS excess_ms,
       pg_catalog.float8div(f.checked_observed_ms, f.checked_upper_ms) AS times_upper_bound,
       f.above_upper_since AS since,
       f.checked_interval_end AS observed_at,
       -- issue 14: the plan change it started right after (found within the hour before it, or later
       -- but from a plan last seen before it was observed), NULL when none
       (SELECT pg_catalog.max(e.detected_at) FROM pganalytics_ml.plan_events e
         WHERE e.server_id OPERATOR(pg_catalog.=) f.server_id AND e.queryid OPERATOR(pg_catalog.=) f.queryid
           AND e.previous_seen_at OPERATOR(pg_catalog.<=) f.checked_interval_end
           AND e.detected_at OPERATOR(pg_catalog.>=)
               (f.above_upper_since OPERATOR(pg_catalog.-) CAST('1 hour' AS pg_catalog.interval))) AS plan_changed_at,
       f.consecutive_above AS intervals_above,
       pg_catalog.exp(f.server_shift) AS server_slowdown
  FROM pganalytics_ml.forecasts f
  JOIN pganalytics_ml.statements s
    ON s.server_id OPERATOR(pg_catalog.=) f.server_id AND s.queryid OPERATOR(pg_catalog.=) f.queryid
 WHERE f.consecutive_above OPERATOR(pg_catalog.>=) 2 AND NOT s.is_internal;
COMMENT ON VIEW pganalytics_ml.regressions IS
    'Statements whose last two or more interval means lay above the upper bound forecast before they began, '
    'beyond the whole server''s slowdown: by how much, since when, and the plan change it followed '
    '(plan_changed_at); the extension''s own statements left out, and a statement that has not run in the '
    'last three captures leaves it';

GRANT SELECT ON pganalytics_ml.prediction_accuracy, pganalytics_ml.regressions, pganalytics_ml.forecasts,
                pganalytics_ml.predictions, pganalytics_ml.forecaster_pool
   TO pgml_reader;


CREATE OR REPLACE FUNCTION @extschema@.pgml_predict_all(server_id text DEFAULT 'local', log boolean DEFAULT false)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pgml_predict_all.server_id IS NULL OR pgml_predict_all.log IS NULL THEN
        RAISE EXCEPTION 'server_id and log must not be NULL' USING ERRCODE = '22004',
            HINT = 'Call pgml_predict_all() for this server, or pgml_predict_all(''<server_id>'').';
    END IF;
    IF pgml_predict_all.log AND NOT pg_is_in_recovery() THEN
        RETURN QUERY
        WITH logged AS (
            INSERT INTO pganalytics_ml.predictions AS p (server_id, queryid, predicted_ms, lower_ms, upper_ms,
                                                         confidence, model_id, model_version, source, based_on,
                                                         forecaster, expert_ms)
            SELECT f.server_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
                   f.model_version, f.source, f.based_on, f.forecaster, f.expert_ms
              FROM pganalytics_ml.forecasts f
             WHERE f.server_id = pgml_predict_all.server_id
               AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                                WHERE s.server_id = f.server_id AND s.queryid = f.queryid AND s.is_internal)
            RETURNING p.*)
        SELECT p.prediction_id, p.queryid, p.predicted_ms, p.lower_ms, p.upper_ms, p.confidence, p.model_id,
               p.model_version, p.source, p.predicted_at, p.server_id, p.based_on, true,
               pganalytics_ml._short_query(p.server_id, p.queryid), p.forecaster, pl.total_cost, pl.fingerprint,
               '{"scenario": "current"}'::jsonb, '{}'::text[], NULL::text
          FROM logged p
          LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = p.server_id AND c.queryid = p.queryid
          LEFT JOIN pganalytics_ml.plans pl
                 ON pl.server_id = c.server_id AND pl.queryid = c.queryid AND pl.fingerprint = c.fingerprint
         ORDER BY p.queryid;
    ELSE
        RETURN QUERY
        SELECT NULL::bigint, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
               f.model_version, f.source, now(), f.server_id, f.based_on, false,
               CASE WHEN length(s.query) > 80 THEN left(s.query, 77) || '...' ELSE s.query END, f.forecaster,
               pl.total_cost, pl.fingerprint, '{"scenario": "current"}'::jsonb, '{}'::text[], NULL::text
          FROM pganalytics_ml.forecasts f
          LEFT JOIN pganalytics_ml.statements s ON s.server_id = f.server_id AND s.queryid = f.queryid
          LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = f.server_id AND c.queryid = f.queryid
          LEFT JOIN pganalytics_ml.plans pl
                 ON pl.server_id = c.server_id AND pl.queryid = c.queryid AND pl.fingerprint = c.fingerprint
         WHERE f.server_id = pgml_predict_all.server_id
           AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                            WHERE s.server_id = f.server_id AND s.queryid = f.queryid AND s.is_internal)
         ORDER BY f.queryid;
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_all(text, boolean) IS
    'Predictions for every statement of a server in one call (not the extension''s own); logged only when log is true';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_all(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_all(text, boolean) TO pgml_reader;


COMMENT ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) IS
    'Validates logged predictions and checks forecasts against the interval a capture just observed';
REVOKE ALL ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) FROM PUBLIC;


-- issue 12: the hook through which a known cycle reaches the seasonal forecaster (pattern detection,
-- or an operator who knows the workload's period, sets it; NULL clears it).
CREATE FUNCTION @extschema@.pgml_set_season(period_seconds double precision, server_id text DEFAULT 'local',
                                            query_hash bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF pgml_set_season.server_id IS NULL THEN
        RAISE EXCEPTION 'server_id must not be NULL' USING ERRCODE = '22004',
            HINT = 'Use ''local'' for this server''s own statements.';
    END IF;
    IF NOT (pgml_set_season.period_seconds IS NULL
            OR (pgml_set_season.period_seconds > 0 AND pgml_set_season.period_seconds <= 366 * 86400)) THEN
        RAISE EXCEPTION 'period_seconds must be between 0 and one year (exclusive of 0), got %',
            pgml_set_season.period_seconds
            USING ERRCODE = '22023', HINT = 'Pass the length of the cycle in seconds, e.g. 86400 for a daily one; NULL clears it.';
    END IF;
    UPDATE pganalytics_ml.forecasts f
       SET season_seconds = pgml_set_season.period_seconds
     WHERE f.server_id = pgml_set_season.server_id
       AND (pgml_set_season.query_hash IS NULL OR f.queryid = pgml_set_season.query_hash);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 AND pgml_set_season.query_hash IS NOT NULL THEN
        RAISE EXCEPTION 'statement % of server "%" has no forecast yet', pgml_set_season.query_hash,
            pgml_set_season.server_id
            USING ERRCODE = 'P0002', HINT = 'Its forecast is made at the first capture in which it runs.';
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) IS
    'Tells the seasonal forecaster the cycle of a server''s statements (or of one); NULL clears it';
REVOKE ALL ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_set_season(double precision, text, bigint) TO pgml_trainer;


COMMENT ON FUNCTION @extschema@.pgml_status() IS
    'Health and state of pganalytics_ml in this database, as JSON';
REVOKE ALL ON FUNCTION @extschema@.pgml_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_status() TO pgml_reader;

-- issues 14 and 16: their public functions raise caller errors without a traceback, as the others do.
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

-- issue 15 (what-if predictions): pgml_predict and pgml_predict_json take a scenario (their old two-argument
-- forms are dropped: the new ones answer the same calls), prediction rows say what was assumed and which
-- plan, pgml_predict_sql predicts a statement never run.
ALTER TYPE pganalytics_ml.prediction
    ADD ATTRIBUTE total_cost double precision,
    ADD ATTRIBUTE plan_fingerprint text,
    ADD ATTRIBUTE scenario jsonb,
    ADD ATTRIBUTE recommended_indexes text[],
    ADD ATTRIBUTE optimization_suggestion text;
COMMENT ON TYPE pganalytics_ml.prediction IS 'One prediction as pgml_predict and pgml_predict_sql return it';
DROP FUNCTION @extschema@.pgml_predict_json(bigint, text);
DROP FUNCTION @extschema@.pgml_predict(bigint, text);

-- The lookup and its log line, as the extension owner (callers cannot write the log themselves).
CREATE FUNCTION pganalytics_ml._predict(p_query_hash bigint, p_server_id text)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f        pganalytics_ml.forecasts;
    v_id     bigint;
    v_at     timestamptz := now();
    v_logged boolean := false;
BEGIN
    IF p_query_hash IS NULL OR p_server_id IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN p_query_hash IS NULL THEN 'query_hash' ELSE 'server_id' END
            USING ERRCODE = '22004', HINT = 'Pass pg_stat_statements.queryid of the statement to predict.';
    END IF;
    SELECT * INTO f FROM pganalytics_ml.forecasts fc WHERE fc.server_id = p_server_id AND fc.queryid = p_query_hash;
    IF NOT FOUND THEN
        PERFORM pganalytics_ml._no_forecast(p_server_id, p_query_hash);
    END IF;
    -- A hot standby cannot write the log: the prediction is still answered, marked as not logged.
    IF NOT pg_is_in_recovery() THEN
        INSERT INTO pganalytics_ml.predictions (server_id, queryid, predicted_ms, lower_ms, upper_ms, confidence,
                                                model_id, model_version, source, based_on, forecaster, expert_ms)
        VALUES (f.server_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence,
                f.model_id, f.model_version, f.source, f.based_on, f.forecaster, f.expert_ms)
        RETURNING predictions.prediction_id, predictions.predicted_at INTO v_id, v_at;
        v_logged := true;
    END IF;
    RETURN QUERY SELECT v_id, f.queryid, f.predicted_ms, f.lower_ms, f.upper_ms, f.confidence, f.model_id,
                        f.model_version, f.source, v_at, f.server_id, f.based_on, v_logged,
                        pganalytics_ml._short_query(f.server_id, f.queryid), f.forecaster, pl.total_cost,
                        pl.fingerprint, '{"scenario": "current"}'::jsonb, '{}'::text[], NULL::text
                   FROM (SELECT) one
                   LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = f.server_id AND c.queryid = f.queryid
                   LEFT JOIN pganalytics_ml.plans pl
                          ON pl.server_id = c.server_id AND pl.queryid = c.queryid AND pl.fingerprint = c.fingerprint;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._predict(bigint, text) IS
    'pgml_predict''s lookup of the current forecast and its line in the log, as the extension owner';
REVOKE ALL ON FUNCTION pganalytics_ml._predict(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._predict(bigint, text) TO pgml_reader;

-- pgml_predict and pgml_predict_json run as the caller (SECURITY INVOKER) and pin no search_path: a
-- scenario's index statements are the caller's, resolved and created as the caller would (sql/70_whatif.sql).
-- Every object they name is schema-qualified. Without a scenario they are the lookup above.
CREATE FUNCTION @extschema@.pgml_predict(query_hash bigint, server_id text DEFAULT 'local', scenario jsonb DEFAULT NULL)
RETURNS SETOF pganalytics_ml.prediction
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    IF scenario IS NULL OR scenario OPERATOR(pg_catalog.=) '"current"'::pg_catalog.jsonb
       OR scenario OPERATOR(pg_catalog.=) '{}'::pg_catalog.jsonb THEN
        RETURN QUERY SELECT * FROM pganalytics_ml._predict(pgml_predict.query_hash, pgml_predict.server_id);
    ELSE
        RETURN QUERY SELECT * FROM pganalytics_ml._what_if('pgml_predict', NULL, pgml_predict.query_hash,
                                                            pgml_predict.scenario, pgml_predict.server_id,
                                                            pg_catalog.current_setting('search_path'));
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict(bigint, text, jsonb) IS
    'Predicted mean execution time (ms) of the statement''s next interval, with a 90% interval; logged for '
    'validation. With a scenario (''optimized'', {"indexes": ...}, {"growth": ...}, {"load": ...}): what-if, not logged';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict(bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict(bigint, text, jsonb) TO pgml_reader;

-- Numbers in the document keep every digit whatever the session's extra_float_digits (jsonb prints float8
-- with the session's setting).
CREATE FUNCTION @extschema@.pgml_predict_json(query_hash bigint, server_id text DEFAULT 'local',
                                              scenario jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
VOLATILE PARALLEL UNSAFE
SET extra_float_digits = 1
AS $$
    SELECT pg_catalog.jsonb_build_object(
               'prediction_id', p.prediction_id,
               'query_hash', p.query_hash,
               'query_hash_text', p.query_hash::pg_catalog.text,
               'predicted_execution_time_ms', p.predicted_execution_time_ms,
               'confidence', p.confidence,
               'range', pg_catalog.jsonb_build_object('min', p.lower_bound_ms, 'max', p.upper_bound_ms),
               'model_id', p.model_id,
               'model_version', p.model_version,
               'source', p.source,
               'server_id', p.server_id,
               'logged', p.logged,
               'forecaster', p.forecaster,
               'timestamp', p.predicted_at,
               'scenario', p.scenario,
               'recommended_indexes', pg_catalog.to_jsonb(p.recommended_indexes),
               'optimization_suggestion', p.optimization_suggestion)
      FROM @extschema@.pgml_predict($1, $2, $3) p
$$;
COMMENT ON FUNCTION @extschema@.pgml_predict_json(bigint, text, jsonb) IS
    'pgml_predict as the JSON document the pganalytics Go backend expects (query_hash_text: exact for JavaScript; '
    'recommended_indexes and optimization_suggestion filled for the ''optimized'' scenario)';
REVOKE ALL ON FUNCTION @extschema@.pgml_predict_json(bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_predict_json(bigint, text, jsonb) TO pgml_reader;


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

-- issue 18 (forecast refresh off the push's path): a push queues one coalesced 'forecast' job per server
-- when the pg_cron drain runs (pganalytics_ml.push_forecasts), run_jobs accepts every kind, pgml_status
-- reports the refreshes waiting.
ALTER TABLE pganalytics_ml.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE pganalytics_ml.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'patterns', 'plans',
                                                      'forecast']));

CREATE FUNCTION pganalytics_ml._push_forecast_mode() RETURNS text
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_setting text := pganalytics_ml._setting('push_forecasts', 'auto');
    v_mode    text := lower(btrim(v_setting));
    v_drain   boolean;
BEGIN
    IF v_mode IN ('inline', 'queued') THEN
        RETURN v_mode;
    ELSIF v_mode <> 'auto' THEN
        RAISE EXCEPTION 'the setting pganalytics_ml.push_forecasts must be auto, inline or queued, got %',
            quote_literal(left(v_setting, 40))
            USING ERRCODE = '22023',
                  HINT = 'RESET pganalytics_ml.push_forecasts (auto: queued when the pg_cron drain is scheduled).';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 'inline';
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT FROM cron.job WHERE jobname = ''pganalytics_ml:drain'' AND active'
            ' AND database = current_database())'
       INTO v_drain;
    RETURN CASE WHEN v_drain THEN 'queued' ELSE 'inline' END;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._push_forecast_mode() IS
    'Whether a push refreshes its forecasts itself (inline) or queues a forecast job (queued), '
    'as pganalytics_ml.push_forecasts and the pg_cron drain decide';
REVOKE ALL ON FUNCTION pganalytics_ml._push_forecast_mode() FROM PUBLIC;

CREATE OR REPLACE PROCEDURE pganalytics_ml.run_jobs(max_jobs integer DEFAULT 100, max_seconds integer DEFAULT 50,
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

COMMENT ON FUNCTION @extschema@.pgml_job_enqueue(text, jsonb, integer, interval, interval, timestamptz) IS
    'Queues a job of any kind (train, snapshot, validate, cleanup, sleep, patterns, plans, forecast) with optional '
    'limits and start time';

CREATE OR REPLACE FUNCTION @extschema@.pgml_status() RETURNS jsonb
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pgss_loaded    boolean := current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_stat_statements($|[\s,"])';
    v_pgss_installed boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements');
    v_cron_loaded    boolean := current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_cron($|[\s,"])';
    v_cron_installed boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron');
    v_cron_database  text := current_setting('cron.database_name', true);
    v_problems       text[] := '{}';
    v_dead           bigint := (SELECT count(*) FROM pganalytics_ml.jobs WHERE dead_lettered);
    v_cancelled      bigint := (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'failed' AND cancelled);
    v_scheduled      jsonb := pganalytics_ml._scheduled_jobs();
    v_scheduler      text;
    v_missing        text[];
    v_failing        text[];
    v_last_snapshot  timestamptz := (SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'local');
    -- The expected cadence of snapshots: what pgml_schedule() registered, else its default.
    v_cadence        integer := coalesce((SELECT snapshot_seconds FROM pganalytics_ml.schedule_config), 300);
    -- Forecast jobs queued by pushes (issue 18, sql/42_forecast_queue.sql): at most one waits per server.
    v_forecast_mode  text;
    v_forecast_wait  record;
BEGIN
    BEGIN
        v_forecast_mode := pganalytics_ml._push_forecast_mode();
    EXCEPTION WHEN invalid_parameter_value THEN
        v_forecast_mode := 'invalid setting';
        v_problems := v_problems || ('pganalytics_ml.push_forecasts is not auto, inline or queued: pushes fail until '
                                     'it is RESET')::text;
    END;
    SELECT count(*) AS servers, min(j.created_at) AS oldest INTO v_forecast_wait
      FROM pganalytics_ml.jobs j WHERE j.kind = 'forecast' AND j.status = 'pending';
    IF v_forecast_wait.oldest < now() - interval '10 minutes' THEN
        v_problems := v_problems || format('the forecasts of %s server(s) have waited %s for their refresh: is the job '
                                           'worker running? CALL pganalytics_ml.run_jobs()',
                                           v_forecast_wait.servers, date_trunc('second', now() - v_forecast_wait.oldest));
    END IF;
    IF NOT v_pgss_loaded THEN
        v_problems := v_problems || 'pg_stat_statements is not in shared_preload_libraries'::text;
    ELSIF NOT v_pgss_installed THEN
        v_problems := v_problems || 'the pg_stat_statements extension is not created in this database'::text;
    END IF;
    -- The scheduler: what runs snapshots and drains the queue when nobody calls them.
    IF NOT v_cron_loaded THEN
        v_scheduler := 'none';
        v_problems := v_problems || ('no scheduler: pg_cron is not in shared_preload_libraries, so snapshots and '
                                     'jobs run only when called (pgml_snapshot(), CALL pganalytics_ml.run_jobs())')::text;
    ELSIF NOT v_cron_installed AND v_cron_database = current_database() THEN
        v_scheduler := 'not installed';
        v_problems := v_problems || ('no scheduler: pg_cron is not created in this database (its cron.database_name): '
                                     'CREATE EXTENSION pg_cron; then SELECT * FROM pgml_schedule()')::text;
    ELSIF NOT v_cron_installed THEN
        -- Scheduled from pg_cron's own database, if at all: not visible from here; the snapshot age tells.
        v_scheduler := 'in another database';
    ELSE
        SELECT array_agg(n ORDER BY n) INTO v_missing
          FROM unnest(ARRAY['pganalytics_ml:snapshot', 'pganalytics_ml:drain', 'pganalytics_ml:watchdog']) n
         WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(v_scheduled) j
                            WHERE j->>'job_name' = n AND (j->>'active')::boolean);
        SELECT array_agg(j->>'job_name' ORDER BY j->>'job_name') INTO v_failing
          FROM jsonb_array_elements(v_scheduled) j WHERE j->>'last_run_status' = 'failed';
        v_scheduler := CASE WHEN jsonb_array_length(v_scheduled) = 0 THEN 'unscheduled' ELSE 'scheduled' END;
        IF jsonb_array_length(v_scheduled) = 0 THEN
            v_problems := v_problems || 'unscheduled: no pg_cron job of pganalytics_ml; SELECT * FROM pgml_schedule()'::text;
        ELSIF v_missing IS NOT NULL THEN
            v_problems := v_problems || format('scheduled jobs missing or inactive: %s; SELECT * FROM pgml_schedule()',
                                               array_to_string(v_missing, ', '));
        END IF;
        IF v_failing IS NOT NULL THEN
            v_problems := v_problems || format('the last run of %s failed: see cron.job_run_details',
                                               array_to_string(v_failing, ', '));
        END IF;
    END IF;
    IF v_last_snapshot IS NULL THEN
        v_problems := v_problems || 'no snapshot yet: SELECT * FROM pgml_snapshot() (twice, a while apart), or schedule it'::text;
    ELSIF v_last_snapshot < now() - 3 * v_cadence * interval '1 second' THEN
        v_problems := v_problems || format('the last snapshot is %s old, more than 3 times the expected %s seconds',
                                           date_trunc('second', now() - v_last_snapshot), v_cadence);
    END IF;
    IF v_dead > 0 THEN
        v_problems := v_problems || format('%s dead-lettered job(s): SELECT * FROM pgml_jobs(''dead_lettered'')', v_dead);
    END IF;
    RETURN jsonb_build_object(
        'service', 'pganalytics_ml',
        'status', CASE WHEN cardinality(v_problems) = 0 THEN 'healthy' ELSE 'degraded' END,
        'problems', to_jsonb(v_problems),
        'version', (SELECT extversion FROM pg_extension WHERE extname = 'pganalytics_ml'),
        'database', current_database(),
        'database_connected', true,
        'checked_at', now(),
        'pg_stat_statements', jsonb_build_object('loaded', v_pgss_loaded, 'installed', v_pgss_installed),
        'scheduler', jsonb_build_object(
            'pg_cron_loaded', v_cron_loaded,
            'pg_cron_installed', v_cron_installed,
            'cron_database', v_cron_database,
            'state', v_scheduler,
            'snapshot_seconds', v_cadence,
            'scheduled_jobs', v_scheduled),
        'pending_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'pending'),
        'training_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'training'),
        'running_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'running'),
        -- failed_jobs = dead_lettered_jobs (out of attempts, or past the hard limit) + cancelled_jobs
        'failed_jobs', (SELECT count(*) FROM pganalytics_ml.jobs WHERE status = 'failed'),
        'dead_lettered_jobs', v_dead,
        'cancelled_jobs', v_cancelled,
        -- How pushes refresh forecasts: 'inline' (in the push) or 'queued' (a forecast job per server, drained
        -- by the job worker; until it runs, pgml_predict answers from the previous refresh).
        'forecast_refresh', jsonb_build_object(
            'push_forecasts', v_forecast_mode,
            'servers_waiting', v_forecast_wait.servers,
            'oldest_waiting_since', v_forecast_wait.oldest),
        'active_model', (SELECT jsonb_build_object('model_id', m.model_id, 'server_id', m.server_id,
                                                   'model_type', m.model_type, 'version', m.version,
                                                   'created_at', m.created_at, 'activated_at', m.activated_at,
                                                   'q_error_p90', m.metrics->'q_error_p90')
                           FROM pganalytics_ml.models m WHERE m.is_active AND m.server_id = 'local'),
        'active_models', (SELECT count(*) FROM pganalytics_ml.models WHERE is_active),
        'prediction_accuracy_24h', (
            SELECT jsonb_build_object(
                       'validated', count(*),
                       'mean_accuracy', round(avg(p.accuracy_score)::numeric, 4),
                       'q_error_p50', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY
                           greatest(p.predicted_ms / p.actual_ms, p.actual_ms / p.predicted_ms)))::numeric, 4),
                       'q_error_p90', round((percentile_cont(0.9) WITHIN GROUP (ORDER BY
                           greatest(p.predicted_ms / p.actual_ms, p.actual_ms / p.predicted_ms)))::numeric, 4),
                       'interval_coverage', round(avg(CASE WHEN p.within_interval THEN 1.0 ELSE 0.0 END), 4))
              FROM pganalytics_ml.predictions p
             WHERE p.validated_at > now() - interval '1 day'
               AND NOT EXISTS (SELECT FROM pganalytics_ml.statements s
                                WHERE s.server_id = p.server_id AND s.queryid = p.queryid AND s.is_internal)),
        'regressions', (SELECT count(*) FROM pganalytics_ml.regressions),
        'statements_tracked', (SELECT count(*) FROM pganalytics_ml.statements),
        'servers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'server_id', s.server_id,
                              'statements', (SELECT count(*) FROM pganalytics_ml.statements st
                                              WHERE st.server_id = s.server_id),
                              'snapshots', s.snapshots,
                              'last_snapshot_at', s.last_snapshot_at) ORDER BY s.server_id), '[]')
                      FROM (SELECT server_id, count(*) AS snapshots, max(captured_at) AS last_snapshot_at
                              FROM pganalytics_ml.snapshots GROUP BY server_id) s),
        'last_snapshot_at', v_last_snapshot);
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_status() IS
    'Health and state of pganalytics_ml in this database, as JSON';
REVOKE ALL ON FUNCTION @extschema@.pgml_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_status() TO pgml_reader;

-- issue 18: the regression check computes the server's shift once per capture, not once per statement.
-- issue 12: and it excuses what the statement's own rate of calls explains (forecasting.alarm); a kept bound
-- moves by the change of the server's load level and of that rate since the run began.
CREATE OR REPLACE FUNCTION pganalytics_ml._after_capture(p_server_id text, p_captured_at timestamptz)
RETURNS TABLE (predictions_validated integer, forecasts_checked integer)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
-- Until a new server's rows are analyzed the planner expects one row of each, and nests loops over every
-- pair of its statements (500 statements: 0.3 s; 20,000: minutes). Hash and merge joins cost about the
-- same either way. JIT off too: the disabled path's cost would otherwise trigger it (0.9 s to compile).
SET enable_nestloop = off SET jit = off
AS $$
DECLARE
    v_validated integer;
    v_checked   integer;
BEGIN
    WITH observed AS (
        SELECT p.prediction_id, o.mean_exec_time AS actual
          FROM pganalytics_ml.predictions p
          CROSS JOIN LATERAL (
                SELECT q.mean_exec_time FROM pganalytics_ml.query_stats q
                 WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end > p.based_on
                 ORDER BY q.interval_end LIMIT 1) o
         WHERE p.validated_at IS NULL AND p.server_id = p_server_id
    )
    UPDATE pganalytics_ml.predictions AS pr
       SET actual_ms = o.actual,
           error_percent = abs(pr.predicted_ms - o.actual) / o.actual * 100,
           accuracy_score = greatest(0, 1 - abs(pr.predicted_ms - o.actual) / o.actual),
           within_interval = o.actual BETWEEN pr.lower_ms AND pr.upper_ms,
           validated_at = p_captured_at,
           validated_by = 'observed'
      FROM observed o
     WHERE pr.prediction_id = o.prediction_id AND o.actual > 0;
    GET DIAGNOSTICS v_validated = ROW_COUNT;

    -- The regression alarm. An interval counts against a statement when its mean lies above the alarm
    -- bound: its forecast times exp(3 * the statement's own error scale once the server's load and its own
    -- rate of calls are accounted for; online.SUMS's alarm_scale), at least 1.5 times the forecast (both
    -- set by forecasting.online as forecasts.alarm_upper_ms), moved by what explains a change without a
    -- regression:
    -- - the server's shift, the median log ratio of observed to predicted over its statements (when at
    --   least 5 ran), times the statement's learned sensitivity to load (at least 1 when the server slowed
    --   down: a server-wide slowdown excuses every statement as much as the median one);
    -- - the change of the statement's own log calls per second since the interval the forecast knew, times
    --   its learned elasticity to it (forecasting.alarm: lock waits on a hot row grow with its rate).
    -- While intervals stay above, the bound of the first is kept, so that the forecast learning the new
    -- level cannot hide it; a kept bound moves by the same two excuses counted from the first interval
    -- of the run: the change since then of the server's load level (the median over its statements of
    -- their log mean's distance from their slow average, what the server-load forecaster's sensitivity is
    -- learned on; forecasts that foresaw a cycle do not shift, the level does) and of the statement's
    -- rate. Counted from the start, not chained interval to interval, the kept bound does not drift.
    -- The regressions view shows a statement after two such intervals in a row.
    WITH checked AS (
        SELECT f.queryid, q.interval_start, q.interval_end, q.mean_exec_time AS observed, f.predicted_ms,
               coalesce(f.reference_upper_ms, f.alarm_upper_ms, f.upper_ms) AS reference_upper,
               f.reference_upper_ms IS NOT NULL AS kept, f.reference_upper_ms, f.reference_load, f.reference_rate,
               pg_catalog.ln(greatest(q.mean_exec_time, 1e-9) / greatest(f.predicted_ms, 1e-9)) AS residual,
               pg_catalog.ln(greatest(q.mean_exec_time, 1e-9)) - f.load_mu AS level,
               pg_catalog.ln(q.calls / greatest(extract(epoch FROM q.interval_end - q.interval_start)::float8, 1e-3))
                   AS rate,
               f.rate_log,
               coalesce(s.is_internal, false) AS is_internal,
               -- the statement's learned sensitivity to the server's load (1 until it has learned one) and
               -- its elasticity to its own rate of calls (0 until learned), as forecasting.online stored them
               coalesce(f.load_sensitivity, 1) AS sensitivity,
               coalesce(f.rate_elasticity, 0) AS elasticity
          FROM pganalytics_ml.query_stats q
          JOIN pganalytics_ml.forecasts f ON f.server_id = q.server_id AND f.queryid = q.queryid
          LEFT JOIN pganalytics_ml.statements s ON s.server_id = q.server_id AND s.queryid = q.queryid
         WHERE q.server_id = p_server_id AND q.interval_end = p_captured_at AND f.based_on < q.interval_end
    ), shift AS MATERIALIZED (
        -- Computed once: inlined, the planner may rescan it for every statement checked, a median
        -- over all of them each time (quadratic in the statements that ran).
        SELECT CASE WHEN count(*) >= 5 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY c.residual) ELSE 0 END AS up,
               CASE WHEN count(c.level) >= 5 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY c.level) END AS load
          FROM checked c WHERE NOT c.is_internal
    ), judged AS (
        SELECT c.*, sh.load, x.up,
               c.reference_upper * pg_catalog.exp(
                   CASE WHEN x.up > 0 THEN greatest(c.sensitivity, 1) ELSE c.sensitivity END * x.up
                   + c.elasticity * coalesce(c.rate - CASE WHEN c.kept THEN c.reference_rate ELSE c.rate_log END, 0))
                   AS bound
          FROM checked c CROSS JOIN shift sh
         CROSS JOIN LATERAL (SELECT CASE WHEN NOT c.kept THEN sh.up
                                         ELSE coalesce(sh.load - c.reference_load, 0) END AS up) x
    )
    UPDATE pganalytics_ml.forecasts AS f
       SET checked_interval_end = j.interval_end,
           checked_observed_ms = j.observed,
           checked_predicted_ms = j.predicted_ms,
           checked_upper_ms = j.bound,
           server_shift = j.up,
           consecutive_above = CASE WHEN j.observed > j.bound THEN f.consecutive_above + 1 ELSE 0 END,
           -- kept while above the bound before the excuses (an interval they excused still continues the run,
           -- so that peers adapting faster cannot make a statement look regressed later), with the load level
           -- and the rate of its first interval
           reference_upper_ms = CASE WHEN j.observed > j.reference_upper THEN coalesce(j.reference_upper_ms, j.bound) END,
           reference_load = CASE WHEN j.observed > j.reference_upper
                                 THEN CASE WHEN j.kept THEN j.reference_load ELSE j.load END END,
           reference_rate = CASE WHEN j.observed > j.reference_upper
                                 THEN CASE WHEN j.kept THEN j.reference_rate ELSE j.rate END END,
           above_upper_since = CASE WHEN j.observed > j.bound THEN coalesce(f.above_upper_since, j.interval_start) END
      FROM judged j
     WHERE f.server_id = p_server_id AND f.queryid = j.queryid;
    GET DIAGNOSTICS v_checked = ROW_COUNT;

    -- A statement that has not run in the server's last three captures is no longer running above its bound.
    UPDATE pganalytics_ml.forecasts AS f
       SET above_upper_since = NULL, consecutive_above = 0
     WHERE f.server_id = p_server_id AND f.above_upper_since IS NOT NULL
       AND f.checked_interval_end < (SELECT s.captured_at FROM pganalytics_ml.snapshots s
                                      WHERE s.server_id = p_server_id
                                      ORDER BY s.captured_at DESC OFFSET 2 LIMIT 1);
    RETURN QUERY SELECT v_validated, v_checked;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) IS
    'Validates logged predictions and checks forecasts against the interval a capture just observed';
REVOKE ALL ON FUNCTION pganalytics_ml._after_capture(text, timestamptz) FROM PUBLIC;

-- issue 15 (index recommendations): what pgml_recommend_indexes recommended and predicted, checked when the
-- index appears (sql/74_recommend.sql).
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

-- issue 15 (plan model): the plan model trained by pgml_train, and its figures in the training result.
-- The plan model trained with each model (whatif/plan_model.py): a statement's mean time from its plan, across
-- statements. Signed with the models' key; removed with its model.
CREATE SEQUENCE pganalytics_ml.plan_models_plan_model_id_seq;
CREATE TABLE pganalytics_ml.plan_models (
    plan_model_id    bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pganalytics_ml.plan_models_plan_model_id_seq'),
    model_id         bigint NOT NULL UNIQUE REFERENCES pganalytics_ml.models (model_id) ON DELETE CASCADE,
    server_id        text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    statements       integer NOT NULL,  -- statements with a plan it was trained on
    feature_names    text[] NOT NULL,
    metrics          jsonb NOT NULL,    -- grouped-holdout q-errors of the model and of the cost baseline
    calibration      jsonb NOT NULL,    -- the interval's conformal quantile of absolute log errors
    sklearn_version  text NOT NULL,
    model            bytea NOT NULL,
    signature        bytea NOT NULL
);
ALTER SEQUENCE pganalytics_ml.plan_models_plan_model_id_seq OWNED BY pganalytics_ml.plan_models.plan_model_id;
CREATE INDEX plan_models_server ON pganalytics_ml.plan_models (server_id, plan_model_id);
COMMENT ON TABLE pganalytics_ml.plan_models IS
    'Plan models: a statement''s mean time from its plan, data and load, across statements; pickled and signed, '
    'one per model trained with enough planned statements';
REVOKE ALL ON pganalytics_ml.plan_models FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_models', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_models_plan_model_id_seq', '');

ALTER TYPE pganalytics_ml.training_result
    ADD ATTRIBUTE plan_model_id bigint,
    ADD ATTRIBUTE plan_model_statements integer,
    ADD ATTRIBUTE plan_model_q_error_p50 double precision,
    ADD ATTRIBUTE plan_model_q_error_p90 double precision,
    ADD ATTRIBUTE plan_cost_q_error_p50 double precision,
    ADD ATTRIBUTE plan_cost_q_error_p90 double precision,
    ADD ATTRIBUTE plan_model_note text;
