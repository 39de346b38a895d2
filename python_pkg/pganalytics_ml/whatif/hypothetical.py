"""Hypothetical indexes (hypopg): visible to EXPLAIN in this backend only, never built, never written.

hypopg's indexes live in the backend's memory, outside any transaction: a rollback does not remove them,
so whoever creates some drops them (``drop``, in a ``finally``), and only those: the session may hold
hypothetical indexes of its own, which hypopg_reset would take too.

``create`` accepts one CREATE INDEX of plain columns only, and hands hypopg a statement it rebuilt from the
parse tree: no expression, no predicate, no INCLUDE list (the extension owner runs it, and an expression
could call code), the relation schema-qualified (the caller's search_path is not the function's).
"""

from __future__ import annotations

from typing import Any

from pganalytics_ml.capture.statements import parse_tree
from pganalytics_ml.errors import PREREQUISITE_STATE, PgmlError, invalid, shown
from pganalytics_ml.whatif import candidates

ACCESS_METHODS = ("btree", "hash", "brin")
INDEX_HINT = "e.g. CREATE INDEX ON public.orders (customer_id, created_at): plain columns of one table."


def require_hypopg(plpy: Any) -> str:
    """hypopg's schema in this database; else 55000 with how to get it."""
    rows = plpy.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'hypopg'"
    )
    if not len(rows):
        raise PgmlError(
            "hypothetical indexes need the hypopg extension, which is not created in this database",
            sqlstate=PREREQUISITE_STATE,
            hint="CREATE EXTENSION hypopg (Debian package postgresql-15-hypopg; make deps installs it).",
        )
    return plpy.quote_ident(rows[0]["nspname"])


def index_statement(plpy: Any, index_sql: str, search_path: str | None = None, user: str | None = None) -> str:
    """``index_sql`` (one CREATE INDEX) rebuilt from its parse tree with the relation schema-qualified
    (resolved in ``search_path`` when not qualified); 22023 when it is anything else."""
    try:
        tree = parse_tree(index_sql)
    except (ValueError, RecursionError):
        raise invalid(f"{shown(index_sql)} is not a CREATE INDEX statement", hint=INDEX_HINT) from None
    stmts = [s["stmt"] for s in tree.get("stmts", []) if "stmt" in s]
    if len(stmts) != 1 or "IndexStmt" not in stmts[0]:
        raise invalid(f"{shown(index_sql)} is not one CREATE INDEX statement", hint=INDEX_HINT)
    stmt = stmts[0]["IndexStmt"]
    method = stmt.get("accessMethod", "btree")
    if method not in ACCESS_METHODS:
        hint = f"Use {', '.join(ACCESS_METHODS)}."
        raise invalid(f"index method {shown(method)} is not one hypopg can try", hint=hint)
    if stmt.get("whereClause") or stmt.get("indexIncludingParams") or stmt.get("unique"):
        raise invalid("a hypothetical index takes plain key columns only (no WHERE, INCLUDE, UNIQUE)", hint=INDEX_HINT)
    columns = []
    for param in stmt.get("indexParams", []):
        elem = param.get("IndexElem", {})
        if not isinstance(elem.get("name"), str) or elem.get("expr") or elem.get("opclass") or elem.get("collation"):
            raise invalid("a hypothetical index takes plain key columns only (no expressions)", hint=INDEX_HINT)
        columns.append(elem["name"])
    relation = stmt.get("relation", {})
    schema, name = relation.get("schemaname"), relation.get("relname", "")
    if schema is None and search_path is None:
        raise invalid(f"the table of {shown(index_sql)} must be schema-qualified", hint=INDEX_HINT)
    schemas = candidates.path_schemas(search_path, user) if search_path is not None else []
    found = candidates.resolve(plpy, [(schema, name)], schemas).get((schema, name))
    if found is None:
        raise PgmlError(
            f"table {shown('.'.join(filter(None, (schema, name))))} of a hypothetical index does not exist",
            sqlstate="42P01",
            hint="Name a table (or materialized view) of this database, with its schema.",
        )
    missing = [c for c in columns if c not in found.columns]
    if missing or not columns:
        raise PgmlError(
            f"table {found.name} has no column {shown(missing[0] if missing else '')}",
            sqlstate="42703",
            hint=INDEX_HINT,
        )
    using = "" if method == "btree" else f" USING {method}"
    return f"CREATE INDEX ON {found.name}{using} ({', '.join(candidates.quote_ident(c) for c in columns)})"


def create(plpy: Any, index_sql: str, search_path: str | None = None) -> tuple[int, int]:
    """(indexrelid, estimated size in bytes) of a new hypothetical index (hypopg_create_index,
    hypopg_relation_size). ``index_sql``: one CREATE INDEX of plain columns (see ``index_statement``)."""
    schema = require_hypopg(plpy)
    statement = index_statement(plpy, index_sql, search_path)
    row = plpy.execute(
        plpy.prepare(
            f"SELECT h.indexrelid::bigint AS relid, {schema}.hypopg_relation_size(h.indexrelid)::bigint AS size"
            f"  FROM {schema}.hypopg_create_index($1) h",
            ["text"],
        ),
        [statement],
    )
    if not len(row):  # hypopg returns no row when it could not make the index
        raise invalid(f"hypopg could not create {statement}", hint=INDEX_HINT)
    return int(row[0]["relid"]), int(row[0]["size"])


def drop(plpy: Any, indexrelids: list[int]) -> None:
    """hypopg_drop_index each (never hypopg_reset: the session may have hypothetical indexes of its own)."""
    if not indexrelids:
        return
    schema = require_hypopg(plpy)
    plan = plpy.prepare(f"SELECT {schema}.hypopg_drop_index($1::oid)", ["bigint"])
    for relid in indexrelids:
        plpy.execute(plan, [relid])


def names(plpy: Any, indexrelids: list[int]) -> dict[int, str]:
    """The names hypopg gave the indexes (what EXPLAIN shows as 'Index Name')."""
    if not indexrelids:
        return {}
    schema = require_hypopg(plpy)
    rows = plpy.execute(
        plpy.prepare(
            f"SELECT indexrelid::bigint AS relid, indexname AS name FROM {schema}.hypopg()"
            " WHERE indexrelid = ANY ($1::bigint[]::oid[])",
            ["bigint[]"],
        ),
        [indexrelids],
    )
    return {int(r["relid"]): r["name"] for r in rows}
