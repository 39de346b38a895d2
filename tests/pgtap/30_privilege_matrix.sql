-- The privilege matrix: for every function, procedure, table, view and sequence of the extension, what
-- PUBLIC, pgml_reader, pgml_trainer, pgml_admin and the extension owner may do. A function or relation
-- added to the extension without a line here fails the first two tests.
BEGIN;

-- granted_to: the lowest role granted EXECUTE (the roles above it include it); NULL: the owner alone.
CREATE TEMP TABLE expected_functions (signature text PRIMARY KEY, granted_to name, security_definer boolean NOT NULL);
INSERT INTO expected_functions VALUES
    ('pgml_status()',                                        'pgml_reader',  true),
    -- The what-if entry points run as the caller: her text is planned, her hypothetical indexes made, as her.
    ('pgml_predict(bigint,text,jsonb)',                      'pgml_reader',  false),
    ('pgml_predict_json(bigint,text,jsonb)',                 'pgml_reader',  false),
    ('pgml_predict_sql(text,jsonb,text)',                    'pgml_reader',  false),
    ('pgml_predict_all(text,boolean)',                       'pgml_reader',  true),
    ('pgml_models(text)',                                    'pgml_reader',  true),
    ('pgml_job_status(text)',                                'pgml_reader',  true),
    ('pgml_jobs(text,integer,boolean,integer)',              'pgml_reader',  true),
    ('pgml_detect_patterns(integer,text)',                   'pgml_reader',  true),
    ('pgml_detect_patterns_json(integer,text)',              'pgml_reader',  true),
    ('pgml_snapshot()',                                      'pgml_trainer', true),
    ('pgml_ingest_stats(text,jsonb)',                        'pgml_trainer', true),
    ('pgml_train(integer,text,text)',                        'pgml_trainer', true),
    ('pgml_train_async(integer,text,text)',                  'pgml_trainer', true),
    ('pgml_validate(bigint,double precision)',               'pgml_trainer', true),
    ('pgml_set_season(double precision,text,bigint)',        'pgml_trainer', true),
    ('pgml_activate_model(bigint)',                          'pgml_admin',   true),
    ('pgml_cleanup_models(integer)',                         'pgml_admin',   true),
    ('pgml_job_enqueue(text,jsonb,integer,interval,interval,timestamptz)', 'pgml_admin', true),
    ('pgml_job_retry(text)',                                 'pgml_admin',   true),
    ('pgml_job_cancel(text)',                                'pgml_admin',   true),
    ('pgml_schedule(integer,text,integer,text,text,interval,integer,interval,interval)', 'pgml_admin', true),
    ('pgml_unschedule()',                                    'pgml_admin',   true),
    -- Runs EXPLAIN of other roles' statements, each as that role (capture/plans.py): admin only.
    ('pgml_capture_plans(boolean)',                          'pgml_admin',   true),
    -- Plans other roles' statements under hypothetical indexes, each as that role (issue 15): admin only.
    ('pgml_recommend_indexes(text,integer,double precision,integer)', 'pgml_admin', true),
    ('pganalytics_ml.rescue_jobs()',                         'pgml_admin',   true),
    -- Loads the Python package; reads pg_file_settings, hence a definer. The roles may call it so that a
    -- role someone granted a worker procedure gets that procedure's own refusal (it must be a superuser).
    ('pganalytics_ml._load_python()',                        'pgml_reader',  true),
    -- Commit as they go, so they cannot be definers: they refuse to run unless the caller is a superuser.
    ('pganalytics_ml.run_jobs(integer,integer,text[])',      NULL,           false),
    ('pganalytics_ml.run_snapshots(integer,integer)',        NULL,           false),
    ('pganalytics_ml._run_jobs(integer,integer,text[])',     NULL,           false),
    ('pganalytics_ml._run_snapshots(integer,integer)',       NULL,           false),
    -- Internal helpers, called from the definers above (so as the owner).
    ('pganalytics_ml._capture(text,timestamptz,pganalytics_ml.stat_counters[],timestamptz)', NULL, false),
    ('pganalytics_ml._capture_local()',                      NULL,           false),
    ('pganalytics_ml._check_push(text,jsonb,text,integer,integer)', NULL,    false),
    ('pganalytics_ml._push_row(integer,jsonb)',              NULL,           false),
    ('pganalytics_ml._check_push_rows(pganalytics_ml.stat_counters[])', NULL, false),
    ('pganalytics_ml._after_push(text,timestamptz,jsonb)',   NULL,           false),
    ('pganalytics_ml._check_pushed_plans(jsonb,timestamptz)', NULL,          false),
    ('pganalytics_ml._check_train_arguments(integer,text,text)', NULL,       false),
    ('pganalytics_ml._no_forecast(text,bigint)',             NULL,           false),
    ('pganalytics_ml._after_capture(text,timestamptz)',      NULL,           false),
    ('pganalytics_ml._models(text)',                         NULL,           false),
    ('pganalytics_ml._job_lock_key(bigint)',                 NULL,           false),
    ('pganalytics_ml._setting(text,text)',                   NULL,           false),
    ('pganalytics_ml._enqueue(text,jsonb,integer,interval,interval,timestamptz,interval,interval)', NULL, false),
    ('pganalytics_ml._claim_job(text[])',                    NULL,           false),
    ('pganalytics_ml._finish_job(text,jsonb,text,boolean)',  NULL,           false),
    ('pganalytics_ml._job_status(pganalytics_ml.jobs)',      NULL,           false),
    ('pganalytics_ml._job_summary(pganalytics_ml.job_status)', NULL,         false),
    ('pganalytics_ml._lock_job(text)',                       NULL,           false),
    ('pganalytics_ml._cleanup(interval,interval,interval)',  NULL,           false),
    ('pganalytics_ml._history_partition_key(text)',          NULL,           false),
    ('pganalytics_ml._index_history_partition(text,text)',   NULL,           false),
    ('pganalytics_ml._create_history_partition(text,date)',  NULL,           false),
    ('pganalytics_ml._maintain_history_partitions(text,interval,integer)', NULL, false),
    ('pganalytics_ml._require_pg_cron()',                    NULL,           false),
    ('pganalytics_ml._scheduled_jobs()',                     NULL,           false),
    ('pganalytics_ml._short_query(text,bigint)',             NULL,           false),
    ('pganalytics_ml._raise_for_caller(text,text,text,text)', 'pgml_reader', false),
    ('pganalytics_ml._predict(bigint,text)',                 'pgml_reader',  true),
    ('pganalytics_ml._explain_as_caller(text,integer,text)', 'pgml_reader',  false),
    ('pganalytics_ml._hypothetical_as_caller(text,text,text)', 'pgml_reader', false),
    ('pganalytics_ml._drop_hypothetical(text,oid[])',        'pgml_reader',  false),
    ('pganalytics_ml._what_if(text,text,bigint,jsonb,text,text)', 'pgml_reader', false),
    ('pganalytics_ml._what_if_request(text,text,bigint,jsonb,text,text)', 'pgml_reader', true),
    ('pganalytics_ml._what_if_choose(text,text)',            'pgml_reader',  true),
    ('pganalytics_ml._what_if_plan_known(text,bigint,text)', 'pgml_reader',  true),
    ('pganalytics_ml._what_if_answer_sql(text,text,text,text,text,text)', 'pgml_reader', true),
    ('pganalytics_ml._what_if_answer_known(text,bigint,text,text[],text)', 'pgml_reader', true),
    -- The PL/Python bodies of the public functions of the same name (sql/60_entry_points.sql).
    ('pganalytics_ml._snapshot()',                           NULL,           false),
    ('pganalytics_ml._detect_patterns(integer,text)',        NULL,           false),
    ('pganalytics_ml._detect_patterns_json(integer,text)',   NULL,           false),
    ('pganalytics_ml._capture_plans(boolean)',               NULL,           false),
    ('pganalytics_ml._recommend_indexes(text,integer,double precision,integer)', NULL, false),
    ('pganalytics_ml._note_recommended_indexes(timestamptz)', NULL,          false),
    ('pganalytics_ml._train(integer,text,text)',             NULL,           false),
    ('pganalytics_ml._activate_model(bigint)',               NULL,           false),
    ('pganalytics_ml._cleanup_models(integer)',              NULL,           false),
    ('pganalytics_ml._train_async(integer,text,text)',       NULL,           false),
    ('pganalytics_ml._job_enqueue(text,jsonb,integer,interval,interval,timestamptz)', NULL, false),
    ('pganalytics_ml._push_forecast_mode()', NULL, false),
    ('pganalytics_ml._pattern_series(text,integer,integer)', NULL,          false),
    ('pganalytics_ml._store_plan(text,bigint,text,text,jsonb,text,timestamptz)', NULL, false),
    -- Called by the plan_changes view, so as whoever reads it: reads query_stats, which readers may read.
    ('pganalytics_ml._mean_ms_between(text,bigint,timestamptz,timestamptz)', 'pgml_reader', false);

