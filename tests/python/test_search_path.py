"""Hostile objects earlier on the caller's search_path change nothing in what the extension does.

Every SECURITY DEFINER function (read from the catalog: one without a case here fails) is called by a
pgml_admin member who placed fake functions, aggregates, operators, tables and views first on her
search_path, and behaves exactly as for the same member with an ordinary search_path in a twin
database. Every fake object counts its calls; none may be called.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from conftest import Database, fresh_database
from cron_cluster import CRON_DB, cron_cluster
from pgcluster import Cluster, wait_for
from sample_state import populate
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

# Fakes of what the extension's SQL calls, each recording its call in a sequence (which no rollback undoes).
TRAPS = """
CREATE SCHEMA hostile;
CREATE SEQUENCE hostile.trap_hits;
CREATE FUNCTION hostile.hit() RETURNS bigint LANGUAGE sql AS $$ SELECT pg_catalog.nextval('hostile.trap_hits') $$;
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT '1999-01-01'::timestamptz + hostile.hit() * interval '0' $$;
CREATE FUNCTION hostile.clock_timestamp() RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT '1999-01-01'::timestamptz + hostile.hit() * interval '0' $$;
CREATE FUNCTION hostile.pg_is_in_recovery() RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE FUNCTION hostile.current_setting(text) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE FUNCTION hostile.current_setting(text, boolean) RETURNS text LANGUAGE sql
    AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE FUNCTION hostile.current_database() RETURNS name LANGUAGE sql AS $$ SELECT ('x' || hostile.hit())::name $$;
CREATE FUNCTION hostile.pg_backend_pid() RETURNS integer LANGUAGE sql AS $$ SELECT hostile.hit()::integer $$;
CREATE FUNCTION hostile.gen_random_uuid() RETURNS uuid LANGUAGE sql
    AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(hostile.hit()::text, 12, '0'))::uuid $$;
