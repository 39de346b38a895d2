"""Plan features, fingerprints and pushed-plan checks, on plain EXPLAIN (FORMAT JSON) data."""

from __future__ import annotations

import copy

import pytest

from pganalytics_ml.capture import plan_features as pf
from pganalytics_ml.capture.plans import statement_shape

JOIN = [
    {
        "Plan": {
            "Node Type": "Hash Join",
            "Join Type": "Inner",
            "Total Cost": 250.5,
            "Plan Rows": 1000,
            "Plan Width": 16,
            "Plans": [
                {
                    "Node Type": "Seq Scan",
                    "Relation Name": "a",
                    "Schema": "public",
                    "Total Cost": 100.0,
                    "Plan Rows": 900,
                    "Plan Width": 8,
                    "Parent Relationship": "Outer",
                },
                {
                    "Node Type": "Hash",
                    "Total Cost": 50,
                    "Plan Rows": 10,
                    "Plan Width": 8,
                    "Parent Relationship": "Inner",
                    "Plans": [
                        {
                            "Node Type": "Index Scan",
                            "Relation Name": "b",
                            "Schema": "public",
                            "Index Name": "b_pkey",
                            "Total Cost": 40,
                            "Plan Rows": 10,
                            "Plan Width": 8,
                            "Parent Relationship": "Outer",
                        }
                    ],
                },
            ],
        }
    }
]
SIZES = {
    "public.a": {"pages": 100, "tuples": 5000.0, "indexes": 0, "analyzed_epoch": 1000.0},
    "public.b": {"pages": 10, "tuples": 300.0, "indexes": 1, "analyzed_epoch": None},
}


def test_features_count_nodes_and_read_the_relation_sizes():
    d = pf.describe(JOIN, SIZES, now_epoch=1000.0 + 7200)
    f = d["features"]
    assert list(f) == list(pf.PLAN_FEATURES)
    assert (f["n_hash_join"], f["n_seq_scan"], f["n_index_scan"], f["n_nested_loop"]) == (1, 1, 1, 0)
    assert f["plan_depth"] == 3 and d["depth"] == 3
    assert f["log_seq_scan_rows"] == pytest.approx(pf.math.log1p(5000))  # the relation's tuples, not the estimate
    assert f["rel_indexes"] == 1 and f["never_analyzed"] == 1
    assert f["log_analyze_age_hours"] == pytest.approx(pf.math.log1p(2))
    assert d["relations"] == ["public.a", "public.b"] and d["indexes"] == ["b_pkey"]


def test_the_fingerprint_is_the_shape_not_the_costs():
    cheaper = copy.deepcopy(JOIN)
    cheaper[0]["Plan"]["Total Cost"] = 1.0
    cheaper[0]["Plan"]["Plans"][0]["Plan Rows"] = 1
    assert pf.fingerprint(pf.root(cheaper)) == pf.fingerprint(pf.root(JOIN))
    other_index = copy.deepcopy(JOIN)
    other_index[0]["Plan"]["Plans"][1]["Plans"][0]["Index Name"] = "b_other"
    assert pf.fingerprint(pf.root(other_index)) != pf.fingerprint(pf.root(JOIN))
    merge = copy.deepcopy(JOIN)
    merge[0]["Plan"]["Node Type"] = "Merge Join"
    assert pf.fingerprint(pf.root(merge)) != pf.fingerprint(pf.root(JOIN))
    assert pf.summary(pf.root(JOIN)).startswith("Hash Join/Inner(Seq Scan/Outer on public.a")


def test_aggregates_split_by_strategy():
    plan = {
        "Node Type": "Aggregate",
        "Strategy": "Hashed",
        "Total Cost": 1,
        "Plan Rows": 1,
        "Plan Width": 1,
        "Plans": [{"Node Type": "Aggregate", "Strategy": "Sorted", "Total Cost": 1, "Plan Rows": 1, "Plan Width": 1}],
    }
    f = pf.describe(plan, {}, 0)["features"]
    assert (f["n_hash_aggregate"], f["n_group_aggregate"]) == (1, 1)


def test_pushed_plans_are_bounded():
    deep: dict = {"Node Type": "Result"}
    for _ in range(pf.MAX_PLAN_DEPTH):
        deep = {"Node Type": "Limit", "Plans": [deep]}
    with pytest.raises(pf.PlanError, match="at most 100 nodes deep"):
        pf.check_pushed_plan(deep, "p")
    wide = {"Node Type": "Append", "Plans": [{"Node Type": "Result"}] * pf.MAX_PLAN_NODES}
    with pytest.raises(pf.PlanError, match="at most 2000 nodes"):
        pf.check_pushed_plan(wide, "p")
    assert pf.check_pushed_sizes([{"relation": "public.a", "pages": 3}], "r")["public.a"]["pages"] == 3


@pytest.mark.parametrize(
    ("sql", "reason", "params"),
    [
        ("SELECT * FROM t WHERE a = $1 AND b = $3", None, 3),
        ("UPDATE t SET a = $2 WHERE id = $1", None, 2),
        ("VACUUM t", "utility", 0),
        ("SELECT 1 INTO new_table", "utility", 0),
        ("SELECT 1; DROP TABLE t", "unparsable", 0),
        ("SELEC 1", "unparsable", 0),
    ],
)
def test_only_single_plannable_statements_are_planned(sql: str, reason: str | None, params: int):
    assert statement_shape(sql) == (reason, params)
