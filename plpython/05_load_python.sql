-- Every PL/Python body starts with the same line, which runs this once per session:
--   GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
-- It puts the versioned library directory on sys.path and checks the package matches this extension.
-- The directory can be overridden only in the server's configuration files (pganalytics_ml.python_path
-- in postgresql.conf), never by a session: SECURITY DEFINER functions import code from it. Reading
-- pg_file_settings is why this function is itself SECURITY DEFINER.
-- Every PL/Python function pins the settings that change how values reach Python as text (DateStyle,
-- IntervalStyle, TimeZone, extra_float_digits, lc_numeric): timestamps arrive as ISO 8601 in UTC whatever the
-- session says. The committing procedures cannot have SET clauses: their worker pins them for the session.
CREATE FUNCTION pganalytics_ml._load_python() RETURNS text
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
import os, sys
expected = '@PGML_VERSION@'
if GD.get('pganalytics_ml') == expected:
    return expected
libdir = '@PGML_PYTHON_LIBDIR@'
row = plpy.execute("SELECT setting FROM pg_catalog.pg_file_settings "
                   "WHERE name = 'pganalytics_ml.python_path' AND applied ORDER BY seqno DESC LIMIT 1")
if row and row[0]['setting']:
    libdir = row[0]['setting']
for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(var, '1')
def failure(message, hint, sqlstate):
    # Reported as "pganalytics_ml: <message>" (a plain plpy.error would read "plpy.Error: ...").
    exc = type('pganalytics_ml', (plpy.Error,), {'__module__': 'builtins'})(message)
    exc.sqlstate, exc.hint = sqlstate, hint
    return exc
for part in reversed(libdir.split(os.pathsep)):
    if part not in sys.path:
        sys.path.insert(0, part)
try:
    import pganalytics_ml
except ImportError as exc:
    missing = str(exc)
else:
    missing = None
if missing is not None:
    raise failure(f'cannot import the pganalytics_ml Python package from {libdir}: {missing}',
                  'Install it with "make deps && make install" from the pganalytics_ml source tree.', '58P01')
if pganalytics_ml.__version__ != expected:
    raise failure(f'the pganalytics_ml Python package in {libdir} is version {pganalytics_ml.__version__}, '
                  f'but the extension is version {expected}',
                  f'Run "make install" from the pganalytics_ml {expected} source tree, or '
                  'ALTER EXTENSION pganalytics_ml UPDATE to match the package, then reconnect.', '55000')
GD['pganalytics_ml'] = expected
return expected
$$;
COMMENT ON FUNCTION pganalytics_ml._load_python() IS
    'Loads the pganalytics_ml Python package once per session and checks its version';
REVOKE ALL ON FUNCTION pganalytics_ml._load_python() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pganalytics_ml._load_python() TO pgml_reader;
