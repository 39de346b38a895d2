"""Under load: 8 pgbench clients predict for 60 s while a training job runs through the queue, captures
arrive and the active model flips between two models. Not one prediction fails, nobody deadlocks, and
every prediction is logged: a model swap is atomic.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import PG_BIN

pytestmark = pytest.mark.integration

SERVER = "db-1"
STATEMENTS = statements(20)
CLIENTS = 8
SECONDS = 60
# history_builder's query hashes are -1000003 * k for k = 1..n.
PREDICT = f"""\\set k random(1, {len(STATEMENTS)})
SELECT predicted_execution_time_ms FROM pgml_predict(-1000003 * :k, '{SERVER}');
"""


class Background:
    """Runs ``step`` over and over in a thread with its own connection until stopped; keeps what failed."""

    def __init__(self, db: Database, step: Callable[[psycopg.Connection], None]):
        self.db, self.step = db, step
        self.errors: list[str] = []
        self.rounds = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with self.db.connect() as conn:
            while not self.stopping.is_set():
                try:
                    self.step(conn)
                    self.rounds += 1
                except psycopg.Error as err:
                    self.errors.append(f"{err.sqlstate}: {err}")

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(300)


def run_pgbench(db: Database) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "predict.sql"
        script.write_text(PREDICT)
        return subprocess.run(
            [PG_BIN / "pgbench", "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS), "-f", script, db.name],
            env=db.cluster.libpq_env(db.name),
            capture_output=True,
            text=True,
        )


def test_predictions_never_fail_while_models_train_swap_and_captures_arrive(db: Database):
    history = History(db.conn, SERVER)
    history.steady(STATEMENTS, intervals=40)
    first = db.one("SELECT model_id FROM pgml_train(90, 'linear_regression', %s)", (SERVER,))
    second = db.one("SELECT model_id FROM pgml_train(90, 'decision_tree', %s)", (SERVER,))
    db.conn.execute("CREATE TABLE probe (id int)")
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    predictions_before = db.one("SELECT count(*) FROM pganalytics_ml.predictions")
    log_start = len(db.cluster.log_text())
    flips: list[int] = []

    def flip(conn: psycopg.Connection) -> None:
        target = (first, second)[len(flips) % 2]
        conn.execute("SELECT * FROM pgml_activate_model(%s)", (target,))
        flips.append(target)
        time.sleep(0.2)

    def capture(conn: psycopg.Connection) -> None:
        history.conn = conn  # the remote collector's own session
        history.capture({q: level * (1 + 0.1 * (history.captures % 3)) for q, level in STATEMENTS.items()})
        conn.execute("SELECT count(*) FROM probe")
        conn.execute("SELECT * FROM pgml_snapshot()")
        time.sleep(1)

    trained: list[str] = []

    def train(conn: psycopg.Connection) -> None:
        if len(trained) < 2:
            job_id = conn.execute("SELECT job_id FROM pgml_train_async(90, 'random_forest', %s)", (SERVER,)).fetchone()[
                0
            ]
            trained.append(job_id)
            conn.execute("CALL pganalytics_ml.run_jobs(kinds => '{train}')")
        time.sleep(0.5)

    with Background(db, flip) as flipper, Background(db, capture) as captures, Background(db, train) as worker:
        bench = run_pgbench(db)
        flips_during_bench = len(flips)
    output = bench.stdout + bench.stderr

    assert bench.returncode == 0, output
    assert "aborted" not in output, output
    assert re.search(r"number of failed transactions: 0\b", output), output
    processed = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
    assert processed > 0
    # Every prediction was answered and logged; none came from a half-swapped model.
    assert db.one("SELECT count(*) FROM pganalytics_ml.predictions") - predictions_before == processed
    assert flipper.errors == [] and captures.errors == [] and worker.errors == []
    assert flips_during_bench >= 2 and captures.rounds >= 2
    statuses = db.all("SELECT status, attempts FROM pganalytics_ml.jobs WHERE job_id = ANY (%s)", (trained,))
    assert statuses and all(s == ("completed", 1) for s in statuses), statuses
    log = db.cluster.log_text()[log_start:]
    assert "deadlock detected" not in log and f"@{db.name} ERROR" not in log, log[-3000:]
    # One active model, and every statement's forecast from it.
    active = db.all("SELECT model_id FROM pganalytics_ml.models WHERE server_id = %s AND is_active", (SERVER,))
    assert len(active) == 1
    sources = db.all("SELECT DISTINCT source, model_id FROM pganalytics_ml.forecasts WHERE server_id = %s", (SERVER,))
    assert sources == [("model", active[0][0])]
