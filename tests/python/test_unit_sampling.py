"""The choice of captures a training sample is made of, without a database."""

from __future__ import annotations

import numpy as np
import pytest

from pganalytics_ml.errors import PgmlError
from pganalytics_ml.forecasting import sampling

STEP_US = 300 * 1_000_000


def captures(n: int, active: int = 500, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    end_us = 1_780_000_000 * 1_000_000 + STEP_US * np.arange(n, dtype=np.int64)
    counts = np.random.default_rng(seed).integers(active // 2, active * 2, n)
    return end_us, counts.astype(np.int64)


STATEMENTS = np.arange(1, 501, dtype=np.int64) * 7919


def draw(n: int, limit: int, per_statement: int) -> tuple[np.ndarray, np.ndarray, int, sampling.Runs]:
    end_us, active = captures(n)
    first_holdout = sampling._holdout(active, limit, per_statement)
    runs = sampling.choose_runs(
        end_us[:first_holdout],
        active[:first_holdout],
        STATEMENTS,
        limit - int(active[first_holdout:].sum()),
        per_statement - (n - first_holdout),
        int(end_us[first_holdout]),
    )
    return end_us, active, first_holdout, runs


@pytest.mark.parametrize(("limit", "per_statement"), [(200_000, 1_000), (50_000, 10_000), (1_000_000, 300)])
def test_both_caps_hold_and_the_holdout_is_the_latest(limit: int, per_statement: int):
    end_us, active, first_holdout, runs = draw(26_000, limit, per_statement)  # 90 days of 5-minute captures
    holdout = active[first_holdout:].sum()
    assert holdout >= 0.15 * limit or len(end_us) - first_holdout >= int(0.2 * per_statement)
    assert len(end_us) - first_holdout <= max(1, int(0.2 * per_statement))
    assert (runs.last < first_holdout).all() and (runs.first <= runs.last).all()  # training before the holdout
    captures_of = runs.last - runs.first + 1
    expected = active[:first_holdout].mean() / len(STATEMENTS) * captures_of.sum()
    assert expected <= 1.01 * (limit - holdout)  # the budget, in expected intervals
    training_captures = per_statement - (len(end_us) - first_holdout)
    assert expected > 0.9 * min(limit - holdout, training_captures * active[:first_holdout].mean())
    per = {q: 0 for q in STATEMENTS.tolist()}
    for q, c in zip(runs.queryid.tolist(), captures_of.tolist(), strict=True):
        per[q] += c
    assert max(per.values()) + len(end_us) - first_holdout <= per_statement
    assert (np.diff(runs.priority) >= 0).all()  # best first


def test_every_capture_is_seen_by_some_statement_and_runs_do_not_overlap():
    _, _, first_holdout, runs = draw(3_000, 200_000, 1_000)
    seen = np.zeros(first_holdout, dtype=bool)
    for f, last in zip(runs.first, runs.last, strict=True):
        seen[f : last + 1] = True
    assert seen.mean() > 0.95  # whole captures would have shown the model 1 in 5 of them
    order = np.lexsort((runs.first, runs.queryid))
    q, f, last = runs.queryid[order], runs.first[order], runs.last[order]
    same = q[1:] == q[:-1]
    assert (f[1:][same] > last[:-1][same] + 1).all()  # adjacent blocks of a statement are one run


def test_recent_blocks_are_drawn_more_often_and_the_draw_is_repeatable():
    _, _, first_holdout, runs = draw(26_000, 200_000, 1_000)
    drawn = np.zeros(first_holdout)
    for f, last in zip(runs.first, runs.last, strict=True):
        drawn[f : last + 1] += 1
    week = 7 * 24 * 12
    assert drawn[-week:].mean() > 2 * drawn[: 4 * week].mean()
    again = draw(26_000, 200_000, 1_000)[3]
    assert np.array_equal(again.queryid, runs.queryid) and np.array_equal(again.first, runs.first)


def test_sizes_and_counts_are_parsed_or_refused_with_a_hint():
    assert sampling.parse_size("1GB", "x") == 1 << 30 and sampling.parse_size(" 512 mb ", "x") == 512 << 20
    for text in ("lots", "0", "-1GB", "1.5GB"):
        with pytest.raises(PgmlError) as err:
            sampling.parse_size(text, "pganalytics_ml.training_memory_limit")
        assert err.value.sqlstate == "22023" and err.value.hint
    assert sampling._count("0", "x", 5) is None and sampling._count(None, "x", 5) == 5
    with pytest.raises(PgmlError):
        sampling._count("many", "x", 5)


def test_the_memory_estimate_and_what_fits_agree():
    limit = 1 << 30
    fits = sampling.fitting(limit)
    assert sampling.estimated_bytes(fits) <= limit < sampling.estimated_bytes(fits + 1)