CREATE FUNCTION hostile.hashtextextended(text, bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT hostile.hit() $$;
CREATE FUNCTION hostile.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE sql AS $$ SELECT hostile.hit() $$;
CREATE FUNCTION hostile.pg_try_advisory_xact_lock(integer, integer) RETURNS boolean LANGUAGE sql
    AS $$ SELECT hostile.hit() > 0 $$;
CREATE FUNCTION hostile.pg_advisory_lock(integer, integer) RETURNS void LANGUAGE sql AS $$ SELECT hostile.hit() $$;
CREATE FUNCTION hostile.pg_advisory_unlock(integer, integer) RETURNS boolean LANGUAGE sql
    AS $$ SELECT hostile.hit() > 0 $$;
CREATE FUNCTION hostile.pg_terminate_backend(integer) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE FUNCTION hostile.pg_cancel_backend(integer) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE FUNCTION hostile.pg_sleep(double precision) RETURNS void LANGUAGE sql AS $$ SELECT hostile.hit() $$;
CREATE FUNCTION hostile.set_config(text, text, boolean) RETURNS text LANGUAGE sql
    AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE FUNCTION hostile.left(text, integer) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE FUNCTION hostile.length(text) RETURNS integer LANGUAGE sql AS $$ SELECT hostile.hit()::integer $$;
CREATE FUNCTION hostile.length(bytea) RETURNS integer LANGUAGE sql AS $$ SELECT hostile.hit()::integer $$;
CREATE FUNCTION hostile.abs(float8) RETURNS float8 LANGUAGE sql AS $$ SELECT hostile.hit()::float8 $$;
CREATE FUNCTION hostile.sqrt(double precision) RETURNS double precision LANGUAGE sql
    AS $$ SELECT hostile.hit()::float8 $$;
CREATE FUNCTION hostile.power(double precision, double precision) RETURNS double precision LANGUAGE sql
    AS $$ SELECT hostile.hit()::float8 $$;
CREATE FUNCTION hostile.isfinite(timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE FUNCTION hostile.format(text) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE FUNCTION hostile.quote_literal(text) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE FUNCTION hostile.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT pg_catalog.jsonb_build_object('hijacked', hostile.hit()) $$;
CREATE FUNCTION hostile.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT pg_catalog.jsonb_build_object('hijacked', hostile.hit()) $$;
CREATE FUNCTION hostile.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql
    AS $$ SELECT x FROM pg_catalog.unnest($1) x WHERE hostile.hit() > 0 $$;
CREATE FUNCTION hostile.count_sfunc(bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT hostile.hit() $$;
CREATE AGGREGATE hostile.count(*) (SFUNC = hostile.count_sfunc, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION hostile.max_sfunc(timestamptz, timestamptz) RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT '1999-01-01'::timestamptz + hostile.hit() * interval '0' $$;
CREATE AGGREGATE hostile.max(timestamptz) (SFUNC = hostile.max_sfunc, STYPE = timestamptz);
CREATE FUNCTION hostile.text_eq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.text_eq);
CREATE FUNCTION hostile.bigint_eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.bigint_eq);
CREATE OPERATOR hostile.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.bigint_eq);
CREATE FUNCTION hostile.int_lt(integer, integer) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE OPERATOR hostile.< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.int_lt);
CREATE OPERATOR hostile.>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.int_lt);
CREATE FUNCTION hostile.ts_le(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT hostile.hit() > 0 $$;
CREATE OPERATOR hostile.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_le);
CREATE OPERATOR hostile.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_le);
CREATE FUNCTION hostile.float_div(float8, float8) RETURNS float8 LANGUAGE sql AS $$ SELECT hostile.hit()::float8 $$;
CREATE OPERATOR hostile./ (LEFTARG = float8, RIGHTARG = float8, FUNCTION = hostile.float_div);
CREATE OPERATOR hostile.- (LEFTARG = float8, RIGHTARG = float8, FUNCTION = hostile.float_div);
CREATE FUNCTION hostile.text_cat(text, text) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' || hostile.hit() $$;
CREATE OPERATOR hostile.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.text_cat);
CREATE FUNCTION hostile.ts_minus(timestamptz, interval) RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT '1999-01-01'::timestamptz + hostile.hit() * interval '0' $$;
CREATE OPERATOR hostile.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = hostile.ts_minus);
CREATE OPERATOR hostile.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = hostile.ts_minus);
CREATE VIEW hostile.pg_stat_statements AS SELECT 1::oid AS userid FROM (SELECT hostile.hit()) s;
CREATE VIEW hostile.pg_stat_statements_info AS SELECT now() AS stats_reset FROM (SELECT hostile.hit()) s;
CREATE VIEW hostile.pg_extension AS SELECT 'pg_cron'::name AS extname FROM (SELECT hostile.hit()) s;
CREATE VIEW hostile.pg_file_settings AS SELECT 'pganalytics_ml.python_path'::text AS name, '/tmp'::text AS setting,
    true AS applied, 1 AS seqno FROM (SELECT hostile.hit()) s;
-- The fakes' own bodies resolve in pg_catalog: an operator in them must not call itself.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'hostile'::regnamespace AND p.prokind = 'f' LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog', f);
    END LOOP;
