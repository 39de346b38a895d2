"""pg_dump of a database with pganalytics_ml data, restored into a fresh database, keeps everything."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from conftest import Database
from pgcluster import PG_BIN
from workload import pgbench

pytestmark = pytest.mark.integration

TABLES = ("snapshots", "statements", "query_stats", "counter_baseline")


def table_contents(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM pganalytics_ml.{table} ORDER BY 1, 2, 3").fetchall()


def test_dump_and_restore_keep_the_history(db: Database):
    db.conn.execute("CREATE TABLE probe (id int)")
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    pgbench(db.cluster, db.name, "SELECT count(*) FROM probe;\n", transactions=10)
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    for minute, calls in ((0, 5), (1, 9)):
        db.one(
            "SELECT pgml_ingest_stats('db-1', %s)",
            (
                Jsonb(
                    {
                        "captured_at": f"2026-11-01T00:0{minute}:00Z",
                        "rows": [{"queryid": 1, "calls": calls, "total_exec_time": calls * 2.0}],
                    }
                ),
            ),
        )
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
                before = conn.execute("SELECT max(snapshot_id) FROM pganalytics_ml.snapshots").fetchone()[0]
                conn.execute("SELECT * FROM pgml_snapshot()")
                after = conn.execute("SELECT max(snapshot_id) FROM pganalytics_ml.snapshots").fetchone()[0]
                assert after > before
        finally:
            db.cluster.drop_database(restored)
