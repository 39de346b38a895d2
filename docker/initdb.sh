#!/usr/bin/env bash
# First start of the Docker image: pganalytics_ml and its pg_cron schedules in the default database.
#
# The official postgres entrypoint runs the scripts in /docker-entrypoint-initdb.d once, on an empty
# data directory, against a temporary server on the local socket, with POSTGRES_USER (the superuser
# initdb created) and POSTGRES_DB (created just before) exported. This script needs nothing more than
# those two and psql, so it runs the same way against any server (tests/python/test_docker_init.py).
set -Eeuo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname "$POSTGRES_DB" <<'SQL'
DO $check$
BEGIN
    IF current_setting('cron.database_name', true) IS DISTINCT FROM current_database() THEN
        RAISE EXCEPTION 'cron.database_name is %, but pganalytics_ml is being set up in database %',
            coalesce(current_setting('cron.database_name', true), 'not set (pg_cron is not loaded)'),
            current_database()
            USING ERRCODE = '55000',
                  HINT = 'Start the image with its own entrypoint, which sets cron.database_name to POSTGRES_DB.';
    END IF;
END
$check$;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE EXTENSION IF NOT EXISTS hypopg;
CREATE EXTENSION IF NOT EXISTS pganalytics_ml CASCADE;
SELECT job_name, schedule, command FROM pgml_schedule();
-- The baseline capture: the first interval ends at the next scheduled snapshot, and pgml_status() has
-- no "no snapshot yet" to report.
SELECT captured_at, statements FROM pgml_snapshot();
SQL
