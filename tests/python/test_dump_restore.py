"""pg_dump of a database with pganalytics_ml data, restored into a fresh database, keeps everything."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import PG_BIN
from workload import pgbench

pytestmark = pytest.mark.integration

TABLES = (
    "snapshots",
    "statements",
    "query_stats",
    "counter_baseline",
    "models",
    "model_key",
    "forecasts",
    "predictions",
    "jobs",
)


def table_contents(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT x.* FROM pganalytics_ml.{table} x ORDER BY x::text").fetchall()


def test_dump_and_restore_keep_the_history(db: Database):
    db.conn.execute("CREATE TABLE probe (id int)")
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    pgbench(db.cluster, db.name, "SELECT count(*) FROM probe;\n", transactions=10)
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    queries = statements(5)
    History(db.conn, "db-1").steady(queries, intervals=25)
    model_id = db.one("SELECT model_id FROM pgml_train(90, 'random_forest', 'db-1')")
    queryid = next(iter(queries))
    predicted = db.one("SELECT predicted_execution_time_ms FROM pgml_predict(%s, 'db-1')", (queryid,))
    db.one("SELECT job_id FROM pgml_job_enqueue('sleep')")
    original = {t: table_contents(db.conn, t) for t in TABLES}
    assert all(original.values())

    restored = f"{db.name}_restored"
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "dump.pgc"
        env = db.cluster.libpq_env(db.name)
        subprocess.run([PG_BIN / "pg_dump", "-Fc", "-f", dump, db.name], env=env, check=True, capture_output=True)
        db.cluster.create_database(restored, template="template0")
        try:
            result = subprocess.run(
                [PG_BIN / "pg_restore", "--exit-on-error", "-d", restored, dump],
                env=env,
                capture_output=True,
                text=True,
            )
            assert result.returncode == 0, result.stderr
            with db.cluster.connect(restored) as conn:
                assert {t: table_contents(conn, t) for t in TABLES} == original
                # The restored database goes on capturing where the original stopped.
                # The restored model loads (its signature checks out with the restored key) and predicts the same.
                conn.execute("SELECT * FROM pgml_activate_model(%s)", (model_id,))
                again = conn.execute("SELECT predicted_execution_time_ms FROM pgml_predict(%s, 'db-1')", (queryid,))
                assert again.fetchone()[0] == predicted
                before = conn.execute("SELECT max(snapshot_id) FROM pganalytics_ml.snapshots").fetchone()[0]
                conn.execute("SELECT * FROM pgml_snapshot()")
                after = conn.execute("SELECT max(snapshot_id) FROM pganalytics_ml.snapshots").fetchone()[0]
                assert after > before
        finally:
            db.cluster.drop_database(restored)
