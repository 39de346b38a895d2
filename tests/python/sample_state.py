"""A database in a representative state, for tests that probe every function against it: captured
history of a remote server and of this one, a trained active model, a logged prediction, and jobs that
completed, failed and wait."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from conftest import fresh_database
from history_builder import History, statements
from pgcluster import Cluster

SERVER = "db-1"
STATEMENTS = statements(8)


@dataclass
class SampleState:
    server_id: str
    queryids: list[int]
    model_id: int
    prediction_id: int
    completed_job: str
    failed_job: str
    pending_job: str

    def ids(self) -> dict[str, Any]:
        """The values a case may refer to, e.g. ``{model_id}``."""
        return {**self.__dict__, "queryid": self.queryids[0]}


def populate(conn: Any) -> SampleState:
    """Fills the database behind ``conn`` (autocommit, superuser); returns the ids it created."""
    History(conn, SERVER).steady(STATEMENTS, intervals=30)
    conn.execute("CREATE TABLE IF NOT EXISTS sample_probe (id int)")
    conn.execute("SELECT * FROM pgml_snapshot()")
    conn.execute("SELECT count(*) FROM sample_probe")
    conn.execute("SELECT * FROM pgml_snapshot()")
    model_id = conn.execute("SELECT model_id FROM pgml_train(90, 'linear_regression', %s)", (SERVER,)).fetchone()[0]
    queryid = next(iter(STATEMENTS))
    prediction_id = conn.execute("SELECT prediction_id FROM pgml_predict(%s, %s)", (queryid, SERVER)).fetchone()[0]

    def enqueue(kind: str, arguments: dict, **options: Any) -> str:
        names = "".join(f", {k} => %s" for k in options)
        return conn.execute(
            f"SELECT job_id FROM pgml_job_enqueue(%s, %s::jsonb{names})",
            (kind, json.dumps(arguments), *options.values()),
        ).fetchone()[0]

    completed = enqueue("sleep", {"seconds": 0})
    failed = enqueue("sleep", {"fail": "the disk is on fire"}, max_attempts=1)
    conn.execute("CALL pganalytics_ml.run_jobs(kinds => '{sleep}')")
    pending = enqueue("sleep", {"seconds": 0}, run_at="2999-01-01")
    return SampleState(
        server_id=SERVER,
        queryids=list(STATEMENTS),
        model_id=model_id,
        prediction_id=prediction_id,
        completed_job=completed,
        failed_job=failed,
        pending_job=pending,
    )


@contextmanager
def sampled_database(cluster: Cluster, template: str) -> Iterator[tuple[Any, SampleState]]:
    """A fresh database in the sample state, and an autocommit connection to it; dropped afterwards."""
    name = fresh_database(cluster, template)
    conn = cluster.connect(name)
    try:
        yield conn, populate(conn)
    finally:
        conn.close()
        cluster.drop_database(name)


def table_fingerprints(conn: Any, extra: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    """Row count and a digest of the contents of every table of schema pganalytics_ml (and ``extra``)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c"
            " WHERE c.relnamespace = 'pganalytics_ml'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1"
        ).fetchall()
    ]
    fingerprints = {}
    for table in (*tables, *extra):
        fingerprints[table] = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {table} x"
        ).fetchone()
    return fingerprints
