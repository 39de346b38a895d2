"""Property-based bad input against the real server: no input crashes the backend, writes partially,
or leaves a number that is not finite. Over pgml_ingest_stats payloads, and over the numeric arguments of
the public functions in a database with history, a model, predictions and jobs."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import fresh_database
from pgcluster import Cluster
from sample_state import SampleState, sampled_database, table_fingerprints

pytestmark = pytest.mark.integration

EXPECTED_SQLSTATES = {"22023", "22004", "22P02", "22P05"}
NOT_FINITE = """
    SELECT q::text FROM pganalytics_ml.query_stats q
     WHERE NOT isfinite_all(ARRAY[total_exec_time, mean_exec_time, coalesce(stddev_exec_time, 0), blk_read_time,
                                  blk_write_time, total_plan_time, coalesce(mean_plan_time, 0)])
    UNION ALL
    SELECT f::text FROM pganalytics_ml.forecasts f
     WHERE NOT isfinite_all(ARRAY[predicted_ms, lower_ms, upper_ms, confidence])
"""
IS_FINITE_ALL = """
    CREATE FUNCTION isfinite_all(float8[]) RETURNS boolean LANGUAGE sql IMMUTABLE
        AS $$ SELECT bool_and(v NOT IN ('NaN', 'Infinity', '-Infinity')) FROM unnest($1) v $$
"""

numbers = st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12) | st.sampled_from(["1", "-5", "1e999", "NaN"])
junk = st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8
)
counters = ("rows", "shared_blks_hit", "blk_read_time", "wal_bytes", "plans", "total_plan_time")
good_row = st.fixed_dictionaries(
    {
        "queryid": st.integers(-(2**63), 2**63 - 1),
        "calls": st.integers(0, 10**12),
        "total_exec_time": st.floats(0, 1e12),
    },
    optional={
        **{name: st.integers(0, 10**12) for name in counters},
        "stddev_exec_time": st.floats(0, 1e6),
        "mean_exec_time": st.floats(0, 1e6),
        "query": st.text(max_size=30).filter(lambda t: "\x00" not in t),
    },
)
bad_row = st.fixed_dictionaries(
    {
        "queryid": st.integers(-5, 5) | scalars,
        "calls": st.integers(0, 10**6) | scalars,
        "total_exec_time": st.floats(0, 1e6) | scalars,
    },
    optional={name: numbers | scalars for name in (*counters, "stddev_exec_time", "mean_exec_time")}
    | {"userid": st.integers(-1, 3), "toplevel": st.booleans() | scalars, "query": st.text(max_size=30)},
)
rows = st.lists(good_row, min_size=1, max_size=4, unique_by=lambda r: r["queryid"]) | st.lists(
    good_row | bad_row, min_size=1, max_size=4
)
payload = st.one_of(
    rows,
    st.fixed_dictionaries({"rows": rows}, optional={"stats_reset": scalars}),
    junk,
)


@pytest.fixture(scope="module")
def conn(cluster: Cluster, template: str) -> Iterator[psycopg.Connection]:
    name = fresh_database(cluster, template)
    connection = cluster.connect(name)
    connection.execute(IS_FINITE_ALL)
    try:
        yield connection
    finally:
        connection.close()
        cluster.drop_database(name)


def counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every table of the extension."""
    return {table: count for table, (count, _digest) in table_fingerprints(conn).items()}


_minutes = itertools.count()
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)  # with room for every example


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload, st.sampled_from(["db-1", "db-2"]))
def test_ingest_survives_any_json(conn: psycopg.Connection, stats, server):
    if isinstance(stats, dict) and "rows" in stats:
        stats = {**stats, "captured_at": (START + timedelta(minutes=next(_minutes))).isoformat()}
    elif isinstance(stats, list):
        server = "db-now"  # a bare array is captured now: after it, this server takes no earlier capture
    before = counts(conn)
    try:
        ingested = conn.execute("SELECT pgml_ingest_stats(%s, %s::jsonb)", (server, json.dumps(stats))).fetchone()[0]
    except psycopg.OperationalError:
        raise  # the backend died: never acceptable
    except psycopg.Error as err:
        assert err.sqlstate in EXPECTED_SQLSTATES, (err.sqlstate, str(err))
        event(f"refused with {err.sqlstate}")
        assert counts(conn) == before
    else:
        assert ingested == len(stats if isinstance(stats, list) else stats["rows"])
        after = counts(conn)
        assert after["pganalytics_ml.snapshots"] == before["pganalytics_ml.snapshots"] + 1
        event("ingested")
    assert conn.execute(NOT_FINITE).fetchall() == []


# --- numeric arguments -----------------------------------------------------------------------------------
INT4 = st.integers(-(2**31), 2**31 - 1)
INT8 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([5e-324, 1e-300, 1e-9, 1e15, 1e308])
NUMERIC_SQLSTATES = {"22023", "22004", "P0002", "22003"}
few = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def sample(cluster: Cluster, template: str) -> Iterator[tuple[psycopg.Connection, SampleState]]:
    with sampled_database(cluster, template) as sampled:
        yield sampled


