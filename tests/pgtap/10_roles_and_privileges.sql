-- Roles and grants of the foundation: PUBLIC gets nothing, each role gets exactly its functions.
BEGIN;
SELECT plan(27);

SELECT has_role('pgml_reader');
SELECT has_role('pgml_trainer');
SELECT has_role('pgml_admin');
SELECT is_member_of('pgml_reader', ARRAY['pgml_trainer'], 'pgml_trainer includes pgml_reader');
SELECT is_member_of('pgml_trainer', ARRAY['pgml_admin'], 'pgml_admin includes pgml_trainer');

SELECT is(
    (SELECT count(*) FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml',
            aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
      WHERE a.grantee = 0),
    0::bigint, 'PUBLIC may execute no function of the extension');
SELECT is(
    (SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
      WHERE c.relnamespace = 'pganalytics_ml'::regnamespace AND a.grantee = 0),
    0::bigint, 'PUBLIC may read or write no table of the extension');
SELECT schema_privs_are('pganalytics_ml', 'pgml_reader', ARRAY['USAGE']);

SELECT function_privs_are('public', 'pgml_status', ARRAY[]::name[], 'pgml_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_snapshot', ARRAY[]::name[], 'pgml_reader', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_snapshot', ARRAY[]::name[], 'pgml_trainer', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_snapshot', ARRAY[]::name[], 'pgml_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('public', 'pgml_ingest_stats', ARRAY['text', 'jsonb'], 'pgml_reader', ARRAY[]::text[]);
SELECT function_privs_are('public', 'pgml_ingest_stats', ARRAY['text', 'jsonb'], 'pgml_trainer', ARRAY['EXECUTE']);
SELECT function_privs_are('pganalytics_ml', '_capture_local', ARRAY[]::name[], 'pgml_admin', ARRAY[]::text[]);
SELECT function_privs_are('pganalytics_ml', '_capture',
    ARRAY['text', 'timestamp with time zone', 'pganalytics_ml.stat_counters[]', 'timestamp with time zone'],
    'pgml_admin', ARRAY[]::text[]);

SELECT is_definer('public', 'pgml_snapshot', ARRAY[]::name[]);
SELECT is_definer('public', 'pgml_ingest_stats', ARRAY['text', 'jsonb']);
SELECT is_definer('public', 'pgml_status', ARRAY[]::name[]);

SELECT table_privs_are('pganalytics_ml', 'query_stats', 'pgml_reader', ARRAY['SELECT']);
SELECT table_privs_are('pganalytics_ml', 'query_stats', 'pgml_admin', ARRAY['SELECT']);
SELECT table_privs_are('pganalytics_ml', 'counter_baseline', 'pgml_admin', ARRAY[]::text[]);

-- What the grants mean for a login role in each group.
CREATE ROLE pgtap_reader LOGIN IN ROLE pgml_reader;
CREATE ROLE pgtap_trainer LOGIN IN ROLE pgml_trainer;
SET ROLE pgtap_reader;
SELECT lives_ok('SELECT pgml_status()', 'a reader reads the status');
SELECT throws_ok('SELECT * FROM pgml_snapshot()', '42501', NULL, 'a reader cannot take a snapshot');
SELECT throws_ok('DELETE FROM pganalytics_ml.query_stats', '42501', NULL, 'a reader cannot delete history');
RESET ROLE;
SET ROLE pgtap_trainer;
SELECT lives_ok('SELECT * FROM pgml_snapshot()', 'a trainer takes a snapshot');
SELECT throws_ok('INSERT INTO pganalytics_ml.snapshots (server_id, captured_at, statements, new_statements, active_statements) VALUES (''x'', now(), 0, 0, 0)',
                 '42501', NULL, 'a trainer cannot write history directly');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
