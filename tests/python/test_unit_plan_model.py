"""The plan model's shapes and its choice of the correction (held-out shapes), and plans costed as served, on
plain data: no database."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pganalytics_ml.capture.plan_features import COUNT_NAMES
from pganalytics_ml.forecasting.features import LOAD, PLAN, STRUCTURE
from pganalytics_ml.whatif import plan_model, served

ROWS = 4  # rows (intervals) per statement


def training_set(shape_offset, generalising=False, seed: int = 0):
    """Statements of 8 plan shapes (node-type counts), 5 statements each on tables of several sizes. Their log
    ms is log cost + ``shape_offset[shape]``, plus (``generalising``) a term in log plan rows that every shape
    shares."""
    rng = np.random.default_rng(seed)
    plan_rows, structure, target, queryid = [], [], [], []
    q = 0
    for shape in range(8):
        for size in range(5):
            q += 1
            features = dict.fromkeys(PLAN, 0.0)
            features["has_plan"] = 1.0
            features[COUNT_NAMES[shape % len(COUNT_NAMES)]] = 1.0 + shape // len(COUNT_NAMES)
            cost = 10.0 ** (1 + size * 0.7 + rng.uniform(0, 0.3))
            features["log_plan_cost"] = np.log1p(cost)
            rows_log = rng.uniform(0, 10)
            features["log_plan_rows"] = rows_log
            log_ms = np.log(cost) - 3 + shape_offset[shape] + (0.3 * (rows_log - 5) if generalising else 0.0)
            for _ in range(ROWS):
                plan_rows.append([features[n] for n in PLAN])
                structure.append([0.0] * len(STRUCTURE))
                target.append(log_ms + rng.normal(0, 0.02))
                queryid.append(q)
    n = len(target)
    windows = SimpleNamespace(
        structure=np.array(structure), load=np.zeros((n, len(LOAD))), plan=np.array(plan_rows, dtype=float)
    )
    return SimpleNamespace(windows=windows, target=np.array(target), queryid=np.array(queryid))


def test_statements_of_one_shape_on_other_tables_share_a_shape_label():
    data = training_set(np.zeros(8))
    w = data.windows
    x, _, groups = plan_model.rows(w.structure, w.load, w.plan, data.target, data.queryid)
    labels = plan_model.shapes(x, groups)
    per_statement = {int(g): int(s) for g, s in zip(groups, labels, strict=True)}
    assert len(set(labels)) == 8
    assert len({per_statement[q] for q in range(1, 6)}) == 1  # one shape, five table sizes
    assert per_statement[1] != per_statement[6]


def test_a_statements_shape_is_that_of_its_latest_plan():
    data = training_set(np.zeros(8))
    w = data.windows
    x, _, groups = plan_model.rows(w.structure, w.load, w.plan, data.target, data.queryid)
    first = np.flatnonzero(groups == 1)
    x[first[:-1], plan_model._SHAPE[0]] += 5  # its earlier plans had another shape
    labels = plan_model.shapes(x, groups)
    assert len(set(labels[first])) == 1 and labels[first[0]] == labels[np.flatnonzero(groups == 2)[0]]


def test_a_correction_that_learned_each_shapes_quirk_is_not_used_for_new_shapes():
    # Per-shape offsets: statements held out of a seen shape are predicted well by the correction, a new
    # shape is not (its offset is its own): the cost baseline answers.
    offsets = np.array([1.5, -1.2, 0.8, -0.4, 1.9, -1.7, 0.2, -0.9])
    fitted = plan_model.fit(training_set(offsets))
    m = fitted.metrics
    assert m["q_error_p50"] < m["baseline_cost_q_error_p50"]  # held-out statements: the correction wins
    assert m["shapes"] == 8 and m["shape_q_error_p50"] >= m["shape_baseline_cost_q_error_p50"]
    assert not fitted.model.use_correction and "plan shapes" in fitted.note


def test_a_correction_that_holds_across_shapes_is_used():
    fitted = plan_model.fit(training_set(np.zeros(8), generalising=True))
    m = fitted.metrics
    assert m["shape_q_error_p50"] < m["shape_baseline_cost_q_error_p50"]
    assert fitted.model.use_correction


def described(cost: float, relations=("public.t",), indexes=()) -> dict:
    return {"total_cost": cost, "relations": list(relations), "indexes": list(indexes), "fingerprint": "x"}


@pytest.mark.parametrize(("hit_ratio", "expected"), [(1.0, 1.0), (0.0, 4.0), (0.5, 2.5), (1.5, 1.0), (-1.0, 4.0)])
def test_the_served_random_page_cost_follows_the_hit_ratio(hit_ratio, expected):
    assert served.random_page_cost(hit_ratio, 1.0, 4.0) == expected
    assert served.random_page_cost(hit_ratio, 1.0, 0.5) == 0.5  # set below a sequential page: left so


def test_the_served_ratio_replaces_the_default_costs_ratio():
    current, scenario = described(1000.0), described(100.0, indexes=["t_a"])
    # Costed as served, the index plan is 4 times cheaper again: the speed-up grows by 4.
    assert served.ratio(current, scenario, described(1000.0), described(25.0, indexes=["t_a"])) == pytest.approx(0.25)


def test_a_served_plan_through_other_indexes_or_none_leaves_the_ratio():
    current, scenario = described(1000.0), described(100.0, indexes=["t_a"])
    assert served.ratio(current, scenario, None, described(25.0, indexes=["t_a"])) == 1.0
    assert served.ratio(current, scenario, described(1000.0), described(25.0, indexes=["t_b"])) == 1.0
    assert (
        served.ratio(current, scenario, described(900.0, indexes=["t_pkey"]), described(25.0, indexes=["t_a"])) == 1.0
    )