def probe(conn: psycopg.Connection, query: str, params: tuple) -> list[tuple] | None:
    """Runs ``query``: it answers with finite numbers, or fails with an expected SQLSTATE having changed
    nothing; either way the session lives on. Returns the rows, or None when refused."""
    before = table_fingerprints(conn)
    try:
        cur = conn.execute(query, params)
        rows = cur.fetchall() if cur.description else []
    except psycopg.OperationalError:
        raise  # the backend died: never acceptable
    except psycopg.Error as err:
        assert err.sqlstate in NUMERIC_SQLSTATES, (err.sqlstate, str(err))
        assert table_fingerprints(conn) == before
        event(f"refused with {err.sqlstate}")
        rows = None
    else:
        event("answered")
        numbers = [v for row in rows for v in row if isinstance(v, float)]
        assert all(math.isfinite(v) for v in numbers), rows
    assert conn.execute("SELECT 1").fetchone() == (1,)
    return rows


def jobs(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pganalytics_ml.jobs").fetchone()[0]


@few
@given(query_hash=INT8 | st.sampled_from([-1000003 * k for k in range(1, 9)]))
def test_predict_takes_any_query_hash(sample, query_hash: int):
    conn, state = sample
    rows = probe(conn, "SELECT * FROM pgml_predict(%s::bigint, %s)", (query_hash, state.server_id))
    if rows is not None:
        (p,) = rows
        assert p[1] == query_hash and 0 < p[3] <= p[2] <= p[4] and 0 <= p[5] <= 1
    rows = probe(conn, "SELECT pgml_predict_json(%s::bigint, %s)", (query_hash, state.server_id))
    if rows is not None:
        assert math.isfinite(rows[0][0]["predicted_execution_time_ms"])


@few
@given(actual=FLOATS, known=st.booleans(), prediction_id=INT8)
def test_validate_takes_any_prediction_id_and_time(sample, actual: float, known: bool, prediction_id: int):
    conn, state = sample
    target = state.prediction_id if known else prediction_id
    rows = probe(conn, "SELECT * FROM pgml_validate(%s::bigint, %s::float8)", (target, actual))
    if rows is not None:
        assert 0 <= rows[0][5] <= 1 and rows[0][4] >= 0


@few
@given(lookback_days=INT4)
def test_train_async_takes_any_lookback(sample, lookback_days: int):
    conn, state = sample
    before = jobs(conn)
    rows = probe(conn, "SELECT * FROM pgml_train_async(%s::integer, 'auto', %s)", (lookback_days, state.server_id))
    if rows is not None:
        assert 1 <= lookback_days <= 3650 and jobs(conn) == before + 1
        conn.execute("SELECT * FROM pgml_job_cancel(%s)", (rows[0][0],))  # never trained: keeps this quick


@few
@given(max_attempts=INT4)
def test_enqueue_takes_any_max_attempts(sample, max_attempts: int):
    conn, _state = sample
    before = jobs(conn)
    rows = probe(conn, "SELECT * FROM pgml_job_enqueue('validate', '{}', %s::integer)", (max_attempts,))
    if rows is not None:
        assert 1 <= max_attempts <= 100 and jobs(conn) == before + 1


@few
@given(limit=INT4)
def test_jobs_takes_any_limit(sample, limit: int):
    conn, _state = sample
    rows = probe(conn, "SELECT * FROM pgml_jobs(NULL, %s::integer)", (limit,))
    if rows is not None:
        assert 1 <= limit <= 10000 and len(rows) <= limit


@few
@given(model_id=INT8)
def test_activate_takes_any_model_id(sample, model_id: int):
    conn, state = sample
    probe(conn, "SELECT * FROM pgml_activate_model(%s::bigint)", (model_id,))
    assert conn.execute("SELECT model_id FROM pganalytics_ml.models WHERE is_active").fetchone() == (state.model_id,)


@few
@given(keep_count=INT4)
def test_cleanup_takes_any_keep_count(sample, keep_count: int):
    conn, _state = sample
    rows = probe(conn, "SELECT pgml_cleanup_models(%s::integer)", (keep_count,))
    if rows is not None:
        assert keep_count >= 0 and rows[0][0] >= 0
    assert conn.execute("SELECT count(*) FROM pganalytics_ml.models WHERE is_active").fetchone() == (1,)


@few
@given(max_jobs=INT4, max_seconds=INT4)
def test_worker_takes_any_limits(sample, max_jobs: int, max_seconds: int):
    conn, _state = sample
    # Only validation sweeps, which are quick; the queue may hold none.
    probe(conn, "CALL pganalytics_ml.run_jobs(%s::integer, %s::integer, '{validate}')", (max_jobs, max_seconds))
