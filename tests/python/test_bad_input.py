"""Bad input to every public entry point: NULL, zero, negative, huge, wrong-type text, empty and malformed
JSON, unknown ids and SQL injection each get their SQLSTATE and a message a user understands, and change
nothing anywhere (every table of pganalytics_ml, and cron.job, compared before and after).

The entry points are read from the catalog; one without cases here fails the first test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest

from conftest import Database
from cron_cluster import CRON_DB, cron_cluster
from pgcluster import Cluster
from sample_state import SampleState, sampled_database, table_fingerprints

pytestmark = pytest.mark.integration

# The public functions (in the extension's schema) and the procedures and functions of pganalytics_ml
# that a role may be granted or told to call: everything but the internal _helpers.
ENTRY_POINTS = """
    SELECT DISTINCT p.proname::text
      FROM pg_proc p
      JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
     WHERE p.pronamespace = e.extnamespace
        OR (p.pronamespace = 'pganalytics_ml'::regnamespace AND p.proname NOT LIKE '\\_%')
"""

INJECTION = "x'); DROP TABLE pganalytics_ml.models; --"
INJ = INJECTION.replace("'", "''")  # as a SQL string literal's contents
LONG = "repeat('x', 10000)"
# Errors PostgreSQL raises itself while reading the arguments: its own clear message, no hint.
INPUT_ERRORS = {"22P02", "22003", "22007", "22008", "42883"}

# (call, SQLSTATE or None when the call must succeed and change nothing, a fragment of the message).
# {name} refers to the sample state: {model_id}, {prediction_id}, {queryid}, {completed_job} ...
CASES: list[tuple[str, str | None, str]] = [
    # pgml_ingest_stats(server_id, stats)
    ("SELECT pgml_ingest_stats(NULL, '[]')", "22004", "server_id must not be NULL"),
    ("SELECT pgml_ingest_stats('db-9', NULL)", "22004", "stats must not be NULL"),
    ("SELECT pgml_ingest_stats('db-9', '')", "22P02", "invalid input syntax for type json"),
    ("SELECT pgml_ingest_stats('db-9', '{\"rows\": [')", "22P02", "invalid input syntax for type json"),
    ("SELECT pgml_ingest_stats('db-9', 'calls=5')", "22P02", "invalid input syntax for type json"),
    ("SELECT pgml_ingest_stats('db-9', '{}')", "22023", "stats.rows must be a non-empty array"),
    ("SELECT pgml_ingest_stats('db-9', '[]')", "22023", "stats.rows must be a non-empty array"),
    ("SELECT pgml_ingest_stats('db-9', 'null')", "22023", "not null"),
    ("SELECT pgml_ingest_stats('db-9', '0')", "22023", "not a number"),
    ("SELECT pgml_ingest_stats('db-9', '{\"row\": []}')", "22023", "unknown keys: row"),
    ("SELECT pgml_ingest_stats('db-9', '[7]')", "22023", "stats.rows[0] must be an object, not a number"),
    (
        'SELECT pgml_ingest_stats(\'db-9\', \'[{"queryid": 1, "calls": -1, "total_exec_time": 1}]\')',
        "22023",
        "calls is out of range (-1)",
    ),
    (
        'SELECT pgml_ingest_stats(\'db-9\', \'[{"queryid": 1, "calls": 0, "total_exec_time": 1}, 5]\')',
        "22023",
        "stats.rows[1] must be an object",
    ),
    (
        'SELECT pgml_ingest_stats(\'db-9\', \'[{"queryid": 18446744073709551616, "calls": 1, "total_exec_time": 1}]\')',
        "22023",
        "queryid is out of range",
    ),
    (
        'SELECT pgml_ingest_stats(\'db-9\', \'[{"queryid": 1, "calls": 1, "total_exec_time": 1e300}]\')',
        "22023",
        "total_exec_time must be a number of milliseconds",
    ),
    (
        'SELECT pgml_ingest_stats(\'db-9\', \'[{"queryid": "1; DROP TABLE x", "calls": 1, "total_exec_time": 1}]\')',
        "22023",
        "queryid must be an integer",
    ),
    (f"SELECT pgml_ingest_stats('{INJ}', '[]')", "22023", "invalid server_id"),
    (f"SELECT pgml_ingest_stats({LONG}, '[]')", "22023", "invalid server_id"),
    ("SELECT pgml_ingest_stats('local', '[]')", "22023", "reserved"),
    (
        'SELECT pgml_ingest_stats(\'db-1\', \'{"captured_at": "2000-01-01T00:00:00Z", "rows":'
        ' [{"queryid": 1, "calls": 1, "total_exec_time": 1}]}\')',
        "22023",
        "is not after the last capture",
    ),
    (
        'SELECT pgml_ingest_stats(\'db-9\', \'{"captured_at": "2999-01-01T00:00:00Z", "rows":'
        ' [{"queryid": 1, "calls": 1, "total_exec_time": 1}]}\')',
        "22023",
        "is in the future",
    ),
    # pgml_snapshot(), pgml_status(): no arguments to get wrong
    ("SELECT * FROM pgml_snapshot('now')", "42883", "does not exist"),
    # pgml_capture_plans (more in test_plans.py: pushed plans, a session with temporary objects)
    ("SELECT * FROM pgml_capture_plans(NULL)", "22023", "only_new must be true or false"),
    ("SELECT * FROM pgml_capture_plans('sometimes')", "22P02", "invalid input syntax for type boolean"),
    ("SELECT pgml_status(1)", "42883", "does not exist"),
    # pgml_train(lookback_days, model_type, server_id)
    ("SELECT * FROM pgml_train(NULL)", "22004", "lookback_days must not be NULL"),
    ("SELECT * FROM pgml_train(90, NULL)", "22004", "model_type must not be NULL"),
    ("SELECT * FROM pgml_train(90, 'auto', NULL)", "22004", "server_id must not be NULL"),
    ("SELECT * FROM pgml_train(0)", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_train(-90)", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_train(2147483647)", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_train(99999999999)", "42883", "pgml_train(bigint) does not exist"),
    ("SELECT * FROM pgml_train('ninety')", "22P02", "invalid input syntax for type integer"),
    (f"SELECT * FROM pgml_train(90, '{INJ}')", "22023", "unknown model_type"),
    (f"SELECT * FROM pgml_train(90, {LONG})", "22023", "unknown model_type"),
    (f"SELECT * FROM pgml_train(90, 'auto', '{INJ}')", "22023", "invalid server_id"),
    ("SELECT * FROM pgml_train(90, 'auto', 'db-404')", "P0002", 'no history captured for server "db-404"'),
    ("SELECT * FROM pgml_train(90, 'auto', '')", "22023", "invalid server_id ''"),
    # pgml_train_async(lookback_days, model_type, server_id)
    ("SELECT * FROM pgml_train_async(NULL)", "22004", "lookback_days must not be NULL"),
    ("SELECT * FROM pgml_train_async(90, NULL)", "22004", "model_type must not be NULL"),
    ("SELECT * FROM pgml_train_async(0, 'auto', 'db-1')", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_train_async(-1, 'auto', 'db-1')", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_train_async(2147483647, 'auto', 'db-1')", "22023", "between 1 and 3650"),
    ("SELECT * FROM pgml_train_async('a lot')", "22P02", "invalid input syntax for type integer"),
    (f"SELECT * FROM pgml_train_async(90, '{INJ}')", "22023", "unknown model_type"),
    (f"SELECT * FROM pgml_train_async(90, 'auto', '{INJ}')", "22023", "invalid server_id"),
    (f"SELECT * FROM pgml_train_async(90, 'auto', {LONG})", "22023", "invalid server_id 'xxxx"),
    ("SELECT * FROM pgml_train_async(90, 'auto', 'db-404')", "P0002", 'no history captured for server "db-404"'),
    # pgml_activate_model(model_id)
    ("SELECT * FROM pgml_activate_model(NULL)", "22004", "model_id must not be NULL"),
    ("SELECT * FROM pgml_activate_model(0)", "P0002", "model 0 does not exist"),
    ("SELECT * FROM pgml_activate_model(-1)", "P0002", "model -1 does not exist"),
    ("SELECT * FROM pgml_activate_model(9223372036854775807)", "P0002", "does not exist"),
    ("SELECT * FROM pgml_activate_model('latest')", "22P02", "invalid input syntax for type bigint"),
    ("SELECT * FROM pgml_activate_model('1; DROP TABLE pganalytics_ml.models')", "22P02", "invalid input syntax"),
    # pgml_cleanup_models(keep_count)
    ("SELECT pgml_cleanup_models(NULL)", "22004", "keep_count must not be NULL"),
    ("SELECT pgml_cleanup_models(-1)", "22023", "keep_count must be 0 or more"),
    ("SELECT pgml_cleanup_models(-2147483648)", "22023", "keep_count must be 0 or more"),
    ("SELECT pgml_cleanup_models('99999999999')", "22003", "out of range for type integer"),
    ("SELECT pgml_cleanup_models('all')", "22P02", "invalid input syntax for type integer"),
    # pgml_predict(query_hash, server_id, scenario) and pgml_predict_json
    ("SELECT * FROM pgml_predict(NULL)", "22004", "query_hash must not be NULL"),
    ("SELECT * FROM pgml_predict({queryid}, NULL)", "22004", "server_id must not be NULL"),
    ("SELECT * FROM pgml_predict(0, 'db-1')", "P0002", "unknown query_hash 0"),
    ("SELECT * FROM pgml_predict(-1, 'db-1')", "P0002", "unknown query_hash -1"),
    ("SELECT * FROM pgml_predict(9223372036854775807, 'db-1')", "P0002", "unknown query_hash"),
    ("SELECT * FROM pgml_predict(9223372036854775808)", "42883", "does not exist"),
    ("SELECT * FROM pgml_predict('abc')", "22P02", "invalid input syntax for type bigint"),
    (f"SELECT * FROM pgml_predict({{queryid}}, '{INJ}')", "P0002", "unknown query_hash"),
    (f"SELECT * FROM pgml_predict({{queryid}}, {LONG})", "P0002", "unknown query_hash"),
    ("SELECT pgml_predict_json(NULL)", "22004", "query_hash must not be NULL"),
    ("SELECT pgml_predict_json(12345, 'db-1')", "P0002", "unknown query_hash 12345"),
    ("SELECT pgml_predict_json('12e3')", "22P02", "invalid input syntax for type bigint"),
    (f"SELECT pgml_predict_json({{queryid}}, '{INJ}')", "P0002", "unknown query_hash"),
    # scenarios (more in test_what_if.py)
    ("SELECT * FROM pgml_predict({queryid}, 'db-1', '\"faster\"')", "22023", "unknown scenario"),
    ("SELECT * FROM pgml_predict({queryid}, 'db-1', '{\"growth\": -1}')", "22023", "growth"),
    ("SELECT * FROM pgml_predict({queryid}, 'db-1', '{\"indexes\": \"x\"}')", "22023", "indexes"),
    ("SELECT * FROM pgml_predict({queryid}, 'db-1', '\"optimized\"')", "0A000", "only be planned"),
    ("SELECT * FROM pgml_predict(12345, 'db-1', '{\"load\": 2}')", "P0002", "unknown query_hash 12345"),
    ("SELECT pgml_predict_json({queryid}, 'db-1', '{\"load\": 0}')", "22023", "load"),
    ("SELECT pgml_predict_json(NULL, 'db-1', '{\"load\": 2}')", "22004", "query_hash must not be NULL"),
    # pgml_recommend_indexes(server_id, top_statements, min_speedup, max_indexes) (more in test_recommend.py)
    ("SELECT * FROM pgml_recommend_indexes(NULL)", "22004", "server_id must not be NULL"),
    ("SELECT * FROM pgml_recommend_indexes('local', 0)", "22023", "top_statements"),
    ("SELECT * FROM pgml_recommend_indexes('local', 50, 1.0)", "22023", "min_speedup"),
    ("SELECT * FROM pgml_recommend_indexes('local', 50, 1.5, 0)", "22023", "max_indexes"),
    ("SELECT * FROM pgml_recommend_indexes('db-1')", "0A000", "only for this database"),
    ("SELECT * FROM pgml_recommend_indexes('nowhere')", "P0002", "no history"),
    # pgml_predict_sql(sql, scenario, server_id)
    ("SELECT * FROM pgml_predict_sql(NULL)", "22004", "sql must not be NULL"),
    ("SELECT * FROM pgml_predict_sql('SELEC 1')", "42601", "does not parse"),
    ("SELECT * FROM pgml_predict_sql('SELECT 1; SELECT 2')", "22023", "one statement"),
    ("SELECT * FROM pgml_predict_sql('VACUUM')", "22023", "only statements"),
    ("SELECT * FROM pgml_predict_sql('SELECT * FROM nowhere')", "42P01", "does not plan"),
    ("SELECT * FROM pgml_predict_sql('SELECT 1', NULL)", "22004", "scenario must not be NULL"),
    ("SELECT * FROM pgml_predict_sql('SELECT 1', '[]')", "22023", "unknown scenario"),
    ("SELECT * FROM pgml_predict_sql('SELECT 1', '{}', NULL)", "22004", "server_id must not be NULL"),
    (f"SELECT * FROM pgml_predict_sql('SELECT 1', '{{}}', '{INJ}')", "22023", "invalid server_id"),
    # pgml_detect_patterns(lookback_days, server_id) and its JSON document (more in test_patterns.py)
    ("SELECT * FROM pgml_detect_patterns(NULL, 'db-1')", "22004", "lookback_days"),
    ("SELECT * FROM pgml_detect_patterns(0, 'db-1')", "22023", "lookback_days"),
    ("SELECT * FROM pgml_detect_patterns(7, 'nowhere')", "P0002", "nowhere"),
    ("SELECT pgml_detect_patterns_json(-1, 'db-1')", "22023", "lookback_days"),
    ("SELECT pgml_detect_patterns_json(7, NULL)", "22004", "server_id"),
    # pgml_set_season(period_seconds, server_id, query_hash)
    ("SELECT pgml_set_season(3600, NULL)", "22004", "server_id must not be NULL"),
    ("SELECT pgml_set_season(0, 'db-1')", "22023", "period_seconds must be between"),
    ("SELECT pgml_set_season(-60, 'db-1')", "22023", "period_seconds must be between"),
    ("SELECT pgml_set_season('NaN', 'db-1')", "22023", "period_seconds must be between"),
    ("SELECT pgml_set_season('Infinity', 'db-1')", "22023", "period_seconds must be between"),
    ("SELECT pgml_set_season(3600, 'db-1', 12345)", "P0002", "has no forecast yet"),
    ("SELECT pgml_set_season('hourly', 'db-1')", "22P02", "invalid input syntax for type double precision"),
    # pgml_predict_all(server_id, log)
    ("SELECT * FROM pgml_predict_all(NULL)", "22004", "must not be NULL"),
    ("SELECT * FROM pgml_predict_all('db-1', NULL::boolean)", "22004", "must not be NULL"),
    ("SELECT * FROM pgml_predict_all('db-1', 'maybe')", "22P02", "invalid input syntax for type boolean"),
    (f"SELECT * FROM pgml_predict_all('{INJ}', true)", None, ""),
    # pgml_validate(prediction_id, actual_execution_time_ms)
    ("SELECT * FROM pgml_validate(NULL, 5)", "22004", "prediction_id must not be NULL"),
    ("SELECT * FROM pgml_validate({prediction_id}, NULL)", "22004", "actual_execution_time_ms must not be NULL"),
    ("SELECT * FROM pgml_validate({prediction_id}, 0)", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, -12.5)", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, 'NaN')", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, 'Infinity')", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, '-Infinity')", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, 5e-324)", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, 1e300)", "22023", "positive, finite"),
    ("SELECT * FROM pgml_validate({prediction_id}, 'fast')", "22P02", "invalid input syntax for type double"),
    ("SELECT * FROM pgml_validate(0, 5)", "P0002", "unknown prediction_id 0"),
    ("SELECT * FROM pgml_validate(-1, 5)", "P0002", "unknown prediction_id -1"),
    ("SELECT * FROM pgml_validate(9223372036854775807, 5)", "P0002", "unknown prediction_id"),
    ("SELECT * FROM pgml_validate('1 OR 1=1', 5)", "22P02", "invalid input syntax for type bigint"),
    # pgml_models(server_id): an unknown server has no models
    (f"SELECT * FROM pgml_models('{INJ}')", None, ""),
    ("SELECT * FROM pgml_models(42)", "42883", "does not exist"),
    # pgml_job_status(job_id), pgml_job_retry, pgml_job_cancel
    ("SELECT * FROM pgml_job_status(NULL)", "22004", "job_id must not be NULL"),
    ("SELECT * FROM pgml_job_status('')", "P0002", "unknown job_id"),
    ("SELECT * FROM pgml_job_status('00000000-0000-0000-0000-000000000000')", "P0002", "unknown job_id"),
    (f"SELECT * FROM pgml_job_status('{INJ}')", "P0002", "unknown job_id"),
    (f"SELECT * FROM pgml_job_status({LONG})", "P0002", "unknown job_id"),
    ("SELECT * FROM pgml_job_retry(NULL)", "22004", "job_id must not be NULL"),
    ("SELECT * FROM pgml_job_retry('no-such-job')", "P0002", "unknown job_id"),
    ("SELECT * FROM pgml_job_retry('{completed_job}')", "55000", "only a failed job can be retried"),
    ("SELECT * FROM pgml_job_retry('{pending_job}')", "55000", "only a failed job can be retried"),
    (f"SELECT * FROM pgml_job_retry('{INJ}')", "P0002", "unknown job_id"),
    ("SELECT * FROM pgml_job_cancel(NULL)", "22004", "job_id must not be NULL"),
    ("SELECT * FROM pgml_job_cancel('no-such-job')", "P0002", "unknown job_id"),
    ("SELECT * FROM pgml_job_cancel('{completed_job}')", "55000", "is already completed"),
    ("SELECT * FROM pgml_job_cancel('{failed_job}')", "55000", "is already failed"),
    (f"SELECT * FROM pgml_job_cancel({LONG})", "P0002", "unknown job_id"),
    # pgml_jobs(status, max_rows, details, "limit")
    ("SELECT * FROM pgml_jobs('sleeping')", "22023", "unknown job status"),
    (f"SELECT * FROM pgml_jobs('{INJ}')", "22023", "unknown job status"),
    (f"SELECT * FROM pgml_jobs({LONG})", "22023", "unknown job status"),
    ("SELECT * FROM pgml_jobs(NULL, NULL)", "22004", "max_rows must not be NULL"),
    ("SELECT * FROM pgml_jobs(details => NULL)", "22004", "details must not be NULL"),
    ('SELECT * FROM pgml_jobs("limit" => 0)', "22023", "max_rows must be between 1 and 10000"),
    ("SELECT * FROM pgml_jobs(NULL, 0)", "22023", "max_rows must be between 1 and 10000"),
    ("SELECT * FROM pgml_jobs(NULL, -1)", "22023", "max_rows must be between 1 and 10000"),
    ("SELECT * FROM pgml_jobs(NULL, 2147483647)", "22023", "max_rows must be between 1 and 10000"),
    ("SELECT * FROM pgml_jobs(NULL, 'ten')", "22P02", "invalid input syntax for type integer"),
    # pgml_job_enqueue(kind, arguments, max_attempts, soft_limit, hard_limit, run_at)
    ("SELECT * FROM pgml_job_enqueue(NULL)", "22004", "kind must not be NULL"),
    ("SELECT * FROM pgml_job_enqueue('explode')", "22023", "unknown job kind 'explode'"),
    (f"SELECT * FROM pgml_job_enqueue('{INJ}')", "22023", "unknown job kind"),
    (f"SELECT * FROM pgml_job_enqueue({LONG})", "22023", "unknown job kind"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '')", "22P02", "invalid input syntax for type json"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '{\"seconds\":')", "22P02", "invalid input syntax for type json"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '[]')", "22023", "job arguments must be a JSON object"),
    ("SELECT * FROM pgml_job_enqueue('sleep', 'null')", "22023", "job arguments must be a JSON object"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '\"x\"')", "22023", "job arguments must be a JSON object"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '{\"seconds\": -1}')", "22023", "seconds must be a number"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '{\"seconds\": 1e300}')", "22023", "seconds must be a number"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '{\"seconds\": 5, \"step\": 0}')", "22023", "step must be"),
    ("SELECT * FROM pgml_job_enqueue('sleep', '{\"naps\": 2}')", "22023", "unknown sleep arguments: naps"),
    ("SELECT * FROM pgml_job_enqueue('snapshot', '{\"every\": 5}')", "22023", "a snapshot job takes no arguments"),
    ("SELECT * FROM pgml_job_enqueue('validate', '{\"all\": true}')", "22023", "a validate job takes no arguments"),
    ("SELECT * FROM pgml_job_enqueue('cleanup', '{\"keep\": 1}')", "22023", "unknown clean-up arguments"),
    ("SELECT * FROM pgml_job_enqueue('cleanup', '{\"keep_models\": -1}')", "22023", "keep_models must be"),
    ("SELECT * FROM pgml_job_enqueue('cleanup', '{\"keep_models\": 1e20}')", "22023", "keep_models must be"),
    ("SELECT * FROM pgml_job_enqueue('cleanup', '{\"job_ttl\": \"abc\"}')", "22023", "job_ttl must be a positive"),
    ("SELECT * FROM pgml_job_enqueue('cleanup', '{\"job_ttl\": 7}')", "22023", "job_ttl must be an interval"),
    (
        "SELECT * FROM pgml_job_enqueue('cleanup', '{\"history_retention\": \"-1 day\"}')",
        "22023",
        "history_retention must be a positive",
    ),
    (
        "SELECT * FROM pgml_job_enqueue('cleanup', '{\"prediction_retention\": \"1000000 years\"}')",
        "22023",
        "prediction_retention must be a positive",
    ),
    ("SELECT * FROM pgml_job_enqueue('train', '{\"lookback_days\": 0}')", "22023", "lookback_days must be"),
    ("SELECT * FROM pgml_job_enqueue('train', '{\"lookback_days\": \"90\"}')", "22023", "lookback_days must be"),
    ("SELECT * FROM pgml_job_enqueue('train', '{\"model_type\": \"x''; --\"}')", "22023", "unknown model_type"),
    ("SELECT * FROM pgml_job_enqueue('train', '{\"server_id\": \"db-404\"}')", "P0002", "no history captured"),
    ("SELECT * FROM pgml_job_enqueue('train', '{\"epochs\": 10}')", "22023", "unknown training options"),
    ("SELECT * FROM pgml_job_enqueue('sleep', max_attempts => 0)", "22023", "max_attempts must be between 1 and 100"),
    ("SELECT * FROM pgml_job_enqueue('sleep', max_attempts => -3)", "22023", "max_attempts must be between"),
    ("SELECT * FROM pgml_job_enqueue('sleep', max_attempts => 101)", "22023", "max_attempts must be between"),
    ("SELECT * FROM pgml_job_enqueue('sleep', max_attempts => 2147483647)", "22023", "max_attempts must be"),
    ("SELECT * FROM pgml_job_enqueue('sleep', max_attempts => 'three')", "22P02", "invalid input syntax"),
    ("SELECT * FROM pgml_job_enqueue('sleep', soft_limit => '-1 s')", "22023", "time limits must be positive"),
    ("SELECT * FROM pgml_job_enqueue('sleep', soft_limit => '0')", "22023", "time limits must be positive"),
    (
        "SELECT * FROM pgml_job_enqueue('sleep', soft_limit => 'soon')",
        "22007",
        "invalid input syntax for type interval",
    ),
    ("SELECT * FROM pgml_job_enqueue('sleep', soft_limit => '5 min', hard_limit => '1 min')", "22023", "at most"),
    ("SELECT * FROM pgml_job_enqueue('sleep', hard_limit => '8 days')", "22023", "at most 7 days"),
    (
        "SELECT * FROM pgml_job_enqueue('sleep', soft_limit => '999999 years', hard_limit => '1000000 years')",
        "22023",
        "at most 7 days",
    ),
    ("SELECT * FROM pgml_job_enqueue('sleep', run_at => 'infinity')", "22023", "run_at must be a finite time"),
    ("SELECT * FROM pgml_job_enqueue('sleep', run_at => '-infinity')", "22023", "run_at must be a finite time"),
    ("SELECT * FROM pgml_job_enqueue('sleep', run_at => 'whenever')", "22007", "invalid input syntax"),
    # pgml_schedule and pgml_unschedule without pg_cron in the database (their arguments: CRON_CASES)
    ("SELECT * FROM pgml_schedule()", "55000", "pg_cron is not installed"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 0)", "55000", "pg_cron is not installed"),
    ("SELECT * FROM pgml_unschedule()", "55000", "pg_cron is not installed"),
    # the worker procedures and the watchdog
    ("CALL pganalytics_ml.run_jobs(max_jobs => NULL)", "22004", "max_jobs must not be NULL"),
    ("CALL pganalytics_ml.run_jobs(max_jobs => 0)", "22023", "max_jobs must be at least 1"),
    ("CALL pganalytics_ml.run_jobs(max_jobs => -5)", "22023", "max_jobs must be at least 1"),
    ("CALL pganalytics_ml.run_jobs(max_seconds => NULL)", "22004", "max_seconds must not be NULL"),
    ("CALL pganalytics_ml.run_jobs(max_seconds => -1)", "22023", "max_seconds must be 0 or more"),
    ("CALL pganalytics_ml.run_jobs(kinds => '{explode}')", "22023", "unknown job kinds"),
    (f"CALL pganalytics_ml.run_jobs(kinds => ARRAY['{INJ}'])", "22023", "unknown job kinds"),
    ("CALL pganalytics_ml.run_jobs(kinds => '{NULL}')", "22023", "no NULL"),
    ("CALL pganalytics_ml.run_jobs(kinds => '{}')", "22023", "at least one job kind"),
    ("CALL pganalytics_ml.run_jobs(max_jobs => 'many')", "22P02", "invalid input syntax for type integer"),
    ("CALL pganalytics_ml.run_snapshots(NULL)", "22004", "every_seconds must not be NULL"),
    ("CALL pganalytics_ml.run_snapshots(0)", "22023", "every_seconds must be between 1 and 3600"),
    ("CALL pganalytics_ml.run_snapshots(-10)", "22023", "every_seconds must be between 1 and 3600"),
    ("CALL pganalytics_ml.run_snapshots(2147483647)", "22023", "every_seconds must be between 1 and 3600"),
    ("CALL pganalytics_ml.run_snapshots(10, NULL)", "22004", "within_seconds must not be NULL"),
    ("CALL pganalytics_ml.run_snapshots(10, -1)", "22023", "within_seconds must be between 0 and 3600"),
    ("CALL pganalytics_ml.run_snapshots(10, 3601)", "22023", "within_seconds must be between 0 and 3600"),
    ("SELECT * FROM pganalytics_ml.rescue_jobs(true)", "42883", "does not exist"),
]

# pgml_schedule's arguments, where pg_cron is installed and a schedule is already registered.
CRON_CASES: list[tuple[str, str | None, str]] = [
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 0)", "22023", "snapshot_seconds must divide a minute"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => -60)", "22023", "snapshot_seconds must divide a minute"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 7)", "22023", "snapshot_seconds must divide a minute"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 90)", "22023", "snapshot_seconds must divide a minute"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 7200)", "22023", "snapshot_seconds must divide a minute"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 2147483647)", "22023", "snapshot_seconds must divide"),
    ("SELECT * FROM pgml_schedule(snapshot_seconds => 'often')", "22P02", "invalid input syntax for type integer"),
    ("SELECT * FROM pgml_schedule(retrain_schedule => '61 * * * *')", "22023", "retrain_schedule is not a schedule"),
    ("SELECT * FROM pgml_schedule(retrain_schedule => '')", "22023", "retrain_schedule is not a schedule"),
    ("SELECT * FROM pgml_schedule(retrain_schedule => 'every night')", "22023", "retrain_schedule is not a"),
    (
        "SELECT * FROM pgml_schedule(retrain_schedule => '0 3 * * *''); DELETE FROM cron.job; --')",
        "22023",
        "retrain_schedule is not a schedule",
    ),
    (f"SELECT * FROM pgml_schedule(cleanup_schedule => {LONG})", "22023", "cleanup_schedule is not a schedule"),
    ("SELECT * FROM pgml_schedule(retrain_lookback_days => 0)", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_schedule(retrain_lookback_days => -1)", "22023", "lookback_days must be between"),
    ("SELECT * FROM pgml_schedule(retrain_lookback_days => 99999)", "22023", "lookback_days must be between"),
    ("SELECT * FROM pgml_schedule(retrain_model_type => 'deep_learning')", "22023", "unknown model_type"),
    (f"SELECT * FROM pgml_schedule(retrain_model_type => '{INJ}')", "22023", "unknown model"),
    ("SELECT * FROM pgml_schedule(job_ttl => '-1 day')", "22023", "must be positive"),
    ("SELECT * FROM pgml_schedule(job_ttl => '0')", "22023", "must be positive"),
    ("SELECT * FROM pgml_schedule(job_ttl => '1000 years')", "22023", "at most 100 years"),
    ("SELECT * FROM pgml_schedule(job_ttl => 'a week')", "22007", "invalid input syntax for type interval"),
    ("SELECT * FROM pgml_schedule(prediction_retention => '-30 days')", "22023", "must be positive"),
    ("SELECT * FROM pgml_schedule(history_retention => '0 s')", "22023", "must be positive"),
    ("SELECT * FROM pgml_schedule(keep_models => -1)", "22023", "keep_models must be from 0 to 1000000"),
    ("SELECT * FROM pgml_schedule(keep_models => 1000001)", "22023", "keep_models must be from 0 to 1000000"),
    ("SELECT * FROM pgml_unschedule('pganalytics_ml:drain')", "42883", "does not exist"),
]


def function_of(call: str) -> str:
    return re.match(r"(?:SELECT (?:\* FROM )?|CALL )(?:pganalytics_ml\.)?(\w+)\(", call).group(1)


def with_ids(call: str, ids: dict) -> str:
    """``call`` with {model_id} and the like replaced (other braces, as in JSON or arrays, stay)."""
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), m.group(0))), call)


def assert_understandable(err: psycopg.Error) -> None:
    message = err.diag.message_primary or ""
    assert message and len(message) <= 300, message
    assert not re.search(r"Traceback|spiexceptions|\bNone\b|NoneType|\w+Error\b", message), message
    if err.sqlstate not in INPUT_ERRORS:
        assert err.diag.message_hint, f"no hint with: {message}"


def check_case(
    conn: psycopg.Connection, call: str, sqlstate: str | None, fragment: str, extra: tuple[str, ...] = ()
) -> None:
    before = table_fingerprints(conn, extra)
    if sqlstate is None:
        conn.execute(call)
    else:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(call)
        err = caught.value
        assert (err.sqlstate, fragment in (err.diag.message_primary or "")) == (sqlstate, True), (
            err.sqlstate,
            err.diag.message_primary,
        )
        assert_understandable(err)
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the session survived
    assert table_fingerprints(conn, extra) == before


@pytest.fixture(scope="module")
def sample(cluster: Cluster, template: str) -> Iterator[tuple[psycopg.Connection, SampleState]]:
    with sampled_database(cluster, template) as sampled:
        yield sampled


@pytest.fixture(scope="module")
def scheduled() -> Iterator[psycopg.Connection]:
    with cron_cluster("pganalytics_ml-bad-input") as pg, pg.connect(CRON_DB) as conn:
        conn.execute("SELECT * FROM pgml_schedule(snapshot_seconds => 600, keep_models => 4)")
        conn.execute("UPDATE cron.job SET active = false")  # registered, but no tick changes anything meanwhile
        yield conn


def test_every_entry_point_has_bad_input_cases(db: Database):
    entry_points = {r[0] for r in db.all(ENTRY_POINTS)}
    covered = {function_of(call) for call, *_ in CASES + CRON_CASES}
    assert entry_points - covered == set(), "entry points without bad-input cases"
    assert covered - entry_points == set(), "cases for functions that do not exist"


@pytest.mark.parametrize(("call", "sqlstate", "fragment"), CASES, ids=[c[0][:70] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(sample, call: str, sqlstate: str | None, fragment: str):
    conn, state = sample
    check_case(conn, with_ids(call, state.ids()), sqlstate, fragment)


@pytest.mark.parametrize(("call", "sqlstate", "fragment"), CRON_CASES, ids=[c[0][:70] for c in CRON_CASES])
def test_bad_schedules_are_refused_and_change_nothing(scheduled, call: str, sqlstate: str | None, fragment: str):
    check_case(scheduled, call, sqlstate, fragment, extra=("cron.job",))


def test_the_sample_state_is_what_the_cases_assume(sample):
    conn, state = sample
    statuses = dict(
        conn.execute(
            "SELECT job_id, status FROM pganalytics_ml.jobs WHERE job_id = ANY (%s)",
            ([state.completed_job, state.failed_job, state.pending_job],),
        ).fetchall()
    )
    assert statuses == {state.completed_job: "completed", state.failed_job: "failed", state.pending_job: "pending"}
    assert conn.execute("SELECT is_active FROM pganalytics_ml.models WHERE model_id = %s", (state.model_id,)).fetchone()
    assert conn.execute(
        "SELECT count(*) FROM pganalytics_ml.predictions WHERE prediction_id = %s", (state.prediction_id,)
    ).fetchone() == (1,)
