"""Concurrent sessions on one server: training and captures serialize where they must, and never fail for it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements

pytestmark = pytest.mark.integration


def in_parallel(db: Database, sessions: int, work: Callable[[psycopg.Connection[Any], int], None]) -> list[str]:
    """Runs ``work(conn, i)`` in ``sessions`` sessions at once; returns the errors they met (SQLSTATE: message)."""
    errors: list[str] = []
    start = threading.Barrier(sessions)

    def session(i: int) -> None:
        with db.connect() as conn:
            start.wait()
            try:
                work(conn, i)
            except psycopg.Error as exc:
                errors.append(f"{exc.sqlstate}: {exc}")

    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_four_parallel_trainings_of_one_server_each_store_a_model_with_its_own_version(db: Database):
    History(db.conn, "db-1").steady(statements(8), intervals=30)

    def train(conn: psycopg.Connection[Any], i: int) -> None:
        for _ in range(2):
            conn.execute("SELECT * FROM pgml_train(1, 'decision_tree', 'db-1')").fetchall()

    assert in_parallel(db, 4, train) == []
    versions = [v for (v,) in db.all("SELECT version FROM pganalytics_ml.models WHERE server_id = 'db-1' ORDER BY 1")]
    assert versions == list(range(1, 9))
    assert db.one("SELECT count(*) FROM pganalytics_ml.models WHERE server_id = 'db-1' AND is_active") == 1


def test_eight_sessions_pushing_one_server_without_capture_times_never_collide(db: Database):
    rows = json.dumps([{"queryid": q, "calls": 10, "total_exec_time": 5.0} for q in (11, 12, 13)])

    def push(conn: psycopg.Connection[Any], i: int) -> None:
        for _ in range(25):
            conn.execute("SELECT pgml_ingest_stats('pushed', %s::jsonb)", (rows,))

    assert in_parallel(db, 8, push) == []
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots WHERE server_id = 'pushed'") == 200


def test_looping_snapshots_beside_two_drainers_never_collide(db: Database):
    db.conn.execute("SELECT pgml_snapshot()")
    for _ in range(60):
        db.conn.execute("SELECT pgml_job_enqueue('snapshot')")

    def work(conn: psycopg.Connection[Any], i: int) -> None:
        if i < 2:
            conn.execute("CALL pganalytics_ml.run_jobs(max_jobs => 1000, max_seconds => 120)")
        else:
            for _ in range(25):
                conn.execute("SELECT * FROM pgml_snapshot()")

    assert in_parallel(db, 6, work) == []
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs WHERE status <> 'completed'") == 0
    # every capture computed its deltas against the one before: no interval starts after it ends
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots WHERE interval_start >= captured_at") == 0
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots WHERE server_id = 'local'") == 1 + 60 + 100
