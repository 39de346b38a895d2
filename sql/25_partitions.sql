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
--   4. moves any rows left in the default partition into day partitions (created for them). With rows
--      to move, the default partition is detached for the move, which locks the parent (captures wait)
--      for as long as the move takes: after an upgrade from 0.2.0, once; otherwise only when rows
--      outside any day partition arrived (captures before the first upkeep, or a collector's late push).
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

-- The default partitions exist from the start (extension members, dumped with their rows); day
-- partitions come with the first upkeep.
CREATE TABLE pganalytics_ml.query_stats_default PARTITION OF pganalytics_ml.query_stats DEFAULT;
SELECT pganalytics_ml._index_history_partition('query_stats', 'query_stats_default');
COMMENT ON TABLE pganalytics_ml.query_stats_default IS
    'Rows of query_stats no day partition holds yet; the clean-up job moves them into day partitions';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.query_stats_default', '');
REVOKE ALL ON pganalytics_ml.query_stats_default FROM PUBLIC;  -- no grants: read through the parent

CREATE TABLE pganalytics_ml.predictions_default PARTITION OF pganalytics_ml.predictions DEFAULT;
SELECT pganalytics_ml._index_history_partition('predictions', 'predictions_default');
COMMENT ON TABLE pganalytics_ml.predictions_default IS
    'Rows of predictions no day partition holds yet; the clean-up job moves them into day partitions';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.predictions_default', '');
REVOKE ALL ON pganalytics_ml.predictions_default FROM PUBLIC;  -- no grants: read through the parent
