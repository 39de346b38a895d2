"""A hot standby (pg_basebackup -R on loopback) answers from what the primary replicated."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import Cluster
from workload import pgbench

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def standby(cluster: Cluster, template: str) -> Iterator[Cluster]:
    replica = cluster.create_standby()
    try:
        yield replica
    finally:
        replica.destroy()


def test_standby_reports_status_and_refuses_to_capture(db: Database, standby: Cluster):
    db.conn.execute("CREATE TABLE probe (id int)")
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    pgbench(db.cluster, db.name, "SELECT count(*) FROM probe;\n", transactions=10)
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    primary_status = db.one("SELECT pgml_status()")
    db.cluster.wait_for_replay(standby)

    with standby.connect(db.name) as conn:
        status = conn.execute("SELECT pgml_status()").fetchone()[0]
        assert status["statements_tracked"] == primary_status["statements_tracked"] > 0
        assert status["last_snapshot_at"] == primary_status["last_snapshot_at"]
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("SELECT * FROM pgml_snapshot()")
    assert caught.value.sqlstate == "25006"
    assert "hot standby" in caught.value.diag.message_primary
    assert "primary" in caught.value.diag.message_hint


def test_standby_predicts_from_the_replicated_model_without_logging(db: Database, standby: Cluster):
    queries = statements(5)
    History(db.conn, "db-1").steady(queries, intervals=25)
    db.conn.execute("SELECT * FROM pgml_train(90, 'random_forest', 'db-1')")
    queryid = next(iter(queries))
    on_primary = db.all(
        "SELECT predicted_execution_time_ms, model_id, source FROM pgml_predict(%s, 'db-1')", (queryid,)
    )
    db.cluster.wait_for_replay(standby)
    with standby.connect(db.name) as conn:
        row = conn.execute(
            "SELECT prediction_id, predicted_execution_time_ms, model_id, source, logged FROM pgml_predict(%s, 'db-1')",
            (queryid,),
        ).fetchone()
        assert row == (None, *on_primary[0], False)
        assert conn.execute("SELECT pgml_predict_json(%s, 'db-1')->>'logged'", (queryid,)).fetchone() == ("false",)
        assert conn.execute("SELECT count(*) FROM pgml_predict_all('db-1', log => true)").fetchone() == (5,)
        assert conn.execute("SELECT pgml_status()->'active_models'").fetchone() == (1,)
