"""Input a hostile user controls: statements no parser should have to read whole, passwords written for
the other string rule, numbers and nesting past what Python reads, counters that sum past bigint, times
out of range, settings past their bounds, pushes too large to hold. Each is refused with a SQLSTATE and a
hint, or stored without harm, and capture goes on (issue 19, items 1, 2, 6, 7, 8)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from psycopg.types.json import Jsonb

from conftest import Database

pytestmark = pytest.mark.integration

TABLES = ("snapshots", "statements", "query_stats", "counter_baseline", "jobs")


def nested(opening: str, inner: str, closing: str, depth: int) -> str:
    return opening * depth + inner + closing * depth


# Statements PostgreSQL itself runs, whose parse tree is hundreds of levels deep.
DEEP_STATEMENTS = {
    "concatenation": "SELECT " + " || ".join(["'x'"] * 500),
    "additions": "SELECT " + nested("1+(", "1", ")", 600),
    "subselects": nested("SELECT (", "SELECT 1", ")", 200),
    "case": "SELECT " + nested("CASE WHEN random() < 2 THEN ", "1", " END", 300),
    "coalesce": "SELECT " + nested("coalesce(", "1", ", 2)", 300),
    "function calls": "SELECT " + nested("abs(", "1", ")", 400),
    "unions": " UNION ALL ".join(["SELECT 1"] * 700),
}


def table_counts(db: Database) -> dict[str, int]:
    return {t: db.one(f"SELECT count(*) FROM pganalytics_ml.{t}") for t in TABLES}


@pytest.fixture
def login_role(db: Database) -> Iterator[str]:
    """A login role with no grants at all."""
    name = f"nobody_{db.name}"
    db.conn.execute(f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        db.conn.execute(f"DROP ROLE {name}")


def test_deep_statements_run_by_a_role_without_grants_never_stop_capture(db: Database, login_role: str):
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    with db.connect(user=login_role) as conn:
        for query in DEEP_STATEMENTS.values():
            conn.execute(query)
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    stored = db.all(
        "SELECT s.query, st.parse_ok, st.parse_error FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid AND r.rolname = %s"
        " JOIN pganalytics_ml.statements st ON st.server_id = 'local' AND st.queryid = s.queryid",
        (login_role,),
    )
    deep = [r for r in stored if len(r[0]) > 1000]
    assert len(deep) == len(DEEP_STATEMENTS), stored
    assert all(ok is False and error.startswith("not parsed:") for _, ok, error in deep), deep
    # Later snapshots, and the snapshot job, go on while those entries stay in pg_stat_statements.
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    job = db.one("SELECT job_id FROM pgml_job_enqueue('snapshot')")
    db.conn.execute("CALL pganalytics_ml.run_jobs(max_jobs => 1, kinds => ARRAY['snapshot'])")  # not the plans job
    assert db.one("SELECT status FROM pgml_job_status(%s)", (job,)) == "completed"
    # Plan capture reads the same texts: each is skipped as unparsable, the others are planned.
    outcomes = dict(db.all("SELECT outcome, statements FROM pgml_capture_plans()"))
    assert outcomes["unparsable"] >= len(DEEP_STATEMENTS) and outcomes["planned"] > 0, outcomes


def test_deep_statements_in_a_push_are_stored_as_not_parsed(db: Database):
    rows = [
        {"queryid": i, "calls": 1, "total_exec_time": 1.0, "query": query}
        for i, query in enumerate([*DEEP_STATEMENTS.values(), "SELECT " + " || ".join(["$1"] * 100_000)], 1)
    ]
    assert db.one("SELECT pgml_ingest_stats('db-1', %s)", (Jsonb(rows),)) == len(rows)
    parsed = db.all("SELECT parse_ok, parse_error FROM pganalytics_ml.statements WHERE server_id = 'db-1'")
    assert len(parsed) == len(rows) and all(ok is False and "not parsed:" in error for ok, error in parsed)


SECRET_WORDS = ("Tr0ub4dor", "horse", "battery", "staple")
PASSWORDS = {
    # (standard_conforming_strings, statement the server accepts under it)
    "off, backslash-quote": ("off", "ALTER ROLE {role} PASSWORD 'Tr0ub4dor\\' horse battery staple --'"),
    "off, escape string": ("off", "ALTER ROLE {role} PASSWORD E'Tr0ub4dor\\' horse battery staple'"),
    "on, backslash kept": ("on", "ALTER ROLE {role} PASSWORD 'Tr0ub4dor\\ horse battery staple'"),
    "on, escape string": ("on", "ALTER ROLE {role} PASSWORD E'Tr0ub4dor\\' horse battery staple'"),
    "on, dollar quotes": ("on", "ALTER ROLE {role} PASSWORD $pw$Tr0ub4dor' horse battery staple$pw$"),
}


@pytest.mark.parametrize(("setting", "statement"), PASSWORDS.values(), ids=PASSWORDS.keys())
def test_no_part_of_a_password_reaches_the_readers(db: Database, login_role: str, setting: str, statement: str):
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    db.conn.execute(f"SET standard_conforming_strings = {setting}")
    db.conn.execute(statement.format(role=login_role))
    db.conn.execute("RESET standard_conforming_strings")
    in_pgss = "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid AND d.datname = %s"
    assert db.one(in_pgss + " WHERE s.query LIKE %s", (db.name, "%staple%")) == 1
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    stored = db.one("SELECT query FROM pganalytics_ml.statements WHERE query LIKE %s", (f"ALTER ROLE {login_role} %",))
    assert stored.startswith(f"ALTER ROLE {login_role} PASSWORD '***'"), stored
    for table in ("statements", "snapshots", "query_stats", "counter_baseline"):
        text = " ".join(r[0] for r in db.all(f"SELECT t::text FROM pganalytics_ml.{table} t"))
        assert not any(word in text for word in SECRET_WORDS), (table, text[:300])


def refused(db: Database, call: str, params: tuple, sqlstates: tuple[str, ...], fragment: str) -> None:
    """``call`` fails with one of ``sqlstates``, a message holding ``fragment``, a hint, and writes nothing."""
    before = table_counts(db)
    err = db.error(call, params)
    assert err.sqlstate in sqlstates, (err.sqlstate, err.diag.message_primary)
    assert fragment in err.diag.message_primary
    assert err.diag.message_hint, err.diag.message_primary
    assert "Error:" not in err.diag.message_primary, "a Python error, not the extension's"
    assert table_counts(db) == before


def one_row(**fields) -> dict:
    return {"queryid": 1, "calls": 1, "total_exec_time": 1.0, **fields}


def push(rows, **header) -> str:
    return json.dumps({"captured_at": "2026-11-01T12:00:00Z", "rows": rows, **header})


HUGE = "1e5000"  # jsonb keeps it exactly: 1 and 5,000 zeros, past what Python's int() reads
BAD_PUSHES = {
    "huge calls": (push([one_row(calls=0)]).replace('"calls": 0', f'"calls": {HUGE}'), "calls is out of range"),
    "huge queryid": (push([one_row(queryid=0)]).replace('"queryid": 0', f'"queryid": {HUGE}'), "out of range"),
    "huge time": (
        push([one_row(total_exec_time=0)]).replace('"total_exec_time": 0', f'"total_exec_time": {HUGE}'),
        "total_exec_time must be a number of milliseconds",
    ),
    "nested rows": ("[" * 5000 + "]" * 5000, "nested"),
    "nested field": (push([one_row(extra=0)]).replace('"extra": 0', '"extra": ' + "[" * 5000 + "]" * 5000), "nested"),
    "nested header": (
        push([one_row()], stats_reset=0).replace('"stats_reset": 0', '"stats_reset": ' + "[" * 5000 + "]" * 5000),
        "nested",
    ),
    "year 1": (push([one_row()]).replace("2026-11-01T12:00:00Z", "0001-01-01T00:00:00Z"), "captured_at"),
    "year 1 east of UTC, BC in UTC": (
        push([one_row()]).replace("2026-11-01T12:00:00Z", "0001-01-01T00:00:00+14:00"),
        "captured_at",
    ),
    "reset in the future": (push([one_row()], stats_reset="2026-11-02T12:00:00Z"), "stats_reset"),
    "reset before 2000": (push([one_row()], stats_reset="1999-12-31T23:00:00Z"), "stats_reset"),
    "arabic-indic queryid": (push([one_row(queryid="١٢")]), "queryid must be an integer"),
    "arabic-indic calls": (push([one_row(calls="١٢")]), "calls must be an integer"),
    "arabic-indic time": (push([one_row(total_exec_time="١٢")]), "total_exec_time must be a number of milliseconds"),
    "underscored time": (push([one_row(total_exec_time="1_000")]), "total_exec_time must be a number of milliseconds"),
}


@pytest.mark.parametrize(("stats", "fragment"), BAD_PUSHES.values(), ids=BAD_PUSHES.keys())
def test_hostile_pushes_are_refused_with_a_sqlstate_and_a_hint(db: Database, stats: str, fragment: str):
    refused(db, "SELECT pgml_ingest_stats('db-1', %s::jsonb)", (stats,), ("22023", "22003"), fragment)


def test_counters_of_one_statement_summing_past_bigint_are_refused_before_anything_is_written(db: Database):
    rows = [one_row(userid=u, calls=10**15 - u) for u in range(10_000)]
    first = [one_row(userid=u) for u in range(10_000)]
    assert db.one("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push(first),)) == 10_000
    later = push(rows).replace("2026-11-01T12:00:00Z", "2026-11-01T12:05:00Z")
    refused(db, "SELECT pgml_ingest_stats('db-1', %s::jsonb)", (later,), ("22003",), "queryid 1")


def test_a_push_past_the_row_limit_is_refused(db: Database):
    rows = [{"queryid": i, "calls": 1, "total_exec_time": 1} for i in range(100_001)]
    refused(db, "SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push(rows),), ("54000",), "100000")


@pytest.mark.parametrize(
    "arguments",
    [
        '{"seconds": 1e5000}',
        '{"seconds": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"lookback_days": 1e5000}',
    ],
    ids=["huge number", "nested 5,000 deep", "huge lookback"],
)
def test_hostile_job_arguments_are_refused_before_anything_is_queued(db: Database, arguments: str):
    kind = "train" if "lookback" in arguments else "sleep"
    db.conn.execute("SELECT pgml_ingest_stats('db-1', %s::jsonb)", (push([one_row()]),))
    refused(db, "SELECT * FROM pgml_job_enqueue(%s, %s::jsonb)", (kind, arguments), ("22023", "22003"), "")


@pytest.mark.parametrize("setting", ["1000000", "0", "-3", "lots", "١٢"])
def test_the_session_setting_of_attempts_is_held_to_its_bounds(db: Database, setting: str):
    db.conn.execute("SELECT set_config('pganalytics_ml.job_max_attempts', %s, false)", (setting,))
    refused(db, "SELECT * FROM pgml_job_enqueue('sleep')", (), ("22023",), "job_max_attempts")
    db.conn.execute("SELECT set_config('pganalytics_ml.job_max_attempts', '100', false)")
    assert db.one("SELECT max_attempts FROM pgml_job_enqueue('sleep')") == 100