-- readable_by: the lowest role granted SELECT; nobody but the owner may write anything.
CREATE TEMP TABLE expected_relations (relation text PRIMARY KEY, readable_by name);
INSERT INTO expected_relations VALUES
    ('pganalytics_ml.snapshots',                    'pgml_reader'),
    ('pganalytics_ml.statements',                   'pgml_reader'),
    ('pganalytics_ml.query_stats',                  'pgml_reader'),
    ('pganalytics_ml.forecasts',                    'pgml_reader'),
    ('pganalytics_ml.predictions',                  'pgml_reader'),
    ('pganalytics_ml.prediction_accuracy',          'pgml_reader'),
    ('pganalytics_ml.regressions',                  'pgml_reader'),
    ('pganalytics_ml.forecaster_pool',              'pgml_reader'),
    ('pganalytics_ml.schedule_config',              'pgml_reader'),
    ('pganalytics_ml.patterns',                     'pgml_reader'),
    ('pganalytics_ml.seasonal_profiles',            'pgml_reader'),
    ('pganalytics_ml.plans',                        'pgml_reader'),
    ('pganalytics_ml.plan_capture',                 'pgml_reader'),
    ('pganalytics_ml.plan_events',                  'pgml_reader'),
    ('pganalytics_ml.plan_changes',                 'pgml_reader'),
    ('pganalytics_ml.recommendations',              'pgml_reader'),
    ('pganalytics_ml.recommendation_statements',    'pgml_reader'),
    ('pganalytics_ml.recommendation_outcomes',      'pgml_reader'),
    ('pganalytics_ml.recommendations_recommendation_id_seq', NULL),
    ('pganalytics_ml.counter_baseline',             NULL),
    ('pganalytics_ml.query_stats_default',          NULL),  -- partitions: read through the parent
    ('pganalytics_ml.predictions_default',          NULL),
    ('pganalytics_ml.models',                       NULL),  -- model bytes: code
    ('pganalytics_ml.model_key',                    NULL),  -- the key that signs them
    ('pganalytics_ml.jobs',                         NULL),  -- read through pgml_jobs and pgml_job_status
    ('pganalytics_ml.snapshots_snapshot_id_seq',    NULL),
    ('pganalytics_ml.models_model_id_seq',          NULL),
    ('pganalytics_ml.plan_models',                  NULL),  -- plan model bytes: code
    ('pganalytics_ml.plan_models_plan_model_id_seq', NULL),
    ('pganalytics_ml.predictions_prediction_id_seq', NULL),
    ('pganalytics_ml.jobs_job_seq',                 NULL);