END
$$;
"""
# Temporary views come first for relations unless a search_path names pg_temp; a session makes its own.
TEMP_TRAPS = """
CREATE TEMP VIEW pg_extension AS SELECT 'pg_cron'::name AS extname FROM (SELECT hostile.hit()) s;
CREATE TEMP VIEW pg_roles AS SELECT 'mallory'::name AS rolname, true AS rolsuper FROM (SELECT hostile.hit()) s;
CREATE TEMP VIEW pg_stat_statements AS SELECT 1::oid AS userid FROM (SELECT hostile.hit()) s;
"""
HOSTILE_PATH = "hostile, public, pg_catalog"
ATTACKER = "pgml_mallory"

# Each SECURITY DEFINER function, called the same way in both databases, in this order.
DEFINER_CALLS: list[tuple[str, str]] = [
    ("pgml_status", "SELECT pgml_status()"),
    ("_load_python", "SELECT pganalytics_ml._load_python()"),
    ("pgml_models", "SELECT * FROM pgml_models()"),
    ("_predict", "SELECT * FROM pgml_predict({queryid}, 'db-1')"),
    ("_predict", "SELECT pgml_predict_json({queryid}, 'db-1')"),
    # pgml_predict_sql and scenarios: the caller's own step runs under her search_path by design (her text
    # resolves as she would run it); the extension owner's steps around it must not.
    (
        "_what_if_request",
        "SELECT pganalytics_ml._what_if_request('pgml_predict_sql', 'SELECT $1 < 2', NULL,"
        " '{{\"growth\": 2}}', 'local', 'public')",
    ),
    (
        "_what_if_choose",
        'SELECT pganalytics_ml._what_if_choose(\'[{{"Plan": {{"Node Type": "Result", "Total Cost": 1}}}}]\', \'[]\')',
    ),
    ("_what_if_plan_known", "SELECT pganalytics_ml._what_if_plan_known('{{\"hypopg\": null}}', {queryid}, 'db-1')"),
    # (her text names everything with its schema: unqualified, it would call her own fakes, as she asked)
    (
        "_what_if_answer_sql",
        "SELECT * FROM pgml_predict_sql('SELECT pg_catalog.count(*) FROM pg_catalog.pg_class"
        " WHERE relpages OPERATOR(pg_catalog.<) 2', '{{\"growth\": 2}}')",
    ),
    ("_what_if_answer_known", "SELECT source, scenario FROM pgml_predict({queryid}, 'db-1', '{{\"load\": 1.5}}')"),
    ("pgml_predict_all", "SELECT * FROM pgml_predict_all('db-1', log => true)"),
    ("pgml_validate", "SELECT * FROM pgml_validate({prediction_id}, 12.5)"),
    ("pgml_set_season", "SELECT pgml_set_season(3600, 'db-1')"),
    ("pgml_ingest_stats", "SELECT pgml_ingest_stats('db-2', '{payload}')"),
    ("pgml_ingest_stats", "SELECT pgml_ingest_stats('db-2', '{payload2}')"),
    ("pgml_train", "SELECT * FROM pgml_train(90, 'linear_regression', 'db-1')"),
    ("pgml_activate_model", "SELECT * FROM pgml_activate_model({model_id})"),
    ("pgml_cleanup_models", "SELECT pgml_cleanup_models(1)"),
    ("pgml_train_async", "SELECT status FROM pgml_train_async(30, 'decision_tree', 'db-1')"),
    ("pgml_job_enqueue", "SELECT kind, status, max_attempts FROM pgml_job_enqueue('sleep', '{{\"seconds\": 0}}', 2)"),
    ("pgml_job_status", "SELECT * FROM pgml_job_status('{completed_job}')"),
    ("pgml_jobs", "SELECT * FROM pgml_jobs()"),
    ("pgml_job_cancel", "SELECT * FROM pgml_job_cancel('{pending_job}')"),
    ("pgml_job_retry", "SELECT * FROM pgml_job_retry('{failed_job}')"),
    ("rescue_jobs", "SELECT * FROM pganalytics_ml.rescue_jobs()"),
    ("pgml_snapshot", "SELECT captured_at FROM pgml_snapshot()"),
    # Refuses any session with temporary objects, as the armed one has: test_plans.py calls it under a
    # hostile search_path without them.
    ("pgml_capture_plans", "SELECT * FROM pgml_capture_plans()"),
    ("pgml_detect_patterns", "SELECT * FROM pgml_detect_patterns(1, 'db-1')"),
    ("pgml_detect_patterns_json", "SELECT pgml_detect_patterns_json(1, 'db-1')"),
    ("pgml_schedule", "SELECT * FROM pgml_schedule()"),
    ("pgml_unschedule", "SELECT * FROM pgml_unschedule()"),
]
NEEDS_PG_CRON = {"pgml_schedule", "pgml_unschedule"}
REFUSES_TEMP_OBJECTS = {"pgml_capture_plans"}
# The sample state has no plan model (P0002: a statement never run has no answer) and no captured plan for
# db-1's statements (P0002: nothing to apply a scenario to).
EXPECTED_ERRORS = {("_what_if_answer_sql", "P0002"), ("_what_if_answer_known", "P0002")}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
VARYING_KEYS = {"database"}  # pgml_status names the database it runs in: the twins differ by name

DEFINERS = """
    SELECT DISTINCT p.proname::text FROM pg_proc p
      JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
     WHERE p.prosecdef
