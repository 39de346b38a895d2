"""Training on a bounded sample of any window: the sample's caps, the memory guard and a backend's peak memory."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from conftest import Database

pytestmark = pytest.mark.integration

SERVER = "big"
TABLES = ("models", "forecasts", "predictions", "jobs")

# A history written straight into the tables: every third statement runs only at every third capture
# (its windows reach back past the captures just before a target), the others at every capture.
HISTORY_SQL = """
INSERT INTO pganalytics_ml.statements (server_id, queryid, query, first_seen, last_active_at, parse_ok,
                                       statement_kind, n_tables, n_joins, n_subqueries, n_aggregates,
                                       n_window_functions, n_ctes, has_group_by, has_order_by, has_limit,
                                       has_distinct)
SELECT %(server)s, s, 'SELECT * FROM t' || s || ' WHERE id = $1', now() - interval '30 days', now(), true,
       'select', 1 + s %% 3, s %% 2, 0, 0, 0, 0, false, s %% 5 = 0, false, false
  FROM generate_series(1, %(statements)s) s;
INSERT INTO pganalytics_ml.snapshots (server_id, captured_at, interval_start, statements, new_statements,
                                      active_statements)
SELECT %(server)s, t0 + c * interval '5 minutes', CASE WHEN c > 0 THEN t0 + (c - 1) * interval '5 minutes' END,
       %(statements)s, 0,
       CASE WHEN c = 0 THEN 0
            ELSE (SELECT count(*) FROM generate_series(1, %(statements)s) s WHERE s %% 3 <> 0 OR c %% 3 = 0) END
  FROM (SELECT date_trunc('minute', now()) - %(captures)s * interval '5 minutes' AS t0) t,
       generate_series(0, %(captures)s) c;
INSERT INTO pganalytics_ml.query_stats (server_id, queryid, interval_start, interval_end, calls, total_exec_time,
    mean_exec_time, stddev_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied,
    shared_blks_written, local_blks_hit, local_blks_read, local_blks_dirtied, local_blks_written, temp_blks_read,
    temp_blks_written, blk_read_time, blk_write_time, wal_records, wal_fpi, wal_bytes, plans, total_plan_time,
    mean_plan_time)
SELECT %(server)s, s, p.interval_start, p.captured_at, calls, calls * m, m, m * 0.2, calls, 10 * calls, calls, 0, 0,
       0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, calls, calls * 0.01, CASE WHEN s %% 4 = 0 THEN 0.01 END
  FROM pganalytics_ml.snapshots p,
       generate_series(1, %(statements)s) s,
       LATERAL (SELECT 50 + (s * 7 + extract(epoch FROM p.captured_at)::bigint / 300) %% 40 AS calls,
                       exp((s %% 50) / 10.0) * (1 + 0.4 * sin(extract(epoch FROM p.captured_at) / 3600.0 + s))
                       * (0.9 + 0.2 * ((hashint8(s * 100003 + extract(epoch FROM p.captured_at)::bigint) & 1023)
                                       / 1023.0)) AS m) v
 WHERE p.server_id = %(server)s AND p.interval_start IS NOT NULL
   AND (s %% 3 <> 0 OR extract(epoch FROM p.captured_at - (SELECT min(captured_at) FROM pganalytics_ml.snapshots
                                                         WHERE server_id = %(server)s))::bigint / 300 %% 3 = 0);
