"""pgml_status(): one JSON document that tells an operator what state pganalytics_ml is in."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest
from pytest_postgresql.executors import PostgreSQLExecutor

from conftest import SETTINGS, Database, attached, server_fixture
from pganalytics_ml import __version__
from pgcluster import Cluster

pytestmark = pytest.mark.integration


def test_status_reports_version_statements_and_last_snapshot(db: Database):
    empty = db.one("SELECT pgml_status()")
    # nothing captured yet is a problem to fix, and the status says so
    assert empty["service"] == "pganalytics_ml" and empty["status"] == "degraded"
    assert [p for p in empty["problems"] if p.startswith("no snapshot yet")]
    assert empty["version"] == __version__ and empty["database"] == db.name
    assert empty["statements_tracked"] == 0 and empty["last_snapshot_at"] is None
    assert empty["scheduler"]["pg_cron_loaded"] is True
    assert empty["scheduler"]["pg_cron_installed"] is False

    db.conn.execute("SELECT * FROM pgml_snapshot()")
    taken = db.one("SELECT captured_at FROM pgml_snapshot()")
    status = db.one("SELECT pgml_status()")
    assert status["statements_tracked"] == db.one("SELECT count(*) FROM pganalytics_ml.statements") > 0
    assert datetime.fromisoformat(status["last_snapshot_at"]) == taken
    assert status["servers"][0]["snapshots"] == 2
    # pg_cron runs in another database here: not visible, so only the snapshot age could tell
    assert status["scheduler"]["state"] == "in another database"
    assert status["status"] == "healthy" and status["problems"] == []


def test_status_sees_pg_cron_in_its_database(cluster: Cluster, template: str):
    with cluster.connect("postgres") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pganalytics_ml CASCADE")
        scheduler = conn.execute("SELECT pgml_status()->'scheduler'").fetchone()[0]
    assert scheduler["pg_cron_installed"] is True and scheduler["cron_database"] == "postgres"


BARE = SETTINGS | {"shared_preload_libraries": ""}
bare_server = server_fixture(BARE, "pgml_bare")


@pytest.fixture
def bare_cluster(bare_server: PostgreSQLExecutor) -> Cluster:
    """A server that preloads neither pg_stat_statements nor pg_cron."""
    return attached(bare_server, BARE)


def test_snapshot_names_the_setting_when_pg_stat_statements_is_not_preloaded(bare_cluster: Cluster):
    with bare_cluster.connect() as conn:
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("SELECT * FROM pgml_snapshot()")
        err = caught.value
        assert err.sqlstate == "55000"
        assert "pg_stat_statements is not loaded" in err.diag.message_primary
        assert "shared_preload_libraries" in err.diag.message_hint
        status = conn.execute("SELECT pgml_status()").fetchone()[0]
    assert status["status"] == "degraded"
    assert status["problems"][0] == "pg_stat_statements is not in shared_preload_libraries"
    assert [p for p in status["problems"] if p.startswith("no scheduler: pg_cron is not in shared_preload_libraries")]
    assert status["scheduler"]["state"] == "none"
    assert status["scheduler"]["pg_cron_loaded"] is False
