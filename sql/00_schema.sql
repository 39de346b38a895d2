-- Internal schema and the three roles. Public functions live in @extschema@; everything else here.

CREATE SCHEMA pganalytics_ml;
COMMENT ON SCHEMA pganalytics_ml IS 'pganalytics_ml internals: captured history, statements, models, jobs';

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgml_reader', 'pgml_trainer', 'pgml_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    -- Each role includes the one below it: admin > trainer > reader.
    IF NOT pg_catalog.pg_has_role('pgml_trainer', 'pgml_reader', 'MEMBER') THEN
        GRANT pgml_reader TO pgml_trainer;
    END IF;
    IF NOT pg_catalog.pg_has_role('pgml_admin', 'pgml_trainer', 'MEMBER') THEN
        GRANT pgml_trainer TO pgml_admin;
    END IF;
END
$roles$;

REVOKE ALL ON SCHEMA pganalytics_ml FROM PUBLIC;
GRANT USAGE ON SCHEMA pganalytics_ml TO pgml_reader;
