"""Structure read from statement text by PostgreSQL's parser (no server needed)."""

from __future__ import annotations

import re

import pytest

from pganalytics_ml.capture.counters import parse_record
from pganalytics_ml.capture.statements import FEATURE_NAMES, parse_statement, redact_literals

pytestmark = pytest.mark.unit

CASES = [
    (
        "SELECT v FROM probe WHERE id = $1",
        {"statement_kind": "select", "tables": ["probe"], "n_joins": 0, "n_aggregates": 0, "has_limit": False},
    ),
    (
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        {"statement_kind": "update", "command": "UpdateStmt", "tables": ["pgbench_accounts"]},
    ),
    (
        "INSERT INTO h (tid, delta) SELECT $1, count(*) FROM a JOIN b ON a.id = b.id GROUP BY 1",
        {"statement_kind": "insert", "tables": ["a", "b", "h"], "n_joins": 1, "n_aggregates": 1, "has_group_by": True},
    ),
    (
        "DELETE FROM t WHERE id IN (SELECT id FROM u WHERE x > $1)",
        {"statement_kind": "delete", "tables": ["t", "u"], "n_subqueries": 1},
    ),
    (
        "WITH recent AS (SELECT * FROM orders WHERE ts > $1) "
        "SELECT DISTINCT c.name, sum(r.total) OVER (PARTITION BY c.id) FROM recent r, public.customers c "
        "WHERE r.cid = c.id ORDER BY 1 LIMIT $2",
        {
            "tables": ["orders", "public.customers"],
            "n_ctes": 1,
            "n_joins": 1,
            "n_window_functions": 1,
            "n_aggregates": 0,
            "has_order_by": True,
            "has_limit": True,
            "has_distinct": True,
        },
    ),
    (
        "SELECT a FROM x UNION ALL SELECT count(*) FROM y GROUP BY b",
        {"tables": ["x", "y"], "n_aggregates": 1, "has_group_by": True},
    ),
    (
        "SELECT * FROM (SELECT max(v) FILTER (WHERE v > $1) FROM t) s",
        {"n_subqueries": 1, "n_aggregates": 1, "tables": ["t"]},
    ),
    ("VACUUM ANALYZE big_table", {"statement_kind": "utility", "command": "VacuumStmt"}),
    ("SET work_mem = $1", {"statement_kind": "utility", "command": "VariableSetStmt", "tables": []}),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_features(query, expected):
    features = parse_statement(query)
    assert set(features) == set(FEATURE_NAMES)
    assert {k: features[k] for k in expected} == expected
    assert features["n_tables"] == len(features["tables"])


@pytest.mark.parametrize("bad", ["SELEC 1", "SELECT 'unterminated", "", "   ;  "])
def test_text_the_parser_refuses(bad):
    with pytest.raises(ValueError):
        parse_statement(bad)


@pytest.mark.parametrize(
    ("query", "redacted"),
    [
        ("CREATE ROLE bob LOGIN PASSWORD 'se''cret'", "CREATE ROLE bob LOGIN PASSWORD '***'"),
        (
            "ALTER USER bob PASSWORD E'se\\'cret' VALID UNTIL 'infinity'",
            "ALTER USER bob PASSWORD '***' VALID UNTIL '***'",
        ),
        (
            "CREATE USER MAPPING FOR bob SERVER s OPTIONS (password $$pw$$)",
            "CREATE USER MAPPING FOR bob SERVER s OPTIONS (password '***')",
        ),
        (
            "SELECT 'héllo', U&'d\\0061t' FROM tëst WHERE b = B'101' AND x = $1",
            "SELECT '***', '***' FROM tëst WHERE b = '***' AND x = $1",
        ),
        ("SELECT v FROM probe WHERE id = $1", "SELECT v FROM probe WHERE id = $1"),
    ],
)
def test_string_literals_are_redacted(query, redacted):
    assert redact_literals(query) == redacted


def test_text_that_is_not_sql_tokens_is_refused_without_quoting_it():
    with pytest.raises(ValueError) as caught:
        redact_literals("SELECT 'unterminated secret")
    assert "secret" not in str(caught.value)


def _nested(opening: str, inner: str, closing: str, depth: int) -> str:
    return opening * depth + inner + closing * depth


# Statements whose parse tree is hundreds of levels deep, or whose operator chain would overflow the
# parser's C stack, in several shapes: none may raise anything but a clean "not parsed".
DEEP = {
    "500-term string concatenation": "SELECT " + " || ".join(["'x'"] * 500),
    "600-deep additions": "SELECT " + _nested("1+(", "1", ")", 600),
    "300-deep subselects": _nested("SELECT (", "SELECT 1", ")", 300),
    "300-deep CASE": "SELECT " + _nested("CASE WHEN $1 THEN ", "1", " END", 300),
    "300-deep ARRAY": "SELECT " + _nested("ARRAY[", "1", "]", 300),
    "400-deep function calls": "SELECT " + _nested("f(", "1", ")", 400),
    "2,000 UNIONs": " UNION ALL ".join(["SELECT 1"] * 2000),
    "1,000 JOINs": "SELECT * FROM t0 " + " ".join(f"JOIN t{i} ON true" for i in range(1, 1000)),
    "1,000 casts": "SELECT $1" + "::text" * 1000,
    "100,000-term chain (deeper than the parser's C stack)": "SELECT " + " || ".join(["$1"] * 100_000),
    "20,000-deep parentheses (the parser's own stack bound)": "SELECT " + _nested("(", "1", ")", 20_000),
}


@pytest.mark.parametrize("query", DEEP.values(), ids=DEEP.keys())
def test_a_statement_too_deep_to_read_is_stored_as_not_parsed(query):
    record = parse_record(7, query)
    assert record["parse_ok"] is False
    assert re.search(r"\d", record["parse_error"]), "the reason says how deep or how long"
    assert record["query"].startswith(("SELECT", "(")) and "'x'" not in record["query"]


def test_wide_but_flat_statements_are_still_parsed():
    in_list = "SELECT v FROM t WHERE id IN (" + ", ".join(f"${i}" for i in range(1, 10_001)) + ")"
    values = "INSERT INTO t VALUES " + ", ".join(f"(${i}, ${i + 1})" for i in range(1, 20_000, 2))
    ands = "SELECT 1 FROM t WHERE " + " AND ".join(f"c{i} = ${i}" for i in range(1, 2001))
    parentheses = "SELECT t.v FROM t WHERE " + _nested("(", "t.v = $1", ")", 5000)
    for query in (in_list, values, ands, parentheses):
        record = parse_record(1, query)
        assert record["parse_ok"] is True, record["parse_error"]
        assert record["tables"] == ["t"]


PASSWORD = "Tr0ub4dor\\' horse battery staple --"
SECRET_WORDS = ("Tr0ub4dor", "horse", "battery", "staple")


@pytest.mark.parametrize(
    "query",
    [
        # standard_conforming_strings = off reads \' as a quote inside the string: the password is all of it.
        f"ALTER ROLE x PASSWORD '{PASSWORD}'",
        f"ALTER ROLE x PASSWORD E'{PASSWORD}'",
        "CREATE ROLE x PASSWORD 'Tr0ub4dor\\\\' VALID UNTIL 'horse battery staple'",
        "ALTER ROLE x PASSWORD 'Tr0ub4dor\\''horse battery staple'",
        "ALTER ROLE x PASSWORD $q$Tr0ub4dor horse battery staple$q$",
        "ALTER ROLE x PASSWORD 'Tr0ub4dor\nhorse battery staple'",
    ],
)
def test_redaction_holds_under_either_string_rule(query):
    record = parse_record(1, query)
    assert not any(word in (record["query"] or "") for word in SECRET_WORDS), record["query"]
    assert not any(word in (record["parse_error"] or "") for word in SECRET_WORDS)
    assert record["query"].startswith("ALTER ROLE x PASSWORD '***'") or record["query"].startswith("CREATE ROLE x")


def test_text_after_a_backslash_in_a_plain_string_is_withheld():
    record = parse_record(1, "ALTER ROLE x PASSWORD 'a\\b' VALID UNTIL 'infinity'")
    assert record["query"].startswith("ALTER ROLE x PASSWORD '***'") and "infinity" not in record["query"]
    assert record["parse_ok"] is False and "standard_conforming_strings" in record["parse_error"]
    # The same statement without the backslash reads the same under both rules, and is kept whole.
    assert redact_literals("ALTER ROLE x PASSWORD 'ab' VALID UNTIL 'infinity'") == (
        "ALTER ROLE x PASSWORD '***' VALID UNTIL '***'"
    )
