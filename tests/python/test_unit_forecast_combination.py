"""The online combination and the live calibration on synthetic series whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pganalytics_ml.capture.counters import is_internal
from pganalytics_ml.forecasting import calibration as cal
from pganalytics_ml.forecasting import combination as comb

LAST, EWMA, MODEL = comb.INDEX["last"], comb.INDEX["ewma"], comb.INDEX["model"]


def proposals(n: int, **columns: np.ndarray) -> np.ndarray:
    out = np.full((n, comb.N), np.nan)
    for name, values in columns.items():
        out[:, comb.INDEX[name]] = values
    return out


def test_the_combination_is_the_weighted_mean_of_the_forecasters_that_answer():
    experts = proposals(1, last=np.array([1.0]), ewma=np.array([3.0]))
    weights = np.full((1, comb.N), 1.0 / comb.N)
    assert comb.combine(experts, weights)[0] == pytest.approx(2.0)  # the sleeping ones do not count
    weights[0, LAST] = 3 * weights[0, EWMA]
    assert comb.combine(experts, weights)[0] == pytest.approx(1.5)


def test_hedge_moves_the_weight_to_the_forecaster_that_is_right():
    rng = np.random.default_rng(0)
    weights = np.full((1, comb.N), 1.0 / comb.N)
    for _ in range(30):
        actual = rng.normal(0, 0.05, 1)
        experts = proposals(1, last=actual, ewma=actual + math.log(2), model=actual - math.log(1.5))
        weights = comb.hedge_update(weights, experts, actual)
    awake = weights[0, [LAST, EWMA, MODEL]] / weights[0, [LAST, EWMA, MODEL]].sum()
    assert awake[0] > 0.95
    assert weights.sum() == pytest.approx(1.0)
    assert weights.min() >= comb.SHARE / comb.N - 1e-12  # fixed share: nobody is ever written off


def test_the_combination_stays_within_its_regret_bound_of_the_best_forecaster():
    """Cumulative scaled loss <= best forecaster's + the fixed-share bound, on a series where the best changes."""
    rng = np.random.default_rng(3)
    steps = 400
    weights = np.full((1, comb.N), 1.0 / comb.N)
    combined_loss, expert_loss = 0.0, np.zeros(3)
    for t in range(steps):
        actual = rng.normal(0, 0.3, 1)
        good, bad = actual + rng.normal(0, 0.05, 1), actual + rng.normal(0.5, 0.3, 1)
        last, ewma = (good, bad) if (t // 100) % 2 == 0 else (bad, good)
        experts = proposals(1, last=last, ewma=ewma, model=actual + 0.3)
        combined_loss += comb.losses(comb.combine(experts, weights)[:, None], actual)[0, 0]
        expert_loss += comb.losses(experts[:, [LAST, EWMA, MODEL]], actual)[0]
        weights = comb.hedge_update(weights, experts, actual)
    n = comb.N
    bound = (
        math.log(n / comb.SHARE) / comb.ETA + steps * math.log(1 / (1 - comb.SHARE)) / comb.ETA + comb.ETA * steps / 8
    )
    assert combined_loss <= expert_loss.min() + bound
    # And, since the best forecaster changes every 100 steps, it beats every single one of them here.
    assert combined_loss < expert_loss.min()


def test_pooled_weights_are_lent_to_young_statements_and_fade_with_their_own_history():
    pool = np.zeros(comb.N)
    pool[LAST] = 1.0
    own = np.zeros((2, comb.N))
    own[:, EWMA] = 1.0
    w = comb.effective_weights(own, np.array([0.0, 1000.0]), pool)
    assert w[0, LAST] == 1.0 and w[1, EWMA] > 0.99


def test_the_segment_mean_restarts_after_two_deviations_on_one_side_but_not_after_one():
    rng = np.random.default_rng(1)
    series = np.concatenate([rng.normal(0, 0.05, 20), [2.0], rng.normal(0, 0.05, 5), rng.normal(1.0, 0.05, 10)])
    seg = comb.Segments.start(series[:1])
    means = []
    for x in series[1:]:
        seg = seg.add(np.array([x]))
        means.append(seg.mean[0])
    assert abs(means[19]) < 0.05  # the single outlier at index 20 (position 19 here) is not a change
    assert abs(means[24]) < 0.05
    assert means[-1] == pytest.approx(1.0, abs=0.05)  # the level shift at index 26 is
    assert seg.n[0] <= 11


def test_the_trend_forecaster_is_exact_on_a_straight_line():
    lm = np.array([[0.1 * k for k in range(8)]])
    experts = comb.window_experts(lm, np.ones_like(lm, dtype=bool), lm[:, -1])
    assert experts["trend"][0] == pytest.approx(0.8)
    assert experts["last"][0] == pytest.approx(0.7)


def test_the_server_load_forecaster_follows_a_shared_load_with_the_noise_averaged_away():
    rng = np.random.default_rng(2)
    statements, steps = 40, 80
    level = rng.uniform(-1, 3, statements)
    sensitivity = rng.uniform(0.2, 1.5, statements)
    load = np.repeat(rng.choice([-0.5, 0.0, 0.9], size=steps // 5), 5)
    noise = 0.2
    mu, sdl, sll = level.copy(), np.zeros(statements), np.zeros(statements)
    err_load, err_last = [], []
    previous = level + rng.normal(0, noise, statements)
    current_load = 0.0
    for t in range(steps):
        x = level + sensitivity * load[t] + rng.normal(0, noise, statements)
        if t > 40:
            err_load.append(np.abs(comb.ServerLoad.forecast(mu, sdl, sll, current_load) - x))
            err_last.append(np.abs(previous - x))
        current_load = comb.ServerLoad.level(x, mu)
        mu, sdl, sll = comb.ServerLoad.update(x, mu, sdl, sll, current_load)
        previous = x
    assert np.median(err_load) < 0.9 * np.median(err_last)


def test_the_loss_is_the_log_q_error_scaled_to_1_at_the_cap():
    actual = np.zeros(1)
    loss = [comb.losses(np.array([[e]]), actual)[0, 0] for e in (0.1, 0.2, 5.0)]
    assert loss[1] == pytest.approx(2 * loss[0]) and loss[2] == pytest.approx(1.0)  # capped at a q-error of 4
    assert comb.losses(np.array([[-0.3]]), actual)[0, 0] == pytest.approx(comb.losses(np.array([[0.3]]), actual)[0, 0])


def ar_fit(levels: np.ndarray) -> np.ndarray | None:
    ar, previous = None, 0.0
    for level in levels:
        ar = comb.ServerLoad.ar_update(ar, previous, float(level))
        previous = float(level)
    return ar


def test_the_ar1_fit_of_the_server_level_recovers_a_known_mean_reversion():
    rng = np.random.default_rng(11)
    phi, m, levels = 0.4, 0.3, [0.3]
    for _ in range(600):
        levels.append(m + phi * (levels[-1] - m) + rng.normal(0, 0.2))
    ar = ar_fit(np.array(levels))
    assert comb.ServerLoad.phi(ar) == pytest.approx(phi, abs=0.15)
    # The next level is pulled back toward the mean: from m + 1, about m + phi.
    assert comb.ServerLoad.next_level(ar, m + 1.0) == pytest.approx(m + phi, abs=0.2)


def test_a_persistent_level_is_forecast_to_stay_and_an_unfitted_one_too():
    rng = np.random.default_rng(12)
    walk = np.cumsum(rng.normal(0, 0.05, 300))
    ar = ar_fit(walk)
    assert comb.ServerLoad.phi(ar) > 0.85
    assert comb.ServerLoad.next_level(ar, float(walk[-1])) == pytest.approx(float(walk[-1]), abs=0.1)
    assert comb.ServerLoad.next_level(None, 0.7) == 0.7  # nothing fitted yet: the level persists
    assert comb.ServerLoad.next_level(ar_fit(np.array([0.0, 1.0])), 1.0) == 1.0  # too few pairs


def test_on_a_switching_load_the_next_level_forecaster_halves_the_worst_errors_after_jumps():
    """Levels drawn afresh among three every interval: the best forecast of the next is their mean, not the last."""
    rng = np.random.default_rng(13)
    levels = rng.choice([-0.5, 0.0, 0.9], size=400)
    ar, previous, err_next, err_stay = None, 0.0, [], []
    for t, level in enumerate(levels):
        if t > 100:
            err_next.append(abs(comb.ServerLoad.next_level(ar, previous) - level))
            err_stay.append(abs(previous - level))
        ar = comb.ServerLoad.ar_update(ar, previous, float(level))
        previous = float(level)
    assert comb.ServerLoad.phi(ar) < 0.2
    assert np.percentile(err_next, 90) < 0.6 * np.percentile(err_stay, 90)


def transition_errors(levels: np.ndarray, start: int) -> tuple[list[float], list[float]]:
    """|error| of the transition estimate and of the AR(1) alone, each level forecast from those before it."""
    ar, kept, err_transition, err_ar = None, None, [], []
    for t, level in enumerate(levels):
        if t > start:
            previous = float(kept[-1])
            err_transition.append(abs(comb.ServerLoad.transition(ar, kept, previous) - level))
            err_ar.append(abs(comb.ServerLoad.next_level(ar, previous) - level))
        ar = comb.ServerLoad.ar_update(ar, 0.0 if kept is None else float(kept[-1]), float(level))
        kept = comb.ServerLoad.keep_level(kept, float(level))
    return err_transition, err_ar


def test_the_transition_estimate_learns_a_sequence_of_levels_that_no_straight_line_fits():
    """Levels going round -0.5 -> 0 -> 0.9 -> -0.5: the next is known from the last two, not from the last alone."""
    rng = np.random.default_rng(14)
    levels = np.tile([-0.5, 0.0, 0.9], 60) + rng.normal(0, 0.02, 180)
    err_transition, err_ar = transition_errors(levels, 60)
    assert np.percentile(err_transition, 90) < 0.1
    assert np.percentile(err_ar, 90) > 0.5  # the AR(1): a straight line through -0.5 -> 0 and 0.9 -> -0.5


def test_on_levels_drawn_afresh_the_transition_estimate_forecasts_their_mean_like_the_ar1():
    rng = np.random.default_rng(13)
    levels = rng.choice([-0.5, 0.0, 0.9], size=400)
    err_transition, err_ar = transition_errors(levels, 100)
    stay = np.abs(np.diff(levels))[100:]
    assert np.percentile(err_transition, 90) < 0.6 * np.percentile(stay, 90)
    assert np.mean(err_transition) == pytest.approx(np.mean(err_ar), rel=0.15)


def test_the_transition_estimate_falls_back_to_the_ar1_and_keeps_a_bounded_history():
    ar = ar_fit(np.array([0.0, 1.0, 0.0, 1.0, 0.0]))
    kept = comb.ServerLoad.keep_level(None, 0.0)
    assert comb.ServerLoad.transition(ar, kept, 0.0) == comb.ServerLoad.next_level(ar, 0.0)  # too few levels
    assert comb.ServerLoad.transition(None, None, 0.7) == 0.7  # nothing known: the level persists
    for level in range(300):
        kept = comb.ServerLoad.keep_level(kept, float(level))
    assert len(kept) == comb.ServerLoad.LEVELS_KEPT and kept[0] == 300 - comb.ServerLoad.LEVELS_KEPT and kept[-1] == 299


def test_the_replayed_pool_ends_on_the_forecaster_that_was_right():
    rng = np.random.default_rng(4)
    rows, groups = 300, 10
    actual = rng.normal(0, 0.3, rows)
    experts = proposals(rows, last=actual + rng.normal(0, 0.5, rows), model=actual + rng.normal(0, 0.02, rows))
    combined, pool = comb.replay(
        np.arange(rows) % groups, np.arange(rows) // groups, experts, actual, np.ones(comb.N) / comb.N
    )
    assert pool[MODEL] > 5 * pool[LAST]
    assert not np.isnan(combined).any()


def test_quantile_tracking_covers_90_percent_of_iid_scores():
    rng = np.random.default_rng(5)
    q, missed_total, seen = 0.5, 0, 0
    for t in range(200):
        scores = rng.exponential(1.0, 50)
        missed = scores > q
        if t >= 5:
            missed_total, seen = missed_total + missed.sum(), seen + len(missed)
        q = cal.track_quantile(q, missed)
    assert 0.87 <= 1 - missed_total / seen <= 0.93
    assert q == pytest.approx(math.log(10), abs=0.4)  # the 90% quantile of Exp(1)


def test_coverage_comes_back_after_the_errors_triple():
    """Holdout-style calibration would keep the old width; the tracked one regains 90% within a few captures."""
    rng = np.random.default_rng(6)
    q, after = math.log(10), []
    for t in range(120):
        scores = rng.exponential(1.0 if t < 60 else 3.0, 50)
        missed = scores > q
        if t >= 65:
            after.append(missed.mean())
        q = cal.track_quantile(q, missed)
    assert 0.87 <= 1 - np.mean(after) <= 0.93
    fixed = np.mean(rng.exponential(3.0, 10000) > math.log(10))
    assert 1 - fixed < 0.6  # what the start value alone would have covered


def test_confidence_is_the_share_of_recent_scores_within_25_percent():
    rng = np.random.default_rng(7)
    recent = rng.exponential(1.0, 500)
    scale = np.array([0.05, 0.2, 1.0])
    got = cal.confidence(scale, math.log(10), np.zeros(3), recent)
    expected = 1 - np.exp(-math.log(1.25) / scale)
    assert got == pytest.approx(expected, abs=0.05)
    assert cal.confidence(scale, math.log(10), np.zeros(3), np.zeros(0)) == pytest.approx(expected)


def test_a_statement_that_misses_more_than_10_percent_widens_its_own_interval():
    d = np.zeros(2)
    for _ in range(40):
        d = cal.track_statement(d, 2.0, np.array([True, False]))
    assert d[0] > 0 > d[1]
    assert d[0] <= 4.0 and d[1] >= -1.0


@pytest.mark.parametrize(
    ("query", "internal"),
    [
        ("SELECT * FROM pgml_snapshot()", True),
        ("CALL pganalytics_ml.run_jobs($1)", True),
        ("SELECT pganalytics_ml.rescue_jobs()", True),
        ("update cron.job_run_details set status = $1 where runid = $2", True),
        ("SELECT count(*) FROM pgml_predict_all(log => $1)", True),
        ("SELECT * FROM orders WHERE id = $1", False),
        ("SELECT pgml_x FROM cronjobs", False),
        (None, False),
    ],
)
def test_the_extensions_own_statements_are_recognized(query, internal):
    assert is_internal(query) is internal


def test_the_packed_state_reads_back_exactly_and_one_of_another_layout_reads_as_unknown():
    from pganalytics_ml.forecasting import online

    rng = np.random.default_rng(5)
    sums, weights = rng.normal(size=(3, len(online.SUMS))), rng.dirichlet(np.ones(comb.N), size=3)
    experts = rng.normal(size=(3, comb.N))
    experts[1, comb.INDEX["seasonal"]] = np.nan  # asleep
    *back, complete = online.unpack(online.pack(sums, weights, experts))
    assert complete.all()
    for stored, read in zip((sums, weights, experts), back, strict=True):
        np.testing.assert_array_equal(read, stored)
    # Stored before a sum was appended (another version): its statement starts again, the others read.
    older = online.pack(sums[:, :-1], weights, experts)
    mixed = [older[0], *online.pack(sums[1:], weights[1:], experts[1:])]
    got_sums, got_weights, got_experts, complete = online.unpack(mixed)
    assert complete.tolist() == [False, True, True]
    assert np.isnan(got_sums[0]).all() and np.isnan(got_weights[0]).all() and np.isnan(got_experts[0]).all()
    np.testing.assert_array_equal(got_sums[1:], sums[1:])
