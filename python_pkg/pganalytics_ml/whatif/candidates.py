"""Candidate indexes of a statement, read from PostgreSQL's parse tree (pglast), never from its text.

A statement's WHERE and JOIN ... ON predicates and its ORDER BY name the columns an index could serve:
``col = x`` and ``col IN (...)`` (equality), ``col < x``, ``col BETWEEN x AND y`` (range), ``a.x = b.y``
(a join key on each side), ``ORDER BY col``. Only conjunctions are read (an OR of predicates is not one
index's business), and only plain columns (``col::text = $1`` or ``lower(col) = $1`` cannot use an index
on ``col``). Each column is resolved to its relation through the FROM list of its own SELECT and the
catalog, with the statement's search_path. The candidates follow Dexter's choice: every column alone,
then equality columns first followed by a second equality, range, join or ORDER BY column, and the
first two equality columns followed by a range or ORDER BY column (three at most).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from pganalytics_ml.capture.statements import KINDS, parse_tree
from pganalytics_ml.errors import invalid

MAX_COLUMNS = 3
MAX_PER_STATEMENT = 24  # candidates of one statement, in the order above
RANGE_OPERATORS = frozenset(("<", ">", "<=", ">="))
INDEXABLE_KINDS = ("r", "m")  # tables and materialized views (hypopg has no partitioned indexes)
SYSTEM_SCHEMAS = frozenset(("pg_catalog", "information_schema", "pg_toast"))
PATH_HINT = "e.g. '\"$user\", public'"
_PLAIN_FIRST = frozenset(string.ascii_lowercase + "_")
_PLAIN_REST = _PLAIN_FIRST | frozenset(string.digits + "$")


def _keywords() -> frozenset[str]:
    from pglast import keywords  # pure Python; capture.statements loaded pglast's parser the safe way

    return frozenset(keywords.RESERVED_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS | keywords.COL_NAME_KEYWORDS)


_KEYWORDS = _keywords()


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier: bare when PostgreSQL reads it back unchanged, else double-quoted."""
    if name and name[0] in _PLAIN_FIRST and set(name) <= _PLAIN_REST and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Candidate:
    relation: str  # schema-qualified, quoted as needed: public.orders
    columns: tuple[str, ...]  # in index order (equality columns first, then range / join / ORDER BY)

    def create_sql(self, concurrently: bool = False) -> str:
        how = "CREATE INDEX CONCURRENTLY" if concurrently else "CREATE INDEX"
        return f"{how} ON {self.relation} ({', '.join(quote_ident(c) for c in self.columns)})"


# --- the parse tree ------------------------------------------------------------------------------------


@dataclass
class Reference:
    """A column as a statement names it: its qualifier (alias or table name, or None) and name."""

    qualifier: str | None
    column: str


@dataclass
class Scope:
    """One SELECT (or UPDATE / DELETE) and what it asks of its relations."""

    relations: list[tuple[str | None, str, str | None]] = field(default_factory=list)  # (schema, name, alias)
    equality: list[Reference] = field(default_factory=list)
    range: list[Reference] = field(default_factory=list)
    join: list[Reference] = field(default_factory=list)
    order: list[Reference] = field(default_factory=list)


def _node(item: Any) -> tuple[str | None, dict[str, Any]]:
    if isinstance(item, dict) and len(item) == 1:
        ((kind, fields),) = item.items()
        if isinstance(fields, dict):
            return kind, fields
    return None, {}


def _column(item: Any) -> Reference | None:
    kind, fields = _node(item)
    if kind != "ColumnRef":
        return None
    names = [_node(f)[1].get("sval") for f in fields.get("fields", [])]
    if not names or any(not isinstance(n, str) for n in names) or len(names) > 2:
        return None  # a.* , schema.table.column: not read
    return Reference(names[0] if len(names) == 2 else None, names[-1])


def _has_column(item: Any) -> bool:
    stack = [item]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "ColumnRef" in value or "SubLink" in value:
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _operator(fields: dict[str, Any]) -> str | None:
    names = [_node(n)[1].get("sval") for n in fields.get("name", [])]
    return names[-1] if names and names[:-1] in ([], ["pg_catalog"]) else None


def _predicates(item: Any, scope: Scope) -> None:
    """The conjuncts of a WHERE or ON clause, sorted into equality, range and join columns."""
    kind, fields = _node(item)
    if kind == "BoolExpr":
        if fields.get("boolop") == "AND_EXPR":
            for arg in fields.get("args", []):
                _predicates(arg, scope)
        return
    if kind != "A_Expr":
        return
    how, op = fields.get("kind"), _operator(fields)
    left, right = fields.get("lexpr"), fields.get("rexpr")
    lcol, rcol = _column(left), _column(right)
    if how == "AEXPR_OP" and op == "=" and lcol and rcol:
        scope.join += [lcol, rcol]
    elif how == "AEXPR_OP" and op in ("=", *RANGE_OPERATORS):
        for col, other in ((lcol, right), (rcol, left)):
            if col and not _has_column(other):
                (scope.equality if op == "=" else scope.range).append(col)
    elif how == "AEXPR_IN" and op == "=" and lcol and not _has_column(right):
        scope.equality.append(lcol)
    elif how == "AEXPR_BETWEEN" and lcol and not _has_column(right):
        scope.range.append(lcol)


