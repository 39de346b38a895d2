"""History at fleet scale: day partitions with a default one, upkeep that retires whole days, collectors
of different servers that never wait for each other, and a collector's retry counted once."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from conftest import Database
from history_builder import History, statements

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
CLEANUP = "SELECT * FROM pganalytics_ml._cleanup('7 days', %s::interval, %s::interval)"
DAY_PARTITIONS = """
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = %s::regclass AND c.relname ~ '_p[0-9]{8}$' ORDER BY 1"""


def cleanup(db: Database, history: str = "1000 days", predictions: str = "1000 days") -> dict:
    cur = db.conn.execute(CLEANUP, (predictions, history))
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def day_name(table: str, day: datetime) -> str:
    return f"{table}_p{day:%Y%m%d}"


def payload(rows: list[dict], at: datetime) -> str:
    return json.dumps({"captured_at": at.isoformat(), "rows": rows})


def counts(db: Database) -> tuple:
    return db.one(
        "SELECT (SELECT count(*) FROM pganalytics_ml.snapshots), (SELECT count(*) FROM pganalytics_ml.query_stats),"
        " (SELECT sum(calls) FROM pganalytics_ml.query_stats)"
    )


def test_captures_before_any_upkeep_land_in_the_default_partition_and_move_to_their_days(db: Database):
    queries = statements(3)
    History(db.conn, "db-1", start=TODAY - timedelta(days=4, minutes=10)).steady(queries, intervals=6)
    History(db.conn, "db-2").steady(queries, intervals=4)
    in_default = db.one("SELECT count(*) FROM pganalytics_ml.query_stats_default")
    assert in_default == db.one("SELECT count(*) FROM pganalytics_ml.query_stats") == 3 * 5 + 3 * 3
    before = db.all("SELECT * FROM pganalytics_ml.query_stats ORDER BY 1, 2, 4")

    result = cleanup(db)
    assert result["rows_moved"] == in_default
    assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats_default") == 0
    assert db.all("SELECT * FROM pganalytics_ml.query_stats ORDER BY 1, 2, 4") == before
    names = [r[0] for r in db.all(DAY_PARTITIONS, ("pganalytics_ml.query_stats",))]
    # the two days db-1's history spans, today and the next two days
    expected = {day_name("query_stats", TODAY + timedelta(days=d)) for d in (-5, -4, 0, 1, 2)}
    assert expected <= set(names)
    # Every partition carries its own key: a repeated interval is refused there as on the old table.
    err = db.error(
        "INSERT INTO pganalytics_ml.query_stats SELECT * FROM pganalytics_ml.query_stats ORDER BY interval_end LIMIT 1"
    )
    assert err.sqlstate == "23505"

    # Upkeep again: nothing to move, nothing to create.
    again = cleanup(db)
    assert (again["rows_moved"], again["partitions_created"]) == (0, 0)


def test_retention_drops_whole_days_and_keeps_the_rest(db: Database):
    queries = statements(2)
    History(db.conn, "old", start=TODAY - timedelta(days=20, hours=-1)).steady(queries, intervals=4)
    History(db.conn, "db-1").steady(queries, intervals=4)
    cleanup(db)  # every row into its day partition
    old_day = day_name("query_stats", TODAY - timedelta(days=20))
    assert old_day in {r[0] for r in db.all(DAY_PARTITIONS, ("pganalytics_ml.query_stats",))}
    recent = db.one("SELECT count(*) FROM pganalytics_ml.query_stats WHERE server_id = 'db-1'")

    result = cleanup(db, history="10 days")
    assert result["query_stats_partitions_dropped"] == 1 and result["query_stats"] == 0
    assert old_day not in {r[0] for r in db.all(DAY_PARTITIONS, ("pganalytics_ml.query_stats",))}
    assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats WHERE server_id = 'old'") == 0
    assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats WHERE server_id = 'db-1'") == recent
    # The latest capture of the old server stays: its next capture computes deltas against it.
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots WHERE server_id = 'old'") == 1


def test_predictions_are_partitioned_and_retired_the_same_way(db: Database):
    queries = statements(2)
    History(db.conn, "db-1").steady(queries, intervals=5)
    queryid = next(iter(queries))
    first = db.one("SELECT prediction_id FROM pgml_predict(%s, 'db-1')", (queryid,))
    cleanup(db)
    assert db.one(
        "SELECT tableoid::regclass::text FROM pganalytics_ml.predictions WHERE prediction_id = %s", (first,)
    ) == "pganalytics_ml." + day_name("predictions", TODAY)
    second = db.one("SELECT prediction_id FROM pgml_predict(%s, 'db-1')", (queryid,))
    assert second > first
    # Validation finds a prediction in its partition.
    assert db.one("SELECT prediction_id FROM pgml_validate(%s, 1.0)", (second,)) == second
    db.conn.execute("UPDATE pganalytics_ml.predictions SET predicted_at = predicted_at - interval '40 days'")
    result = cleanup(db, predictions="30 days")
    assert result["predictions"] == 2  # moved out of today's partition into the default one, then expired
    assert db.one("SELECT count(*) FROM pganalytics_ml.predictions") == 0


def test_readers_reach_partitions_only_through_the_parent(db: Database):
    History(db.conn, "db-1").steady(statements(2), intervals=3)
    cleanup(db)
    day = day_name("query_stats", TODAY)
    db.conn.execute("CREATE ROLE fleet_reader IN ROLE pgml_reader")
    try:
        db.conn.execute("SET ROLE fleet_reader")
        assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats") > 0
        for table in (
            f"pganalytics_ml.{day}",
            "pganalytics_ml.query_stats_default",
            "pganalytics_ml.predictions_default",
        ):
            assert db.error(f"SELECT count(*) FROM {table}").sqlstate == "42501"
    finally:
        db.conn.execute("RESET ROLE")
        db.conn.execute("DROP ROLE fleet_reader")


def test_a_push_that_arrives_while_upkeep_creates_its_day_is_moved_not_lost(db: Database):
    # Session A pushes the first capture of today (into the default partition: no day partition yet) and
    # holds its transaction open; upkeep does not see the row, tries to attach today's partition, waits for
    # A, then finds the row and moves it instead of failing.
    queries = statements(2)
    History(db.conn, "db-1", start=TODAY - timedelta(days=1, minutes=15)).steady(queries, intervals=2)
    cleanup(db)
    db.conn.execute(f"DROP TABLE pganalytics_ml.{day_name('query_stats', TODAY)}")
    db.conn.execute(f"DROP TABLE pganalytics_ml.{day_name('query_stats', TODAY + timedelta(days=1))}")
    db.conn.execute(f"DROP TABLE pganalytics_ml.{day_name('query_stats', TODAY + timedelta(days=2))}")
    rows = [{"queryid": q, "calls": 300, "total_exec_time": 300 * level} for q, level in queries.items()]
    at = TODAY + timedelta(minutes=1)
    with db.connect(autocommit=False) as a:
        a.execute("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (payload(rows, at),))
        outcome: list = []
        upkeep = threading.Thread(target=lambda: outcome.append(cleanup(db)))
        upkeep.start()
        time.sleep(1.0)
        assert upkeep.is_alive()  # waiting for A's row to commit or go
        a.commit()
    upkeep.join(30)
    assert outcome and outcome[0]["rows_moved"] == 2
    assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats_default") == 0
    assert (
        db.one(
            "SELECT count(*) FROM pganalytics_ml.query_stats WHERE interval_end = %s AND tableoid = %s::regclass",
            (at, "pganalytics_ml." + day_name("query_stats", TODAY)),
        )
        == 2
    )


def test_collectors_of_different_servers_never_wait_for_each_other(db: Database):
    # Each server already has history and forecasts: a push also validates and refreshes them.
    queries = statements(4)
    for server in ("db-a", "db-b"):
        History(db.conn, server).steady(queries, intervals=5)
        db.conn.execute("SELECT * FROM pgml_predict_all(%s, true)", (server,))
    cleanup(db)
    next_at = db.one("SELECT max(captured_at) + interval '5 minutes' FROM pganalytics_ml.snapshots")
    rows = [{"queryid": q, "calls": 1000, "total_exec_time": 1000 * level} for q, level in queries.items()]
    with db.connect(autocommit=False) as a, db.connect(autocommit=False) as b:
        assert a.execute("SELECT pgml_ingest_stats('db-a', %s::jsonb)", (payload(rows, next_at),)).fetchone() == (4,)
        # A's transaction is open, holding every lock its push took; B must not wait for any of them.
        b.execute("SET lock_timeout = '2s'")
        started = time.monotonic()
        assert b.execute("SELECT pgml_ingest_stats('db-b', %s::jsonb)", (payload(rows, next_at),)).fetchone() == (4,)
        b.execute("SELECT * FROM pgml_predict_all('db-b', true)")
        assert time.monotonic() - started < 2
        b.commit()
        a.commit()
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots WHERE captured_at = %s", (next_at,)) == 2


def test_a_collectors_retry_is_counted_once(db: Database):
    queries = statements(3)
    History(db.conn, "db-1").steady(queries, intervals=3)
    at = db.one("SELECT max(captured_at) + interval '5 minutes' FROM pganalytics_ml.snapshots")
    rows = [{"queryid": q, "calls": 500, "total_exec_time": 500 * level} for q, level in queries.items()]
    push = payload(rows, at)
    assert db.one("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push,)) == 3
    before = counts(db)

    notices: list[str] = []
    db.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert db.one("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push,)) == 0
    assert counts(db) == before
    assert any("already ingested" in n and "not counted again" in n for n in notices)

    # Other counters at the same time are not a retry: refused, nothing written.
    changed = payload([dict(r, calls=r["calls"] + 1) for r in rows], at)
    err = db.error("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (changed,))
    assert err.sqlstate == "22023" and "is not after the last capture" in err.diag.message_primary
    assert counts(db) == before


def test_a_retry_sent_while_the_first_push_is_in_flight_is_counted_once(db: Database):
    queries = statements(3)
    History(db.conn, "db-1").steady(queries, intervals=3)
    at = db.one("SELECT max(captured_at) + interval '5 minutes' FROM pganalytics_ml.snapshots")
    rows = [{"queryid": q, "calls": 500, "total_exec_time": 500 * level} for q, level in queries.items()]
    push = payload(rows, at)
    before = counts(db)
    retried: list = []
    with db.connect(autocommit=False) as first:
        assert first.execute("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push,)).fetchone() == (3,)

        def retry() -> None:
            with db.connect() as conn:
                retried.append(conn.execute("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push,)).fetchone()[0])

        thread = threading.Thread(target=retry)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()  # waits for the server's capture lock
        first.commit()
    thread.join(30)
    assert retried == [0]
    after = counts(db)
    assert after[0] == before[0] + 1 and after[1] == before[1] + 3


def test_a_failed_first_push_leaves_the_retry_to_count(db: Database):
    queries = statements(2)
    History(db.conn, "db-1").steady(queries, intervals=3)
    at = db.one("SELECT max(captured_at) + interval '5 minutes' FROM pganalytics_ml.snapshots")
    rows = [{"queryid": q, "calls": 500, "total_exec_time": 500 * level} for q, level in queries.items()]
    with db.connect(autocommit=False) as first:
        first.execute("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (payload(rows, at),))
        first.rollback()  # the collector's connection dropped before the commit
    assert db.one("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (payload(rows, at),)) == 2
    assert db.one("SELECT count(*) FROM pganalytics_ml.query_stats WHERE interval_end = %s", (at,)) == 2


LATEST_WINDOWS_CHECK = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import json
import numpy as np
from pganalytics_ml.forecasting import history
from pganalytics_ml.forecasting.features import CHANNELS, WINDOW

def reference(server, ids):
    # The definition: each statement's latest WINDOW intervals, one lateral read per statement, NaN-padded.
    sql = history._only(history._LATEST_SQL, ids)
    rows = history.Intervals.from_row(plpy.execute(plpy.prepare(sql, ["text", "bigint[]", "bigint[]"]),
                                                   [server, ids, []])[0])
    out = {}
    for q in np.unique(rows.queryid):
        mine = np.flatnonzero(rows.queryid == q)
        mine = mine[np.argsort(rows.end[mine])]
        window = np.full((WINDOW, len(CHANNELS)), np.nan)
        window[WINDOW - len(mine):] = rows.values[mine]
        out[int(q)] = (window, rows.end[mine[-1]])
    return out

report = {}
for server in ("db-w", "db-s"):
    ids = sorted(plpy.execute(plpy.prepare("SELECT array_agg(queryid) AS ids FROM pganalytics_ml.statements"
                                           " WHERE server_id = $1", ["text"]), [server])[0]["ids"])
    mine = report[server] = {"statements": len(ids), "mismatches": [], "padded": 0, "full": 0}
    # Every statement at once, all of them by list, and two chunks in one transaction (the read is shared).
    for ask in (None, ids, ids[: len(ids) // 2], ids[len(ids) // 2 :]):
        got = history.latest_windows(plpy, server, ask)
        want = reference(server, ask)
        if sorted(want) != got.queryid.tolist():
            mine["mismatches"].append(["statements", ask is None, len(want), len(got.queryid)])
            continue
        for i, q in enumerate(got.queryid.tolist()):
            window, based_on = want[q]
            if not np.array_equal(window, got.windows.values[i], equal_nan=True) or based_on != got.based_on[i]:
                mine["mismatches"].append(q)
            mine["padded" if np.isnan(window[0, 0]) else "full"] += 1
plpy.execute(plpy.prepare("CREATE TEMP TABLE latest_check AS SELECT $1::jsonb AS r", ["text"]), [json.dumps(report)])
$$ LANGUAGE plpython3u
"""


