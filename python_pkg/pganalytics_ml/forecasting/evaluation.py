"""Scoring predictions and calibrating their intervals (pure numpy)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COVERAGE = 0.9
CLOSE = math.log(1.25)  # `confidence` is the chance the next mean lands within 25% of the prediction
SCORE_QUANTILES = 101


def q_errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Percentiles of q = max(p/a, a/p): 1.0 is perfect, 2.0 means off by a factor of two."""
    p = np.maximum(np.asarray(predicted, dtype=float), 1e-9)
    a = np.maximum(np.asarray(actual, dtype=float), 1e-9)
    q = np.maximum(p / a, a / p)
    return {name: round(float(np.percentile(q, pct)), 4) for name, pct in (("p50", 50), ("p90", 90), ("p95", 95))}


def log_scale_fit(predicted_log: np.ndarray, actual_log: np.ndarray) -> dict[str, float]:
    """r_squared, rmse and mae of the natural log of the mean time (rmse 0.1 is a typical error of ~10%)."""
    err = predicted_log - actual_log
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