"""


def normalized(value: Any) -> Any:
    """``value`` with what differs between two identical runs (times, random ids) blanked out."""
    if isinstance(value, datetime | date | timedelta):
        return "<time>"
    if isinstance(value, str):
        return "<time>" if TIMESTAMP.match(value) else UUID.sub("<uuid>", value)
    if isinstance(value, dict):
        return {k: "<varies>" if k in VARYING_KEYS else normalized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalized(v) for v in value]
    return value


def run(conn: psycopg.Connection, query: str) -> Any:
    try:
        cur = conn.execute(query)
        return normalized(cur.fetchall())
    except psycopg.Error as err:
        return ("error", err.sqlstate, err.diag.message_primary)


def trap_hits(conn: psycopg.Connection) -> int:
    last, called = conn.execute("SELECT last_value, is_called FROM hostile.trap_hits").fetchone()
    return last if called else 0


def extension_tables(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_catalog.pg_class"
            " WHERE relnamespace = 'pganalytics_ml'::regnamespace AND relkind = 'r' ORDER BY 1"
        ).fetchall()
    ]


def arm(pg: Cluster, dbname: str) -> None:
    """The attacker's schema of fakes, owned by her, in ``dbname``."""
    with pg.connect(dbname) as conn:
        conn.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(ATTACKER))
        )
    with pg.connect(dbname, user=ATTACKER) as conn:
        conn.execute(TRAPS)
        # A table named like each of the extension's.
        for table in extension_tables(conn):
            conn.execute(f"CREATE TABLE hostile.{table} (server_id text, queryid bigint, job_id text, status text)")


def attacker_session(pg: Cluster, dbname: str, hostile: bool) -> psycopg.Connection:
    conn = pg.connect(dbname, user=ATTACKER)
    if hostile:
        conn.execute(TEMP_TRAPS)
        conn.execute(f"SET search_path = {HOSTILE_PATH}")
        assert conn.execute("SELECT now()").fetchone()[0].year == 1999  # the trap is armed
        conn.execute("SELECT pg_catalog.setval('hostile.trap_hits', 1, false)")  # that probe does not count
    return conn


def calls_for(ids: dict[str, Any], names: set[str] | None = None) -> list[tuple[str, str]]:
    def ingest(minute: int) -> str:
        at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1) + timedelta(minutes=minute)
        rows = [{"queryid": 77, "calls": 10 * minute, "total_exec_time": 25.0 * minute, "query": "SELECT 77"}]
        return json.dumps({"captured_at": at.isoformat(), "rows": rows})

    values = {**ids, "payload": ingest(1), "payload2": ingest(2)}
    return [(name, call.format(**values)) for name, call in DEFINER_CALLS if names is None or name in names]


@pytest.fixture(scope="module")
def attacker(cluster: Cluster) -> Iterator[str]:
    cluster.execute(f"CREATE ROLE {ATTACKER} LOGIN IN ROLE pgml_admin")
    try:
        yield ATTACKER
    finally:
        cluster.execute(f"DROP ROLE {ATTACKER}")