def _from_items(items: list[Any], scope: Scope) -> None:
    for item in items:
        kind, fields = _node(item)
        if kind == "RangeVar":
            alias = (fields.get("alias") or {}).get("aliasname")
            scope.relations.append((fields.get("schemaname"), fields.get("relname", ""), alias))
        elif kind == "JoinExpr":
            _from_items([fields.get("larg"), fields.get("rarg")], scope)
            _predicates(fields.get("quals"), scope)


def _bare_range_var(fields: dict[str, Any]) -> tuple[str | None, str, str | None]:
    alias = (fields.get("alias") or {}).get("aliasname")
    return fields.get("schemaname"), fields.get("relname", ""), alias


def scopes(sql: str) -> list[Scope]:
    """What each SELECT, UPDATE and DELETE of one statement asks of its relations (empty when unparsable)."""
    try:
        tree = parse_tree(sql)  # within capture's bounds on size and depth
    except (ValueError, RecursionError):
        return []
    stmts = [s["stmt"] for s in tree.get("stmts", []) if "stmt" in s]
    if len(stmts) != 1 or next(iter(stmts[0])) not in KINDS:
        return []
    found: list[Scope] = []
    ctes: set[str] = set()
    stack: list[Any] = [stmts[0]]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
            continue
        if not isinstance(value, dict):
            continue
        kind, fields = _node(value)
        if kind is None:
            stack.extend(value.values())
            continue
        if kind == "CommonTableExpr":
            ctes.add(fields.get("ctename", ""))
        if kind in ("SelectStmt", "UpdateStmt", "DeleteStmt"):
            scope = Scope()
            if kind != "SelectStmt":
                scope.relations.append(_bare_range_var(fields.get("relation") or {}))
            _from_items(fields.get("fromClause", []) + fields.get("usingClause", []), scope)
            _predicates(fields.get("whereClause"), scope)
            for sort in fields.get("sortClause", []):
                col = _column(_node(sort)[1].get("node"))
                if col:
                    scope.order.append(col)
            found.append(scope)
        if kind == "SelectStmt":  # the arms of a UNION are SelectStmt fields, not wrapped in their type
            stack += [{"SelectStmt": fields.pop(arm)} for arm in ("larg", "rarg") if isinstance(fields.get(arm), dict)]
        stack.extend(fields.values())
    for scope in found:
        scope.relations = [r for r in scope.relations if r[0] is not None or r[1] not in ctes]
    return found


# --- names resolved in the catalog ---------------------------------------------------------------------


def path_schemas(search_path: str, user: str | None = None) -> list[str]:
    """The schemas of a SET search_path value, in order, read by PostgreSQL's parser ("$user" as ``user``)."""
    try:
        tree = parse_tree(f"SET search_path = {search_path}")
        ((kind, fields),) = tree["stmts"][0]["stmt"].items()
    except (KeyError, IndexError, ValueError, RecursionError):
        kind = None
    if kind != "VariableSetStmt" or len(tree["stmts"]) != 1:
        raise invalid(f"search_path {search_path[:60]!r} is not a list of schema names", hint=PATH_HINT)
    names = []
    for arg in fields.get("args", []):
        const = _node(arg)[1]
        name = (const.get("sval") or {}).get("sval")
        if name == "$user":
            name = user
        if isinstance(name, str) and name != "pg_temp" and name not in names:
            names.append(name)
    return names


_RELATIONS_SQL = """
    SELECT c.oid::bigint AS relid, n.nspname, c.relname, c.relkind::text AS relkind,
           ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = ANY ($1::text[]) AND n.nspname = ANY ($2::text[])
"""
# Valid, complete (not partial) btree indexes: their key columns, an expression as NULL.
_INDEXES_SQL = """
    SELECT i.indrelid::bigint AS relid,
           ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, pos)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  ORDER BY k.pos) AS columns
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
     WHERE i.indrelid = ANY ($1::oid[]) AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'
"""


@dataclass
class Relation:
    relid: int
    name: str  # quoted, schema-qualified
    columns: set[str]


