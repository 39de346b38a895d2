"""Scenarios read from JSON, and plans grown as a growth scenario says, on plain data."""

from __future__ import annotations

import pytest

from pganalytics_ml.errors import PgmlError
from pganalytics_ml.whatif import scenarios


def node(kind: str, cost: float, rows: float, relation: str | None = None, children=(), **extra) -> dict:
    out = {"Node Type": kind, "Total Cost": cost, "Plan Rows": rows, "Plan Width": 8, **extra}
    if relation:
        out["Schema"], out["Relation Name"] = relation.split(".")
    if children:
        out["Plans"] = list(children)
    return out


def test_current_optimized_and_documents_are_read():
    assert scenarios.parse('"current"').is_current and scenarios.parse("{}").is_current
    assert scenarios.parse('"optimized"').optimized
    both = scenarios.parse('{"growth": {"orders": 3}, "load": 1.5, "indexes": ["CREATE INDEX ON t (a)"]}')
    assert both.growth == {"orders": 3.0} and both.load == 1.5 and both.indexes == ["CREATE INDEX ON t (a)"]
    assert both.as_json() == {
        "scenario": "custom",
        "indexes": ["CREATE INDEX ON t (a)"],
        "growth": {"orders": 3.0},
        "load": 1.5,
    }


@pytest.mark.parametrize(
    ("text", "sqlstate"),
    [
        (None, "22004"),
        ("not json", "22023"),
        ('"faster"', "22023"),
        ("[]", "22023"),
        ('{"growth": true}', "22023"),
        ('{"growth": 1e308}', "22023"),
        ('{"growth": {}}', "22023"),
        ('{"load": -2}', "22023"),
        ('{"indexes": ["CREATE INDEX ON t (a); DROP TABLE t"]}', "22023"),
        ('{"indexes": ["CREATE TABLE t (a int)"]}', "22023"),
    ],
)
def test_invalid_scenarios_are_refused(text, sqlstate):
    with pytest.raises(PgmlError) as caught:
        scenarios.parse(text)
    assert caught.value.sqlstate == sqlstate and caught.value.hint


def test_growth_scales_scans_and_what_reads_them_but_not_unique_lookups_or_limits():
    scan = node("Seq Scan", 100.0, 1000, "public.orders")
    lookup = node("Index Scan", 8.0, 1, "public.customers", **{"Index Name": "customers_pkey"})
    join = node("Nested Loop", 150.0, 1000, children=[scan, lookup])
    plan = [{"Plan": node("Limit", 1.5, 10, children=[join])}]
    sizes = {"public.orders": {"pages": 10.0, "tuples": 1000.0}, "public.customers": {"pages": 5.0, "tuples": 50.0}}
    grown_plan, grown_sizes = scenarios.grown(plan, sizes, {"public.orders": 2.0, "public.customers": 2.0})
    top = grown_plan[0]["Plan"]
    new_join = top["Plans"][0]
    new_scan, new_lookup = new_join["Plans"]
    assert new_scan["Total Cost"] == 200.0 and new_scan["Plan Rows"] == 2000
    assert new_lookup["Total Cost"] == 8.0 and new_lookup["Plan Rows"] == 1  # a unique lookup stays one row
    assert new_join["Total Cost"] == pytest.approx(200 + 8 + (150 - 108) * 2) and new_join["Plan Rows"] == 2000
    assert top["Plan Rows"] == 10  # a Limit returns its rows whatever comes in
    # ... and reads as many of its input's: from an input twice as long, half the share of its run.
    assert top["Total Cost"] == pytest.approx(new_join["Total Cost"] * 10 / 2000)
    assert grown_sizes["public.orders"] == {"pages": 20.0, "tuples": 2000.0}
    assert plan[0]["Plan"]["Plans"][0]["Plans"][0]["Total Cost"] == 100.0  # the input is left as it was


def test_growth_by_name_matches_the_plans_relations_and_says_which_names_it_did_not_find():
    wanted = scenarios.parse('{"growth": {"orders": 2, "shop.items": 3, "nowhere": 4}}')
    relations = ["public.orders", "shop.items", "shop.orders"]
    assert scenarios.growth_of(wanted, relations) == {"public.orders": 2.0, "shop.items": 3.0, "shop.orders": 2.0}
    assert scenarios.unmatched_growth(wanted, relations) == ["nowhere"]
    assert scenarios.growth_of(scenarios.parse('{"growth": 1.5}'), relations) == dict.fromkeys(relations, 1.5)


def test_a_limit_over_a_sort_grows_with_the_sort_but_over_an_index_scan_it_does_not():
    def limited(child: dict) -> dict:  # costed as the planner does: start-up plus 10 rows' share of the run
        startup, total, rows = child["Startup Cost"], child["Total Cost"], child["Plan Rows"]
        return node("Limit", startup + (total - startup) * 10 / rows, 10, children=[child])

    ordered = node("Index Scan", 5000.0, 100000, "public.orders", **{"Startup Cost": 0.4, "Index Name": "o_at"})
    sorted_ = node("Sort", 9000.0, 100000, children=[node("Seq Scan", 2000.0, 100000, "public.orders")])
    sorted_["Startup Cost"] = 8900.0
    for child, want in ((ordered, 1.0), (sorted_, 2.0)):
        plan = limited(child)
        before = plan["Total Cost"]
        after = scenarios.grown(plan, {}, {"public.orders": 2.0})[0]["Total Cost"]
        assert after / before == pytest.approx(want, rel=0.05), child["Node Type"]
