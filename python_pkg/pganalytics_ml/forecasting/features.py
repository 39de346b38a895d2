"""Features of a statement's next interval, from what was known before it.

``feature_matrix`` is the one feature function: training calls it on windows cut from history (the
target is the interval right after each window) and serving calls it on each statement's latest window
(the target is its next interval, not yet seen). Both build the same ``Windows``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 8  # past intervals a feature row looks at
MIN_HISTORY = 3  # past intervals a statement needs before a model predicts it
EWMA_ALPHA = 0.5
MIN_MS = 1e-6

# Per-interval counters in a window, newest last.
CHANNELS = ("calls", "total_time", "seconds", "rows", "shared_hit", "shared_read", "temp", "plan_time", "stddev")
STRUCTURE = (
    "is_select",
    "is_insert",
    "is_update",
    "is_delete",
    "is_utility",
    "n_tables",
    "n_joins",
    "n_subqueries",
    "n_aggregates",
    "n_window_functions",
    "n_ctes",
    "has_group_by",
    "has_order_by",
    "has_limit",
    "has_distinct",
    "parse_ok",
)
LOAD = ("server_calls_per_s", "server_reads_per_s", "server_busy_ms_per_s", "hour_sin", "hour_cos")
HISTORY = (
    "last_log_mean",
    "ewma_log_mean",
    "mean3_log_mean",
    "window_log_mean",
    "std_log_mean",
    "trend_log_mean",
    "last_minus_ewma",
    "log_calls_per_s",
    "calls_rate_change",
    "log_calls",
    "log_rows_per_call",
    "log_blocks_per_call",
    "cache_hit_ratio",
    "log_reads_per_call",
    "log_temp_per_call",
    "log_plan_ms",
    "within_interval_cv",
    "history_length",
)
FEATURE_NAMES = HISTORY + STRUCTURE + LOAD
_C = {name: i for i, name in enumerate(CHANNELS)}


@dataclass
class Windows:
    """What is known before each target interval: one row per (statement, target)."""

    values: np.ndarray  # (n, WINDOW, len(CHANNELS)); NaN where the statement has no interval that far back
    structure: np.ndarray  # (n, len(STRUCTURE))
    load: np.ndarray  # (n, len(LOAD))


@dataclass
class Features:
    matrix: np.ndarray  # (n, len(FEATURE_NAMES))
    anchor: np.ndarray  # EWMA of the log mean: the model predicts the next log mean's difference from it
    scale: np.ndarray  # the statement's own uncertainty in log space, for the prediction interval
    history: np.ndarray  # number of past intervals in the window


def _ewma(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Exponentially weighted mean along axis 1 over the valid entries, newest weighted most."""
    weights = (1 - EWMA_ALPHA) ** np.arange(x.shape[1] - 1, -1, -1, dtype=float)
    w = np.where(valid, weights, 0.0)
    return np.sum(np.where(valid, x, 0.0) * w, axis=1) / np.maximum(w.sum(axis=1), 1e-12)


