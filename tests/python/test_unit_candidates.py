"""Candidate indexes from the parse tree: predicates, join keys, ORDER BY; quoting; search_path reading."""

from __future__ import annotations

import pytest

from pganalytics_ml.errors import PgmlError
from pganalytics_ml.whatif import candidates as c

pytestmark = pytest.mark.unit


def refs(items: list[c.Reference]) -> list[tuple[str | None, str]]:
    return [(r.qualifier, r.column) for r in items]


def test_where_equality_range_in_between_and_order_by_are_sorted_by_kind():
    (scope,) = c.scopes(
        "SELECT * FROM s.orders o WHERE o.status = $1 AND $2 < o.total AND region IN ($3, $4)"
        " AND created BETWEEN $5 AND $6 ORDER BY o.placed DESC LIMIT 5"
    )
    assert scope.relations == [("s", "orders", "o")]
    assert refs(scope.equality) == [("o", "status"), (None, "region")]
    assert refs(scope.range) == [("o", "total"), (None, "created")]
    assert refs(scope.order) == [("o", "placed")]
    assert scope.join == []


def test_join_keys_come_from_on_and_from_where():
    (scope,) = c.scopes(
        "SELECT 1 FROM orders o JOIN customers cu ON cu.id = o.customer_id, items i WHERE i.order_id = o.id"
    )
    assert [r[1] for r in scope.relations] == ["orders", "customers", "items"]
    assert refs(scope.join) == [("cu", "id"), ("o", "customer_id"), ("i", "order_id"), ("o", "id")]


def test_what_no_plain_index_serves_is_left_out():
    (scope,) = c.scopes(
        "SELECT * FROM t WHERE a::text = $1 AND lower(b) = $2 AND (c = $3 OR d = $4) AND e = f(g) AND NOT h = $5"
    )
    assert scope.equality == [] and scope.range == [] and scope.join == []


def test_subqueries_union_arms_update_and_delete_each_have_their_own_scope():
    found = c.scopes("SELECT * FROM a WHERE x = $1 UNION ALL SELECT * FROM b WHERE y > $2")
    assert sorted((s.relations[0][1], refs(s.equality + s.range)) for s in found if s.relations) == [
        ("a", [(None, "x")]),
        ("b", [(None, "y")]),
    ]
    (update,) = c.scopes("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
    assert update.relations == [(None, "accounts", None)] and refs(update.equality) == [(None, "id")]
    (delete,) = c.scopes("DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.gone < $1")
    assert [r[1] for r in delete.relations] == ["sessions", "users"]
    inner = c.scopes("SELECT * FROM a WHERE a.k IN (SELECT k FROM b WHERE b.z = $1)")
    assert sorted(r[1] for s in inner for r in s.relations) == ["a", "b"]


def test_cte_names_are_not_relations_and_unparsable_or_utility_text_gives_nothing():
    found = c.scopes("WITH recent AS (SELECT * FROM events WHERE at > $1) SELECT * FROM recent WHERE kind = $2")
    assert sorted(r[1] for s in found for r in s.relations) == ["events"]
    assert c.scopes("SELEKT nothing") == []
    assert c.scopes("VACUUM orders") == []
    assert c.scopes("SELECT 1; SELECT 2") == []


def test_column_sets_put_equality_first_and_stop_at_three_columns():
    sets = c.column_sets(["a", "b"], ["r"], ["j"], ["o"])
    assert sets[:5] == [("a",), ("b",), ("r",), ("j",), ("o",)]
    assert ("a", "b") in sets and ("a", "r") in sets and ("b", "o") in sets and ("a", "b", "r") in sets
    assert ("r", "a") not in sets  # a range column never leads an equality one
    assert all(len(s) <= c.MAX_COLUMNS for s in sets)
    assert c.column_sets(["a", "a"], [], [], ["a"]) == [("a",)]


def test_quoting_and_create_sql():
    assert c.quote_ident("customer_id") == "customer_id"
    assert c.quote_ident("Order") == '"Order"'
    assert c.quote_ident("order") == '"order"'  # a reserved word
    assert c.quote_ident('we"ird') == '"we""ird"'
    cand = c.Candidate("public.orders", ("customer_id", "order"))
    assert cand.create_sql() == 'CREATE INDEX ON public.orders (customer_id, "order")'
    assert cand.create_sql(concurrently=True).startswith("CREATE INDEX CONCURRENTLY ON public.orders")


def test_search_path_is_read_by_the_parser():
    assert c.path_schemas('"$user", public', user="app") == ["app", "public"]
    assert c.path_schemas('"$user", public') == ["public"]
    assert c.path_schemas('"My Schema", public, pg_temp') == ["My Schema", "public"]
    with pytest.raises(PgmlError) as caught:
        c.path_schemas("public; DROP TABLE x")
    assert caught.value.sqlstate == "22023"
