"""pgml_recommend_indexes on a real cluster with hypopg: candidates, hypothetical trials, the greedy choice,
the record, and the check once an index appears (recommendation_outcomes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conftest import Database

pytestmark = pytest.mark.integration

MISSING = "SELECT count(*) FROM orders WHERE customer = %s"
NARROWER = "SELECT total FROM orders WHERE customer = %s AND status = %s"


@pytest.fixture
def shop(db: Database) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """A login role with its own schema (found through "$user"), a table missing the index its workload needs."""
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    role = f"app_{db.name}"
    db.conn.execute(f"CREATE ROLE {role} LOGIN")
    db.conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    conn = db.connect(user=role)
    conn.autocommit = True
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, status int, total numeric)")
    conn.execute("INSERT INTO orders SELECT g, g % 2000, g % 7, g FROM generate_series(1, 60000) g")
    conn.execute("ANALYZE orders")
    try:
        yield role, conn
    finally:
        conn.close()
        db.conn.execute(f"DROP SCHEMA {role} CASCADE")
        db.conn.execute(f"DROP OWNED BY {role}")
        db.conn.execute(f"DROP ROLE {role}")


def run(conn: psycopg.Connection[Any], times: int, narrower: bool = False) -> None:
    for i in range(times):
        conn.execute(MISSING, (i % 2000,)).fetchall()
        if narrower:
            conn.execute(NARROWER, (i % 2000, i % 7)).fetchall()


def captured(db: Database, conn: psycopg.Connection[Any], times: int = 40, narrower: bool = False) -> None:
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    run(conn, times, narrower)
    db.one("SELECT count(*) FROM pgml_snapshot()")


def queryid(db: Database, like: str) -> int:
    return db.one("SELECT queryid FROM pganalytics_ml.statements WHERE query LIKE %s", (like,))


def recommend(db: Database, args: str = "") -> list[dict[str, Any]]:
    cur = db.conn.execute(f"SELECT * FROM pgml_recommend_indexes({args})")
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_the_missing_index_is_found_never_created_and_recorded(db: Database, shop):
    role, conn = shop
    captured(db, conn)
    indexes_before = db.one("SELECT count(*) FROM pg_indexes WHERE schemaname = %s", (role,))
    db.conn.execute("SELECT * FROM hypopg_create_index(%s)", (f"CREATE INDEX ON {role}.orders (total)",))
    mine = db.one("SELECT count(*) FROM hypopg()")

    rows = recommend(db)
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["index_sql"] == f"CREATE INDEX CONCURRENTLY ON {role}.orders (customer)"
    assert row["table_name"] == f"{role}.orders" and row["columns"] == ["customer"]
    assert row["query_hashes"] == [queryid(db, "SELECT count(*) FROM orders WHERE customer = $1")]
    assert row["speedups"][0] >= 1.5
    assert 0 < row["saved_lower_ms_per_s"] <= row["saved_ms_per_s"] <= row["saved_upper_ms_per_s"]
    assert row["estimated_size_bytes"] > 0 and row["source"] in ("plan_cost", "plan_model")

    # nothing created, and the session's own hypothetical index is still there (no hypopg_reset)
    assert db.one("SELECT count(*) FROM pg_indexes WHERE schemaname = %s", (role,)) == indexes_before
    assert db.one("SELECT count(*) FROM hypopg()") == mine
    db.conn.execute("SELECT hypopg_reset()")
    rec = db.conn.execute(
        "SELECT r.relation, r.columns, r.appeared_at, s.queryid, s.current_ms / s.predicted_ms, s.predicted_cost"
        "  FROM pganalytics_ml.recommendations r JOIN pganalytics_ml.recommendation_statements s"
        " USING (recommendation_id) WHERE recommendation_id = %s",
        (row["recommendation_id"],),
    ).fetchall()
    assert len(rec) == 1
    relation, columns, appeared, qid, speedup, cost = rec[0]
    assert (relation, columns, appeared, qid) == (f"{role}.orders", ["customer"], None, row["query_hashes"][0])
    assert speedup == pytest.approx(row["speedups"][0], rel=1e-3) and cost > 0


def test_when_the_index_appears_the_outcome_compares_prediction_and_measurement(db: Database, shop):
    _role, conn = shop
    captured(db, conn, times=60)
    (row,) = recommend(db)
    db.one("SELECT count(*) FROM pgml_snapshot()")  # nothing appeared yet
    assert db.one("SELECT appeared_at FROM pganalytics_ml.recommendations") is None

    conn.execute("CREATE INDEX CONCURRENTLY orders_by_customer ON orders (customer)")  # by the role, by hand
    found_at = db.one("SELECT captured_at FROM pgml_snapshot()")
    appeared = db.one(
        "SELECT appeared_at, appeared_index, absent_until < appeared_at FROM pganalytics_ml.recommendations"
    )
    assert appeared[0] == found_at and appeared[1] == "orders_by_customer" and appeared[2] is True
    outcome = db.one("SELECT actual_ms_after FROM pganalytics_ml.recommendation_outcomes")
    assert outcome is None  # no interval wholly after the index was found, yet

    run(conn, 60)
    db.one("SELECT count(*) FROM pgml_snapshot()")
    q, predicted, actual, before, after = db.conn.execute(
        "SELECT query_hash, predicted_speedup, actual_speedup, actual_ms_before, actual_ms_after"
        "  FROM pganalytics_ml.recommendation_outcomes"
    ).fetchone()
    assert q == row["query_hashes"][0]
    assert predicted == pytest.approx(row["speedups"][0], rel=1e-3)
    assert before > after > 0 and actual == pytest.approx(before / after)
    assert actual > 1.5  # the index did make it faster
    # the next recommendation knows the index is there
    assert recommend(db) == []


def test_overlapping_candidates_are_not_all_recommended(db: Database, shop):
    _role, conn = shop
    captured(db, conn, narrower=True)
    rows = recommend(db, "max_indexes => 5")
    assert rows, "the workload needs an index on orders (customer ...)"
    leading = [r["columns"][0] for r in rows]
    assert leading.count("customer") == 1, rows  # (customer) and (customer, status) are not both recommended
    helped = {q for r in rows for q in r["query_hashes"]}
    assert queryid(db, "SELECT count(*) FROM orders WHERE customer = $1") in helped
    assert queryid(db, "SELECT total FROM orders WHERE customer = $1 AND status = $2") in helped


def test_nothing_to_recommend_is_zero_rows_and_no_history_is_p0002(db: Database, shop):
    _role, conn = shop
    err = db.error("SELECT * FROM pgml_recommend_indexes()")
    assert err.sqlstate == "P0002" and "pgml_snapshot" in err.diag.message_hint
    conn.execute("CREATE INDEX ON orders (customer)")
    captured(db, conn)
    assert recommend(db) == []
    assert recommend(db, "min_speedup => 1000") == []
    assert db.one("SELECT count(*) FROM pganalytics_ml.recommendations") == 0


def test_bad_arguments_name_themselves(db: Database, shop):
    _role, conn = shop
    captured(db, conn, times=2)
    cases = {
        "NULL": "22004",
        "'local', NULL": "22004",
        "'local', 50, NULL": "22004",
        "'local', 50, 1.5, NULL": "22004",
        "'local', 0": "22023",
        "'local', 10001": "22023",
        "'local', 50, 1.0": "22023",
        "'local', 50, 'NaN'": "22023",
        "'local', 50, 1.5, 0": "22023",
        "'nowhere'": "P0002",
    }
    for args, sqlstate in cases.items():
        err = db.error(f"SELECT * FROM pgml_recommend_indexes({args})")
        assert err.sqlstate == sqlstate, (args, err)
        assert err.diag.message_hint, args
    db.one("""SELECT pgml_ingest_stats('db-2', '[{"queryid": 1, "calls": 3, "total_exec_time": 9}]')""")
    err = db.error("SELECT * FROM pgml_recommend_indexes('db-2')")
    assert err.sqlstate == "0A000" and "server_id 'local'" in err.diag.message_hint
    assert db.one("SELECT count(*) FROM pganalytics_ml.recommendations") == 0


def test_without_hypopg_it_says_how_to_get_it(db: Database, shop):
    _role, conn = shop
    captured(db, conn, times=2)
    db.conn.execute("DROP EXTENSION hypopg")
    err = db.error("SELECT * FROM pgml_recommend_indexes()")
    assert err.sqlstate == "55000" and "CREATE EXTENSION hypopg" in err.diag.message_hint


def test_only_pgml_admin_may_call_it(db: Database, shop):
    _role, conn = shop
    captured(db, conn, times=2)
    for grant, allowed in (("pgml_reader", False), ("pgml_trainer", False), ("pgml_admin", True)):
        user = f"{grant}_{db.name}"
        db.conn.execute(f"CREATE ROLE {user} LOGIN IN ROLE {grant}")
        try:
            with db.connect(user=user) as other:
                if allowed:
                    other.execute("SELECT * FROM pgml_recommend_indexes()").fetchall()
                else:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        other.execute("SELECT * FROM pgml_recommend_indexes()")
                other.execute("SELECT * FROM pganalytics_ml.recommendation_outcomes").fetchall()  # readable by all
        finally:
            db.conn.execute(f"DROP ROLE {user}")


def test_a_statement_is_planned_as_its_own_role_never_as_the_owner(db: Database, shop):
    role, conn = shop
    # A table only the superuser may read, named like the role's: a statement planned with the owner's
    # privileges and search_path would find it; planned as the role, the role's own table is the one.
    db.conn.execute("CREATE TABLE public.orders (customer int)")
    captured(db, conn)
    (row,) = recommend(db)
    assert row["table_name"] == f"{role}.orders"
    conn.execute("CREATE TABLE ledger (customer int, amount int)")
    conn.execute("INSERT INTO ledger SELECT g % 100, g FROM generate_series(1, 20000) g")
    conn.execute("ANALYZE ledger")
    conn.execute(f"REVOKE ALL ON ledger FROM {role}")  # its own table, which it may no longer read
    db.one("SELECT pg_stat_statements_reset()")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    conn.execute(f"GRANT SELECT ON ledger TO {role}")
    for i in range(30):
        conn.execute("SELECT sum(amount) FROM ledger WHERE customer = %s", (i,)).fetchall()
    conn.execute(f"REVOKE ALL ON ledger FROM {role}")
    db.one("SELECT count(*) FROM pgml_snapshot()")
    assert all("ledger" not in r["table_name"] for r in recommend(db))  # planning it as the role fails


def test_the_callers_search_path_changes_nothing(db: Database, shop):
    _role, conn = shop
    captured(db, conn)
    # Fakes of what it calls and reads, first in the caller's search_path: none may be used.
    db.conn.execute("CREATE SCHEMA hostile")
    db.conn.execute("CREATE SEQUENCE hostile.hits")
    fakes = {
        "hypopg_create_index(text) RETURNS TABLE (indexrelid oid, indexname text)": "nextval('hostile.hits')::oid, ''",
        "hypopg_drop_index(oid) RETURNS boolean": "nextval('hostile.hits') > 0",
        "hypopg_relation_size(oid) RETURNS bigint": "nextval('hostile.hits')",
    }
    for fake, body in fakes.items():
        db.conn.execute(f"CREATE FUNCTION hostile.{fake} LANGUAGE sql AS $$ SELECT {body} $$")
    db.conn.execute("CREATE TABLE hostile.recommendations (x int)")
    db.conn.execute("CREATE VIEW hostile.pg_stat_statements AS SELECT nextval('hostile.hits') AS queryid")
    plain = recommend(db)
    db.conn.execute("SET search_path = hostile, public, pg_catalog")
    hostile = recommend(db)
    db.conn.execute("RESET search_path")
    assert [(r["index_sql"], r["query_hashes"], r["speedups"]) for r in hostile] == [
        (r["index_sql"], r["query_hashes"], r["speedups"]) for r in plain
    ]
    assert plain and db.one("SELECT count(*) FROM hostile.recommendations") == 0
    assert db.one("SELECT last_value FROM hostile.hits") == 1 and not db.one("SELECT is_called FROM hostile.hits")