def _trend(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares slope per interval along axis 1 over the valid entries (0 when fewer than 2)."""
    t = np.broadcast_to(np.arange(x.shape[1], dtype=float), x.shape)
    n = valid.sum(axis=1)
    safe_n = np.maximum(n, 1)
    tm = np.where(valid, t, 0).sum(axis=1) / safe_n
    xm = np.where(valid, x, 0).sum(axis=1) / safe_n
    dt = np.where(valid, t - tm[:, None], 0)
    dx = np.where(valid, x - xm[:, None], 0)
    den = (dt * dt).sum(axis=1)
    return np.where((n >= 2) & (den > 0), (dt * dx).sum(axis=1) / np.maximum(den, 1e-12), 0.0)


def _last(x: np.ndarray) -> np.ndarray:
    return x[:, -1]


def log_means(values: np.ndarray) -> np.ndarray:
    """log(mean execution time) of each interval of the windows (NaN where there is none)."""
    calls = values[..., _C["calls"]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(np.maximum(values[..., _C["total_time"]] / calls, MIN_MS))


def feature_matrix(windows: Windows) -> Features:
    v = windows.values
    valid = ~np.isnan(v[..., _C["calls"]])
    history = valid.sum(axis=1)
    lm = log_means(v)
    lm_filled = np.where(valid, lm, 0.0)
    count = np.maximum(history, 1)
    window_mean = lm_filled.sum(axis=1) / count
    spread = np.sqrt(np.maximum(np.where(valid, (lm - window_mean[:, None]) ** 2, 0).sum(axis=1) / count, 0))
    recent = valid[:, -3:]
    mean3 = np.where(recent, lm[:, -3:], 0).sum(axis=1) / np.maximum(recent.sum(axis=1), 1)
    ewma = _ewma(lm, valid)

    calls = _last(v[..., _C["calls"]])
    seconds = np.maximum(_last(v[..., _C["seconds"]]), 1e-3)
    rate = np.log1p(v[..., _C["calls"]] / np.maximum(v[..., _C["seconds"]], 1e-3))
    rate_mean = np.where(valid, rate, 0).sum(axis=1) / count
    hit, read = _last(v[..., _C["shared_hit"]]), _last(v[..., _C["shared_read"]])
    mean_ms = np.maximum(_last(v[..., _C["total_time"]]) / calls, MIN_MS)
    cv = np.nan_to_num(_last(v[..., _C["stddev"]]) / mean_ms, nan=0.0, posinf=0.0)

    columns = {
        "last_log_mean": _last(lm),
        "ewma_log_mean": ewma,
        "mean3_log_mean": mean3,
        "window_log_mean": window_mean,
        "std_log_mean": spread,
        "trend_log_mean": _trend(lm, valid),
        "last_minus_ewma": _last(lm) - ewma,
        "log_calls_per_s": np.log1p(calls / seconds),
        "calls_rate_change": _last(rate) - rate_mean,
        "log_calls": np.log1p(calls),
        "log_rows_per_call": np.log1p(_last(v[..., _C["rows"]]) / calls),
        "log_blocks_per_call": np.log1p((hit + read) / calls),
        "cache_hit_ratio": np.where(hit + read > 0, hit / np.maximum(hit + read, 1), 1.0),
        "log_reads_per_call": np.log1p(read / calls),
        "log_temp_per_call": np.log1p(_last(v[..., _C["temp"]]) / calls),
        "log_plan_ms": np.log1p(np.nan_to_num(_last(v[..., _C["plan_time"]]), nan=0.0)),
        "within_interval_cv": cv,
        "history_length": history.astype(float),
    }
    history_part = np.column_stack([columns[name] for name in HISTORY])
    matrix = np.hstack([history_part, windows.structure, windows.load])
    matrix = np.nan_to_num(matrix, nan=0.0, posinf=0.0, neginf=0.0)
    # Spread of the recent means plus the sampling noise of the last mean (cv / sqrt(calls)).
    scale = np.sqrt(spread**2 + (cv / np.sqrt(np.maximum(calls, 1))) ** 2) + 0.02
    return Features(matrix=matrix, anchor=ewma, scale=scale, history=history)


def structure_row(statement: dict) -> list[float]:
    """The STRUCTURE features of one statements-table row."""
    kind = statement.get("statement_kind") or "utility"
    flags = {f"is_{k}": float(kind == k) for k in ("select", "insert", "update", "delete", "utility")}
    out = []
    for name in STRUCTURE:
        if name in flags:
            out.append(flags[name])
        elif name == "parse_ok":
            out.append(float(bool(statement.get("parse_ok"))))
        else:
            out.append(float(statement.get(name) or 0))
    return out


def load_row(calls: float, reads: float, busy_ms: float, seconds: float, epoch: float) -> list[float]:
    """The LOAD features: the server's totals over the interval before the target, and the hour of day."""
    seconds = max(seconds, 1e-3)
    hour = (epoch % 86400) / 3600
    return [
        float(np.log1p(calls / seconds)),
        float(np.log1p(reads / seconds)),
        float(np.log1p(busy_ms / seconds)),
        float(np.sin(2 * np.pi * hour / 24)),
        float(np.cos(2 * np.pi * hour / 24)),
    ]
