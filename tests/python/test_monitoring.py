"""Every query of docs/monitoring/queries.yaml runs, as a pgml_reader login, and returns what it declares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import Database
from history_builder import History, statements

pytestmark = pytest.mark.integration

QUERIES = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "monitoring" / "queries.yaml").read_text())


@pytest.fixture
def monitored(db: Database) -> Database:
    """History, an active model, validated predictions, a failed job: every query has rows to return."""
    history = History(db.conn, "db-1")
    queries = statements(4)
    history.steady(queries, intervals=25)
    db.conn.execute("SELECT * FROM pgml_train(90, 'linear_regression', 'db-1')")
    db.conn.execute("SELECT count(*) FROM pgml_predict_all('db-1', log => true)")
    # validates them; two intervals in a row far above: all are regressions (fewer than 5 statements: no
    # server-wide shift is taken out)
    history.capture({q: level * 50 for q, level in queries.items()})
    history.capture({q: level * 50 for q, level in queries.items()})
    db.conn.execute("SELECT job_id FROM pgml_job_enqueue('sleep', '{\"fail\": \"boom\"}', max_attempts => 1)")
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    db.conn.execute("CREATE ROLE exporter LOGIN IN ROLE pgml_reader")
    yield db
    db.conn.execute("DROP ROLE exporter")


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_runs_as_a_reader_and_returns_its_declared_numeric_columns(monitored: Database, name: str):
    spec = QUERIES[name]
    declared = {next(iter(m)): next(iter(m.values()))["usage"] for m in spec["metrics"]}
    with monitored.cluster.connect(monitored.name, user="exporter") as conn:
        cur = conn.execute(spec["query"])
        columns = [c.name for c in cur.description]
        rows = cur.fetchall()
    assert sorted(columns) == sorted(declared)
    assert rows, f"{name} returned no rows"
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            if declared[column] == "LABEL":
                assert isinstance(value, str)
            else:
                assert isinstance(value, float), (column, value)


def test_the_alerts_see_what_happened(monitored: Database):
    with monitored.cluster.connect(monitored.name, user="exporter") as conn:
        assert conn.execute(QUERIES["pganalytics_ml_dead_lettered"]["query"]).fetchone() == (1.0,)
        assert conn.execute(QUERIES["pganalytics_ml_regressions"]["query"]).fetchall() == [("db-1", 4.0)]
        validated = conn.execute(QUERIES["pganalytics_ml_predictions"]["query"]).fetchone()
        assert validated[0] == "db-1" and validated[1] == 4.0 and validated[5] == 0.0
