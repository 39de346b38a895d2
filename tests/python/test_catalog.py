"""Checks over the catalog of an installed extension: properties every function must have."""

from __future__ import annotations

import pytest

from conftest import Database

pytestmark = pytest.mark.integration

EXTENSION_FUNCTIONS = """
    SELECT p.oid::regprocedure::text AS name, l.lanname, p.provolatile, p.proparallel, p.prosecdef,
           p.proconfig
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


def test_every_function_pins_its_search_path(db: Database):
    functions = extension_functions(db)
    assert functions
    unpinned = [
        name
        for name, *_rest, config in functions
        if not any(c == "search_path=pg_catalog, pg_temp" for c in (config or []))
    ]
    assert unpinned == []
