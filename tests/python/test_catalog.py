"""Checks over the catalog of an installed extension: properties every function must have."""

from __future__ import annotations

import pytest

from conftest import Database

pytestmark = pytest.mark.integration

EXTENSION_FUNCTIONS = """
    SELECT p.oid::regprocedure::text AS name, l.lanname, p.provolatile, p.proparallel, p.prosecdef,
           p.prokind, p.prosrc, p.proconfig
      FROM pg_proc p
      JOIN pg_language l ON l.oid = p.prolang
      JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
"""


def extension_functions(db: Database) -> list[tuple]:
    return db.all(EXTENSION_FUNCTIONS)


def test_functions_that_run_sql_are_parallel_unsafe(db: Database):
    # PL/Python that calls plpy.execute inside a parallel worker breaks the session's interpreter.
    offenders = [
        name
        for name, language, volatility, parallel, *_ in extension_functions(db)
        if parallel != "u" and (language in ("plpython3u", "plpgsql") or volatility != "i")
    ]
    assert offenders == []


def test_functions_allowed_in_parallel_workers_read_no_table(db: Database):
    # PARALLEL SAFE (or RESTRICTED) is a promise that the function runs no SQL against the extension's data.
    relations = [
        r[0]
        for r in db.all(
            "SELECT relname FROM pg_class WHERE relnamespace = 'pganalytics_ml'::regnamespace"
            " AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        )
    ]
    parallel = [(name, src) for name, _l, _v, parallel, _d, _k, src, _c in extension_functions(db) if parallel != "u"]
    assert parallel  # the pure helpers
    reading = [name for name, src in parallel if any(f"pganalytics_ml.{r}" in src for r in relations)]
    assert reading == []


def test_every_function_pins_its_search_path(db: Database):
    functions = extension_functions(db)
    assert functions
    unpinned = [
        name
        for name, _lang, _vol, _par, _definer, kind, _src, config in functions
        if kind != "p" and not any(c == "search_path=pg_catalog, pg_temp" for c in (config or []))
    ]
    # The what-if entry points hand the caller's own search_path to the caller's step (sql/70_whatif.sql):
    # they run as the caller, name every object with its schema, and never as a definer.
    caller_path = {
        "pgml_predict(bigint,text,jsonb)",
        "pgml_predict_json(bigint,text,jsonb)",
        "pgml_predict_sql(text,jsonb,text)",
    }
    assert sorted(set(unpinned) - caller_path) == []
    definers = {name for name, _l, _v, _p, definer, *_ in functions if definer}
    assert caller_path & definers == set()


def test_procedures_that_commit_pin_search_path_themselves(db: Database):
    # PostgreSQL forbids COMMIT in a procedure with SET clauses or SECURITY DEFINER: these run with the
    # caller's rights and pin search_path from their Python body (jobs.WorkerSession).
    procedures = [
        (name, definer, src) for name, _l, _v, _p, definer, kind, src, _c in extension_functions(db) if kind == "p"
    ]
    assert {name for name, *_ in procedures} == {
        "pganalytics_ml.run_jobs(integer,integer,text[])",
        "pganalytics_ml.run_snapshots(integer,integer)",
        "pganalytics_ml._run_jobs(integer,integer,text[])",
        "pganalytics_ml._run_snapshots(integer,integer)",
    }
    # run_jobs and run_snapshots check their caller and arguments in PL/pgSQL, then call their bodies
    for name, definer, src in procedures:
        body = "queue.run_" if name.startswith("pganalytics_ml._") else "CALL pganalytics_ml._run_"
        assert definer is False and body in src, name
