"""Property-based bad input against the real server: no input crashes the backend, writes partially,
or leaves a number that is not finite."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import fresh_database
from pgcluster import Cluster

pytestmark = pytest.mark.integration

TABLES = ("snapshots", "statements", "query_stats", "counter_baseline")
EXPECTED_SQLSTATES = {"22023", "22004", "22P02", "22P05"}
NOT_FINITE = """
    SELECT count(*) FROM pganalytics_ml.query_stats
     WHERE total_exec_time::text IN ('NaN', 'Infinity', '-Infinity')
        OR mean_exec_time::text IN ('NaN', 'Infinity', '-Infinity')
        OR coalesce(stddev_exec_time, 0)::text IN ('NaN', 'Infinity', '-Infinity')
        OR blk_read_time::text IN ('NaN', 'Infinity', '-Infinity')
        OR total_plan_time::text IN ('NaN', 'Infinity', '-Infinity')
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
    try:
        yield connection
    finally:
        connection.close()
        cluster.drop_database(name)


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM pganalytics_ml.{t}").fetchone()[0] for t in TABLES}


_minutes = itertools.count()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload, st.sampled_from(["db-1", "db-2"]))
def test_ingest_survives_any_json(conn: psycopg.Connection, stats, server):
    if isinstance(stats, dict) and "rows" in stats:
        stats = {
            **stats,
            "captured_at": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_minutes))).isoformat(),
        }
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
        assert after["snapshots"] == before["snapshots"] + 1
        event("ingested")
    assert conn.execute(NOT_FINITE).fetchone()[0] == 0
