"""The regression alarm's elasticity to a statement's own rate of calls, on synthetic series with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pganalytics_ml.forecasting import alarm


def learn(dx: np.ndarray, du: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The learned elasticity, and the weighted mean of du^2 it rests on."""
    sxu, suu = np.zeros(dx.shape[1]), np.zeros(dx.shape[1])
    for x, u in zip(dx, du, strict=True):
        sxu, suu = alarm.update(sxu, suu, x, u)
    return alarm.elasticity(sxu, suu), suu


def phases(rng: np.random.Generator, n: int, statements: int) -> np.ndarray:
    """Changes of log calls per second: the rate moves to a new level every 5 intervals, else stays (small noise)."""
    level = np.repeat(rng.uniform(np.log(50), np.log(600), n // 5 + 1), 5)[:n]
    return np.diff(level, prepend=level[0])[:, None] + rng.normal(0, 0.05, (n, statements))


def test_the_elasticity_of_a_statement_whose_time_follows_its_rate_is_learned():
    rng = np.random.default_rng(1)
    du = phases(rng, 60, 3)
    truth = np.array([2.0, 1.0, 0.0])
    e, suu = learn(truth * du + rng.normal(0, 0.05, du.shape), du)
    # the truth shrunk toward 0 as PRIOR pseudo-observations of e = 0 weigh beside the rate's changes
    shrunk = truth * suu / (suu + alarm.PRIOR)
    assert e[0] == pytest.approx(shrunk[0], rel=0.1) and e[1] == pytest.approx(shrunk[1], rel=0.1) and e[2] < 0.1
    assert shrunk[0] > 1.0  # and the rate's changes weigh more than the prior


def test_a_time_unrelated_to_the_rate_learns_almost_nothing():
    rng = np.random.default_rng(2)
    du = phases(rng, 60, 50)
    e, _ = learn(rng.normal(0, 0.3, du.shape), du)
    assert np.median(e) < 0.1 and e.max() < 0.6


def test_a_slowdown_at_an_unchanged_or_lower_rate_teaches_no_excuse():
    """An index dropped: the time jumps x20 while the rate stays (open loop) or falls (its callers wait)."""
    rng = np.random.default_rng(3)
    du = phases(rng, 40, 2)
    sxu, suu = np.zeros(2), np.zeros(2)
    for u in du:
        sxu, suu = alarm.update(sxu, suu, 0.5 * u, u)
    before = alarm.elasticity(sxu, suu)
    jump = np.full(2, np.log(20.0))
    sxu, suu = alarm.update(sxu, suu, jump, np.array([0.0, -0.7]))
    after = alarm.elasticity(sxu, suu)
    assert after[0] == pytest.approx(before[0], rel=0.15)  # a still rate only ages the sums
    assert after[1] < before[1]  # a falling rate with a rising time speaks against an excuse


def test_the_elasticity_stays_within_0_and_cap_and_unknown_rows_keep_their_sums():
    sxu, suu = alarm.update(
        np.array([np.nan, 1.0, -1.0]),
        np.array([np.nan, 0.1, 0.1]),
        np.array([1.0, np.nan, 0.0]),
        np.array([1.0, 1.0, 0.0]),
    )
    assert sxu[1] == 1.0 and suu[1] == 0.1  # no change of time known: nothing learned
    assert alarm.elasticity(np.array([10.0, -1.0, np.nan]), np.array([0.1, 0.1, np.nan])).tolist() == [alarm.CAP, 0, 0]


def test_the_log_rate_is_per_second_and_unknown_without_calls():
    assert np.isnan(alarm.log_rate(np.array([0.0]), np.array([5.0]))).all()
    assert alarm.log_rate(np.array([50.0]), np.array([5.0]))[0] == pytest.approx(np.log(10))
