"""Every PL/Python body loads the package the same way, and refuses a package of another version."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from conftest import Database
from pganalytics_ml import __version__

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BOOT_LINE = "GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')"
INSTALLED = os.environ.get("PGML_PYTHON_LIBDIR", f"/usr/local/lib/pganalytics_ml/{__version__}")


def test_every_plpython_body_starts_with_the_bootstrap_line(db: Database):
    bodies = db.all(
        """
        SELECT p.oid::regprocedure::text, p.prosrc
          FROM pg_proc p
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
          JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpython3u'
         WHERE p.proname <> '_load_python'
        """
    )
    assert len(bodies) >= 2
    expected = BOOT_LINE.replace("@PGML_VERSION@", __version__)
    for name, body in bodies:
        assert body.lstrip("\n").startswith(expected + "\n"), f"{name} does not start with the bootstrap line"


@pytest.fixture
def package_of_another_version() -> Iterator[str]:
    tmp = Path(tempfile.mkdtemp(prefix="pgml-pkg-"))
    os.chmod(tmp, 0o755)
    shutil.copytree(ROOT / "python_pkg" / "pganalytics_ml", tmp / "pganalytics_ml")
    init = tmp / "pganalytics_ml" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', '__version__ = "9.9.9"'))
    try:
        yield f"{tmp}:{INSTALLED}"
    finally:
        shutil.rmtree(tmp)


def set_python_path(db: Database, value: str | None) -> None:
    with db.cluster.connect() as conn:
        conn.execute("SET pganalytics_ml.python_path = ''")  # ALTER SYSTEM wants the placeholder to exist
        if value is None:
            conn.execute("ALTER SYSTEM RESET pganalytics_ml.python_path")
        else:
            conn.execute(sql.SQL("ALTER SYSTEM SET pganalytics_ml.python_path = {}").format(sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


def test_a_package_of_another_version_is_refused_with_what_to_run(db: Database, package_of_another_version):
    set_python_path(db, package_of_another_version)
    try:
        with db.connect() as conn:
            assert conn.execute("SHOW pganalytics_ml.python_path").fetchone() == (package_of_another_version,)
            with pytest.raises(psycopg.Error) as caught:
                conn.execute("SELECT * FROM pgml_snapshot()")
        err = caught.value
        assert err.sqlstate == "55000"
        assert f"is version 9.9.9, but the extension is version {__version__}" in err.diag.message_primary
        assert "make install" in err.diag.message_hint
    finally:
        set_python_path(db, None)
    with db.connect() as conn:
        assert conn.execute("SELECT pganalytics_ml._load_python()").fetchone() == (__version__,)


def test_a_session_cannot_redirect_the_package(db: Database, package_of_another_version):
    # SECURITY DEFINER functions import this code: only postgresql.conf may say where it lives.
    with db.connect() as conn:
        conn.execute(sql.SQL("SET pganalytics_ml.python_path = {}").format(sql.Literal(package_of_another_version)))
        assert conn.execute("SELECT pganalytics_ml._load_python()").fetchone() == (__version__,)
        assert conn.execute("SELECT count(*) FROM pgml_snapshot()").fetchone() == (1,)
