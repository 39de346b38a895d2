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


@pytest.mark.parametrize(("limit", "per_statement"), [(200_000, 1_000), (50_000, 10_000), (1_000_000, 300)])
def test_both_caps_hold_exactly_and_the_holdout_is_the_latest(limit: int, per_statement: int):
    end_us, active = captures(26_000)  # 90 days of 5-minute captures
    keep, first_holdout = sampling._choose(end_us, active, limit, per_statement)
    assert active[keep].sum() <= limit and keep.sum() <= per_statement
    assert active[keep].sum() > 0.9 * min(limit, per_statement * active.mean())  # the budget is used
    assert keep[first_holdout:].all()  # the holdout: every capture from the first holdout one on
    holdout = active[first_holdout:].sum()
    assert 0.15 * active[keep].sum() <= holdout <= 0.25 * active[keep].sum()


def test_recent_captures_are_drawn_more_often_and_the_draw_is_repeatable():
    end_us, active = captures(26_000)
    keep, first_holdout = sampling._choose(end_us, active, 200_000, 1_000)
    earlier = keep[:first_holdout]
    week = 7 * 24 * 12
    assert earlier[-week:].mean() > 2 * earlier[: 4 * week].mean()
    again, _ = sampling._choose(end_us, active, 200_000, 1_000)
    assert np.array_equal(keep, again)


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
