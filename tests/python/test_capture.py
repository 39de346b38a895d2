"""pgml_snapshot(): pg_stat_statements counters become exact per-interval deltas, driven by pgbench."""

from __future__ import annotations

import pytest

from conftest import Database
from workload import pgbench

pytestmark = pytest.mark.integration

PROBE_SCRIPT = """\\set id random(1, 1000)
SELECT v FROM probe WHERE id = :id;
UPDATE probe SET v = v + 1 WHERE id = :id;
"""
NUMERIC_DELTAS = """
    calls, total_exec_time, mean_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied,
    shared_blks_written, local_blks_hit, local_blks_read, local_blks_dirtied, local_blks_written,
    temp_blks_read, temp_blks_written, blk_read_time, blk_write_time, wal_records, wal_fpi, wal_bytes,
    plans, total_plan_time
"""


@pytest.fixture
def probe(db: Database) -> Database:
    db.conn.execute("CREATE TABLE probe (id int PRIMARY KEY, v int NOT NULL)")
    db.conn.execute("INSERT INTO probe SELECT g, 0 FROM generate_series(1, 1000) g")
    return db


def queryid_of(db: Database, pattern: str) -> int:
    return db.one(
        "SELECT queryid FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)"
        " AND query LIKE %s",
        (db.name, pattern),
    )


def interval_row(db: Database, queryid: int) -> dict:
    cur = db.conn.execute(
        "SELECT * FROM pganalytics_ml.query_stats WHERE queryid = %s ORDER BY interval_end DESC LIMIT 1", (queryid,)
    )
    names = [c.name for c in cur.description]
    row = cur.fetchone()
    return dict(zip(names, row, strict=True)) if row else {}


def test_first_snapshot_only_sets_the_baseline(probe: Database):
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=10)
    _, statements, new, active, seconds = probe.all("SELECT * FROM pgml_snapshot()")[0]
    assert statements > 0 and new == statements
    assert active == 0 and seconds is None
    assert probe.one("SELECT count(*) FROM pganalytics_ml.query_stats") == 0
    baseline = "SELECT cardinality(counters) FROM pganalytics_ml.counter_baseline WHERE server_id = 'local'"
    assert probe.one(baseline) >= statements


def test_deltas_match_the_pgbench_run(probe: Database):
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=5)
    first = probe.one("SELECT captured_at FROM pgml_snapshot()")
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=50, clients=2)
    second, statements, _new, active, seconds = probe.all("SELECT * FROM pgml_snapshot()")[0]
    select_id = queryid_of(probe, "SELECT v FROM probe WHERE id = %")
    update_id = queryid_of(probe, "UPDATE probe SET v = v + % WHERE id = %")

    for queryid in (select_id, update_id):
        row = interval_row(probe, queryid)
        assert row["calls"] == 100
        assert row["rows"] == 100
        assert (row["interval_start"], row["interval_end"]) == (first, second)
        assert row["database"] == probe.name
        assert row["total_exec_time"] > 0
        assert row["mean_exec_time"] == pytest.approx(row["total_exec_time"] / 100)
        assert row["stddev_exec_time"] is not None and row["stddev_exec_time"] >= 0
        assert row["shared_blks_hit"] + row["shared_blks_read"] >= 100
    assert interval_row(probe, update_id)["wal_records"] >= 100
    assert active >= 2 and statements >= active
    assert seconds == pytest.approx((second - first).total_seconds())

    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=30)
    probe.one("SELECT captured_at FROM pgml_snapshot()")
    assert interval_row(probe, select_id)["calls"] == 30
    assert probe.one("SELECT count(*) FROM pganalytics_ml.query_stats WHERE queryid = %s", (select_id,)) == 2


