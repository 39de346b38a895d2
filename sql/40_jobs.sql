-- Durable jobs: a job is a row. Workers claim rows with FOR UPDATE SKIP LOCKED and hold a session
-- advisory lock on each job they run, so a job whose worker died is recognized by its free lock.

CREATE SEQUENCE pganalytics_ml.jobs_job_seq;
CREATE TABLE pganalytics_ml.jobs (
    job_id           text PRIMARY KEY DEFAULT CAST(pg_catalog.gen_random_uuid() AS pg_catalog.text),
    job_seq          bigint NOT NULL UNIQUE DEFAULT pg_catalog.nextval('pganalytics_ml.jobs_job_seq'),
    kind             text NOT NULL
                     CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['train', 'snapshot', 'validate', 'cleanup', 'sleep', 'patterns', 'plans',
                                                      'forecast'])),
    arguments        jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'training', 'running', 'completed', 'failed'])),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    run_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    soft_limit       interval NOT NULL,
    hard_limit       interval NOT NULL,
    backoff_base     interval NOT NULL,
    backoff_cap      interval NOT NULL,
    worker_pid       integer,
    progress         jsonb,
    result           jsonb,
    error            text,
    errors           jsonb NOT NULL DEFAULT '[]',
    dead_lettered    boolean NOT NULL DEFAULT false,
    cancel_requested boolean NOT NULL DEFAULT false,
    cancelled        boolean NOT NULL DEFAULT false,
    CHECK (max_attempts OPERATOR(pg_catalog.>=) 1)
);
ALTER SEQUENCE pganalytics_ml.jobs_job_seq OWNED BY pganalytics_ml.jobs.job_seq;
CREATE INDEX jobs_ready ON pganalytics_ml.jobs (run_at, job_seq) WHERE status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX jobs_active ON pganalytics_ml.jobs (job_seq)
    WHERE status OPERATOR(pg_catalog.=) ANY (ARRAY['training', 'running']);
CREATE INDEX jobs_finished ON pganalytics_ml.jobs (completed_at);
COMMENT ON TABLE pganalytics_ml.jobs IS
    'The job queue: training and upkeep work, with attempts, errors, progress and results';
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.jobs_job_seq', '');

-- The advisory lock a worker holds on its job: the first key is pganalytics_ml's namespace ('pgml' as
-- four bytes), the second the job's sequence number.
CREATE FUNCTION pganalytics_ml._job_lock_key(p_job_seq bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (p_job_seq % 2147483647)::integer $$;
COMMENT ON FUNCTION pganalytics_ml._job_lock_key(bigint) IS 'Second key of the advisory lock a worker holds on a job';
REVOKE ALL ON FUNCTION pganalytics_ml._job_lock_key(bigint) FROM PUBLIC;

-- Defaults come from settings (postgresql.conf, ALTER DATABASE/ROLE ... SET) and fall back to the
-- old service's values: hard limit 10 minutes, soft 9, three attempts, backoff 10 s doubling to 10 min.
CREATE FUNCTION pganalytics_ml._setting(p_name text, p_default text) RETURNS text
LANGUAGE sql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(current_setting('pganalytics_ml.' || p_name, true), ''), p_default) $$;
COMMENT ON FUNCTION pganalytics_ml._setting(text, text) IS 'A pganalytics_ml.* setting, or its default';
REVOKE ALL ON FUNCTION pganalytics_ml._setting(text, text) FROM PUBLIC;