CREATE TEMP TABLE roles (role name PRIMARY KEY, level integer NOT NULL);
INSERT INTO roles VALUES ('public', 0), ('pgml_reader', 1), ('pgml_trainer', 2), ('pgml_admin', 3);

CREATE TEMP VIEW extension_owner AS
SELECT pg_get_userbyid(e.extowner)::name AS role, e.extowner AS oid FROM pg_extension e WHERE e.extname = 'pganalytics_ml';

CREATE TEMP VIEW functions AS
SELECT f.signature, f.granted_to, f.security_definer, n.nspname AS schema, p.proname AS name,
       p.proargtypes::regtype[]::name[] AS args, coalesce(g.level, 99) AS granted_level
  FROM expected_functions f
  LEFT JOIN pg_proc p ON p.oid = to_regprocedure(f.signature)
  LEFT JOIN pg_namespace n ON n.oid = p.pronamespace
  LEFT JOIN roles g ON g.role = f.granted_to;

CREATE TEMP VIEW relations AS
SELECT r.relation, n.nspname AS schema, c.relname AS name, c.relkind, coalesce(g.level, 99) AS readable_level
  FROM expected_relations r
  LEFT JOIN pg_class c ON c.oid = to_regclass(r.relation)
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN roles g ON g.role = r.readable_by;

