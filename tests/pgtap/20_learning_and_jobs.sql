-- Privileges of the learning loop and the job queue: who may predict, train, manage models and jobs.
BEGIN;
SELECT plan(46);

SELECT function_privs_are('public', 'pgml_predict', ARRAY['bigint', 'text', 'jsonb'], 'pgml_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_predict_json', ARRAY['bigint', 'text', 'jsonb'], 'pgml_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_predict_all', ARRAY['text', 'boolean'], 'pgml_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_models', ARRAY['text'], 'pgml_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_job_status', ARRAY['text'], 'pgml_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_jobs', ARRAY['text', 'integer', 'boolean', 'integer'], 'pgml_reader', ARRAY['EXECUTE']);

SELECT function_privs_are('public', 'pgml_train', ARRAY['integer', 'text', 'text'], 'pgml_reader', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_train', ARRAY['integer', 'text', 'text'], 'pgml_trainer', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_train_async', ARRAY['integer', 'text', 'text'], 'pgml_reader', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_train_async', ARRAY['integer', 'text', 'text'], 'pgml_trainer', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_validate', ARRAY['bigint', 'double precision'], 'pgml_reader', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_validate', ARRAY['bigint', 'double precision'], 'pgml_trainer', ARRAY['EXECUTE']);

SELECT function_privs_are('public', 'pgml_activate_model', ARRAY['bigint'], 'pgml_trainer', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_activate_model', ARRAY['bigint'], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_cleanup_models', ARRAY['integer'], 'pgml_trainer', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_cleanup_models', ARRAY['integer'], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_job_retry', ARRAY['text'], 'pgml_trainer', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_job_retry', ARRAY['text'], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_job_cancel', ARRAY['text'], 'pgml_trainer', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_job_cancel', ARRAY['text'], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_job_enqueue',
    ARRAY['text', 'jsonb', 'integer', 'interval', 'interval', 'timestamp with time zone'], 'pgml_trainer', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_job_enqueue',
    ARRAY['text', 'jsonb', 'integer', 'interval', 'interval', 'timestamp with time zone'], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_schedule',
    ARRAY['integer', 'text', 'integer', 'text', 'text', 'interval', 'integer', 'interval', 'interval'],
    'pgml_trainer', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_schedule',
    ARRAY['integer', 'text', 'integer', 'text', 'text', 'interval', 'integer', 'interval', 'interval'],
    'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_unschedule', ARRAY[]::name[], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('pganalytics_ml', 'rescue_jobs', ARRAY[]::name[], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('pganalytics_ml', 'rescue_jobs', ARRAY[]::name[], 'pgml_trainer', ARRAY[]::text[]);

SELECT is_definer('pganalytics_ml', '_predict', ARRAY['bigint', 'text']);  -- behind pgml_predict, which runs as the caller
SELECT is_definer('public', 'pgml_train', ARRAY['integer', 'text', 'text']);
SELECT is_definer('public', 'pgml_activate_model', ARRAY['bigint']);
SELECT is_definer('public', 'pgml_schedule',
    ARRAY['integer', 'text', 'integer', 'text', 'text', 'interval', 'integer', 'interval', 'interval']);

SELECT table_privs_are('pganalytics_ml', 'models', 'pgml_admin', ARRAY[]::text[], 'model bytes are not readable');
SELECT table_privs_are('pganalytics_ml', 'model_key', 'pgml_admin', ARRAY[]::text[]);
SELECT table_privs_are('pganalytics_ml', 'plan_models', 'pgml_admin', ARRAY[]::text[], 'plan model bytes are not readable');
SELECT table_privs_are('pganalytics_ml', 'jobs', 'pgml_admin', ARRAY[]::text[]);
SELECT table_privs_are('pganalytics_ml', 'forecasts', 'pgml_reader', ARRAY['SELECT']);
SELECT table_privs_are('pganalytics_ml', 'predictions', 'pgml_reader', ARRAY['SELECT']);
SELECT table_privs_are('pganalytics_ml', 'prediction_accuracy', 'pgml_reader', ARRAY['SELECT']);
SELECT table_privs_are('pganalytics_ml', 'regressions', 'pgml_reader', ARRAY['SELECT']);

CREATE ROLE pgtap_reader LOGIN IN ROLE pgml_reader;
CREATE ROLE pgtap_trainer LOGIN IN ROLE pgml_trainer;
CREATE ROLE pgtap_admin LOGIN IN ROLE pgml_admin;
SET ROLE pgtap_reader;
SELECT throws_ok('SELECT * FROM pgml_train()', '42501', NULL, 'a reader cannot train');
RESET ROLE;
SET ROLE pgtap_trainer;
SELECT throws_ok('SELECT * FROM pgml_activate_model(1)', '42501', NULL, 'a trainer cannot activate a model');
SELECT throws_ok('CALL pganalytics_ml.run_jobs()', '42501', NULL, 'a trainer cannot run the worker');
RESET ROLE;
SET ROLE pgtap_admin;
SELECT throws_ok('SELECT key FROM pganalytics_ml.model_key', '42501', NULL, 'an admin cannot read the model key');
SELECT throws_ok($$UPDATE pganalytics_ml.models SET model = '\x00'$$, '42501', NULL,
                 'an admin cannot write model bytes directly');
SELECT throws_ok($$UPDATE pganalytics_ml.plan_models SET model = '\x00'$$, '42501', NULL,
                 'an admin cannot write plan model bytes directly');
SELECT throws_ok($$INSERT INTO pganalytics_ml.jobs (kind, soft_limit, hard_limit, backoff_base, backoff_cap)
                   VALUES ('sleep', '1 s', '1 s', '1 s', '1 s')$$, '42501', NULL, 'an admin cannot write jobs directly');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
