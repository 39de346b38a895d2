"""Structure of a statement's text, read with PostgreSQL's own parser (pglast)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from pganalytics_ml.jsontext import depth_beyond


def _import_parser() -> tuple[Any, Any]:
    """Imports pglast so that its parser library binds to its own symbols.

    pglast carries a copy of PostgreSQL's parser. Loaded into a PostgreSQL backend without
    RTLD_DEEPBIND, that copy calls into the server's functions of the same names and crashes it.
    """
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        from pglast import ast, parser
    finally:
        sys.setdlopenflags(flags)
    return ast, parser


ast, _parser = _import_parser()
ParseError = _parser.ParseError
parse_sql_json = _parser.parse_sql_json

# pg_stat_statements replaces the constants of ordinary statements by $1, $2 ... but keeps utility
# statements as written, passwords included; every string literal is stored as this instead.
REDACTED = "'***'"
_LITERALS = frozenset(("SCONST", "USCONST", "BCONST", "XCONST"))
# With standard_conforming_strings = off the server reads a backslash in a plain '...' string as an escape,
# so where that string ends depends on a setting the text does not carry: from there on it is withheld.
WITHHELD_REST = " /* rest withheld: a backslash in a string is read differently by standard_conforming_strings */"

# Bounds on what is parsed, so that no statement can exhaust a stack: PostgreSQL's parser (C) recurses
# once per level of a chain such as a || b || c ..., Python's JSON reader once per level of the tree.
# Beyond them a statement is kept, with parse_ok false and the figure that exceeded the bound.
MAX_PARSED_OPERATORS = 20_000
MAX_TREE_DEPTH = 400
# Tokens that add no level to a parse tree: names, constants, parameters, commas, dots, parentheses
# (nesting of parentheses is bounded by the parser itself), comments.
_FLAT_TOKENS = frozenset(
    (
        "IDENT",
        "UIDENT",
        "PARAM",
        "ICONST",
        "FCONST",
        "SCONST",
        "USCONST",
        "BCONST",
        "XCONST",
        "SQL_COMMENT",
        "C_COMMENT",
        "ASCII_40",
        "ASCII_41",
        "ASCII_44",
        "ASCII_46",
        "ASCII_59",
    )
)

KINDS = {
    "SelectStmt": "select",
    "InsertStmt": "insert",
    "UpdateStmt": "update",
    "DeleteStmt": "delete",
    "MergeStmt": "merge",
}

AGGREGATES = frozenset(
    """
    count sum avg min max array_agg string_agg json_agg jsonb_agg json_object_agg jsonb_object_agg
    bool_and bool_or every bit_and bit_or bit_xor stddev stddev_pop stddev_samp variance var_pop
    var_samp corr covar_pop covar_samp regr_avgx regr_avgy regr_count regr_intercept regr_r2
    regr_slope regr_sxx regr_sxy regr_syy mode percentile_cont percentile_disc rank dense_rank
    percent_rank cume_dist xmlagg range_agg range_intersect_agg any_value
    """.split()
)

FEATURE_NAMES = (
    "statement_kind",
    "command",
    "tables",
    "n_tables",
    "n_joins",
    "n_subqueries",
    "n_aggregates",
    "n_window_functions",
    "n_ctes",
    "has_group_by",
    "has_order_by",
    "has_limit",
    "has_distinct",
)


def _typed_fields() -> dict[str, dict[str, str]]:
    """For each parse node type, its fields that hold one node of a fixed type.

    The parser's JSON wraps a node in {"TypeName": {...}} only where the field may hold any node;
    a field of a fixed type (UpdateStmt.relation is a RangeVar) holds the bare fields.
    """
    typed: dict[str, dict[str, str]] = {}
    for name in dir(ast):
        cls = getattr(ast, name)
        if not (isinstance(cls, type) and issubclass(cls, ast.Node)):
            continue
        slots = getattr(cls, "__slots__", None)
        if not isinstance(slots, dict):
            continue
        for field, info in slots.items():
            target = getattr(info, "c_type", "").rstrip("*")
            if target not in ("Node", "Expr", "List") and isinstance(getattr(ast, target, None), type):
                typed.setdefault(name, {})[field] = target
    return typed


TYPED_FIELDS = _typed_fields()


def _walk(tree: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (node type, fields) for every parse-tree node in the parser's JSON."""
    stack: list[tuple[str | None, Any]] = [(None, tree)]
    while stack:
        kind, item = stack.pop()
        if isinstance(item, list):
            stack.extend((None, x) for x in item)
            continue
        if not isinstance(item, dict):
            continue
        if len(item) == 1:
            ((key, value),) = item.items()
            if key[:1].isupper() and isinstance(value, dict):
                kind, item = key, value
        if kind is None:
            continue
        yield kind, item
        fields = TYPED_FIELDS.get(kind, {})
        stack.extend((fields.get(key), value) for key, value in item.items())


def _function_name(fields: dict[str, Any]) -> str:
    parts = [p.get("String", {}).get("sval", "") for p in fields.get("funcname", [])]
    return parts[-1].lower() if parts else ""


def _is_aggregate(fields: dict[str, Any]) -> bool:
    if "over" in fields:
        return False
    if any(fields.get(k) for k in ("agg_star", "agg_distinct", "agg_order", "agg_filter", "agg_within_group")):
        return True
    return _function_name(fields) in AGGREGATES


