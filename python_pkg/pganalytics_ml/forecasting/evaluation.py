"""Scoring predictions and calibrating their intervals (pure numpy)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COVERAGE = 0.9
CLOSE = math.log(1.25)  # `confidence` is the chance the next mean lands within 25% of the prediction
SCORE_QUANTILES = 101
NO_SCORES_Q = math.log(10)  # the 90% quantile of |e| / E|e| for Laplace errors (calibration.START_Q)


def q_errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float | None]:
    """Percentiles of q = max(p/a, a/p): 1.0 is perfect, 2.0 means off by a factor of two.

    Taken in log space over the rows where both are finite numbers; None when there is no such row (an
    infinite q would make the percentiles NaN).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.log(np.maximum(np.asarray(predicted, dtype=float), 1e-9))
        a = np.log(np.maximum(np.asarray(actual, dtype=float), 1e-9))
        log_q = np.abs(p - a)
    log_q = log_q[np.isfinite(log_q)]
    if not len(log_q):
        return {"p50": None, "p90": None, "p95": None}
    with np.errstate(over="ignore"):
        values = np.exp(np.percentile(log_q, (50, 90, 95)))
    return {name: round(float(v), 4) for name, v in zip(("p50", "p90", "p95"), values, strict=True)}


def finite_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics with every number that is not finite (NaN, infinity) replaced by None, and the reason
    kept under "unavailable" (path -> reason): JSON has no NaN, and a metric that cannot be computed is
    reported as missing, never as a number."""
    unavailable: dict[str, str] = {}

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
            unavailable[path] = f"not computable: {float(value)} (no finite value on the holdout)"
            return None
        return value

    out = clean(metrics, "")
    if unavailable:
        out["unavailable"] = {**metrics.get("unavailable", {}), **unavailable}
    return out


def log_scale_fit(predicted_log: np.ndarray, actual_log: np.ndarray) -> dict[str, float | None]:
    """r_squared, rmse and mae of the natural log of the mean time (rmse 0.1 is a typical error of ~10%)."""
    err = predicted_log - actual_log
    finite = np.isfinite(err)
    if not finite.any():
        return {"r_squared": None, "rmse": None, "mae": None}
    err, actual_log = err[finite], actual_log[finite]
    total = float(np.sum((actual_log - actual_log.mean()) ** 2))
    return {
        "r_squared": round(float(1 - np.sum(err**2) / total), 4) if total > 0 else 0.0,
        "rmse": round(float(np.sqrt(np.mean(err**2))), 4),
        "mae": round(float(np.mean(np.abs(err))), 4),
    }


def conformal_quantile(scores: np.ndarray, coverage: float = COVERAGE) -> float:
    """Split-conformal quantile: with n scores, the ceil((n+1)·coverage)-th smallest."""
    n = len(scores)
    rank = min(math.ceil((n + 1) * coverage), n)
    return float(np.sort(scores)[rank - 1])


def calibrate(predicted_log: np.ndarray, actual_log: np.ndarray, scale: np.ndarray, end: np.ndarray) -> dict[str, Any]:
    """Normalized conformal calibration: interval = prediction · exp(±q · scale).

    q is taken from all holdout scores; coverage is estimated honestly by calibrating on one half of
    the holdout (split by time) and counting on the other, both ways.
    """
    scores = np.abs(actual_log - predicted_log) / scale
    finite = np.isfinite(scores)
    if not finite.any():  # nothing to calibrate on: the wide start of live calibration, coverage unknown
        return {"q": NO_SCORES_Q, "scores": [NO_SCORES_Q] * SCORE_QUANTILES, "coverage": None}
    scores, end = scores[finite], np.asarray(end)[finite]
    order = np.argsort(end, kind="stable")
    halves = np.array_split(order, 2)
    covered = 0
    for calib, check in ((halves[0], halves[1]), (halves[1], halves[0])):
        covered += int(np.sum(scores[check] <= conformal_quantile(scores[calib])))
    quantiles = np.quantile(scores, np.linspace(0, 1, SCORE_QUANTILES))
    return {
        "q": conformal_quantile(scores),
        "scores": [round(float(v), 6) for v in quantiles],
        "coverage": round(covered / len(scores), 4),
    }


def confidence(scale: np.ndarray, score_quantiles: list[float]) -> np.ndarray:
    """P(next mean within 25% of the prediction): the share of calibration scores below log(1.25)/scale."""
    grid = np.asarray(score_quantiles, dtype=float)
    levels = np.linspace(0, 1, len(grid))
    return np.interp(CLOSE / np.asarray(scale, dtype=float), grid, levels, left=0.0, right=1.0)


def baseline_confidence(scale: np.ndarray) -> np.ndarray:
    """The same chance for a baseline forecast, assuming log-normal spread with the statement's own scale."""
    return np.array([math.erf(CLOSE / (s * math.sqrt(2))) for s in np.asarray(scale, dtype=float)])
