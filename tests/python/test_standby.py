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


# What writes: each refused at once or at its first write, with the read-only SQLSTATE (25006).
STANDBY_WRITES = [
    "SELECT * FROM pgml_validate({prediction_id}, 5)",
    'SELECT * FROM pgml_ingest_stats(\'db-2\', \'[{{"queryid": 1, "calls": 1, "total_exec_time": 1}}]\')',
    "SELECT * FROM pgml_train_async(90, 'linear_regression', 'db-1')",
    "SELECT * FROM pgml_job_enqueue('sleep')",
    "SELECT * FROM pgml_job_cancel('{job_id}')",
    "SELECT * FROM pgml_activate_model({model_id})",
    "SELECT pgml_cleanup_models(0)",
    "SELECT * FROM pganalytics_ml.rescue_jobs()",
    "CALL pganalytics_ml.run_jobs()",
]


def test_standby_answers_reads_and_refuses_writes_with_a_clear_error(db: Database, standby: Cluster):
    History(db.conn, "db-1").steady(statements(5), intervals=25)
    model_id = db.one("SELECT model_id FROM pgml_train(90, 'linear_regression', 'db-1')")
    prediction_id = db.one("SELECT prediction_id FROM pgml_predict(%s, 'db-1')", (next(iter(statements(5))),))
    job_id = db.one("SELECT job_id FROM pgml_job_enqueue('sleep', run_at => now() + interval '1 day')")
    models = db.all("SELECT model_id, is_active, r_squared FROM pgml_models()")
    db.cluster.wait_for_replay(standby)
    with standby.connect(db.name) as conn:
        assert conn.execute("SELECT model_id, is_active, r_squared FROM pgml_models()").fetchall() == models
        assert conn.execute("SELECT status FROM pgml_job_status(%s)", (job_id,)).fetchone() == ("pending",)
        assert conn.execute("SELECT count(*) FROM pgml_jobs()").fetchone() == (1,)
        for call in STANDBY_WRITES:
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(call.format(prediction_id=prediction_id, job_id=job_id, model_id=model_id))
            err = caught.value
            assert err.sqlstate == "25006", (call, err)
            message = err.diag.message_primary
            assert "read-only transaction" in message or "hot standby" in message, (call, message)
            assert "spiexceptions" not in message
            assert conn.execute("SELECT 1").fetchone() == (1,)
