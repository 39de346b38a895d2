"""Hostile objects earlier on the caller's search_path change nothing in what the extension does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb

from conftest import Database
from workload import pgbench

pytestmark = pytest.mark.integration

HOSTILE = """
CREATE SCHEMA hostile;
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION hostile.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION hostile.count_calls(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR hostile.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.count_calls);
CREATE TABLE hostile.query_stats (server_id text, queryid bigint);
CREATE TABLE hostile.statements (server_id text, queryid bigint);
CREATE TABLE hostile.snapshots (server_id text, captured_at timestamptz);
CREATE VIEW hostile.pg_stat_statements AS SELECT 1::oid AS userid;
CREATE FUNCTION public.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{"hijacked": true}'::jsonb $$;
"""


@pytest.fixture
def hostile(db: Database) -> Database:
    db.conn.execute(HOSTILE)
    db.conn.execute("SET search_path = hostile, public, pg_catalog")
    assert db.one("SELECT now()") == datetime(1999, 1, 1, tzinfo=UTC)  # the trap is armed
    return db


def test_snapshot_ignores_the_callers_search_path(hostile: Database):
    hostile.conn.execute("CREATE TABLE public.probe (id int PRIMARY KEY)")
    first = hostile.one("SELECT captured_at FROM pgml_snapshot()")
    pgbench(hostile.cluster, hostile.name, "SELECT count(*) FROM probe;\n", transactions=25)
    second = hostile.one("SELECT captured_at FROM pgml_snapshot()")
    assert first.year == second.year == datetime.now(UTC).year
    calls = hostile.one(
        "SELECT q.calls FROM pganalytics_ml.query_stats q JOIN pganalytics_ml.statements s USING (server_id, queryid)"
        " WHERE s.query = 'SELECT count(*) FROM probe'"
    )
    assert calls == 25
    assert hostile.one("SELECT count(*) FROM hostile.query_stats") == 0


def test_ingest_and_status_ignore_the_callers_search_path(hostile: Database):
    rows = [{"queryid": 5, "calls": 3, "total_exec_time": 3.0}]
    assert (
        hostile.one(
            "SELECT pgml_ingest_stats('db-1', %s)", (Jsonb({"captured_at": "2026-11-01T00:00:00Z", "rows": rows}),)
        )
        == 1
    )
    rows[0]["calls"] = 5
    hostile.one("SELECT pgml_ingest_stats('db-1', %s)", (Jsonb({"captured_at": "2026-11-01T00:01:00Z", "rows": rows}),))
    assert hostile.one("SELECT calls FROM pganalytics_ml.query_stats WHERE server_id = 'db-1'") == 2
    status = hostile.one("SELECT pgml_status()")
    assert status["service"] == "pganalytics_ml" and "hijacked" not in status
    assert status["checked_at"][:4] != "1999"