class PartlyWithheld(ValueError):
    """The text could be redacted only up to a string whose end depends on standard_conforming_strings.

    ``text`` is the part that reads the same under both settings, its literals redacted, then a marker.
    """

    def __init__(self, text: str):
        super().__init__(
            "text withheld from a string with a backslash on: standard_conforming_strings = off reads it differently"
        )
        self.text = text


def _scan(query: str) -> list[Any]:
    try:
        return _parser.scan(query)
    except ParseError as exc:
        raise ValueError(str(exc).split(" at or near ")[0]) from None


def redact_literals(query: str) -> str:
    """``query`` with every string, bit-string and hex literal replaced by REDACTED.

    Redaction holds whatever standard_conforming_strings was when the statement ran: the two settings
    read a text alike up to the first plain '...' string holding a backslash; from that string on the
    text is withheld (``PartlyWithheld``). Raises ``ValueError`` when the text cannot be read as SQL
    tokens; no message quotes the text.
    """
    return redact_and_count(query)[0]


def redact_and_count(query: str) -> tuple[str, int]:
    """``redact_literals(query)``, and the number of its tokens that add a level to a parse tree
    (what ``parse_statement`` bounds), from one scan of the text."""
    pieces, done, operators = [], 0, 0
    for token in _scan(query):
        if token.name not in _FLAT_TOKENS:
            operators += 1
        elif token.name in _LITERALS:
            pieces += [query[done : token.start], REDACTED]
            done = token.end + 1
            if query[token.start] == "'" and "\\" in query[token.start : done]:
                raise PartlyWithheld("".join([*pieces, WITHHELD_REST]))
    return "".join([*pieces, query[done:]]), operators


def parse_tree(query: str, operators: int | None = None) -> dict[str, Any]:
    """The parser's tree of ``query``, within the bounds above (``ValueError`` beyond them)."""
    if operators is None:
        operators = sum(1 for token in _scan(query) if token.name not in _FLAT_TOKENS)
    if operators > MAX_PARSED_OPERATORS:
        raise ValueError(f"not parsed: {operators} operators and keywords, more than the {MAX_PARSED_OPERATORS} parsed")
    try:
        text = parse_sql_json(query)
    except ParseError as exc:
        raise ValueError(str(exc)) from None
    depth = depth_beyond(text, MAX_TREE_DEPTH)
    if depth:
        raise ValueError(f"not parsed: the parse tree is {depth} levels deep, more than the {MAX_TREE_DEPTH} read")
    try:
        return json.loads(text)
    except RecursionError:  # a bound above is too loose for this stack: the statement stays unparsed
        raise ValueError(f"not parsed: the parse tree ({depth} levels) is too deep for this stack") from None


def parse_statement(query: str, operators: int | None = None) -> dict[str, Any]:
    """Structural features of ``query``; raises ``ValueError`` when PostgreSQL's parser refuses it or
    the text passes the bounds above. ``operators``: its count from ``redact_and_count``, if known."""
    tree = parse_tree(query, operators)
    stmts = [s["stmt"] for s in tree.get("stmts", []) if "stmt" in s]
    if not stmts:
        raise ValueError("no statement in the text")
    command = next(iter(stmts[0]))

    cte_names: set[str] = set()
    relations: list[str] = []
    counts = dict.fromkeys(("joins", "subqueries", "aggregates", "windows", "ctes"), 0)
    flags = dict.fromkeys(("group", "order", "limit", "distinct"), False)
    for kind, fields in _walk(stmts):
        if kind == "CommonTableExpr":
            counts["ctes"] += 1
            cte_names.add(fields.get("ctename", ""))
        elif kind == "RangeVar":
            name = fields.get("relname", "")
            schema = fields.get("schemaname")
            relations.append(f"{schema}.{name}" if schema else name)
        elif kind == "JoinExpr":
            counts["joins"] += 1
        elif kind in ("SubLink", "RangeSubselect"):
            counts["subqueries"] += 1
        elif kind == "FuncCall":
            if "over" in fields:
                counts["windows"] += 1
            elif _is_aggregate(fields):
                counts["aggregates"] += 1
        elif kind == "SelectStmt":
            # FROM a, b, c is two joins, written without JOIN.
            counts["joins"] += max(len(fields.get("fromClause", [])) - 1, 0)
            flags["group"] |= bool(fields.get("groupClause"))
            flags["order"] |= bool(fields.get("sortClause"))
            flags["limit"] |= bool(fields.get("limitCount") or fields.get("limitOffset"))
            flags["distinct"] |= "distinctClause" in fields

    tables = sorted({r for r in relations if r not in cte_names})
    return {
        "statement_kind": KINDS.get(command, "utility"),
        "command": command,
        "tables": tables,
        "n_tables": len(tables),
        "n_joins": counts["joins"],
        "n_subqueries": counts["subqueries"],
        "n_aggregates": counts["aggregates"],
        "n_window_functions": counts["windows"],
        "n_ctes": counts["ctes"],
        "has_group_by": flags["group"],
        "has_order_by": flags["order"],
        "has_limit": flags["limit"],
        "has_distinct": flags["distinct"],
    }
