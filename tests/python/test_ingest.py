"""pgml_ingest_stats(): remote collectors' cumulative rows become the same per-interval deltas."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from conftest import Database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
TABLES = ("snapshots", "statements", "query_stats", "counter_baseline")


def row(queryid, calls, total, **counters):
    return {"queryid": queryid, "calls": calls, "total_exec_time": total, "query": "SELECT 1", **counters}


def ingest(db: Database, rows, at: datetime, server="db-1", **extra):
    payload = {"captured_at": at.isoformat(), "rows": rows, **extra}
    return db.one("SELECT pgml_ingest_stats(%s, %s)", (server, Jsonb(payload)))


def table_counts(db: Database) -> dict[str, int]:
    return {t: db.one(f"SELECT count(*) FROM pganalytics_ml.{t}") for t in TABLES}


def stats_of(db: Database, queryid: int, server="db-1") -> list[dict]:
    cur = db.conn.execute(
        "SELECT * FROM pganalytics_ml.query_stats WHERE server_id = %s AND queryid = %s ORDER BY interval_end",
        (server, queryid),
    )
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_cumulative_rows_become_exact_deltas(db: Database):
    q = -9_100_000_000_000_000_001  # negative 64-bit queryids are ordinary
    first = [
        row(q, 10, 100.0, rows=10, shared_blks_hit=50, wal_bytes=1000, mean_exec_time=10.0, stddev_exec_time=0.0),
        row(42, 5, 5.0, query="SELECT * FROM t WHERE id = $1"),
    ]
    assert ingest(db, first, T0) == 2
    assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats") == 0

    second = [
        row(
            str(q),
            30,
            500.0,
            rows=40,
            shared_blks_hit=80,
            wal_bytes=1500,
            mean_exec_time=500 / 30,
            stddev_exec_time=10.0,
        ),
        row(42, 5, 5.0),
    ]
    assert ingest(db, second, T0 + timedelta(minutes=5), stats_reset=None) == 2
    [delta] = stats_of(db, q)
    assert (delta["calls"], delta["rows"], delta["shared_blks_hit"], delta["wal_bytes"]) == (20, 30, 30, 500)
    assert delta["total_exec_time"] == pytest.approx(400.0)
    assert delta["mean_exec_time"] == pytest.approx(20.0)
    assert (delta["interval_start"], delta["interval_end"]) == (T0, T0 + timedelta(minutes=5))
    # The interval spread comes from the change in the sum of squares: 20 calls averaging 20 ms.
    sum_sq_before = 10 * (0.0**2 + 10.0**2)
    sum_sq_after = 30 * (10.0**2 + (500 / 30) ** 2)
    expected_var = (sum_sq_after - sum_sq_before) / 20 - 20.0**2
    assert delta["stddev_exec_time"] == pytest.approx(expected_var**0.5)
    assert stats_of(db, 42) == []  # not called in the interval: no row


def test_counters_going_backwards_restart_the_entry(db: Database):
    ingest(db, [row(7, 100, 1000.0, rows=100), row(8, 50, 50.0)], T0)
    ingest(db, [row(7, 12, 60.0, rows=12), row(8, 60, 70.0)], T0 + timedelta(minutes=1))
    assert [(s["calls"], s["total_exec_time"], s["rows"]) for s in stats_of(db, 7)] == [(12, 60.0, 12)]
    assert [s["calls"] for s in stats_of(db, 8)] == [10]


def test_a_full_reset_restarts_every_entry(db: Database):
    ingest(db, [row(7, 10, 100.0)], T0)
    # After a reset at T0+30s the entry has run 15 times: more than before, yet all of it is new.
    reset = (T0 + timedelta(seconds=30)).isoformat()
    ingest(db, [row(7, 15, 30.0)], T0 + timedelta(minutes=1), stats_reset=reset)
    assert [s["calls"] for s in stats_of(db, 7)] == [15]


def test_servers_are_kept_apart(db: Database):
    ingest(db, [row(7, 10, 100.0)], T0, server="a")
    ingest(db, [row(7, 1000, 100000.0)], T0, server="b")
    ingest(db, [row(7, 11, 101.0)], T0 + timedelta(minutes=1), server="a")
    ingest(db, [row(7, 1100, 110000.0)], T0 + timedelta(minutes=1), server="b")
    assert [s["calls"] for s in stats_of(db, 7, "a")] == [1]
    assert [s["calls"] for s in stats_of(db, 7, "b")] == [100]


def test_a_bare_array_is_captured_now(db: Database):
    assert db.one("SELECT pgml_ingest_stats('db-1', %s)", (Jsonb([row(1, 1, 1.0)]),)) == 1
    assert db.one("SELECT now() - captured_at < interval '1 minute' FROM pganalytics_ml.snapshots")


def test_unparseable_text_is_kept_and_flagged(db: Database):
    ingest(db, [row(5, 1, 1.0, query="SELEC broken FROM"), row(6, 1, 1.0, query=None)], T0)
    rows = db.all("SELECT queryid, query, parse_ok, parse_error FROM pganalytics_ml.statements ORDER BY queryid")
    assert rows[0][:3] == (5, "SELEC broken FROM", False) and "syntax error" in rows[0][3]
    assert rows[1][:3] == (6, None, False) and "no statement text" in rows[1][3]


BAD_ROWS = [
    ({"calls": 1, "total_exec_time": 1.0}, "stats.rows[1] has no queryid"),
    (row(9, -1, 1.0), "stats.rows[1] (queryid 9).calls is out of range"),
    (row(9, 1, -5.0), "stats.rows[1] (queryid 9).total_exec_time must be a number of milliseconds"),
    (row(9, 1, "fast"), "stats.rows[1] (queryid 9).total_exec_time must be a number of milliseconds"),
    (row(9, 1.5, 1.0), "stats.rows[1] (queryid 9).calls must be an integer"),
    (row("9x", 1, 1.0), "stats.rows[1].queryid must be an integer"),
    (row(2**63, 1, 1.0), "stats.rows[1].queryid is out of range"),
    (row(9, 1, 1.0, toplevel="yes"), "toplevel must be true or false"),
    (row(9, 1, 1.0, datname=5), "stats.rows[1] (queryid 9).datname must be a string"),
    (row(1, 1, 1.0), "stats.rows[1] (queryid 1) repeats stats.rows[0]"),
    ("not a row", "stats.rows[1] must be an object"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_ROWS, ids=[m for _, m in BAD_ROWS])
def test_a_bad_row_is_named_and_nothing_is_written(db: Database, bad, message):
    ingest(db, [row(1, 1, 1.0)], T0)
    before = table_counts(db)
    payload = {"captured_at": (T0 + timedelta(minutes=1)).isoformat(), "rows": [row(1, 2, 2.0), bad]}
    err = db.error("SELECT pgml_ingest_stats('db-1', %s)", (json.dumps(payload),))
    assert err.sqlstate == "22023"
    assert message in err.diag.message_primary
    assert table_counts(db) == before


BAD_CALLS = [
    ("NULL", "'[]'", "22004", "server_id must not be NULL"),
    ("'db-1'", "NULL", "22004", "stats must not be NULL"),
    ("'local'", '\'[{"queryid": 1, "calls": 1, "total_exec_time": 1}]\'', "22023", "reserved"),
    ("''", "'[]'", "22023", "invalid server_id"),
    ("'db 1; DROP TABLE x'", "'[]'", "22023", "invalid server_id"),
    ("'db-1'", "'[]'", "22023", "non-empty array"),
    ("'db-1'", "'{}'", "22023", "non-empty array"),
    ("'db-1'", "'42'", "22023", "must be a JSON object or array"),
    ("'db-1'", '\'{"rows": [], "extra": 1}\'', "22023", "unknown keys: extra"),
    ("'db-1'", '\'{"captured_at": "yesterday", "rows": [{}]}\'', "22023", "not an ISO 8601 timestamp"),
    ("'db-1'", '\'{"captured_at": "2026-01-01T00:00:00", "rows": [{}]}\'', "22023", "has no time zone"),
    ("'db-1'", '\'{"captured_at": "2999-01-01T00:00:00Z", "rows": [{}]}\'', "22023", "in the future"),
]


@pytest.mark.parametrize(("server", "stats", "sqlstate", "message"), BAD_CALLS, ids=[c[3] for c in BAD_CALLS])
def test_bad_arguments_get_a_sqlstate_and_a_hint(db: Database, server, stats, sqlstate, message):
    before = table_counts(db)
    err = db.error(f"SELECT pgml_ingest_stats({server}, {stats})")
    assert err.sqlstate == sqlstate
    assert message in err.diag.message_primary
    assert err.diag.message_hint
    assert table_counts(db) == before


def test_captures_must_arrive_in_order(db: Database):
    ingest(db, [row(1, 1, 1.0)], T0)
    before = table_counts(db)
    err = db.error(
        "SELECT pgml_ingest_stats('db-1', %s)", (Jsonb({"captured_at": T0.isoformat(), "rows": [row(1, 2, 2.0)]}),)
    )
    assert err.sqlstate == "22023" and "is not after the last capture" in err.diag.message_primary
    assert table_counts(db) == before


def test_malformed_json_is_refused_by_the_type(db: Database):
    err = db.error("SELECT pgml_ingest_stats('db-1', '{\"rows\": [')")
    assert err.sqlstate == "22P02"


def test_a_new_servers_forecasts_are_checked_by_key_not_each_against_each(db: Database):
    """Until a new server's rows are analyzed, the planner takes each of its tables for one row; the check of
    its forecasts against a capture must still join its statements by key, not every pair of them."""
    n = 300
    for server in ("db-known", "db-new"):
        for k in range(4):
            ingest(db, [row(q, 10 * (k + 1), 20.0 * (k + 1)) for q in range(1, n + 1)], T0 + k * STEP, server)
        if server == "db-known":
            db.conn.execute("ANALYZE")
    db.conn.execute("LOAD 'auto_explain'")
    for name, value in (("log_min_duration", 0), ("log_nested_statements", "on"), ("log_analyze", "on")):
        db.conn.execute(f"SET auto_explain.{name} = {value}")
    db.conn.execute("SET auto_explain.log_level = notice")
    plans: list[str] = []
    db.conn.add_notice_handler(lambda notice: plans.append(notice.message_primary))
    ingest(db, [row(q, 50, 100.0) for q in range(1, n + 1)], T0 + 4 * STEP, "db-new")
    check = [p for p in plans if "Update on forecasts" in p and "CTE checked" in p]
    assert len(check) == 1, plans
    removed = [int(r) for r in re.findall(r"Rows Removed by Join Filter: (\d+)", check[0])]
    assert max(removed, default=0) < n, check[0]
