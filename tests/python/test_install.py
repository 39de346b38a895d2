"""The extension installs in any database, loads its Python package, and uninstalls cleanly."""

from __future__ import annotations

import pytest

from conftest import Database
from pganalytics_ml import __version__

pytestmark = pytest.mark.integration

MEMBERS = """
    SELECT count(*) FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE e.extname = 'pganalytics_ml' AND d.deptype = 'e'
"""


def test_create_extension_cascade_in_a_new_database(cluster, template):
    name = "fresh_install"
    cluster.create_database(name)
    try:
        with cluster.connect(name) as conn:
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            installed = conn.execute(
                "SELECT extname FROM pg_extension WHERE extname IN ('pganalytics_ml', 'plpython3u') ORDER BY 1"
            ).fetchall()
            assert [r[0] for r in installed] == ["pganalytics_ml", "plpython3u"]
            assert conn.execute("SELECT pganalytics_ml._load_python()").fetchone()[0] == __version__
    finally:
        cluster.drop_database(name)


def test_drop_extension_leaves_only_the_roles(db: Database):
    assert db.one(MEMBERS) > 10
    db.conn.execute("DROP EXTENSION pganalytics_ml")
    assert db.one("SELECT count(*) FROM pg_namespace WHERE nspname = 'pganalytics_ml'") == 0
    assert db.one("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgml\\_%'") == 0
    assert db.one("SELECT count(*) FROM pg_type WHERE typname = 'stat_counters'") == 0
    roles = db.all("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgml\\_%' ORDER BY 1")
    assert [r[0] for r in roles] == ["pgml_admin", "pgml_reader", "pgml_trainer"]
    db.conn.execute("CREATE EXTENSION pganalytics_ml")
    assert db.one(MEMBERS) > 10
