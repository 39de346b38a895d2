"""Durable jobs: queueing, draining, retries with backoff, dead letters, time limits, cancel and retry."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import wait_for

pytestmark = pytest.mark.integration


def enqueue(db: Database, kind: str, arguments: dict | None = None, **options) -> str:
    names = ", ".join(f"{k} => %s" for k in options)
    sql = f"SELECT job_id FROM pgml_job_enqueue(%s, %s::jsonb{', ' if names else ''}{names})"
    return db.one(sql, (kind, json.dumps(arguments or {}), *options.values()))


def status(db: Database, job_id: str) -> dict:
    cur = db.conn.execute("SELECT * FROM pgml_job_status(%s)", (job_id,))
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def drain(db: Database, **arguments) -> None:
    names = ", ".join(f"{k} => {v}" for k, v in arguments.items())
    db.conn.execute(f"CALL pganalytics_ml.run_jobs({names})")


def test_train_async_queues_a_job_that_a_drain_completes(db: Database):
    History(db.conn, "db-1").steady(statements(6), intervals=25)
    job_id, state = db.all("SELECT job_id, status FROM pgml_train_async(30, 'linear_regression', 'db-1')")[0]
    assert state == "pending"
    assert status(db, job_id)["status"] == "pending"
    drain(db)
    job = status(db, job_id)
    assert job["status"] == "completed" and job["attempts"] == 1 and job["error"] is None
    assert job["started_at"] <= job["completed_at"] and job["progress"]["percent"] == 100
    result = job["result"]
    assert isinstance(result["model_id"], int) and result["model_type"] == "linear_regression"
    assert {"r_squared", "rmse", "mae", "training_samples", "feature_importance"} <= set(result)
    assert db.one("SELECT is_active FROM pganalytics_ml.models WHERE model_id = %s", (result["model_id"],))


@pytest.mark.parametrize(
    ("call", "sqlstate"),
    [
        ("pgml_train_async(0)", "22023"),
        ("pgml_train_async(NULL)", "22004"),
        ("pgml_train_async(90, 'nonsense')", "22023"),
        ("pgml_job_enqueue('explode')", "22023"),
        ("pgml_job_enqueue(NULL)", "22004"),
        ("pgml_job_enqueue('sleep', '[]')", "22023"),
        ("pgml_job_enqueue('sleep', '{\"seconds\": -1}')", "22023"),
        ("pgml_job_enqueue('cleanup', '{\"keep\": 1}')", "22023"),
        ("pgml_job_enqueue('sleep', max_attempts => 0)", "22023"),
        ("pgml_job_enqueue('sleep', soft_limit => '5 min', hard_limit => '1 min')", "22023"),
        ("pgml_job_status('no-such-job')", "P0002"),
        ("pgml_job_status(NULL)", "22004"),
        ("pgml_job_retry('no-such-job')", "P0002"),
        ("pgml_job_cancel('no-such-job')", "P0002"),
        ("pgml_jobs('sleeping')", "22023"),
        ("pgml_jobs(NULL, 0)", "22023"),
    ],
)
def test_bad_job_calls_get_a_sqlstate_and_queue_nothing(db: Database, call, sqlstate):
    err = db.error(f"SELECT * FROM {call}")
    assert err.sqlstate == sqlstate and err.diag.message_hint
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs") == 0


def test_four_drainers_complete_two_hundred_jobs_exactly_once(db: Database):
    db.conn.execute("CREATE TABLE executions (job_id text, pid int, at timestamptz DEFAULT clock_timestamp())")
    db.conn.execute("""
        CREATE FUNCTION record_claim() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 'running' AND OLD.status = 'pending' THEN
                INSERT INTO public.executions (job_id, pid) VALUES (NEW.job_id, pg_backend_pid());
            END IF;
            RETURN NEW;
        END $$""")
    db.conn.execute(
        "CREATE TRIGGER record_claim AFTER UPDATE ON pganalytics_ml.jobs FOR EACH ROW EXECUTE FUNCTION record_claim()"
    )
    db.conn.execute("SELECT pgml_job_enqueue('sleep', '{\"seconds\": 0}') FROM generate_series(1, 200)")
    errors = []

    def drainer() -> None:
        try:
            with db.connect() as conn:
                conn.execute("CALL pganalytics_ml.run_jobs(max_jobs => 1000, max_seconds => 120)")
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=drainer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.all("SELECT status, count(*) FROM pganalytics_ml.jobs GROUP BY 1") == [("completed", 200)]
    assert db.one("SELECT count(*), count(DISTINCT job_id) FROM executions") == (200, 200)
    assert db.one("SELECT max(attempts) FROM pganalytics_ml.jobs") == 1
    assert db.one("SELECT count(DISTINCT pid) FROM executions") >= 2  # the work really was shared


def test_failures_retry_with_capped_exponential_backoff_then_dead_letter(db: Database):
    db.conn.execute("SET pganalytics_ml.job_backoff_base = '100 ms'")
    db.conn.execute("SET pganalytics_ml.job_backoff_cap = '150 ms'")
    job_id = enqueue(db, "sleep", {"fail": "disk on fire"})
    expected_waits = [0.1, 0.15]  # 100 ms, then 200 ms capped at 150 ms
    for attempt, wait in enumerate(expected_waits, start=1):
        drain(db)
        job = status(db, job_id)
        assert (job["status"], job["attempts"], job["dead_lettered"]) == ("pending", attempt, False)
        assert job["error"] == "RuntimeError: disk on fire"
        delay = (job["next_run_at"] - job["updated_at"]).total_seconds()
        assert delay == pytest.approx(wait, abs=0.005)
        drain(db)  # too early: nothing runs before next_run_at
        assert status(db, job_id)["attempts"] == attempt
        time.sleep(wait + 0.05)
    drain(db)
    job = status(db, job_id)
    assert (job["status"], job["attempts"], job["dead_lettered"]) == ("failed", 3, True)
    assert [e["attempt"] for e in job["errors"]] == [1, 2, 3]
    assert [r[0] for r in db.all("SELECT job_id FROM pgml_jobs('dead_lettered')")] == [job_id]
    health = db.one("SELECT pgml_status()")
    assert health["dead_lettered_jobs"] == 1 and health["status"] == "degraded"

    retried = status(db, db.one("SELECT job_id FROM pgml_job_retry(%s)", (job_id,)))
    assert (retried["status"], retried["attempts"], retried["dead_lettered"]) == ("pending", 0, False)
    assert len(retried["errors"]) == 3  # the history of earlier attempts is kept
    err = db.error("SELECT * FROM pgml_job_retry(%s)", (job_id,))
    assert err.sqlstate == "55000"


def test_a_pending_job_cancelled_never_runs(db: Database):
    job_id = enqueue(db, "sleep", {"seconds": 0})
    db.conn.execute("SELECT * FROM pgml_job_cancel(%s)", (job_id,))
    drain(db)
    job = status(db, job_id)
    assert (job["status"], job["cancelled"], job["attempts"], job["started_at"]) == ("failed", True, 0, None)


def run_in_background(db: Database, sql: str) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            with db.connect() as conn:
                conn.execute(sql)
            outcome.append(None)
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until_running(db: Database, job_id: str) -> dict:
    return wait_for(
        lambda: (j := status(db, job_id))["status"] in ("running", "training") and j, 30, what=f"job {job_id} to start"
    )


def test_progress_is_visible_while_a_job_runs_and_cancel_stops_it(db: Database):
    job_id = enqueue(db, "sleep", {"seconds": 30, "step": 0.1})
    thread, _ = run_in_background(db, "CALL pganalytics_ml.run_jobs(max_jobs => 1)")
    wait_until_running(db, job_id)
    first = wait_for(lambda: (p := status(db, job_id)["progress"]) and p["percent"] > 0 and p, 10, what="progress")
    later = wait_for(
        lambda: (p := status(db, job_id)["progress"])["percent"] > first["percent"] and p, 10, what="more progress"
    )
    assert later["phase"] == "sleeping"
    db.conn.execute("SELECT * FROM pgml_job_cancel(%s)", (job_id,))
    thread.join(30)
    job = status(db, job_id)
    assert (job["status"], job["cancelled"], job["dead_lettered"]) == ("failed", True, False)
    assert job["completed_at"] is not None


def test_past_the_soft_limit_a_job_stops_cleanly(db: Database):
    job_id = enqueue(db, "sleep", {"seconds": 30, "step": 0.1}, soft_limit="300 ms", hard_limit="20 s")
    drain(db)
    job = status(db, job_id)
    assert (job["status"], job["dead_lettered"], job["attempts"]) == ("failed", True, 1)
    assert job["error"].startswith("soft time limit of 00:00:00.3 exceeded during sleeping")


def test_the_hard_limit_holds_when_the_job_never_checks(db: Database):
    job_id = enqueue(db, "sleep", {"seconds": 60, "checkpoints": False}, soft_limit="1 s", hard_limit="1 s")
    thread, outcome = run_in_background(db, "CALL pganalytics_ml.run_jobs(max_jobs => 1)")
    pid = wait_until_running(db, job_id) and db.one(
        "SELECT worker_pid FROM pganalytics_ml.jobs WHERE job_id = %s", (job_id,)
    )
    time.sleep(1.2)
    assert db.all("SELECT * FROM pganalytics_ml.rescue_jobs()") == [(0, 0, 1)]
    thread.join(30)
    assert isinstance(outcome[0], psycopg.OperationalError)  # the worker's backend was terminated
    job = status(db, job_id)
    assert (job["status"], job["dead_lettered"]) == ("failed", True)
    assert "hard time limit of 00:00:01 exceeded" in job["error"]
    assert db.one("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == 0


def test_cleanup_removes_what_is_past_its_retention_and_keeps_the_latest_capture(db: Database):
    history = History(db.conn, "db-1", start=datetime.now(UTC) - timedelta(days=10))
    history.steady(statements(3), intervals=5)
    old_job = enqueue(db, "sleep", {"seconds": 0})
    drain(db)
    db.conn.execute(
        "UPDATE pganalytics_ml.jobs SET completed_at = now() - interval '8 days' WHERE job_id = %s", (old_job,)
    )
    job_id = enqueue(db, "cleanup", {"history_retention": "1 day"})
    drain(db)
    result = status(db, job_id)["result"]
    assert result["jobs"] == 1 and result["query_stats"] == 12 and result["snapshots"] == 4
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots") == 1  # the baseline of the next capture
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs WHERE job_id = %s", (old_job,)) == 0


def test_the_worker_refuses_a_role_that_is_not_a_superuser(db: Database):
    db.conn.execute("CREATE ROLE job_admin IN ROLE pgml_admin")
    db.conn.execute("GRANT EXECUTE ON PROCEDURE pganalytics_ml.run_jobs(integer, integer, text[]) TO job_admin")
    db.conn.execute("SET ROLE job_admin")
    try:
        err = db.error("CALL pganalytics_ml.run_jobs()")
    finally:
        db.conn.execute("RESET ROLE")
        db.conn.execute("DROP OWNED BY job_admin")
        db.conn.execute("DROP ROLE job_admin")
    assert err.sqlstate == "42501" and "superuser" in err.diag.message_primary


@pytest.mark.parametrize("call", ["CALL pganalytics_ml.run_jobs()", "CALL pganalytics_ml.run_snapshots(10, 0)"])
def test_the_committing_procedures_refuse_a_transaction_block_and_say_why(db: Database, call: str):
    job_id = enqueue(db, "sleep", {"seconds": 0})
    with db.connect(autocommit=False) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(call)
    err = caught.value
    assert err.sqlstate == "2D000"
    assert "cannot run inside a transaction block" in err.diag.message_primary
    assert "BEGIN" in err.diag.message_hint
    assert status(db, job_id)["status"] == "pending"