CREATE FUNCTION pganalytics_ml._enqueue(
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

-- Finds jobs whose worker is gone (its advisory lock is free: the backend died or the server restarted)
-- and returns them to pending with the attempt counted, or dead-letters them when out of attempts; then
-- enforces hard time limits on live workers by terminating their backends. Every drain runs it first.
-- SECURITY DEFINER so that pgml_admin may run it; it terminates only backends that hold a job.
CREATE FUNCTION pganalytics_ml.rescue_jobs()
RETURNS TABLE (requeued integer, dead_lettered integer, terminated integer)
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job        pganalytics_ml.jobs;
    v_requeued   integer := 0;
    v_dead       integer := 0;
    v_terminated integer := 0;
    v_reason     text;
BEGIN
    FOR v_job IN
        SELECT * FROM pganalytics_ml.jobs
         WHERE status IN ('training', 'running')
         ORDER BY job_seq
           FOR UPDATE SKIP LOCKED
    LOOP
        IF pg_try_advisory_xact_lock(1886218604, pganalytics_ml._job_lock_key(v_job.job_seq)) THEN
            v_reason := format('attempt %s lost its worker (backend %s ended without finishing the job)',
                               v_job.attempts, v_job.worker_pid);
            IF v_job.attempts >= v_job.max_attempts THEN
                UPDATE pganalytics_ml.jobs
                   SET status = 'failed', dead_lettered = true, completed_at = now(), updated_at = now(),
                       worker_pid = NULL, error = v_reason,
                       errors = errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', v_reason)
                 WHERE job_id = v_job.job_id;
                v_dead := v_dead + 1;
            ELSE
                UPDATE pganalytics_ml.jobs
                   SET status = 'pending', run_at = now(), updated_at = now(), worker_pid = NULL, error = v_reason,
                       errors = errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', v_reason)
                 WHERE job_id = v_job.job_id;
                v_requeued := v_requeued + 1;
            END IF;
        ELSIF v_job.started_at + v_job.hard_limit < now() THEN
            v_reason := format('hard time limit of %s exceeded; the worker (backend %s) was terminated',
                               v_job.hard_limit, v_job.worker_pid);
            UPDATE pganalytics_ml.jobs
               SET status = 'failed', dead_lettered = true, completed_at = now(), updated_at = now(),
                   error = v_reason,
                   errors = errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', v_reason)
             WHERE job_id = v_job.job_id;
            PERFORM pg_terminate_backend(v_job.worker_pid);
            v_terminated := v_terminated + 1;
        END IF;
    END LOOP;
    RETURN QUERY SELECT v_requeued, v_dead, v_terminated;
END
$$;
COMMENT ON FUNCTION pganalytics_ml.rescue_jobs() IS
    'Requeues (or dead-letters) jobs whose worker died, and terminates workers past their hard time limit';
REVOKE ALL ON FUNCTION pganalytics_ml.rescue_jobs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml.rescue_jobs() TO pgml_admin;

-- Claims the next ready job for this backend: the status change and the advisory lock are taken in the
-- caller's transaction, which the worker commits before the work starts.
CREATE FUNCTION pganalytics_ml._claim_job(p_kinds text[] DEFAULT NULL)
RETURNS SETOF pganalytics_ml.jobs
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job pganalytics_ml.jobs;
BEGIN
    SELECT * INTO v_job FROM pganalytics_ml.jobs
     WHERE status = 'pending' AND run_at <= now() AND (p_kinds IS NULL OR kind = ANY (p_kinds))
     ORDER BY run_at, job_seq
     LIMIT 1
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_lock(1886218604, pganalytics_ml._job_lock_key(v_job.job_seq));
    RETURN QUERY
    UPDATE pganalytics_ml.jobs
       SET status = CASE WHEN kind = 'train' THEN 'training' ELSE 'running' END,
           attempts = attempts + 1, started_at = now(), updated_at = now(), worker_pid = pg_backend_pid(),
           progress = jsonb_build_object('phase', 'starting', 'percent', 0, 'at', now())
     WHERE job_id = v_job.job_id
    RETURNING *;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._claim_job(text[]) IS 'Claims the next ready job (SKIP LOCKED) for this backend';
REVOKE ALL ON FUNCTION pganalytics_ml._claim_job(text[]) FROM PUBLIC;

-- The outcome of an attempt. Only the backend that holds the job may record it.
CREATE FUNCTION pganalytics_ml._finish_job(p_job_id text, p_result jsonb, p_error text, p_retry boolean)
RETURNS pganalytics_ml.jobs
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job pganalytics_ml.jobs;
BEGIN
    SELECT * INTO v_job FROM pganalytics_ml.jobs
     WHERE job_id = p_job_id AND status IN ('training', 'running') AND worker_pid = pg_backend_pid()
       FOR UPDATE;
    IF NOT FOUND THEN  -- the watchdog already failed it (hard limit)
        PERFORM pg_advisory_unlock(1886218604, pganalytics_ml._job_lock_key(j.job_seq))
           FROM pganalytics_ml.jobs j WHERE j.job_id = p_job_id;
        RETURN NULL;
    END IF;
    IF p_error IS NULL THEN
        UPDATE pganalytics_ml.jobs
           SET status = 'completed', result = p_result, completed_at = now(), updated_at = now(), worker_pid = NULL,
               error = NULL, progress = jsonb_build_object('phase', 'done', 'percent', 100, 'at', now())
         WHERE job_id = p_job_id
        RETURNING * INTO v_job;
    ELSIF p_retry AND NOT v_job.cancel_requested AND v_job.attempts < v_job.max_attempts THEN
        UPDATE pganalytics_ml.jobs
           SET status = 'pending', updated_at = now(), worker_pid = NULL, error = p_error,
               run_at = now() + least(backoff_cap, backoff_base * power(2, least(attempts - 1, 20))),
               errors = errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', p_error)
         WHERE job_id = p_job_id
        RETURNING * INTO v_job;
    ELSE
        UPDATE pganalytics_ml.jobs
           SET status = 'failed', completed_at = now(), updated_at = now(), worker_pid = NULL, error = p_error,
               cancelled = cancel_requested,
               dead_lettered = NOT cancel_requested,
               errors = errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', p_error)
         WHERE job_id = p_job_id
        RETURNING * INTO v_job;
    END IF;
    PERFORM pg_advisory_unlock(1886218604, pganalytics_ml._job_lock_key(v_job.job_seq));
    RETURN v_job;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._finish_job(text, jsonb, text, boolean) IS
    'Records an attempt''s result or error: completed, retried with backoff, or failed (dead-lettered)';
REVOKE ALL ON FUNCTION pganalytics_ml._finish_job(text, jsonb, text, boolean) FROM PUBLIC;

-- What pgml_job_status and pgml_jobs return.
CREATE TYPE pganalytics_ml.job_status AS (
    job_id        text,
    kind          text,
    status        text,
    created_at    timestamptz,
    updated_at    timestamptz,
    started_at    timestamptz,
    completed_at  timestamptz,
    attempts      integer,
    max_attempts  integer,
    next_run_at   timestamptz,
    error         text,
    result        jsonb,
    progress      jsonb,
    dead_lettered boolean,
    cancelled     boolean,
    arguments     jsonb,
    errors        jsonb
);
COMMENT ON TYPE pganalytics_ml.job_status IS 'One job as pgml_job_status and pgml_jobs return it';

CREATE FUNCTION pganalytics_ml._job_status(j pganalytics_ml.jobs) RETURNS pganalytics_ml.job_status
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(j.job_id, j.kind, j.status, j.created_at, j.updated_at, j.started_at, j.completed_at, j.attempts,
               j.max_attempts, CASE WHEN j.status = 'pending' THEN j.run_at END, j.error, j.result, j.progress,
               j.dead_lettered, j.cancelled, j.arguments, j.errors)::pganalytics_ml.job_status
$$;
COMMENT ON FUNCTION pganalytics_ml._job_status(pganalytics_ml.jobs) IS 'A jobs row as the public job_status';
REVOKE ALL ON FUNCTION pganalytics_ml._job_status(pganalytics_ml.jobs) FROM PUBLIC;

CREATE FUNCTION @extschema@.pgml_job_status(job_id text)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pgml_job_status.job_id IS NULL THEN
        RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = '22004',
            HINT = 'Pass the job_id pgml_train_async() returned.';
    END IF;
    RETURN QUERY SELECT (pganalytics_ml._job_status(j)).* FROM pganalytics_ml.jobs j
                  WHERE j.job_id = pgml_job_status.job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown job_id %', pg_catalog.left(pgml_job_status.job_id, 100) USING ERRCODE = 'P0002',
            HINT = 'SELECT * FROM pgml_jobs() lists the jobs; finished jobs are removed after their time to live.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_job_status(text) IS
    'State of one job: status, timestamps, attempts, errors, live progress and, when completed, the result';
REVOKE ALL ON FUNCTION @extschema@.pgml_job_status(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_job_status(text) TO pgml_reader;

-- A job as the listing shows it by default: narrow enough to read in psql. The latest error cut to 120
-- characters, the result without its nested parts (feature importance, candidates), text arguments cut
-- to 40 characters, no error history;
-- pgml_jobs(details => true) and pgml_job_status() show everything.
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

-- "limit" is a reserved word, so the argument is max_rows; "limit" stays, last, for calls that quote it.
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

-- The job a retry or cancel acts on, locked; unknown or NULL ids get their errors here.
CREATE FUNCTION pganalytics_ml._lock_job(p_job_id text) RETURNS pganalytics_ml.jobs
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job pganalytics_ml.jobs;
BEGIN
    IF p_job_id IS NULL THEN
        RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = '22004',
            HINT = 'Pass the job_id pgml_train_async() or pgml_job_enqueue() returned.';
    END IF;
    SELECT * INTO v_job FROM pganalytics_ml.jobs j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown job_id %', pg_catalog.left(p_job_id, 100) USING ERRCODE = 'P0002',
            HINT = 'SELECT * FROM pgml_jobs() lists the jobs; finished jobs are removed after their time to live.';
    END IF;
    RETURN v_job;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._lock_job(text) IS 'Locks a job row for retry or cancel, or explains why not';
REVOKE ALL ON FUNCTION pganalytics_ml._lock_job(text) FROM PUBLIC;

CREATE FUNCTION @extschema@.pgml_job_retry(job_id text)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job pganalytics_ml.jobs;
BEGIN
    v_job := pganalytics_ml._lock_job(pgml_job_retry.job_id);
    IF v_job.status <> 'failed' THEN
        RAISE EXCEPTION 'job % is %, only a failed job can be retried', v_job.job_id, v_job.status
            USING ERRCODE = '55000', HINT = 'Pending and running jobs need no retry; completed jobs are done.';
    END IF;
    UPDATE pganalytics_ml.jobs j
       SET status = 'pending', attempts = 0, run_at = now(), updated_at = now(), completed_at = NULL,
           dead_lettered = false, cancelled = false, cancel_requested = false, progress = NULL
     WHERE j.job_id = v_job.job_id
    RETURNING * INTO v_job;
    RETURN QUERY SELECT (pganalytics_ml._job_status(v_job)).*;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_job_retry(text) IS
    'Requeues a failed or dead-lettered job with a fresh set of attempts (its error history is kept)';
REVOKE ALL ON FUNCTION @extschema@.pgml_job_retry(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_job_retry(text) TO pgml_admin;

CREATE FUNCTION @extschema@.pgml_job_cancel(job_id text)
RETURNS SETOF pganalytics_ml.job_status
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job pganalytics_ml.jobs;
BEGIN
    v_job := pganalytics_ml._lock_job(pgml_job_cancel.job_id);
    IF v_job.status IN ('completed', 'failed') THEN
        RAISE EXCEPTION 'job % is already %', v_job.job_id, v_job.status
            USING ERRCODE = '55000', HINT = 'Only pending and running jobs can be cancelled.';
    END IF;
    IF v_job.status = 'pending' THEN
        UPDATE pganalytics_ml.jobs j
           SET status = 'failed', cancelled = true, cancel_requested = true, completed_at = now(), updated_at = now(),
               error = 'cancelled before it ran'
         WHERE j.job_id = v_job.job_id
        RETURNING * INTO v_job;
    ELSE
        -- The worker stops at its next checkpoint; cancelling its statement also stops SQL that never checks.
        UPDATE pganalytics_ml.jobs j SET cancel_requested = true, updated_at = now()
         WHERE j.job_id = v_job.job_id
        RETURNING * INTO v_job;
        PERFORM pg_cancel_backend(v_job.worker_pid);
    END IF;
    RETURN QUERY SELECT (pganalytics_ml._job_status(v_job)).*;
END
$$;
COMMENT ON FUNCTION @extschema@.pgml_job_cancel(text) IS
    'Cancels a job: a pending one never runs, a running one stops at its next checkpoint';
REVOKE ALL ON FUNCTION @extschema@.pgml_job_cancel(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pgml_job_cancel(text) TO pgml_admin;

-- Retention: finished jobs past their time to live, old predictions, and history beyond its window
-- (the latest capture of each server is kept: the next one computes its deltas against it).
-- Predictions and query_stats are retired by whole day partitions, which are not read, so their rows
-- are not counted: predictions and query_stats count only the rows deleted from the default partitions.
-- The same upkeep creates the coming days' partitions (sql/25_partitions.sql).
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
