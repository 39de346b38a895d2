"""Forecast refresh off the push's path (issue 18): a push queues one coalesced forecast job per server,
the job worker refreshes what the push would have, pgml_predict answers in between from the previous
refresh, and a worker that dies mid-refresh loses nothing."""

from __future__ import annotations

import threading

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import wait_for

pytestmark = pytest.mark.integration

FORECAST_COLUMNS = "queryid, predicted_ms, lower_ms, upper_ms, confidence, source, forecaster, expert_ms, based_on"


def queued(db: Database) -> None:
    db.conn.execute("SET pganalytics_ml.push_forecasts = 'queued'")


def pending_forecast_jobs(db: Database) -> list:
    return db.all(
        "SELECT arguments->>'server_id' FROM pganalytics_ml.jobs WHERE kind = 'forecast' AND status = 'pending'"
        " ORDER BY 1"
    )


def drain_forecasts(db: Database) -> None:
    db.conn.execute("CALL pganalytics_ml.run_jobs(kinds => '{forecast}')")


def forecasts(db: Database, server_id: str) -> list:
    return db.all(
        f"SELECT {FORECAST_COLUMNS} FROM pganalytics_ml.forecasts WHERE server_id = %s ORDER BY queryid", (server_id,)
    )


def test_without_a_scheduled_drain_pushes_refresh_their_forecasts_themselves(db: Database):
    assert db.one("SELECT pganalytics_ml._push_forecast_mode()") == "inline"  # auto, and no pg_cron drain here
    History(db.conn, "db-1").steady(statements(3), intervals=3)
    assert pending_forecast_jobs(db) == []
    last = db.one("SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'db-1'")
    assert (
        db.one("SELECT count(*) FROM pganalytics_ml.forecasts WHERE server_id = 'db-1' AND based_on = %s", (last,)) == 3
    )
    assert db.one("SELECT pgml_status()->'forecast_refresh'->>'push_forecasts'") == "inline"


def test_a_queued_refresh_gives_the_forecasts_an_inline_one_gives(db: Database):
    # The same captures for two servers: one refreshed in each push, one by the forecast job after each push.
    queries = statements(6)
    inline, queue = History(db.conn, "db-inline"), History(db.conn, "db-queued")
    for k in range(12):
        means = {q: level * (1 + 0.3 * ((k + abs(q)) % 4)) for q, level in queries.items()}
        db.conn.execute("SET pganalytics_ml.push_forecasts = 'inline'")
        inline.capture(means)
        queued(db)
        queue.capture(means)
        drain_forecasts(db)
    assert forecasts(db, "db-inline") == forecasts(db, "db-queued")
    assert len(forecasts(db, "db-queued")) == 6
    state = "SELECT weights, q, recent_scores, updates FROM pganalytics_ml.forecaster_pool WHERE server_id = %s"
    assert db.one(state, ("db-inline",)) == db.one(state, ("db-queued",))
    done = db.all("SELECT result->>'forecasts_refreshed' FROM pganalytics_ml.jobs WHERE kind = 'forecast'")
    assert sorted(int(r[0]) for r in done) == [6] * 10  # captures 3 to 12: the second one's statements were new


def test_pushes_coalesce_into_one_job_per_server_and_predictions_answer_meanwhile(db: Database):
    queued(db)
    queries = statements(4)
    one, two = History(db.conn, "db-1"), History(db.conn, "db-2")
    one.steady(queries, intervals=3)
    two.steady(queries, intervals=2)
    # The second capture brought each statement's first interval: the push forecast those itself.
    assert db.one("SELECT count(*) FROM pganalytics_ml.forecasts WHERE server_id = 'db-1'") == 4
    assert pending_forecast_jobs(db) == [("db-1",)]  # db-2's statements were all new: nothing to queue
    queryid = next(iter(queries))
    before = db.one("SELECT predicted_execution_time_ms FROM pgml_predict(%s, 'db-1')", (queryid,))
    one.steady(queries, intervals=2, seed=3)
    two.steady(queries, intervals=2, seed=4)
    assert pending_forecast_jobs(db) == [("db-1",), ("db-2",)]
    # Stale by at most one refresh: the answer is still the one of the last refresh.
    assert db.one("SELECT predicted_execution_time_ms FROM pgml_predict(%s, 'db-1')", (queryid,)) == before
    waiting = db.one("SELECT pgml_status()->'forecast_refresh'")
    assert (waiting["push_forecasts"], waiting["servers_waiting"]) == ("queued", 2)
    assert waiting["oldest_waiting_since"] is not None

    drain_forecasts(db)
    assert pending_forecast_jobs(db) == []
    for server in ("db-1", "db-2"):
        last = db.one("SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = %s", (server,))
        fresh = db.one(
            "SELECT count(*) FROM pganalytics_ml.forecasts WHERE server_id = %s AND based_on = %s", (server, last)
        )
        assert fresh == 4
    assert db.one("SELECT predicted_execution_time_ms FROM pgml_predict(%s, 'db-1')", (queryid,)) != before
    assert db.one("SELECT pgml_status()->'forecast_refresh'->'servers_waiting'") == 0


