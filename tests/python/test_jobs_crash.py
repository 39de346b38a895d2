"""No crash loses a job: a worker killed with SIGKILL, a server restarted mid-job, and a real pg_cron tick.

These run on a cluster of their own: a SIGKILLed backend makes the postmaster restart every backend.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import psycopg
import pytest

from history_builder import History, statements
from pgcluster import Cluster, wait_for

pytestmark = pytest.mark.integration

DB = "postgres"  # cron.database_name: pg_cron and its schedules live here


@pytest.fixture(scope="module")
def crash_cluster() -> Iterator[Cluster]:
    pg = Cluster(name="pganalytics_ml-crash").init().start()
    try:
        with pg.connect(DB) as conn:
            for extension in ("pg_stat_statements", "pg_cron", "pganalytics_ml CASCADE"):
                conn.execute(f"CREATE EXTENSION {extension}")
            History(conn, "db-1").steady(statements(40), intervals=50)
        yield pg
    finally:
        pg.destroy()


def accepting(pg: Cluster) -> bool:
    try:
        with pg.connect(DB) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def job(pg: Cluster, job_id: str) -> dict:
    with pg.connect(DB) as conn:
        cur = conn.execute("SELECT * FROM pgml_job_status(%s)", (job_id,))
        return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def train_async(pg: Cluster) -> str:
    with pg.connect(DB) as conn:
        return conn.execute("SELECT job_id FROM pgml_train_async(90, 'auto', 'db-1')").fetchone()[0]


def drain_in_background(pg: Cluster) -> threading.Thread:
    def run() -> None:
        try:
            with pg.connect(DB) as conn:
                conn.execute("CALL pganalytics_ml.run_jobs(max_jobs => 1)")
        except psycopg.OperationalError:
            pass  # the worker is killed on purpose

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until_training(pg: Cluster, job_id: str) -> int:
    state = wait_for(
        lambda: (
            (j := job(pg, job_id))["status"] == "training"
            and (j["progress"] or {}).get("phase", "").startswith("training")
            and j
        ),
        60,
        interval=0.05,
        what="the job to reach its training phase",
    )
    with pg.connect(DB) as conn:
        pid = conn.execute("SELECT worker_pid FROM pganalytics_ml.jobs WHERE job_id = %s", (job_id,)).fetchone()[0]
    assert state["attempts"] == 1
    return pid


def finish_by_draining(pg: Cluster, job_id: str) -> dict:
    wait_for(lambda: accepting(pg), 60, what="the server to accept connections again")
    with pg.connect(DB) as conn:
        conn.execute("CALL pganalytics_ml.run_jobs()")
    return job(pg, job_id)


def test_a_worker_killed_with_sigkill_mid_training_is_recovered(crash_cluster: Cluster):
    job_id = train_async(crash_cluster)
    thread = drain_in_background(crash_cluster)
    pid = wait_until_training(crash_cluster, job_id)
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    done = finish_by_draining(crash_cluster, job_id)
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert "attempt 1 lost its worker" in done["errors"][0]["error"]
    assert isinstance(done["result"]["model_id"], int)


def test_a_server_restart_mid_training_loses_nothing(crash_cluster: Cluster):
    job_id = train_async(crash_cluster)
    thread = drain_in_background(crash_cluster)
    wait_until_training(crash_cluster, job_id)
    crash_cluster.restart("fast")
    thread.join(60)
    assert job(crash_cluster, job_id)["status"] == "training"  # nobody has looked yet: the row is intact
    done = finish_by_draining(crash_cluster, job_id)
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert "lost its worker" in done["errors"][0]["error"]


def test_a_job_out_of_attempts_when_its_worker_dies_is_dead_lettered(crash_cluster: Cluster):
    with crash_cluster.connect(DB) as conn:
        job_id = conn.execute(
            "SELECT job_id FROM pgml_job_enqueue('sleep', '{\"seconds\": 60}', max_attempts => 1)"
        ).fetchone()[0]
    thread = drain_in_background(crash_cluster)
    wait_for(lambda: job(crash_cluster, job_id)["status"] == "running", 30, what="the job to start")
    crash_cluster.restart("immediate")
    thread.join(60)
    done = finish_by_draining(crash_cluster, job_id)
    assert (done["status"], done["dead_lettered"], done["attempts"]) == ("failed", True, 1)


def test_a_real_pg_cron_tick_drains_a_queued_training_job(crash_cluster: Cluster):
    with crash_cluster.connect(DB) as conn:
        conn.execute("SELECT cron.schedule('someone-elses-job', '0 0 1 1 *', 'SELECT 1')")
        scheduled = conn.execute("SELECT job_name FROM pgml_schedule(snapshot_seconds => 60)").fetchall()
        again = conn.execute("SELECT job_name FROM pgml_schedule(snapshot_seconds => 60)").fetchall()
        assert scheduled == again and len(scheduled) == 7  # idempotent
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 8
    job_id = train_async(crash_cluster)
    done = wait_for(
        lambda: (j := job(crash_cluster, job_id))["status"] == "completed" and j,
        100,
        interval=1,
        what="pg_cron's drain to complete the training job",
    )
    assert done["attempts"] == 1 and isinstance(done["result"]["model_id"], int)
    with crash_cluster.connect(DB) as conn:
        status = conn.execute("SELECT pgml_status()->'scheduler'").fetchone()[0]
        names = {j["job_name"] for j in status["scheduled_jobs"]}
        assert names == {
            "pganalytics_ml:snapshot",
            "pganalytics_ml:drain",
            "pganalytics_ml:watchdog",
            "pganalytics_ml:retrain",
            "pganalytics_ml:cleanup",
            "pganalytics_ml:patterns",
            "pganalytics_ml:plans",
        }
        removed = {r[0] for r in conn.execute("SELECT * FROM pgml_unschedule()").fetchall()}
        assert removed == names
        assert conn.execute("SELECT jobname FROM cron.job").fetchall() == [("someone-elses-job",)]


def test_under_pg_cron_a_push_queues_its_forecasts_and_the_drain_refreshes_them(crash_cluster: Cluster):
    # issue 18: with the drain scheduled, push_forecasts = auto queues the refresh instead of running it.
    with crash_cluster.connect(DB) as conn:
        conn.execute("SELECT * FROM pgml_schedule(snapshot_seconds => 60)")
        assert conn.execute("SELECT pganalytics_ml._push_forecast_mode()").fetchone()[0] == "queued"
        History(conn, "db-9").steady(statements(4), intervals=4)
        last = conn.execute("SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'db-9'").fetchone()
        waiting = conn.execute(
            "SELECT job_id FROM pganalytics_ml.jobs WHERE kind = 'forecast' AND status = 'pending'"
            " AND arguments->>'server_id' = 'db-9'"
        ).fetchall()
        assert len(waiting) == 1
    done = wait_for(
        lambda: (j := job(crash_cluster, waiting[0][0]))["status"] == "completed" and j,
        100,
        interval=1,
        what="pg_cron's drain to run the forecast job",
    )
    assert done["result"]["forecasts_refreshed"] == 4
    with crash_cluster.connect(DB) as conn:
        fresh = conn.execute(
            "SELECT count(*) FROM pganalytics_ml.forecasts WHERE server_id = 'db-9' AND based_on = %s", last
        ).fetchone()[0]
        assert fresh == 4
        conn.execute("SELECT * FROM pgml_unschedule()")
        assert conn.execute("SELECT pganalytics_ml._push_forecast_mode()").fetchone()[0] == "inline"