ANALYZE pganalytics_ml.query_stats;
"""


def build(db: Database, statements: int, captures: int) -> int:
    params = {"server": SERVER, "statements": statements, "captures": captures}
    with db.conn.transaction():
        for statement in HISTORY_SQL.split(";")[:-1]:
            db.conn.execute(statement, params)
    return db.one("SELECT count(*) FROM pganalytics_ml.query_stats WHERE server_id = %s", (SERVER,))


def train(conn: psycopg.Connection, model_type: str = "random_forest") -> dict:
    cur = conn.execute("SELECT * FROM pgml_train(30, %s, %s)", (model_type, SERVER))
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def counts(db: Database) -> dict[str, int]:
    return {t: db.one(f"SELECT count(*) FROM pganalytics_ml.{t}") for t in TABLES}


@pytest.fixture
def history(db: Database) -> Database:
    build(db, statements=60, captures=300)
    return db


def test_small_windows_are_learned_whole(history: Database):
    available = history.one("SELECT count(*) FROM pganalytics_ml.query_stats")
    result = train(history.conn, "linear_regression")
    assert result["sampled"] is False and result["samples_available"] == available
    assert result["samples_used"] == result["training_samples"] + result["holdout_samples"]
    assert result["samples_used"] > 0.95 * available  # all but each statement's first 3 intervals


def test_the_sample_keeps_both_caps_and_reports_what_it_left(history: Database):
    history.conn.execute("SET pganalytics_ml.training_max_samples = 3000")
    history.conn.execute("SET pganalytics_ml.training_max_samples_per_statement = 60")
    result = train(history.conn, "decision_tree")
    assert result["sampled"] is True
    assert result["samples_available"] == history.one("SELECT count(*) FROM pganalytics_ml.query_stats")
    assert 2000 < result["samples_used"] <= 3000
    assert result["holdout_samples"] >= 0.1 * result["samples_used"]
    stored = history.one("SELECT metrics FROM pganalytics_ml.models WHERE model_id = %s", (result["model_id"],))
    assert stored["samples_used"] == result["samples_used"] and stored["sample_limit"] == 3000


SAMPLE_CHECK = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import numpy as np
from pganalytics_ml.forecasting import history, training
start, end = training._window(plpy, 'big', 30)
plpy.execute("SET pganalytics_ml.training_max_samples = 0")
plpy.execute("SET pganalytics_ml.training_max_samples_per_statement = 0")
full = history.training_set(plpy, 'big', start.isoformat(), end.isoformat())
plpy.execute("SET pganalytics_ml.training_max_samples = 2500")
plpy.execute("SET pganalytics_ml.training_max_samples_per_statement = 40")
part = history.training_set(plpy, 'big', start.isoformat(), end.isoformat())
assert full.plan is not None and not full.plan.sampled, 'the whole window fits'
assert part.plan.sampled and len(part.target) <= 2500, len(part.target)
per_statement = np.unique(part.queryid, return_counts=True)[1]
assert per_statement.max() <= 40, per_statement.max()
assert len(per_statement) == len(np.unique(full.queryid)), 'every statement is represented'
# The holdout is the latest part, whole captures: no training target at or after its first end.
assert part.target_end[part.holdout].min() > part.target_end[~part.holdout].max()
# Each sampled target has exactly the window and target it has in the whole window.
key = {(q, e): i for i, (q, e) in enumerate(zip(full.queryid.tolist(), full.target_end.tolist()))}
rows = np.array([key[(q, e)] for q, e in zip(part.queryid.tolist(), part.target_end.tolist())])
assert np.array_equal(part.windows.values, full.windows.values[rows], equal_nan=True), 'windows differ'
assert np.allclose(part.target, full.target[rows]), 'targets differ'
assert np.allclose(part.windows.structure, full.windows.structure[rows])
# Deterministic: the same settings choose the same sample.
again = history.training_set(plpy, 'big', start.isoformat(), end.isoformat())
assert np.array_equal(again.queryid, part.queryid) and np.array_equal(again.target_end, part.target_end)
$$ LANGUAGE plpython3u
"""


def test_a_sampled_target_has_the_window_it_has_in_the_whole_history(history: Database):
    history.conn.execute(SAMPLE_CHECK)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("training_memory_limit", "lots"),
        ("training_memory_limit", "-5MB"),
        ("training_max_samples", "1e6"),
        ("training_max_samples_per_statement", "-1"),
    ],
)
def test_a_bad_setting_is_refused_with_a_hint_and_nothing_written(history: Database, setting: str, value: str):
    before = counts(history)
    history.conn.execute(f"SET pganalytics_ml.{setting} = '{value}'")
    err = history.error("SELECT * FROM pgml_train(30, 'linear_regression', 'big')")
    assert err.sqlstate == "22023" and setting in err.diag.message_primary and err.diag.message_hint
    assert counts(history) == before


def test_a_memory_limit_too_small_to_train_refuses_before_reading(history: Database):
    before = counts(history)
    history.conn.execute("SET pganalytics_ml.training_memory_limit = '64MB'")
    err = history.error("SELECT * FROM pgml_train(30, 'random_forest', 'big')")
    assert err.sqlstate == "53200"
    assert "training_memory_limit" in err.diag.message_primary and "training_memory_limit" in err.diag.message_hint
    assert counts(history) == before


def vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def test_no_backend_exceeds_the_memory_limit_on_a_history_larger_than_it_allows(db: Database):
    from pganalytics_ml.forecasting import sampling

    available = build(db, statements=400, captures=400)  # about 130k intervals
    limit_mb = 420
    assert sampling.estimated_bytes(available) > limit_mb << 20, "the whole history would not fit the limit"
    for model_type in ("random_forest", "gradient_boosting"):
        with db.connect(autocommit=True) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            conn.execute(f"SET pganalytics_ml.training_memory_limit = '{limit_mb}MB'")
            result = train(conn, model_type)
            peak = vm_hwm_kib(pid)
        assert result["sampled"] and result["samples_used"] <= sampling.fitting(limit_mb << 20)
        assert result["samples_available"] == available
        assert result["estimated_memory_mb"] <= limit_mb
        assert peak <= limit_mb * 1024, f"{model_type}: peak {peak // 1024} MB over the {limit_mb} MB limit"
