"""The 90% interval and `confidence`, recalibrated online from the live validated errors.

A statement's interval is prediction * exp(+-(q + d) * s):

- s is the statement's own error scale: an exponentially weighted mean of the |log error| of its
  combined forecast (started from the spread of its recent interval means);
- q is the server's quantile of the normalized scores |log error| / s, tracked at every capture:
  log q <- log q + GAMMA * (misses - 10% of the intervals). This is adaptive conformal inference (Gibbs and
  Candes, 2021) in its quantile-tracking form (Angelopoulos, Candes and Tibshirani, 2023): whatever
  the scores do, the share of misses over T validated intervals is within (B + GAMMA) / (GAMMA * T)
  of 10%, where B bounds log q (it is kept between 0.1 and MAX_SCORE), so coverage returns to 90%
  after a shift instead of staying wrong;
- d is the statement's own correction, tracked the same way from its own misses (smaller step).

The holdout calibration of training only sets the start value of q. `confidence` (the chance that
the next mean lands within 25% of the prediction) is read off the server's recent live scores.
"""

from __future__ import annotations

import math

import numpy as np

COVERAGE = 0.9
MISS = 1 - COVERAGE
GAMMA = 0.015  # step of log q per validated interval
MAX_STEP = 0.7  # at most this much per capture
STATEMENT_GAMMA = 0.15  # step of a statement's own correction, per interval
SCALE_MEMORY = 0.25  # weight of the newest |log error| in a statement's error scale
MIN_SCALE = 0.02
MAX_SCORE = 20.0  # scores are capped: B in the coverage bound
START_Q = math.log(10)  # the 90% quantile of |e| / E|e| for Laplace errors, before anything is known
RECENT_SCORES = 500  # the server's latest scores kept for `confidence`
CLOSE = math.log(1.25)


def start_scale(feature_scale: np.ndarray) -> np.ndarray:
    """A new statement's error scale: E|e| of a normal error with the spread of its recent means."""
    return np.maximum(np.asarray(feature_scale, dtype=float) * math.sqrt(2 / math.pi), MIN_SCALE)


def scores(predicted_log: np.ndarray, actual_log: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.minimum(np.abs(actual_log - predicted_log) / np.maximum(scale, MIN_SCALE), MAX_SCORE)


def track_quantile(q: float, missed: np.ndarray) -> float:
    """The server's quantile after one capture, tracked on the log scale (so that it adapts as fast to a
    doubling of the errors whatever their size): each interval that missed moves log q up by GAMMA * 0.9,
    each that did not moves it down by GAMMA * 0.1; a capture's total step is capped."""
    if not len(missed):
        return q
    step = GAMMA * float(np.sum(missed.astype(float) - MISS))
    return float(np.clip(q * math.exp(np.clip(step, -MAX_STEP, MAX_STEP)), 0.1, MAX_SCORE))


def track_statement(d: np.ndarray, q: float, missed: np.ndarray) -> np.ndarray:
    """Each statement's own correction after one interval, kept between -q/2 and +2q."""
    return np.clip(d + STATEMENT_GAMMA * (missed.astype(float) - MISS), -q / 2, 2 * q)


def update_scale(scale: np.ndarray, abs_error: np.ndarray) -> np.ndarray:
    return np.maximum((1 - SCALE_MEMORY) * scale + SCALE_MEMORY * np.minimum(abs_error, 5.0), MIN_SCALE)


def half_width(q: float, d: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.maximum(q + d, 0.05) * np.maximum(scale, MIN_SCALE)


def confidence(scale: np.ndarray, q: float, d: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """P(next mean within 25%): the share of the server's recent scores below log(1.25) in score units.

    A statement's correction d stretches its scores as it stretches its interval. Without recent
    scores, Laplace errors are assumed (score ~ Exp(1)), the same assumption as START_Q.
    """
    stretch = np.maximum(q + d, 0.05) / max(q, 0.05)
    threshold = CLOSE / (np.maximum(scale, MIN_SCALE) * stretch)
    if len(recent) < 20:
        return 1 - np.exp(-threshold)
    ordered = np.sort(recent)
    return np.searchsorted(ordered, threshold, side="right") / len(ordered)


def keep_recent(recent: np.ndarray, batch_scores: np.ndarray) -> np.ndarray:
    return np.concatenate([recent, batch_scores])[-RECENT_SCORES:]


def start_quantile(holdout_scores: np.ndarray) -> float:
    """The start value of q from a holdout's scores: their split-conformal 90% quantile."""
    n = len(holdout_scores)
    if n < 20:
        return START_Q
    rank = min(math.ceil((n + 1) * COVERAGE), n)
    return float(np.sort(holdout_scores)[rank - 1])