@pytest.fixture(scope="module")
def twins(cluster: Cluster, template: str, attacker: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Two databases in the same sample state, the second with the attacker's fakes in place."""
    origin = fresh_database(cluster, template)
    with cluster.connect(origin) as conn:
        state = populate(conn)
    plain, armed = f"{origin}_plain", f"{origin}_armed"
    try:
        cluster.create_database(plain, template=origin)
        cluster.create_database(armed, template=origin)
        arm(cluster, armed)
        yield plain, armed, state.ids()
    finally:
        for name in (armed, plain, origin):
            cluster.drop_database(name)


def test_every_definer_function_is_called_under_a_hostile_search_path(db: Database):
    definers = {r[0] for r in db.all(DEFINERS)}
    covered = {name for name, _ in DEFINER_CALLS}
    assert definers - covered == set(), "SECURITY DEFINER functions without a hostile search_path case"
    assert covered - definers == set(), "cases for functions that are not SECURITY DEFINER"


def test_definer_functions_behave_the_same_under_a_hostile_search_path(cluster: Cluster, twins):
    plain, armed, ids = twins
    calls = [(name, call) for name, call in calls_for(ids) if name not in NEEDS_PG_CRON | REFUSES_TEMP_OBJECTS]
    with attacker_session(cluster, plain, hostile=False) as conn:
        expected = [run(conn, call) for _, call in calls]
    with attacker_session(cluster, armed, hostile=True) as conn:
        got = [run(conn, call) for _, call in calls]
        assert conn.execute("SHOW search_path").fetchone()[0] == HOSTILE_PATH
    with cluster.connect(armed) as conn:
        assert trap_hits(conn) == 0
        tables = extension_tables(conn)
        assert [conn.execute(f"SELECT count(*) FROM hostile.{t}").fetchone()[0] for t in tables] == [0] * len(tables)
    for (name, call), want, have in zip(calls, expected, got, strict=True):
        assert have == want, f"{name}: {call}"
    # The calls did their work (no call silently failed in both databases alike), but for the answers that
    # need what the sample state has not: they fail alike, after the steps that read and plan.
    failed = {
        (name, r[1])
        for (name, _), r in zip(calls, expected, strict=True)
        if isinstance(r, tuple) and r[:1] == ("error",)
    }
    assert failed <= EXPECTED_ERRORS, failed


@pytest.fixture(scope="module")
def cron_pg() -> Iterator[Cluster]:
    with cron_cluster("pganalytics_ml-search-path") as pg:
        pg.execute(f"CREATE ROLE {ATTACKER} LOGIN IN ROLE pgml_admin")
        arm(pg, CRON_DB)
        yield pg


def test_schedules_are_the_same_under_a_hostile_search_path(cron_pg: Cluster):
    calls = calls_for({}, NEEDS_PG_CRON)
    jobs = "SELECT jobname, schedule, command, database, username, active FROM cron.job ORDER BY jobname"
    with attacker_session(cron_pg, CRON_DB, hostile=False) as conn:
        expected = [run(conn, call) for _, call in calls]
    with attacker_session(cron_pg, CRON_DB, hostile=True) as conn:
        scheduled = run(conn, calls[0][1])
        with cron_pg.connect(CRON_DB) as admin:
            registered = admin.execute(jobs).fetchall()
            config = admin.execute("SELECT * FROM pganalytics_ml.schedule_config").fetchall()
        got = [scheduled, run(conn, calls[1][1])]
    with cron_pg.connect(CRON_DB) as conn:
        assert trap_hits(conn) == 0
        assert conn.execute(jobs).fetchall() == []
    assert got == expected and len(expected[0]) == 7
    assert {r[0] for r in registered} == {
        f"pganalytics_ml:{j}" for j in ("snapshot", "drain", "watchdog", "retrain", "cleanup", "patterns", "plans")
    }
    assert all(r[3] == CRON_DB and r[4] == "postgres" for r in registered)  # run as the extension owner
    assert config[0][-1] == ATTACKER  # updated_by


def test_the_worker_pins_its_search_path_and_gives_the_callers_back(cluster: Cluster, twins):
    # A superuser's search_path may hold a schema others can write: the worker ignores it while it runs.
    _plain, armed, _ids = twins
    with cluster.connect(armed) as conn:
        job_id = conn.execute("SELECT job_id FROM pgml_job_enqueue('sleep', '{\"seconds\": 0}')").fetchone()[0]
        conn.execute(TEMP_TRAPS)
        conn.execute(f"SET search_path = {HOSTILE_PATH}")
        conn.execute("SELECT pg_catalog.setval('hostile.trap_hits', 1, false)")
        conn.execute("CALL pganalytics_ml.run_jobs(kinds => '{sleep}')")
        conn.execute("CALL pganalytics_ml.run_snapshots(1, 0)")
        assert conn.execute("SHOW search_path").fetchone()[0] == HOSTILE_PATH
        conn.execute("SET search_path = DEFAULT")
        assert trap_hits(conn) == 0
        assert conn.execute("SELECT status FROM pganalytics_ml.jobs WHERE job_id = %s", (job_id,)).fetchone() == (
            "completed",
        )


def test_a_cancelled_worker_gives_the_callers_search_path_back(cluster: Cluster, twins):
    # run_snapshots commits each snapshot: a cancel after a commit must not leave the session pinned.
    _plain, armed, _ids = twins
    with cluster.connect(armed) as conn:
        conn.execute("SET search_path = public, pg_catalog")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        outcome: list[Any] = []

        def snapshots() -> None:
            try:
                conn.execute("CALL pganalytics_ml.run_snapshots(1, 60)")
            except psycopg.Error as err:
                outcome.append(err.sqlstate)

        thread = threading.Thread(target=snapshots)
        before = cluster.execute("SELECT count(*) FROM pganalytics_ml.snapshots", dbname=armed)[0][0]
        thread.start()
        wait_for(
            lambda: cluster.execute("SELECT count(*) FROM pganalytics_ml.snapshots", dbname=armed)[0][0] >= before + 2,
            60,
            what="two committed snapshots",
        )
        cluster.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(30)
        assert outcome == ["57014"]
        assert conn.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"


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
