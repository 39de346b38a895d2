"""pg_dump of a database with pganalytics_ml data, restored into a fresh database, keeps everything: the
history, the models (which load and predict the same), jobs, and the schedules' settings."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Database
from cron_cluster import CRON_DB, cron_cluster
from history_builder import History, statements
from pgcluster import PG_BIN, Cluster
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


PARTITIONS = """
    SELECT i.inhparent::regclass::text, c.relname, pg_get_expr(c.relpartbound, c.oid),
           (SELECT array_agg(pg_get_indexdef(x.indexrelid) ORDER BY 1) FROM pg_index x WHERE x.indrelid = c.oid),
           (SELECT count(*) FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE c.relnamespace = 'pganalytics_ml'::regnamespace ORDER BY 2"""


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
    # Day partitions created by upkeep after CREATE EXTENSION are not extension members: pg_dump writes
    # them as tables attached to the parent, with their rows. A later push lands in one of them.
    db.conn.execute("SELECT * FROM pganalytics_ml._cleanup('7 days', '1000 days', '1000 days')")
    History(db.conn, "db-2").steady(queries, intervals=3)
    original = {t: table_contents(db.conn, t) for t in TABLES}
    assert all(original.values())
    partitions = db.all(PARTITIONS)
    assert len(partitions) > 2 and db.one("SELECT count(*) FROM pganalytics_ml.query_stats_default") == 0

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
                assert conn.execute(PARTITIONS).fetchall() == partitions
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


def test_every_table_and_sequence_is_dumped_with_its_rows(db: Database):
    # Members of the extension are dumped with their rows only when registered; tables created later
    # (the day partitions) are no members, and pg_dump writes them like any table.
    db.conn.execute("SELECT * FROM pganalytics_ml._cleanup('7 days', '30 days', '90 days')")
    not_dumped = db.all(
        """
        SELECT c.oid::regclass::text FROM pg_class c
         WHERE c.relnamespace = 'pganalytics_ml'::regnamespace AND c.relkind IN ('r', 'p', 'S')
           AND c.oid <> ALL ((SELECT e.extconfig FROM pg_extension e WHERE e.extname = 'pganalytics_ml')::oid[])
           AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        """
    )
    assert not_dumped == []
    day_partitions = db.one(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE c.relname ~ '_p[0-9]{8}$' AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid"
        " AND d.deptype = 'e')"
    )
    assert day_partitions == 6  # today and the next two days, of query_stats and of predictions


@pytest.fixture(scope="module")
def cron_pg() -> Iterator[Cluster]:
    with cron_cluster("pganalytics_ml-dump") as pg:
        yield pg


SCHEDULE = {
    "snapshot_seconds": 600,
    "retrain_schedule": "15 4 * * 0",
    "retrain_lookback_days": 30,
    "retrain_model_type": "linear_regression",
    "cleanup_schedule": "45 4 * * *",
    "job_ttl": "3 days",
    "keep_models": 3,
    "prediction_retention": "10 days",
    "history_retention": "60 days",
}
CRON_JOBS = "SELECT jobname, schedule, command, database, username FROM cron.job ORDER BY jobname"


def test_a_restored_database_schedules_what_the_original_did(cron_pg: Cluster):
    # The pg_cron jobs live in cron.job, which a dump of another database does not carry: restored without
    # them, pgml_schedule() with no arguments registers the same jobs from the dumped settings.
    names = ", ".join(f"{k} => %s" for k in SCHEDULE)
    with cron_pg.connect(CRON_DB) as conn:
        conn.execute("SELECT cron.schedule('someone-elses-job', '0 0 1 1 *', 'SELECT 1')")
        registered = conn.execute(f"SELECT * FROM pgml_schedule({names})", tuple(SCHEDULE.values())).fetchall()
        config = conn.execute("SELECT * FROM pganalytics_ml.schedule_config").fetchall()
        jobs = [j for j in conn.execute(CRON_JOBS).fetchall() if j[0].startswith("pganalytics_ml:")]
    assert len(registered) == len(jobs) == 7 and len(config) == 1
    assert (
        "pgml_train_async(30, 'linear_regression')" in dict((r[0], r[2]) for r in registered)["pganalytics_ml:retrain"]
    )

    with tempfile.TemporaryDirectory() as tmp:
        dump, listing = Path(tmp) / "dump.pgc", Path(tmp) / "restore.list"
        env = cron_pg.libpq_env(CRON_DB)
        subprocess.run([PG_BIN / "pg_dump", "-Fc", "-f", dump, CRON_DB], env=env, check=True, capture_output=True)
        toc = subprocess.run([PG_BIN / "pg_restore", "-l", dump], check=True, capture_output=True, text=True).stdout
        listing.write_text(
            "".join(line + "\n" for line in toc.splitlines() if not re.search(r"TABLE DATA cron ", line))
        )
        cron_pg.drop_database(CRON_DB)
        cron_pg.create_database(CRON_DB, template="template0")
        result = subprocess.run(
            [PG_BIN / "pg_restore", "--exit-on-error", "-L", listing, "-d", CRON_DB, dump],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr

    with cron_pg.connect(CRON_DB) as conn:
        assert conn.execute("SELECT * FROM pganalytics_ml.schedule_config").fetchall() == config
        assert conn.execute(CRON_JOBS).fetchall() == []
        assert conn.execute("SELECT * FROM pgml_schedule()").fetchall() == registered
        assert conn.execute(CRON_JOBS).fetchall() == jobs
        assert conn.execute("SELECT * FROM pgml_schedule()").fetchall() == registered  # idempotent
        conn.execute("SELECT cron.schedule('someone-elses-job', '0 0 1 1 *', 'SELECT 1')")
        removed = {r[0] for r in conn.execute("SELECT * FROM pgml_unschedule()").fetchall()}
        assert removed == {j[0] for j in jobs}
        assert conn.execute("SELECT jobname FROM cron.job").fetchall() == [("someone-elses-job",)]
        # The settings stay: the next pgml_schedule() brings the same schedules back.
        assert conn.execute("SELECT count(*) FROM pganalytics_ml.schedule_config").fetchone() == (1,)


def test_schedule_arguments_left_out_keep_the_stored_settings(cron_pg: Cluster):
    with cron_pg.connect(CRON_DB) as conn:
        conn.execute("SELECT * FROM pgml_schedule(snapshot_seconds => 30, keep_models => 7)")
        conn.execute("SELECT * FROM pgml_schedule(retrain_schedule => '0 5 * * *')")
        stored = conn.execute(
            "SELECT snapshot_seconds, keep_models, retrain_schedule FROM pganalytics_ml.schedule_config"
        ).fetchone()
        assert stored == (30, 7, "0 5 * * *")
        commands = dict(conn.execute("SELECT jobname, command FROM cron.job").fetchall())
        assert commands["pganalytics_ml:snapshot"] == "CALL pganalytics_ml.run_snapshots(30, 60)"
        assert '"keep_models": 7' in commands["pganalytics_ml:cleanup"]
        conn.execute("SELECT * FROM pgml_unschedule()")
