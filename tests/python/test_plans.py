"""Plan capture on a real cluster: as the statement's own role, confined, never executed; plan changes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conftest import Database


@pytest.fixture
def app(db: Database) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """A login role with its own schema and table, connected in its own session (not SET ROLE)."""
    role = f"app_{db.name}"
    db.conn.execute(f"CREATE ROLE {role} LOGIN")
    db.conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    conn = db.connect(user=role)
    conn.execute(f"SET search_path = {role}")
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric)")
    conn.execute("INSERT INTO orders SELECT g, g % 500, g FROM generate_series(1, 20000) g")
    conn.execute("CREATE INDEX orders_customer ON orders (customer)")
    conn.execute("ANALYZE orders")
    try:
        yield role, conn
    finally:
        conn.close()
        db.conn.execute(f"DROP SCHEMA {role} CASCADE")
        db.conn.execute(f"DROP ROLE {role}")


def outcomes(db: Database, only_new: bool = False) -> dict[str, int]:
    return dict(db.all("SELECT outcome, statements FROM pgml_capture_plans(%s)", (only_new,)))


def capture_of(db: Database, text_like: str) -> dict[str, Any]:
    row = db.conn.execute(
        "SELECT c.outcome, c.detail, c.fingerprint, p.planned_as, p.summary, p.features, p.relations, p.indexes"
        "  FROM pganalytics_ml.statements s JOIN pganalytics_ml.plan_capture c USING (server_id, queryid)"
        "  LEFT JOIN pganalytics_ml.plans p ON p.server_id = c.server_id AND p.queryid = c.queryid"
        "   AND p.fingerprint = c.fingerprint WHERE s.query LIKE %s",
        (text_like,),
    ).fetchall()
    assert len(row) == 1, f"{len(row)} statements like {text_like!r}"
    names = ("outcome", "detail", "fingerprint", "planned_as", "summary", "features", "relations", "indexes")
    return dict(zip(names, row[0], strict=True))


def test_a_function_folded_at_plan_time_gets_nothing_beyond_its_own_role(db: Database, app):
    role, conn = app
    db.conn.execute("CREATE TABLE public.escalations (what text, who text)")
    db.conn.execute("CREATE TABLE public.secret (x int)")
    db.conn.execute("INSERT INTO public.secret VALUES (42)")
    # Every attempt that succeeds leaves a trace: a row in a table only the superuser may write, a row
    # in the role's own table, or a setting. The NOTICE shows the function did run, and as whom.
    conn.execute("CREATE TABLE traces (what text)")
    conn.execute(
        """
        CREATE FUNCTION grab() RETURNS int LANGUAGE plpgsql VOLATILE AS $f$
        DECLARE r text;
        BEGIN
          RAISE NOTICE 'grab ran as %/%', current_user, session_user;
          BEGIN RESET ROLE; INSERT INTO public.escalations VALUES ('reset role', current_user);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN SET ROLE postgres; INSERT INTO public.escalations VALUES ('set role', current_user);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN PERFORM set_config('role', 'postgres', false);
                INSERT INTO public.escalations VALUES ('set_config role', current_user);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN SET SESSION AUTHORIZATION postgres; INSERT INTO public.escalations VALUES ('ssa', current_user);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN PERFORM set_config('transaction_read_only', 'off', false);
                INSERT INTO traces VALUES ('read-write again');
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN INSERT INTO traces VALUES ('wrote its own table');
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN INSERT INTO public.escalations VALUES ('direct', current_user);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN SELECT pg_read_file('postgresql.conf', 0, 20) INTO r; PERFORM set_config('app.file', r, false);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          BEGIN SELECT x::text INTO r FROM public.secret; PERFORM set_config('app.secret', r, false);
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused: %', SQLERRM; END;
          PERFORM set_config('app.ran', 'yes', false);
          EXECUTE 'PREPARE left_behind AS SELECT 1';
          PERFORM pg_advisory_lock(4242);
          RETURN 1;
        END $f$
        """
    )
    # Without arguments (pg_stat_statements turns constants into $n), an IMMUTABLE function is folded at plan time.
    conn.execute("CREATE FUNCTION folded() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT grab() $$")
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute("SELECT folded() FROM orders WHERE id = %s", (3,))
    # its own run did write (the role may): clear that, so only what planning does is left to see
    conn.execute("TRUNCATE traces")
    conn.execute("DEALLOCATE ALL")
    conn.execute("SELECT pg_advisory_unlock_all()")
    db.one("SELECT count(*) FROM pgml_snapshot()")

    notices: list[str] = []
    db.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert outcomes(db)["planned"] >= 1
    planned = capture_of(db, "SELECT folded() FROM orders WHERE id = $1")
    assert planned["outcome"] == "planned", planned["detail"]
    assert planned["planned_as"] == role

    assert f"grab ran as {role}/postgres" in notices  # it ran at plan time, as the role, session_user a superuser
    refusals = [n for n in notices if n.startswith("refused")]
    assert len(refusals) == 9, "\n".join(notices)
    assert sum('cannot set parameter "role" within security-definer function' in n for n in refusals) == 3
    assert any('"session_authorization" within security-definer function' in n for n in refusals)
    assert any("read-write mode inside a read-only transaction" in n for n in refusals)
    assert sum("in a read-only transaction" in n for n in refusals) >= 2  # its own table, and a direct write
    assert any("permission denied for function pg_read_file" in n for n in refusals)
    assert any("permission denied for table secret" in n for n in refusals)
    assert db.one("SELECT count(*) FROM public.escalations") == 0
    assert conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 0
    # nothing stays in the planning session: role, read-write mode, settings, prepared statements, locks
    assert db.one("SELECT current_user") == "postgres"
    assert db.one("SELECT current_setting('transaction_read_only')") == "off"
    assert db.one("SELECT current_setting('app.ran', true)") in (None, "")
    assert db.one("SELECT count(*) FROM pg_prepared_statements") == 0
    assert db.one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0
    assert db.one("SELECT count(*) FROM pg_proc WHERE proname = 'pganalytics_ml_plan_as'") == 0


def test_a_dropped_index_is_a_plan_change_with_times_before_and_after(db: Database, app):
    role, conn = app
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    for c in range(5):
        conn.execute("SELECT * FROM orders WHERE customer = %s", (c,))
    db.one("SELECT count(*) FROM pgml_snapshot()")
    outcomes(db)
    before = capture_of(db, "SELECT * FROM orders WHERE customer = $1")
    assert "orders_customer" in before["indexes"] and before["features"]["n_bitmap_heap_scan"] == 1.0
    assert before["relations"] == [f"{role}.orders"]
    assert before["features"]["rel_indexes"] == 2.0 and before["features"]["log_rel_tuples"] > 9

    conn.execute("DROP INDEX orders_customer")
    counts = outcomes(db)
    assert counts["changed"] == 1
    after = capture_of(db, "SELECT * FROM orders WHERE customer = $1")
    assert after["fingerprint"] != before["fingerprint"] and after["features"]["n_seq_scan"] == 1.0
    db.one("SELECT count(*) FROM pgml_snapshot()")  # "after" counts intervals wholly after the detection
    for c in range(5):
        conn.execute("SELECT * FROM orders WHERE customer = %s", (c,))
    db.one("SELECT count(*) FROM pgml_snapshot()")

    change = db.conn.execute(
        "SELECT old_fingerprint, new_fingerprint, old_summary, new_summary, mean_ms_before, mean_ms_after,"
        " calls_before, calls_after FROM pganalytics_ml.plan_changes"
        " WHERE query LIKE 'SELECT * FROM orders WHERE customer%'"
    ).fetchall()
    assert len(change) == 1
    old, new, old_summary, new_summary, mean_before, mean_after, calls_before, calls_after = change[0]
    assert (old, new) == (before["fingerprint"], after["fingerprint"])
    assert "using orders_customer" in old_summary and new_summary == f"Seq Scan on {role}.orders"
    # before: the interval captured with the index, planned after it ended; after: the one after the change
    assert calls_before == 5 and mean_before > 0
    assert calls_after == 5 and mean_after > 0
    # planning the same plan again is no change
    assert outcomes(db)["changed"] == 0
    # and the workload patterns report it (issue 16)
    changed = db.one("SELECT query_hash FROM pganalytics_ml.plan_changes WHERE query LIKE 'SELECT * FROM orders%'")
    found = db.all("SELECT query_hash, description FROM pgml_detect_patterns(1) WHERE type = 'plan_change'")
    assert [q for q, _ in found] == [changed] and "plan" in found[0][1]


def test_statements_that_cannot_be_planned_are_counted_by_reason(db: Database, app):
    _, conn = app
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute("CREATE TEMP TABLE scratch (a int)")
    conn.execute("SELECT * FROM scratch WHERE a = %s", (1,))
    conn.execute("VACUUM orders")
    conn.execute("CREATE TABLE doomed (a int)")
    conn.execute("SELECT a FROM doomed WHERE a > %s", (1,))
    conn.execute("DROP TABLE doomed")
    conn.execute("SELECT * FROM orders WHERE id = %s", (1,))
    db.one("SELECT count(*) FROM pgml_snapshot()")
    counts = outcomes(db)
    assert counts["temp_object"] == 1
    assert counts["prepare_failed"] >= 1
    assert counts["utility"] >= 3  # CREATE TEMP TABLE, VACUUM, CREATE TABLE, DROP TABLE ...
    assert capture_of(db, "SELECT * FROM scratch WHERE a = $1")["outcome"] == "temp_object"
    failed = capture_of(db, "SELECT a FROM doomed WHERE a > $1")
    assert failed["outcome"] == "prepare_failed" and 'relation "doomed" does not exist' in failed["detail"]
    assert capture_of(db, "VACUUM orders")["outcome"] == "utility"
    assert capture_of(db, "SELECT * FROM orders WHERE id = $1")["outcome"] == "planned"
    # the snapshot queued a plans job for the statements never planned; the job worker runs it
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    job = db.conn.execute(
        "SELECT status, result FROM pganalytics_ml.jobs WHERE kind = 'plans' ORDER BY job_seq DESC LIMIT 1"
    ).fetchone()
    assert job[0] == "completed" and job[1]["statements"] >= 0


def test_the_snapshot_queues_plans_and_the_job_plans_new_statements(db: Database, app):
    role, conn = app
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute("SELECT total FROM orders WHERE id = %s", (7,))
    db.one("SELECT count(*) FROM pgml_snapshot()")
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs WHERE kind = 'plans' AND status = 'pending'") == 1
    db.one("SELECT count(*) FROM pgml_snapshot()")  # one waiting job is enough
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs WHERE kind = 'plans' AND status = 'pending'") == 1
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    assert capture_of(db, "SELECT total FROM orders WHERE id = $1")["planned_as"] == role
    assert db.one("SELECT count(*) FROM pganalytics_ml.plan_capture WHERE unfinished_attempts > 0") == 0


@pytest.mark.parametrize(
    ("call", "sqlstate", "message"),
    [
        ("SELECT * FROM pgml_capture_plans(NULL)", "22023", "only_new must be true or false"),
        ("SELECT * FROM pgml_job_enqueue('plans', '{\"only_new\": 1}')", "22023", "a plans job takes only only_new"),
        ("SELECT * FROM pgml_job_enqueue('plans', '{\"all\": true}')", "22023", "a plans job takes only only_new"),
    ],
)
def test_bad_plan_capture_calls_get_a_sqlstate(db: Database, call: str, sqlstate: str, message: str):
    err = db.error(call)
    assert err.sqlstate == sqlstate and message in str(err) and err.diag.message_hint


def test_plan_changes_is_readable_by_pgml_reader_only(db: Database):
    reader = f"r_{db.name}"
    db.conn.execute(f"CREATE ROLE {reader} LOGIN IN ROLE pgml_reader")
    try:
        with db.connect(user=reader) as conn:
            assert conn.execute("SELECT count(*) FROM pganalytics_ml.plan_changes").fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM pgml_capture_plans()")
    finally:
        db.conn.execute(f"DROP ROLE {reader}")


def test_plan_json_is_stored_without_output_lists(db: Database, app):
    _, conn = app
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute("SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY 2 DESC LIMIT %s", (3,))
    db.one("SELECT count(*) FROM pgml_snapshot()")
    outcomes(db)
    plan = db.one(
        "SELECT p.plan FROM pganalytics_ml.plans p JOIN pganalytics_ml.statements s USING (server_id, queryid)"
        " WHERE s.query LIKE 'SELECT customer, count(*)%'"
    )
    assert "Output" not in json.dumps(plan) and plan[0]["Plan"]["Node Type"] == "Limit"


def test_a_statement_whose_planning_never_ends_is_skipped_once_its_worker_is_terminated(db: Database, app):
    _, conn = app
    # Quick in its own session, endless anywhere else: only a terminated worker stops its planning.
    conn.execute(
        "CREATE FUNCTION slow() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN"
        " IF current_setting('app.quick', true) IS DISTINCT FROM 'on' THEN PERFORM pg_sleep(60); END IF;"
        " RETURN 1; END $$"
    )
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute("SET app.quick = on")
    conn.execute("SELECT slow() FROM orders WHERE id = %s", (1,))
    conn.execute("SELECT total FROM orders WHERE id = %s", (2,))
    db.one("SELECT count(*) FROM pgml_snapshot()")
    db.conn.execute("DELETE FROM pganalytics_ml.jobs")  # the snapshot's own queued job: this test queues its own

    def job_terminated_at_its_hard_limit() -> None:
        job = db.one(
            "SELECT job_id FROM pgml_job_enqueue('plans', '{}', max_attempts => 1, soft_limit => '1 s',"
            " hard_limit => '1 s')"
        )
        worker = db.connect()
        done = threading.Event()

        def run() -> None:
            try:
                worker.execute("CALL pganalytics_ml.run_jobs(max_jobs => 1)")
            except psycopg.Error:
                pass  # terminated
            done.set()

        threading.Thread(target=run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.5)
            db.all("SELECT * FROM pganalytics_ml.rescue_jobs()")
        assert done.wait(10)
        assert db.one("SELECT status FROM pganalytics_ml.jobs WHERE job_id = %s", (job,)) == "failed"

    job_terminated_at_its_hard_limit()  # its batch is suspect: planned one statement at a time next
    assert db.one("SELECT max(unfinished_attempts) FROM pganalytics_ml.plan_capture") == 1
    job_terminated_at_its_hard_limit()  # and it stalls alone
    counts = outcomes(db)  # the next capture skips it, and plans the rest
    assert counts["stalled"] == 1
    assert capture_of(db, "SELECT slow() FROM orders WHERE id = $1")["outcome"] == "stalled"
    assert capture_of(db, "SELECT total FROM orders WHERE id = $1")["outcome"] == "planned"


def test_a_session_with_temporary_objects_may_not_plan(db: Database, app):
    # A temporary view named like a table another role's statement reads would be found first, and its
    # functions would run as that role: the capture refuses such a session outright.
    _, conn = app
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute("SELECT total FROM orders WHERE id = %s", (9,))
    db.one("SELECT count(*) FROM pgml_snapshot()")
    db.conn.execute("CREATE TEMP VIEW orders AS SELECT 1 AS id, 2 AS total")
    err = db.error("SELECT * FROM pgml_capture_plans()")
    assert err.sqlstate == "55000" and "temporary tables, views or types" in str(err)
    assert db.one("SELECT count(*) FROM pganalytics_ml.plan_capture") == 0
    db.conn.execute("DROP VIEW pg_temp.orders")
    assert outcomes(db)["planned"] >= 1


def push(db: Database, rows: list[dict], minute: int, server: str = "remote-1") -> int:
    at = f"2026-11-01T12:{minute:02d}:00+00:00"
    return db.one("SELECT pgml_ingest_stats(%s, %s)", (server, json.dumps({"captured_at": at, "rows": rows})))


REMOTE_PLAN = [
    {
        "Plan": {
            "Node Type": "Index Scan",
            "Relation Name": "orders",
            "Schema": "public",
            "Index Name": "orders_pkey",
            "Total Cost": 8.3,
            "Plan Rows": 1,
            "Plan Width": 20,
        }
    }
]
SEQ_PLAN = [
    {
        "Plan": {
            "Node Type": "Seq Scan",
            "Relation Name": "orders",
            "Schema": "public",
            "Total Cost": 1900.0,
            "Plan Rows": 1,
            "Plan Width": 20,
        }
    }
]
SIZES = [
    {"relation": "public.orders", "pages": 1000, "tuples": 100000, "indexes": 2, "last_analyze": "2026-11-01T11:00:00Z"}
]


def test_a_remote_server_may_push_plans_and_sizes_and_its_plan_changes_are_found(db: Database):
    base = {"queryid": 11, "query": "SELECT * FROM orders WHERE id = $1", "total_exec_time": 1.0}
    assert push(db, [base | {"calls": 1}], 0) == 1  # without plans: as before
    push(db, [base | {"calls": 2, "plan": REMOTE_PLAN, "relations": SIZES}], 1)
    push(db, [base | {"calls": 3}], 2)
    push(db, [base | {"calls": 4, "total_exec_time": 50.0, "plan": SEQ_PLAN, "relations": SIZES}], 3)
    rows = db.all(
        "SELECT summary, features->>'rel_indexes', features->>'log_rel_tuples', first_seen"
        " FROM pganalytics_ml.plans WHERE server_id = 'remote-1' ORDER BY first_seen"
    )
    assert [r[0] for r in rows] == ["Index Scan on public.orders using orders_pkey", "Seq Scan on public.orders"]
    assert rows[0][1] == "2.0" and float(rows[0][2]) > 11
    change = db.conn.execute(
        "SELECT old_summary, new_summary, detected_at, previous_seen_at FROM pganalytics_ml.plan_changes"
        " WHERE server_id = 'remote-1'"
    ).fetchall()
    assert len(change) == 1 and change[0][1] == "Seq Scan on public.orders"
    assert change[0][2].minute == 3 and change[0][3].minute == 1  # at the pushes' own capture times


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"plan": {"Plan": {"Total Cost": 1}}}, 'whose top node has a "Node Type"'),
        ({"plan": [1, 2]}, "an array of one object"),
        ({"plan": "Seq Scan"}, 'whose top node has a "Node Type"'),
        ({"plan": [{"Plan": {"Node Type": "Seq Scan", "Total Cost": "x"}}]}, '"Total Cost" must be a finite number'),
        ({"plan": [{"Plan": {"Node Type": "Seq Scan", "Plans": {}}}]}, '"Plans" must be an array'),
        (
            {"plan": [{"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Seq Scan", "x": "y" * 300000}]}}]},
            "a plan may have at most 262144",
        ),
        ({"relations": SIZES}, "relations comes without a plan"),
        ({"plan": REMOTE_PLAN, "relations": {"public.orders": 1}}, "must be an array of relation sizes"),
        ({"plan": REMOTE_PLAN, "relations": [{"relation": "t", "pages": -1}]}, "pages must be an integer from 0"),
        ({"plan": REMOTE_PLAN, "relations": [{"relation": "t", "tuples": 1e300}]}, "tuples must be a number"),
        ({"plan": REMOTE_PLAN, "relations": [{"relation": "t", "rows": 1}]}, "has unknown keys: rows"),
        ({"plan": REMOTE_PLAN, "relations": [{"relation": "t", "last_analyze": "yesterday"}]}, "ISO 8601"),
        ({"plan": REMOTE_PLAN, "relations": [{"relation": ""}]}, "relation must be a relation name"),
        ({"plan": REMOTE_PLAN, "relations": [{"relation": "t"}] * 201}, "at most 200 relations"),
    ],
)
def test_bad_pushed_plans_are_refused_and_nothing_is_written(db: Database, extra: dict, message: str):
    row = {"queryid": 12, "query": "SELECT 1", "calls": 1, "total_exec_time": 1.0} | extra
    with pytest.raises(psycopg.Error) as caught:
        push(db, [row], 0)
    err = caught.value
    assert err.sqlstate == "22023" and message in str(err), str(err)
    assert "stats.rows[0] (queryid 12)" in str(err) and err.diag.message_hint
    assert db.one("SELECT count(*) FROM pganalytics_ml.snapshots") == 0
    assert db.one("SELECT count(*) FROM pganalytics_ml.plans") == 0


def test_plan_capture_under_a_hostile_search_path_calls_none_of_its_fakes(db: Database, app):
    from test_search_path import HOSTILE_PATH, TRAPS, trap_hits

    _, conn = app
    attacker = f"m_{db.name}"
    db.conn.execute(f"CREATE ROLE {attacker} LOGIN IN ROLE pgml_admin")
    db.conn.execute(f"GRANT CREATE ON DATABASE {db.name} TO {attacker}")
    try:
        db.one("SELECT pg_stat_statements_reset()")
        db.one("SELECT count(*) FROM pgml_snapshot()")
        conn.execute("SELECT total FROM orders WHERE id = %s", (4,))
        db.one("SELECT count(*) FROM pgml_snapshot()")
        with db.connect(user=attacker) as hostile:
            hostile.execute(TRAPS)
            hostile.execute(f"SET search_path = {HOSTILE_PATH}")
            counts = dict(hostile.execute("SELECT outcome, statements FROM pgml_capture_plans()").fetchall())
            assert trap_hits(hostile) == 0
        assert counts["planned"] >= 1
        assert capture_of(db, "SELECT total FROM orders WHERE id = $1")["outcome"] == "planned"
    finally:
        db.conn.execute("DROP SCHEMA IF EXISTS hostile CASCADE")
        db.conn.execute(f"REVOKE CREATE ON DATABASE {db.name} FROM {attacker}")
        db.conn.execute(f"DROP ROLE {attacker}")


def test_a_regression_right_after_a_plan_change_says_so(db: Database):
    from history_builder import History, statements

    history = History(db.conn, "db-1")
    levels = statements(4)
    changed = next(iter(levels))
    history.steady(levels, intervals=24)
    history.capture(levels, extra={changed: {"plan": REMOTE_PLAN, "relations": SIZES}})
    db.conn.execute("SELECT * FROM pgml_train(90, 'linear_regression', 'db-1')")
    db.conn.execute("SELECT count(*) FROM pgml_predict_all('db-1', log => true)")
    slower = {q: level * (50 if q == changed else 1) for q, level in levels.items()}
    at = history.capture(slower, extra={changed: {"plan": SEQ_PLAN, "relations": SIZES}})
    history.capture(slower)  # an alarm takes two intervals in a row above the bound
    rows = dict(db.all("SELECT query_hash, plan_changed_at FROM pganalytics_ml.regressions WHERE server_id = 'db-1'"))
    assert changed in rows and rows[changed] == at
    assert all(when is None for q, when in rows.items() if q != changed)
