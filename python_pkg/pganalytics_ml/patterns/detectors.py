"""Pattern detectors on one hourly series: daily and weekly cycles, trend, spikes, level shifts.

Every detector works on the log of the series (load and latency change by factors, not by amounts) on
a regular grid of UTC hours, with NaN where nothing was captured. The statistics come from statsmodels
(STL / MSTL decomposition, autocorrelation), scipy.stats (tests, Theil-Sen, Kendall) and ruptures
(change points); what each confidence means is written in docs/model.md.

A history too short for a type gives no pattern of that type: see MIN_DAYS.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DAY = 24  # hours
WEEK = 168
EPOCH_HOUR_OF_WEEK = 72  # 1970-01-01 00:00 UTC was a Thursday: 72 hours after Monday 00:00
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Days of history (observed hours / 24) a type needs; less gives no pattern of that type.
MIN_DAYS = {"spike": 2, "level_shift": 2, "daily_cycle": 3, "trend": 4, "weekly_cycle": 14}
MIN_COVERAGE = 0.6  # share of the window's hours that must be observed
# Thresholds: a cycle explains at least 30% of the detrended variation and swings at least 20%, peak to trough.
MIN_SEASONAL_STRENGTH = 0.3
MIN_PEAK_TO_TROUGH = 1.2
CYCLE_P_VALUE = 1e-4
# A trend: Kendall's test at 1%, a line explaining half the daily variation, at least 20% change over the window.
TREND_P_VALUE = 0.01
MIN_TREND_R2 = 0.5
MIN_TREND_CHANGE = 0.2
# A spike: robust z-score of the decomposition's remainder at least 5 and at least +50% (or -33%).
SPIKE_Z = 5.0
SPIKE_RATIO = 1.5
MAX_SPIKES = 10  # per series, the largest
# A level shift: a change point ruptures finds, both sides at least 12 hours, at least 20% apart, Welch's t-test.
SHIFT_MIN_HOURS = 12
SHIFT_MIN_CHANGE = 0.2
SHIFT_P_VALUE = 1e-6
SHIFT_PENALTY = 4.0  # times sigma^2 log(n), per change point
MIN_SHIFT_EXPLAINED = 0.3  # the step explains at least 30% of the variance around it
MAX_SHIFTS = 3


@dataclass
class Series:
    """One metric on a grid of UTC hours: ``values`` per hour (NaN: not observed), ``start`` the first hour."""

    metric: str  # calls (per hour), mean_time (ms), total_time (ms per hour)
    values: np.ndarray
    start: float  # epoch seconds of the first bucket, a whole UTC hour
    covered: np.ndarray | None = None  # weight of each hour (0-1): captured in part, or by fewer captures

    @property
    def offset(self) -> float:
        """Added before the log: calls may be 0 in an hour; times are positive."""
        return 1.0 if self.metric == "calls" else 1e-3


@dataclass
class Found:
    type: str
    metric: str
    confidence: float
    metadata: dict[str, Any]
    summary: str  # what was found, for the description; the subject is added by the caller


@dataclass
class Decomposition:
    y: np.ndarray  # log series with gaps filled
    observed: np.ndarray  # bool
    trend: np.ndarray
    daily: np.ndarray
    weekly: np.ndarray | None
    resid: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def detect(series: Series) -> tuple[list[Found], dict[str, Any] | None]:
    """The patterns of one series, and its seasonal profile when a cycle was found (else None)."""
    observed = np.isfinite(series.values)
    n = len(series.values)
    days_observed = observed.sum() / DAY
    if n == 0 or observed.mean() < MIN_COVERAGE or days_observed < MIN_DAYS["spike"]:
        return [], None
    y = np.log(np.where(observed, series.values, np.nan) + series.offset)
    hours = series.start / 3600 + np.arange(n)
    found: list[Found] = []

    dec = decompose(y, observed, days_observed, hours)
    shifts, steps = level_shifts(dec, series)
    if shifts:  # the rest is measured with the steps taken out, else the steps look like trend and spikes
        dec = decompose(y - steps, observed, days_observed, hours)
    outliers = _outliers(dec)
    if outliers.any():
        dec = decompose(y - steps, observed, days_observed, hours, exclude=outliers)
    found += shifts

    profile = None
    if days_observed >= MIN_DAYS["daily_cycle"]:
        daily = daily_cycle(dec, hours, series)
        if daily is not None:
            found.append(daily)
            profile = _profile(dec.daily, hours, DAY, daily.confidence)
    if dec.weekly is not None:
        weekly = weekly_cycle(dec, hours, series)
        if weekly is not None:
            found.append(weekly)
            profile = _profile(dec.daily + dec.weekly, hours, WEEK, weekly.confidence)
    if days_observed >= MIN_DAYS["trend"] and not shifts:
        trend = linear_trend(dec, hours, series)
        if trend is not None:
            found.append(trend)
    found += spikes(dec, series, outliers)
    return found, profile


def decompose(
    y: np.ndarray, observed: np.ndarray, days_observed: float, hours: np.ndarray, exclude: np.ndarray | None = None
) -> Decomposition:
    """STL with a daily period on the hours; with two weeks or more, backfitted with a weekly component
    (statsmodels' classical decomposition, period 168: a weekly STL on hours costs 100 times more).
    Gaps, and the hours in ``exclude``, are left out of the fit: filled by interpolation for a first
    fit, then by that fit's trend and cycles for the final one, so that a gap does not flatten the
    cycle. STL is not run robust: its robustness weights give the remainder of pure noise tails that
    read as spikes; outliers are excluded by the caller instead."""
    from statsmodels.tsa.seasonal import seasonal_decompose

    use = observed if exclude is None else observed & ~exclude
    filled = _interpolate(y, use)
    trend, daily = _stl(filled)
    weekly = None
    if days_observed >= MIN_DAYS["weekly_cycle"] and len(y) >= 2 * WEEK:
        weekly = np.asarray(seasonal_decompose(filled - daily, period=WEEK, extrapolate_trend="period").seasonal)
    if not use.all() or weekly is not None:
        expected = trend + daily + (weekly if weekly is not None else 0)
        filled = np.where(use, y, expected)
        trend, daily = _stl(filled - (weekly if weekly is not None else 0))
    expected = trend + daily + (weekly if weekly is not None else 0)
    values = np.where(observed, y, expected)
    return Decomposition(values, observed, trend, daily, weekly, values - expected)


def _stl(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trend and daily cycle by STL. The smoothers are evaluated every tenth of their window and
    interpolated in between, as the original STL and R's stl() do (statsmodels' default is every point)."""
    from statsmodels.tsa.seasonal import STL

    fit = STL(values, period=DAY, seasonal_jump=1, trend_jump=5, low_pass_jump=3).fit()
    return np.asarray(fit.trend), np.asarray(fit.seasonal)


def _outliers(dec: Decomposition) -> np.ndarray:
    """Hours whose remainder has a robust z-score of SPIKE_Z or more: left out of the second fit, so that a
    spike neither leaks into the cycle (as dips at the same hour of the next days) nor hides itself."""
    z = _robust_z(dec)
    return dec.observed & (np.abs(z) >= SPIKE_Z)


def _robust_z(dec: Decomposition, exclude: np.ndarray | None = None) -> np.ndarray:
    use = dec.observed if exclude is None else dec.observed & ~exclude
    center = float(np.median(dec.resid[use]))
    scale = max(1.4826 * float(np.median(np.abs(dec.resid[use] - center))), 0.01)
    return (dec.resid - center) / scale


def _interpolate(y: np.ndarray, observed: np.ndarray) -> np.ndarray:
    index = np.arange(len(y))
    return np.interp(index, index[observed], y[observed])


def _strength(seasonal: np.ndarray, resid: np.ndarray, observed: np.ndarray) -> float:
    """Seasonal strength (Wang, Smith and Hyndman): 1 - Var(remainder) / Var(cycle + remainder)."""
    total = np.var(seasonal[observed] + resid[observed])
    if total <= 0:
        return 0.0
    return float(max(0.0, 1.0 - np.var(resid[observed]) / total))


def daily_cycle(dec: Decomposition, hours: np.ndarray, series: Series) -> Found | None:
    from scipy import stats
    from statsmodels.tsa.stattools import acf

    obs = dec.observed
    strength = _strength(dec.daily, dec.resid, obs)
    detrended = dec.y - dec.trend - (dec.weekly if dec.weekly is not None else 0)
    hour_of_day = (hours % DAY).astype(int)
    groups = [detrended[obs & (hour_of_day == h)] for h in range(DAY)]
    if min(len(g) for g in groups) < 2:
        return None
    p_value = float(stats.f_oneway(*groups).pvalue)
    autocorrelation = float(acf(detrended, nlags=DAY, fft=True)[DAY])
    profile = np.array([dec.daily[hour_of_day == h].mean() for h in range(DAY)])
    ratio = float(math.exp(profile.max() - profile.min()))
    if (
        strength < MIN_SEASONAL_STRENGTH
        or p_value >= CYCLE_P_VALUE
        or autocorrelation <= 0
        or ratio < MIN_PEAK_TO_TROUGH
    ):
        return None
    level = float(np.exp(np.median(dec.trend[obs]))) - series.offset
    peak, trough = int(profile.argmax()), int(profile.argmin())
    metadata = {
        "period_hours": DAY,
        "peak_hour_utc": peak,
        "trough_hour_utc": trough,
        "peak_to_trough_ratio": round(ratio, 3),
        "amplitude": round((ratio - 1) / (ratio + 1), 3),
        "peak_value": _value(level, profile.max(), series.offset),
        "trough_value": _value(level, profile.min(), series.offset),
        "seasonal_strength": round(strength, 3),
        "autocorrelation_24h": round(autocorrelation, 3),
        "p_value": _p(p_value),
    }
    summary = (
        f"peaks daily around {peak:02d}:00 UTC and is lowest around {trough:02d}:00 UTC, "
        f"{ratio:.1f}x from trough to peak"
    )
    return Found("daily_cycle", series.metric, round(strength, 3), metadata, summary)


def weekly_cycle(dec: Decomposition, hours: np.ndarray, series: Series) -> Found | None:
    from scipy import stats
    from statsmodels.tsa.stattools import acf

    obs = dec.observed
    weekly = dec.weekly
    assert weekly is not None
    strength = _strength(weekly, dec.resid, obs)
    detrended = dec.y - dec.trend - dec.daily
    weekday = (((hours + EPOCH_HOUR_OF_WEEK) % WEEK) // DAY).astype(int)
    groups = [detrended[obs & (weekday == d)] for d in range(7)]
    if min(len(g) for g in groups) < 2 * DAY * MIN_COVERAGE:
        return None
    p_value = float(stats.f_oneway(*groups).pvalue)
    autocorrelation = float(acf(detrended, nlags=WEEK, fft=True)[WEEK])
    by_day = np.array([weekly[weekday == d].mean() for d in range(7)])
    ratio = float(math.exp(by_day.max() - by_day.min()))
    if (
        strength < MIN_SEASONAL_STRENGTH
        or p_value >= CYCLE_P_VALUE
        or autocorrelation <= 0
        or ratio < MIN_PEAK_TO_TROUGH
    ):
        return None
    level = float(np.exp(np.median(dec.trend[obs]))) - series.offset
    peak, trough = int(by_day.argmax()), int(by_day.argmin())
    metadata = {
        "period_hours": WEEK,
        "peak_day": WEEKDAYS[peak],
        "trough_day": WEEKDAYS[trough],
        "peak_to_trough_ratio": round(ratio, 3),
        "amplitude": round((ratio - 1) / (ratio + 1), 3),
        "peak_value": _value(level, by_day.max(), series.offset),
        "trough_value": _value(level, by_day.min(), series.offset),
        "seasonal_strength": round(strength, 3),
        "autocorrelation_168h": round(autocorrelation, 3),
        "p_value": _p(p_value),
    }
    summary = f"is highest on {WEEKDAYS[peak]}s and lowest on {WEEKDAYS[trough]}s, {ratio:.1f}x between them"
    return Found("weekly_cycle", series.metric, round(strength, 3), metadata, summary)


def linear_trend(dec: Decomposition, hours: np.ndarray, series: Series) -> Found | None:
    """Theil-Sen slope of the daily means of the deseasonalized series, Kendall's test for its significance."""
    from scipy import stats

    deseasonalized = dec.y - dec.daily - (dec.weekly if dec.weekly is not None else 0)
    day = ((hours - hours[0]) // DAY).astype(int)
    days, means = [], []
    for d in np.unique(day):
        mask = (day == d) & dec.observed
        if mask.sum() >= DAY / 2:
            days.append(float(d))
            means.append(float(deseasonalized[mask].mean()))
    if len(days) < MIN_DAYS["trend"]:
        return None
    x, v = np.array(days), np.array(means)
    slope, intercept, _, _ = stats.theilslopes(v, x)
    tau = stats.kendalltau(x, v)
    fit = stats.linregress(x, v)
    r2 = float(fit.rvalue**2)
    span = x[-1] - x[0]
    change = math.exp(slope * span) - 1
    if tau.pvalue >= TREND_P_VALUE or r2 < MIN_TREND_R2 or abs(change) < MIN_TREND_CHANGE:
        return None
    start_value = math.exp(intercept + slope * x[0]) - series.offset
    end_value = math.exp(intercept + slope * x[-1]) - series.offset
    per_day = math.exp(slope) - 1
    metadata = {
        "direction": "growth" if slope > 0 else "decline",
        "percent_per_day": round(100 * per_day, 2),
        "slope_per_day": _round((end_value - start_value) / span),
        "start_value": _round(start_value),
        "end_value": _round(end_value),
        "days": len(days),
        "kendall_tau": round(float(tau.statistic), 3),
        "p_value": _p(float(tau.pvalue)),
        "r_squared": round(r2, 3),
    }
    verb = "grew" if slope > 0 else "declined"
    summary = (
        f"{verb} {abs(100 * per_day):.1f}% a day over {len(days)} days "
        f"(from {_shown(start_value, series.metric)} to {_shown(end_value, series.metric)})"
    )
    return Found("trend", series.metric, round(r2, 3), metadata, summary)


def level_shifts(dec: Decomposition, series: Series) -> tuple[list[Found], np.ndarray]:
    """Lasting changes of level: change points of the deseasonalized series (ruptures' kernel change
    point search, linear kernel: changes in mean, penalized), each kept if both sides last and differ
    by Welch's t-test; kept only when steps explain the series better than one straight line (else it
    is a trend)."""
    import ruptures
    from scipy import stats

    d = dec.y - dec.daily - (dec.weekly if dec.weekly is not None else 0)
    n = len(d)
    none = ([], np.zeros(n))
    if n < 2 * SHIFT_MIN_HOURS:
        return none
    obs = dec.observed
    diffs = np.diff(d[obs])
    sigma = max(1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2), 1e-3)
    penalty = SHIFT_PENALTY * sigma**2 * math.log(n)
    breaks = ruptures.KernelCPD(kernel="linear", min_size=SHIFT_MIN_HOURS).fit(d.reshape(-1, 1)).predict(pen=penalty)
    bounds = [0, *breaks]
    if len(bounds) <= 2:
        return none
    steps_sse = sum(float(np.sum((d[a:b] - d[a:b].mean()) ** 2)) for a, b in itertools.pairwise(bounds))
    line = np.polyval(np.polyfit(np.arange(n), d, 1), np.arange(n))
    line_sse = float(np.sum((d - line) ** 2))
    if line_sse + penalty <= steps_sse + (len(bounds) - 2) * penalty:
        return none
    kept = [
        at for prev, at, nxt in zip(bounds, bounds[1:], bounds[2:], strict=False) if _shifted(d, obs, prev, at, nxt)
    ]
    kept = _without_excursions(d, obs, kept)
    # Before and after each kept change run to the neighbouring kept changes, not to every candidate.
    kept_bounds = [0, *kept, n]
    found: list[tuple[float, int, float, Found]] = []
    for prev, at, nxt in zip(kept_bounds, kept_bounds[1:], kept_bounds[2:], strict=False):
        before, after = d[prev:at][obs[prev:at]], d[at:nxt][obs[at:nxt]]
        step = float(np.median(after) - np.median(before))
        change = math.exp(step) - 1
        local = np.concatenate([before, after])
        within = np.sum((before - before.mean()) ** 2) + np.sum((after - after.mean()) ** 2)
        explained = float(max(0.0, 1 - within / max(np.sum((local - local.mean()) ** 2), 1e-12)))
        if explained < MIN_SHIFT_EXPLAINED:
            continue
        before_value = math.exp(np.median(before)) - series.offset
        after_value = math.exp(np.median(after)) - series.offset
        when = _iso(series.start + at * 3600)
        metadata = {
            "at": when,
            "before": _round(before_value),
            "after": _round(after_value),
            "change_percent": round(100 * change, 1),
            "hours_before": len(before),
            "hours_after": len(after),
            "p_value": _p(float(stats.ttest_ind(before, after, equal_var=False).pvalue)),
        }
        summary = (
            f"changed level at {when}: from {_shown(before_value, series.metric)} "
            f"to {_shown(after_value, series.metric)} ({100 * change:+.0f}%)"
        )
        found.append((explained, at, step, Found("level_shift", series.metric, round(explained, 3), metadata, summary)))
    found.sort(key=lambda f: -f[0])
    steps = np.zeros(n)
    for _, at, step, _ in found[:MAX_SHIFTS]:
        steps[at:] += step
    return [f for *_, f in found[:MAX_SHIFTS]], steps


def _without_excursions(d: np.ndarray, obs: np.ndarray, kept: list[int]) -> list[int]:
    """Two changes in opposite directions that end within SHIFT_MIN_CHANGE of where they started are an
    excursion (a weekend dip in a window too short for a weekly cycle, an incident), not lasting shifts."""
    while len(kept) >= 2:
        bounds = [0, *kept, len(d)]
        levels = [float(np.median(d[a:b][obs[a:b]])) for a, b in itertools.pairwise(bounds)]
        for i in range(len(kept) - 1):
            opposite = (levels[i + 1] - levels[i]) * (levels[i + 2] - levels[i + 1]) < 0
            if opposite and abs(math.exp(levels[i + 2] - levels[i]) - 1) < SHIFT_MIN_CHANGE:
                kept = kept[:i] + kept[i + 2 :]
                break
        else:
            return kept
    return kept


def _shifted(d: np.ndarray, obs: np.ndarray, prev: int, at: int, nxt: int) -> bool:
    """A change point is a level shift when both sides last SHIFT_MIN_HOURS, differ by SHIFT_MIN_CHANGE
    by Welch's t-test at SHIFT_P_VALUE, and everything after differs from everything before as much in
    the same direction (a weekend dip is no shift)."""
    from scipy import stats

    before, after = d[prev:at][obs[prev:at]], d[at:nxt][obs[at:nxt]]
    if len(before) < SHIFT_MIN_HOURS or len(after) < SHIFT_MIN_HOURS:
        return False
    change = math.exp(np.median(after) - np.median(before)) - 1
    lasting = math.exp(np.median(d[at:][obs[at:]]) - np.median(d[:at][obs[:at]])) - 1
    if min(abs(change), abs(lasting)) < SHIFT_MIN_CHANGE or change * lasting < 0:
        return False
    return bool(stats.ttest_ind(before, after, equal_var=False).pvalue < SHIFT_P_VALUE)


def spikes(dec: Decomposition, series: Series, outliers: np.ndarray) -> list[Found]:
    """Hours far from the expectation (trend + cycles, fitted without the outliers): robust z-score of the
    remainder, scaled down by the square root of the hour's weight (the share of the hour captured, or
    of the usual number of captures); consecutive hours on the same side make one spike."""
    from scipy import stats

    obs = dec.observed
    resid = dec.resid
    z = _robust_z(dec, exclude=outliers)
    if series.covered is not None:  # an hour captured in part, or by fewer captures, is noisier
        z = z * np.sqrt(np.clip(np.nan_to_num(series.covered, nan=1.0), 0.0, 1.0))
    center = float(np.median(resid[obs & ~outliers]))
    flagged = obs & (np.abs(z) >= SPIKE_Z) & (np.abs(resid - center) >= math.log(SPIKE_RATIO))
    events: list[tuple[int, int]] = []
    for i in np.flatnonzero(flagged):
        if events and events[-1][1] == i - 1 and np.sign(z[i]) == np.sign(z[events[-1][0]]):
            events[-1] = (events[-1][0], int(i))
        else:
            events.append((int(i), int(i)))
    n_tests = int(obs.sum())
    found = []
    for first, last in events:
        worst = first + int(np.argmax(np.abs(z[first : last + 1])))
        actual = math.exp(dec.y[worst]) - series.offset
        expected = math.exp(dec.y[worst] - resid[worst] + center) - series.offset
        chance = min(1.0, n_tests * 2 * float(stats.norm.sf(abs(z[worst]))))
        direction = "high" if z[worst] > 0 else "low"
        ratio = (actual + series.offset) / (expected + series.offset)
        when = _iso(series.start + worst * 3600)
        metadata = {
            "at": when,
            "start": _iso(series.start + first * 3600),
            "end": _iso(series.start + (last + 1) * 3600),
            "hours": last - first + 1,
            "direction": direction,
            "value": _round(actual),
            "expected": _round(expected),
            "ratio": round(ratio, 3),
            "robust_z": round(float(z[worst]), 1),
        }
        summary = (
            f"was {_shown(actual, series.metric)} in the hour from {when}, "
            f"{ratio:.1f}x the {_shown(expected, series.metric)} expected then"
        )
        found.append(Found("spike", series.metric, round(1 - chance, 4), metadata, summary))
    found.sort(key=lambda f: -abs(f.metadata["robust_z"]))
    if len(found) > MAX_SPIKES:
        for f in found:
            f.metadata["spikes_in_series"] = len(found)
    return found[:MAX_SPIKES]


def _profile(seasonal: np.ndarray, hours: np.ndarray, period: int, strength: float) -> dict[str, Any]:
    """Multiplicative factors by phase: by UTC hour of day (period 24) or hour of the week from Monday
    00:00 UTC (period 168); mean 1 on the log scale."""
    phase = ((hours + (EPOCH_HOUR_OF_WEEK if period == WEEK else 0)) % period).astype(int)
    logs = np.array([seasonal[phase == p].mean() if np.any(phase == p) else 0.0 for p in range(period)])
    logs -= logs.mean()
    return {"period_hours": period, "factors": [round(float(v), 4) for v in np.exp(logs)], "strength": strength}


def _value(level: float, log_factor: float, offset: float) -> float:
    return _round((level + offset) * math.exp(log_factor) - offset)


def _p(p_value: float) -> float:
    """A p-value to three digits, at least 1e-16 (below that it only says "very small")."""
    return float(f"{max(p_value, 1e-16):.3g}")


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _shown(value: float, metric: str) -> str:
    if metric == "calls":
        return f"{value:,.0f} calls/hour" if value >= 10 else f"{value:.1f} calls/hour"
    if metric == "total_time":
        return f"{value / 1000:,.1f} s/hour"
    return f"{value:,.1f} ms" if value >= 1 else f"{value:.3f} ms"


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