def test_latest_windows_read_by_the_latest_captures_equal_each_statements_latest_intervals(db: Database):
    # Statements that ran in every capture, some that skipped captures (windows older than the last
    # WINDOW captures, or shorter than WINDOW), one that stopped running, one no longer in the statements
    # table (its history stays), and a server with fewer captures than a window: each window read from the
    # server's latest captures at once must be the statement's own latest intervals, read one by one.
    queries = list(statements(12).items())
    server, short = History(db.conn, "db-w"), History(db.conn, "db-s")
    for k in range(14):
        means = {
            q: level * (1 + 0.2 * ((k + i) % 3))
            for i, (q, level) in enumerate(queries)
            if not (i % 3 == 1 and k % (i % 4 + 2) == 0) and not (i == 11 and k > 5) and not (i == 10 and k < 11)
        }
        server.capture(means)
        if k < 5:
            short.capture({q: level for i, (q, level) in enumerate(queries) if i % 2 or k > 1})
    db.conn.execute("DELETE FROM pganalytics_ml.statements WHERE server_id = 'db-w' AND queryid = %s", (queries[4][0],))
    db.conn.execute(LATEST_WINDOWS_CHECK)
    report = db.one("SELECT r FROM latest_check")
    assert report["db-w"]["statements"] == 11 and report["db-s"]["statements"] == 12
    assert report["db-w"]["mismatches"] == [] and report["db-s"]["mismatches"] == []
    assert report["db-w"]["padded"] > 0 and report["db-w"]["full"] > 0  # both: shorter windows, and full ones
    assert report["db-s"]["full"] == 0  # 5 captures: every window shorter than WINDOW