def test_statement_text_is_stored_once_with_its_structure(probe: Database):
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=3)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=3)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    select_id = queryid_of(probe, "SELECT v FROM probe WHERE id = %")
    rows = probe.all(
        "SELECT query, parse_ok, statement_kind, tables, n_joins, has_limit FROM pganalytics_ml.statements"
        " WHERE queryid = %s",
        (select_id,),
    )
    assert rows == [("SELECT v FROM probe WHERE id = $1", True, "select", ["probe"], 0, False)]
    update_id = queryid_of(probe, "UPDATE probe SET v = v + % WHERE id = %")
    assert (
        probe.one("SELECT statement_kind FROM pganalytics_ml.statements WHERE queryid = %s", (update_id,)) == "update"
    )
    unparsed = probe.one("SELECT count(*) FROM pganalytics_ml.statements WHERE parse_ok IS NULL")
    assert unparsed == 0


def test_a_password_in_a_utility_statement_is_never_stored(probe: Database):
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    probe.conn.execute("CREATE ROLE leaky LOGIN PASSWORD 'hunter2-secret'")
    try:
        assert probe.one("SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%hunter2-secret%'") == 1
        probe.conn.execute("SELECT * FROM pgml_snapshot()")
        stored = probe.one("SELECT query FROM pganalytics_ml.statements WHERE query LIKE 'CREATE ROLE leaky%'")
        assert stored == "CREATE ROLE leaky LOGIN PASSWORD '***'"
        for table in ("statements", "counter_baseline", "query_stats"):
            leaks = probe.one(f"SELECT count(*) FROM pganalytics_ml.{table} t WHERE t::text LIKE '%hunter2%'")
            assert leaks == 0, table
    finally:
        probe.conn.execute("DROP ROLE leaky")


def test_full_reset_never_yields_negative_deltas(probe: Database):
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=20)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=20)
    probe.conn.execute("SELECT pg_stat_statements_reset()")
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=7)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    # The 20 runs before the reset are gone from pg_stat_statements; what is left since the reset is 7.
    assert interval_row(probe, queryid_of(probe, "SELECT v FROM probe WHERE id = %"))["calls"] == 7
    negatives = probe.one(
        "SELECT count(*) FROM pganalytics_ml.query_stats, LATERAL (VALUES "
        + ", ".join(f"({c.strip()}::float8)" for c in NUMERIC_DELTAS.split(","))
        + ") v(x) WHERE v.x < 0"
    )
    assert negatives == 0


def test_reset_of_one_entry_restarts_only_that_entry(probe: Database):
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=20)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    select_id = queryid_of(probe, "SELECT v FROM probe WHERE id = %")
    update_id = queryid_of(probe, "UPDATE probe SET v = v + % WHERE id = %")
    probe.conn.execute("SELECT pg_stat_statements_reset(0, 0, %s)", (select_id,))
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=5)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    assert interval_row(probe, select_id)["calls"] == 5
    assert interval_row(probe, update_id)["calls"] == 5


def test_an_evicted_entry_that_returns_counts_from_zero(probe: Database):
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=20)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    select_id = queryid_of(probe, "SELECT v FROM probe WHERE id = %")
    probe.conn.execute("SELECT pg_stat_statements_reset(0, 0, %s)", (select_id,))
    probe.conn.execute("SELECT * FROM pgml_snapshot()")  # the entry is gone from pg_stat_statements
    assert interval_row(probe, select_id) == {}
    pgbench(probe.cluster, probe.name, PROBE_SCRIPT, transactions=4)
    probe.conn.execute("SELECT * FROM pgml_snapshot()")
    assert interval_row(probe, select_id)["calls"] == 4


def test_snapshot_without_the_pg_stat_statements_extension(db: Database):
    db.conn.execute("DROP EXTENSION pg_stat_statements")
    err = db.error("SELECT * FROM pgml_snapshot()")
    assert err.sqlstate == "55000"
    assert "pg_stat_statements extension does not exist" in err.diag.message_primary
    assert "CREATE EXTENSION pg_stat_statements" in err.diag.message_hint
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots") == 0
    status = db.one("SELECT pgml_status()")
    assert status["status"] == "degraded"
    assert status["pg_stat_statements"] == {"loaded": True, "installed": False}