-- Everything the catalog says belongs to the extension, or lives in its schema.
CREATE TEMP VIEW catalog_functions AS
SELECT p.oid FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
UNION
SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'pganalytics_ml'::regnamespace;

CREATE TEMP VIEW catalog_relations AS
SELECT c.oid FROM pg_class c
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION
SELECT c.oid FROM pg_class c
 WHERE c.relnamespace = 'pganalytics_ml'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f');

SELECT plan(
    8
    + (SELECT count(*)::integer FROM expected_functions) * 6
    + (SELECT count(*)::integer FROM expected_relations) * 5
    + 5
    + 11);

-- Exhaustive: the matrix and the catalog list the same functions and relations.
SELECT set_eq(
    'SELECT oid::regprocedure::text FROM catalog_functions',
    'SELECT to_regprocedure(signature)::text FROM expected_functions',
    'the matrix lists every function and procedure of the extension, and nothing else');
SELECT set_eq(
    'SELECT oid::regclass::text FROM catalog_relations',
    'SELECT to_regclass(relation)::text FROM expected_relations',
    'the matrix lists every table, view and sequence of the extension, and nothing else');
SELECT is((SELECT count(*) FROM catalog_functions f JOIN pg_proc p ON p.oid = f.oid
            WHERE p.proowner <> (SELECT oid FROM extension_owner)),
          0::bigint, 'the extension owner owns every function');
SELECT is((SELECT count(*) FROM catalog_relations r JOIN pg_class c ON c.oid = r.oid
            WHERE c.relowner <> (SELECT oid FROM extension_owner)),
          0::bigint, 'the extension owner owns every relation');
SELECT ok((SELECT rolsuper FROM pg_roles WHERE oid = (SELECT oid FROM extension_owner)),
          'the extension owner is a superuser (the extension is untrusted: it needs plpython3u)');
SELECT is((SELECT count(*) FROM pg_attribute a JOIN catalog_relations r ON r.oid = a.attrelid
            WHERE a.attacl IS NOT NULL),
          0::bigint, 'no column-level grants widen the table privileges');
SELECT is((SELECT count(*) FROM pg_class c JOIN catalog_relations r ON r.oid = c.oid WHERE c.relrowsecurity),
          0::bigint, 'no row-level security policies to reason about: table privileges are the whole story');
SELECT is((SELECT count(*) FROM pg_default_acl WHERE defaclnamespace = 'pganalytics_ml'::regnamespace),
          0::bigint, 'no default privileges hand future objects of the schema to anyone');

-- Functions: EXECUTE for the granted role and those above it, never PUBLIC; the owner runs everything.
SELECT function_privs_are(
           f.schema, f.name, f.args, r.role,
           CASE WHEN r.level >= f.granted_level THEN ARRAY['EXECUTE'] ELSE ARRAY[]::name[] END,
           format('%s %s execute %s', r.role, CASE WHEN r.level >= f.granted_level THEN 'may' ELSE 'may not' END,
                  f.signature))
  FROM functions f CROSS JOIN roles r
 ORDER BY f.signature, r.level;
SELECT function_privs_are(f.schema, f.name, f.args, o.role, ARRAY['EXECUTE'],
                          format('the extension owner may execute %s', f.signature))
  FROM functions f CROSS JOIN extension_owner o
 ORDER BY f.signature;
SELECT CASE WHEN f.security_definer
            THEN is_definer(f.schema, f.name, f.args, format('%s is SECURITY DEFINER', f.signature))
            ELSE isnt_definer(f.schema, f.name, f.args, format('%s runs with its caller''s rights', f.signature))
       END
  FROM functions f
 ORDER BY f.signature;

-- Relations: SELECT for the readable ones, from their role up; no write privilege for any role.
SELECT CASE WHEN rel.relkind = 'S'
            THEN sequence_privs_are(rel.schema, rel.name, r.role, ARRAY[]::name[],
                                    format('%s may not use sequence %s', r.role, rel.relation))
            ELSE table_privs_are(rel.schema, rel.name, r.role,
                                 CASE WHEN r.level >= rel.readable_level THEN ARRAY['SELECT'] ELSE ARRAY[]::name[] END,
                                 format('%s %s', r.role, CASE WHEN r.level >= rel.readable_level
                                                              THEN 'may only read ' ELSE 'may not touch ' END)
                                 || rel.relation)
       END
  FROM relations rel CROSS JOIN roles r
 ORDER BY rel.relation, r.level;