def test_a_forecast_job_whose_worker_dies_is_retried_and_refreshes_everything(db: Database):
    queued(db)
    queries = statements(5)
    history = History(db.conn, "db-1")
    history.steady(queries, intervals=4)
    job_id = db.one("SELECT job_id FROM pganalytics_ml.jobs WHERE kind = 'forecast' AND status = 'pending'")
    stale = forecasts(db, "db-1")

    # A push of the server holds its capture lock: the worker claims the job and waits for it.
    with db.connect() as blocker:
        blocker.execute("BEGIN")
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended('pganalytics_ml.capture:' || 'db-1', 0))")
        errors: list = []

        def drain() -> None:
            try:
                with db.connect() as conn:
                    conn.execute("CALL pganalytics_ml.run_jobs(max_jobs => 1, kinds => '{forecast}')")
            except psycopg.Error as exc:
                errors.append(exc)

        worker = threading.Thread(target=drain)
        worker.start()
        pid = wait_for(
            lambda: db.one(
                "SELECT a.pid FROM pg_stat_activity a JOIN pganalytics_ml.jobs j ON j.worker_pid = a.pid"
                " WHERE j.job_id = %s AND a.wait_event_type = 'Lock'",
                (job_id,),
            ),
            30,
            what="the forecast job to wait for the capture lock",
        )
        assert db.one("SELECT status FROM pganalytics_ml.jobs WHERE job_id = %s", (job_id,)) == "running"
        db.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        worker.join(30)
        blocker.execute("ROLLBACK")
    assert errors and isinstance(errors[0], psycopg.OperationalError)
    assert forecasts(db, "db-1") == stale  # the dead attempt wrote nothing

    rescued = db.one("SELECT requeued FROM pganalytics_ml.rescue_jobs()")
    assert rescued == 1
    db.conn.execute("UPDATE pganalytics_ml.jobs SET run_at = now() WHERE job_id = %s", (job_id,))
    drain_forecasts(db)
    job = db.one(
        "SELECT status, attempts, result->>'forecasts_refreshed' FROM pganalytics_ml.jobs WHERE job_id = %s", (job_id,)
    )
    assert job == ("completed", 2, "5")
    last = db.one("SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'db-1'")
    assert {r[-1] for r in forecasts(db, "db-1")} == {last}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{}", "a forecast job takes one argument, server_id"),
        ('{"server_id": "db 1"}', "a forecast job takes one argument, server_id"),
        ('{"server_id": 7}', "a forecast job takes one argument, server_id"),
        ('{"server_id": "db-1", "all": true}', "a forecast job takes one argument, server_id"),
    ],
)
def test_a_forecast_job_with_bad_arguments_is_refused_and_nothing_queued(db: Database, arguments, message):
    err = db.error("SELECT * FROM pgml_job_enqueue('forecast', %s::jsonb)", (arguments,))
    assert err.sqlstate == "22023" and message in str(err)
    assert err.diag.message_hint
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs") == 0


def test_a_bad_push_forecasts_setting_fails_the_push_and_writes_nothing(db: Database):
    history = History(db.conn, "db-1")
    history.steady(statements(2), intervals=2)
    before = db.one("SELECT (count(*), max(captured_at)) FROM pganalytics_ml.snapshots")
    db.conn.execute("SET pganalytics_ml.push_forecasts = 'later'")
    with pytest.raises(psycopg.Error) as caught:
        history.capture({1: 2.0})
    assert caught.value.sqlstate == "22023"
    assert "pganalytics_ml.push_forecasts must be auto, inline or queued" in str(caught.value)
    assert caught.value.diag.message_hint
    assert db.one("SELECT (count(*), max(captured_at)) FROM pganalytics_ml.snapshots") == before
    status = db.one("SELECT pgml_status()")
    assert status["forecast_refresh"]["push_forecasts"] == "invalid setting"
    assert any("push_forecasts" in p for p in status["problems"])


def test_run_jobs_accepts_every_job_kind(db: Database):
    db.conn.execute("CALL pganalytics_ml.run_jobs(kinds => '{forecast,patterns,plans,train}')")
    err = db.error("CALL pganalytics_ml.run_jobs(kinds => '{forecasts}')")
    assert err.sqlstate == "22023" and "forecast" in err.diag.message_hint
