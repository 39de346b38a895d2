"""Structure read from statement text by PostgreSQL's parser (no server needed)."""

from __future__ import annotations

import pytest

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