def resolve(
    plpy: Any, wanted: list[tuple[str | None, str]], schemas: list[str]
) -> dict[tuple[str | None, str], Relation]:
    """The relations named (schema or None, name) as PostgreSQL would find them: a schema-qualified name
    in its schema, a bare one in pg_catalog then ``schemas`` in order (pg_temp is never searched: a
    temporary table is nobody's index candidate). Only tables and materialized views outside the system
    schemas are returned."""
    names = sorted({name for _, name in wanted})
    where = sorted({s for s, _ in wanted if s} | set(schemas) | {"pg_catalog"})
    if not names:
        return {}
    rows = plpy.execute(plpy.prepare(_RELATIONS_SQL, ["text[]", "text[]"]), [names, where])
    found = {(r["nspname"], r["relname"]): r for r in rows}
    out = {}
    for schema, name in wanted:
        for nsp in [schema] if schema else ["pg_catalog", *schemas]:
            row = found.get((nsp, name))
            if row is None:
                continue
            if row["relkind"] in INDEXABLE_KINDS and nsp not in SYSTEM_SCHEMAS:
                qualified = f"{quote_ident(nsp)}.{quote_ident(name)}"
                out[(schema, name)] = Relation(int(row["relid"]), qualified, set(row["columns"]))
            break
    return out


def _owner(ref: Reference, scope: Scope, relations: dict[tuple[str | None, str], Relation]) -> Relation | None:
    """The relation of ``scope`` a column reference belongs to, or None when it is not one of them."""
    mine = [(alias, name, relations.get((schema, name))) for schema, name, alias in scope.relations]
    if ref.qualifier is not None:
        named = [rel for alias, name, rel in mine if (alias or name) == ref.qualifier]
        return named[0] if len(named) == 1 else None
    having = {rel.relid: rel for _, _, rel in mine if rel is not None and ref.column in rel.columns}
    unknown = any(rel is None for _, _, rel in mine)  # a subquery or CTE might hold the column instead
    return next(iter(having.values())) if len(having) == 1 and not unknown else None


def _ordered(refs: list[Reference], scope: Scope, relations: dict, relid: int) -> list[str]:
    out: list[str] = []
    for ref in refs:
        rel = _owner(ref, scope, relations)
        if rel is not None and rel.relid == relid and ref.column in rel.columns and ref.column not in out:
            out.append(ref.column)
    return out


def column_sets(eq: list[str], rng: list[str], join: list[str], order: list[str]) -> list[tuple[str, ...]]:
    """Column lists to try for one relation, from its equality, range, join and ORDER BY columns."""
    out: list[tuple[str, ...]] = []

    def add(cols: tuple[str, ...]) -> None:
        if len(set(cols)) == len(cols) and len(cols) <= MAX_COLUMNS and cols not in out:
            out.append(cols)

    for col in eq + rng + join + order:
        add((col,))
    for i, first in enumerate(eq):
        for second in eq[i + 1 :] + rng + join + order:
            add((first, second))
    if len(eq) >= 2:
        for last in rng + order:
            add((eq[0], eq[1], last))
    return out


def for_statement(plpy: Any, sql: str, search_path: str, user: str | None = None) -> list[Candidate]:
    """Candidate indexes of one statement from pglast's parse tree (WHERE predicates, join keys, ORDER BY),
    names resolved in search_path (a SET search_path value; "$user" is ``user``); an index whose leading
    columns an existing valid, complete btree index already has is skipped. Unparsable text: none."""
    found = scopes(sql)
    if not found:
        return []
    wanted = sorted({(schema, name) for scope in found for schema, name, _ in scope.relations}, key=str)
    relations = resolve(plpy, wanted, path_schemas(search_path, user))
    if not relations:
        return []
    per_relation: dict[int, tuple[Relation, list[tuple[str, ...]]]] = {}
    for scope in found:
        for schema, name, _ in scope.relations:
            rel = relations.get((schema, name))
            if rel is None:
                continue
            sets = column_sets(*(_ordered(r, scope, relations, rel.relid) for r in _kinds(scope)))
            known = per_relation.setdefault(rel.relid, (rel, []))[1]
            known += [s for s in sets if s not in known]
    existing = _existing(plpy, list(per_relation))
    out: list[Candidate] = []
    for relid, (rel, sets) in per_relation.items():
        for cols in sets:
            if any(tuple(index[: len(cols)]) == cols for index in existing.get(relid, [])):
                continue
            cand = Candidate(rel.name, cols)
            if cand not in out:
                out.append(cand)
    return out[:MAX_PER_STATEMENT]


def _kinds(scope: Scope) -> tuple[list[Reference], ...]:
    return scope.equality, scope.range, scope.join, scope.order


def _existing(plpy: Any, relids: list[int]) -> dict[int, list[list[str | None]]]:
    if not relids:
        return {}
    out: dict[int, list[list[str | None]]] = {}
    for row in plpy.execute(plpy.prepare(_INDEXES_SQL, ["oid[]"]), [relids]):
        out.setdefault(int(row["relid"]), []).append(list(row["columns"]))
    return out
