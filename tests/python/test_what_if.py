"""What-if predictions on a real cluster with hypopg: pgml_predict_sql (planned as the caller, never run),
scenarios for known statements (hypothetical indexes, growth, load, 'optimized'), and their bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import Database

pytestmark = pytest.mark.integration

SLOW = "SELECT count(*) FROM orders WHERE total = $1"


@pytest.fixture
def app(db: Database) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """A login role with its own schema and an orders table missing an index on total, in its own session."""
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    role = f"app_{db.name}"
    db.conn.execute(f"CREATE ROLE {role} LOGIN")
    db.conn.execute(f"GRANT pgml_reader TO {role}")
    db.conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    conn = db.connect(user=role)
    conn.execute(f"SET search_path = {role}, public")
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, total int)")
    conn.execute("INSERT INTO orders SELECT g, g % 500, g % 7919 FROM generate_series(1, 50000) g")
    conn.execute("ANALYZE orders")
    try:
        yield role, conn
    finally:
        conn.close()
        db.conn.execute(f"DROP SCHEMA {role} CASCADE")
        db.conn.execute(f"DROP OWNED BY {role}")
        db.conn.execute(f"DROP ROLE {role}")


def with_history(db: Database, conn: psycopg.Connection[Any]) -> int:
    """The slow statement run between four snapshots, its plan captured: it has a forecast and a plan."""
    db.conn.execute("SELECT pg_stat_statements_reset()")
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    for round_ in range(3):
        for value in range(20):
            conn.execute("SELECT count(*) FROM orders WHERE total = %s", (value + round_,))
        db.conn.execute("SELECT * FROM pgml_snapshot()")
    db.conn.execute("SELECT * FROM pgml_capture_plans()")
    queryid = db.one("SELECT queryid FROM pganalytics_ml.statements WHERE query = %s", (SLOW,))
    assert db.one("SELECT count(*) FROM pganalytics_ml.forecasts WHERE queryid = %s", (queryid,)) == 1
    return queryid


def what_if(conn: psycopg.Connection[Any], queryid: int, scenario: Any) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgml_predict(%s, 'local', %s)", (queryid, Jsonb(scenario)))
    names = [c.name for c in cur.description]
    rows = cur.fetchall()
    assert len(rows) == 1
    return dict(zip(names, rows[0], strict=True))


def hypothetical_left(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) FROM hypopg()").fetchone()[0]


def test_a_hypothetical_index_scales_a_known_statement_by_its_plan_and_is_dropped_after(db: Database, app):
    role, conn = app
    queryid = with_history(db, conn)
    current = what_if(conn, queryid, "current")
    assert current["logged"] is True and current["scenario"] == {"scenario": "current"}
    assert current["plan_fingerprint"] is not None and current["total_cost"] > 0
    indexed = what_if(conn, queryid, {"indexes": [f"CREATE INDEX ON {role}.orders (total)"]})
    assert indexed["logged"] is False and indexed["prediction_id"] is None
    assert indexed["plan_fingerprint"] != current["plan_fingerprint"]
    assert indexed["total_cost"] < current["total_cost"] / 5
    assert indexed["predicted_execution_time_ms"] < current["predicted_execution_time_ms"] / 5
    assert indexed["lower_bound_ms"] <= indexed["predicted_execution_time_ms"] <= indexed["upper_bound_ms"]
    assert indexed["scenario"]["indexes"] == [f"CREATE INDEX ON {role}.orders (total)"]
    assert indexed["source"] in ("plan_model", "plan_cost")
    assert hypothetical_left(conn) == 0
    # Nothing was built, and nothing but the 'current' prediction was logged.
    assert db.one("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'") == 1
    assert db.one("SELECT count(*) FROM pganalytics_ml.predictions WHERE queryid = %s", (queryid,)) == 1


def test_optimized_finds_the_missing_index_and_says_what_it_would_do(db: Database, app):
    role, conn = app
    queryid = with_history(db, conn)
    before = what_if(conn, queryid, "current")["predicted_execution_time_ms"]
    optimized = what_if(conn, queryid, "optimized")
    assert optimized["recommended_indexes"] == [f"CREATE INDEX ON {role}.orders (total)"]
    assert optimized["predicted_execution_time_ms"] < before / 5
    assert "CREATE INDEX ON" in optimized["optimization_suggestion"] and "ms" in optimized["optimization_suggestion"]
    document = conn.execute(
        "SELECT pgml_predict_json(%s, 'local', to_jsonb('optimized'::text))", (queryid,)
    ).fetchone()[0]
    assert document["recommended_indexes"] == optimized["recommended_indexes"]
    assert document["optimization_suggestion"] == optimized["optimization_suggestion"]
    assert document["query_hash"] == queryid and document["range"]["min"] <= document["predicted_execution_time_ms"]
    assert hypothetical_left(conn) == 0


def test_growth_and_load_are_applied_to_the_captured_plan(db: Database, app):
    _role, conn = app
    queryid = with_history(db, conn)
    current = what_if(conn, queryid, {})
    doubled = what_if(conn, queryid, {"growth": 2.0})
    assert doubled["total_cost"] == pytest.approx(2 * current["total_cost"], rel=0.05)
    assert doubled["predicted_execution_time_ms"] > 1.5 * current["predicted_execution_time_ms"]
    named = what_if(conn, queryid, {"growth": {"orders": 3.0, "nothing_here": 2.0}})
    assert named["total_cost"] == pytest.approx(3 * current["total_cost"], rel=0.05)
    assert named["scenario"]["growth_not_read"] == ["nothing_here"]
    loaded = what_if(conn, queryid, {"load": 1.5})
    assert loaded["scenario"]["load"] == 1.5


def test_a_text_is_planned_as_the_caller_and_never_run(db: Database, app):
    _role, conn = app
    before = conn.execute("SELECT count(*) FROM orders WHERE total = 0").fetchone()[0]
    for changed in ("UPDATE orders SET total = 0", "DELETE FROM orders", "INSERT INTO orders SELECT * FROM orders"):
        with pytest.raises(psycopg.Error) as caught:  # planned; without a plan model, nothing answers
            conn.execute("SELECT * FROM pgml_predict_sql(%s)", (changed,))
        assert caught.value.sqlstate == "P0002", str(caught.value)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 50000
    assert conn.execute("SELECT count(*) FROM orders WHERE total = 0").fetchone()[0] == before


def test_no_plan_model_is_said_with_p0002(db: Database, app):
    _role, conn = app
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM pgml_predict_sql('SELECT * FROM orders WHERE customer = $1')")
    assert caught.value.sqlstate == "P0002" and "plan model" in str(caught.value)
    assert caught.value.diag.message_hint


BAD_TEXTS = [
    (None, "22004", "sql must not be NULL"),
    ("SELEC 1", "42601", "does not parse"),
    ("SELECT 1; SELECT 2", "22023", "one statement"),
    ("CREATE TABLE x (a int)", "22023", "only statements"),
    ("SELECT * INTO y FROM orders", "22023", "only statements"),
    ("SELECT * FROM no_such_table", "42P01", "does not plan"),
    ("SELECT no_such_column FROM orders", "42703", "does not plan"),
]


@pytest.mark.parametrize(("sql", "sqlstate", "fragment"), BAD_TEXTS)
def test_a_text_that_is_not_one_plannable_statement_is_refused(db: Database, app, sql, sqlstate, fragment):
    _role, conn = app
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM pgml_predict_sql(%s)", (sql,))
    assert caught.value.sqlstate == sqlstate and fragment in str(caught.value), str(caught.value)
    assert caught.value.diag.message_hint
    assert "Traceback" not in (caught.value.diag.context or "")
    conn.execute("SELECT 1")  # the session is usable
    assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0


BAD_SCENARIOS = [
    ("faster", "unknown scenario"),
    ({"index": []}, "unknown scenario keys"),
    ({"indexes": []}, "array of 1 to"),
    ({"indexes": ["DROP TABLE orders"]}, "one CREATE INDEX"),
    ({"indexes": [7]}, "must be a CREATE INDEX"),
    ({"growth": 0}, "above 0"),
    ({"growth": "double"}, "must be a number"),
    ({"growth": {"orders": -1}}, "above 0"),
    ({"load": 1e9}, "at most"),
]


@pytest.mark.parametrize(("scenario", "fragment"), BAD_SCENARIOS)
def test_an_invalid_scenario_gets_22023_with_what_is_accepted(db: Database, app, scenario, fragment):
    _role, conn = app
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM pgml_predict_sql('SELECT 1', %s)", (Jsonb(scenario),))
    assert caught.value.sqlstate == "22023" and fragment in str(caught.value), str(caught.value)
    assert "Accepted:" in caught.value.diag.message_hint


def test_a_role_without_select_learns_nothing_about_the_table(db: Database, app):
    _role, conn = app
    db.conn.execute("CREATE TABLE public.salaries (who text, amount int)")
    db.conn.execute("INSERT INTO public.salaries SELECT 'x' || g, g FROM generate_series(1, 1000) g")
    db.conn.execute("ANALYZE public.salaries")
    for sql in ("SELECT * FROM public.salaries WHERE amount > 10", "DELETE FROM public.salaries"):
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("SELECT * FROM pgml_predict_sql(%s)", (sql,))
        assert caught.value.sqlstate == "42501", str(caught.value)
        assert "1000" not in str(caught.value) and "cost" not in str(caught.value)
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(
            "SELECT * FROM pgml_predict_sql('SELECT 1', %s)",
            (Jsonb({"indexes": ["CREATE INDEX ON public.salaries (amount)"]}),),
        )
    assert caught.value.sqlstate == "42501", str(caught.value)
    assert hypothetical_left(conn) == 0


def test_index_scenarios_need_hypopg_and_say_so(db: Database, app):
    role, conn = app
    queryid = with_history(db, conn)
    db.conn.execute("DROP EXTENSION hypopg")
    for scenario in ("optimized", {"indexes": [f"CREATE INDEX ON {role}.orders (total)"]}):
        with pytest.raises(psycopg.Error) as caught:
            what_if(conn, queryid, scenario)
        assert caught.value.sqlstate == "55000" and "CREATE EXTENSION hypopg" in caught.value.diag.message_hint
    assert what_if(conn, queryid, {"growth": 2})["total_cost"] > 0  # the rest works without it


def test_index_scenarios_of_another_server_are_refused(db: Database):
    with pytest.raises(psycopg.Error) as caught:
        db.conn.execute("SELECT * FROM pgml_predict(1, 'elsewhere', '\"optimized\"')")
    assert caught.value.sqlstate in ("P0002", "0A000")
    with pytest.raises(psycopg.Error) as caught:
        db.conn.execute("SELECT * FROM pgml_predict(NULL, 'local', '{}')")
    assert caught.value.sqlstate == "22004"