SELECT CASE WHEN rel.relkind = 'S'
            THEN sequence_privs_are(rel.schema, rel.name, o.role, ARRAY['SELECT', 'UPDATE', 'USAGE'],
                                    'the extension owner may use ' || rel.relation)
            ELSE table_privs_are(rel.schema, rel.name, o.role,
                                 ARRAY['DELETE', 'INSERT', 'REFERENCES', 'SELECT', 'TRIGGER', 'TRUNCATE', 'UPDATE'],
                                 'the extension owner may do anything with ' || rel.relation)
       END
  FROM relations rel CROSS JOIN extension_owner o
 ORDER BY rel.relation;

-- The schema: usable by the three roles, creatable in by none of them.
SELECT schema_privs_are('pganalytics_ml', 'public', ARRAY[]::name[], 'PUBLIC may not use schema pganalytics_ml');
SELECT schema_privs_are('pganalytics_ml', 'pgml_reader', ARRAY['USAGE']);
SELECT schema_privs_are('pganalytics_ml', 'pgml_trainer', ARRAY['USAGE']);
SELECT schema_privs_are('pganalytics_ml', 'pgml_admin', ARRAY['USAGE']);
SELECT schema_privs_are('pganalytics_ml', (SELECT role FROM extension_owner), ARRAY['CREATE', 'USAGE']);

-- Model bytes are code. No role may write them: no table privilege (above), and no function any of the
-- roles may call takes bytes (bytea) or an argument of a pseudo-type through which bytes could pass.
SELECT is(
    (SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ')
       FROM catalog_functions f JOIN pg_proc p ON p.oid = f.oid
      WHERE has_function_privilege('pgml_admin', p.oid, 'EXECUTE')
        AND EXISTS (SELECT FROM unnest(p.proargtypes) t JOIN pg_type ty ON ty.oid = t
                     WHERE ty.oid = 'bytea'::regtype OR ty.typtype = 'p' OR ty.typelem = 'bytea'::regtype)),
    NULL, 'no function a role may call takes bytea or a pseudo-type');

CREATE ROLE pgtap_matrix_trainer LOGIN IN ROLE pgml_trainer;
CREATE ROLE pgtap_matrix_admin LOGIN IN ROLE pgml_admin;
SET ROLE pgtap_matrix_trainer;
SELECT throws_ok($$INSERT INTO pganalytics_ml.models (server_id, model_type, version, window_start, window_end,
                   lookback_days, parameters, metrics, calibration, feature_names, sklearn_version, numpy_version,
                   python_version, model, signature)
                   VALUES ('local', 'x', 99, now(), now(), 1, '{}', '{}', '{}', '{}', '1', '1', '3', '\x00', '\x00')$$,
                 '42501', NULL, 'a trainer cannot insert a model row');
SELECT throws_ok($$UPDATE pganalytics_ml.models SET model = '\x00'$$, '42501', NULL,
                 'a trainer cannot change model bytes');
SELECT throws_ok($$INSERT INTO pganalytics_ml.model_key (key) VALUES (decode(repeat('00', 32), 'hex'))$$, '42501', NULL,
                 'a trainer cannot plant a signing key');
SELECT throws_ok($$CALL pganalytics_ml.run_jobs()$$, '42501', NULL, 'a trainer cannot run the worker');
RESET ROLE;
SET ROLE pgtap_matrix_admin;
SELECT throws_ok($$DELETE FROM pganalytics_ml.model_key$$, '42501', NULL, 'an admin cannot remove the signing key');
SELECT throws_ok($$TRUNCATE pganalytics_ml.models$$, '42501', NULL, 'an admin cannot truncate the models');
SELECT throws_ok($$ALTER TABLE pganalytics_ml.models ALTER COLUMN signature DROP NOT NULL$$, '42501', NULL,
                 'an admin cannot alter the models table');
SELECT throws_ok($$CREATE FUNCTION pganalytics_ml.pgml_backdoor() RETURNS int LANGUAGE sql AS 'SELECT 1'$$,
                 '42501', NULL, 'an admin cannot create objects in the extension schema');
SELECT lives_ok($$SELECT * FROM pganalytics_ml.rescue_jobs()$$, 'an admin may run the watchdog');
SELECT throws_ok($$CALL pganalytics_ml.run_jobs()$$, '42501', NULL, 'an admin cannot run the worker: only a superuser does');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
