"""A few simple forecasters per statement, combined with weights learned online from their own errors.

Every forecaster proposes the next interval's log mean. The combination is their weighted mean in log
space; after each interval the weights are multiplied by exp(-eta * loss), where the loss of a
forecaster is its |log q-error| (capped, then scaled to [0, 1]). This is the exponentially weighted
average forecaster (Hedge on a convex loss): over T intervals its total loss exceeds that of the best
single forecaster by at most ln(N)/eta + eta*T/8 (Cesa-Bianchi and Lugosi, Prediction, Learning, and
Games, Thm 2.2), so in the long run it is never worse than "same as last time" by more than that.
A small share of weight is given back to every forecaster after each update (Herbster and Warmuth's
fixed share), so that a forecaster that becomes the best after a change of workload wins weight back
within a few intervals. A forecaster that cannot answer for a statement (no model, no known cycle) is
"asleep": it keeps its weight relative to the others and its loss is taken as the combination's.

All functions are plain numpy over arrays with one row per statement and one column per forecaster.
"""

from __future__ import annotations

import math

import numpy as np

# New forecasters are appended, so that a stored weight keeps its forecaster's index.
FORECASTERS = ("last", "ewma", "since_change", "longrun", "trend", "server_load", "seasonal", "model", "server_next")
N = len(FORECASTERS)
INDEX = {name: i for i, name in enumerate(FORECASTERS)}
LOSS_CAP = math.log(4.0)  # a q-error above 4 counts as 4: one wild interval cannot erase a forecaster
ETA = 4.0  # learning rate on losses scaled to [0, 1]
SHARE = 0.02  # fixed share: weight returned to every forecaster after each update
POOL_PRIOR = 8  # a statement's own weights count fully after about this many updates
DOMINANT = 0.6  # a forecaster holding at least this weight names the forecast alone

# Mean since the last change: a change is two intervals in a row on the same side of the segment's
# mean by more than CHANGE_Z of its spread (one wild interval is not a change).
CHANGE_Z = 3.0
CHANGE_FLOOR = math.log(1.2)
SEGMENT_MEMORY = 48  # beyond this many intervals the segment mean forgets its oldest, so slow drift is followed


def uniform(n: int) -> np.ndarray:
    return np.full((n, N), 1.0 / N)


def combine(expert_log: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of the forecasters that can answer (NaN columns are asleep), in log space."""
    awake = ~np.isnan(expert_log)
    w = np.where(awake, weights, 0.0)
    total = w.sum(axis=1)
    # With no weight on any awake forecaster (cannot happen after fixed share), the awake ones share equally.
    w = np.where((total > 0)[:, None], w, awake.astype(float))
    return np.sum(np.where(awake, expert_log, 0.0) * w, axis=1) / np.maximum(w.sum(axis=1), 1e-12)


def losses(expert_log: np.ndarray, actual_log: np.ndarray) -> np.ndarray:
    """|log q-error| of each forecaster, capped and scaled to [0, 1]; NaN where it was asleep."""
    return np.minimum(np.abs(expert_log - actual_log[:, None]), LOSS_CAP) / LOSS_CAP


def hedge_update(weights: np.ndarray, expert_log: np.ndarray, actual_log: np.ndarray) -> np.ndarray:
    """One exponentially weighted update with sleeping forecasters and fixed share; rows sum to 1."""
    loss = losses(expert_log, actual_log)
    combined = losses(combine(expert_log, weights)[:, None], actual_log)[:, 0]
    loss = np.where(np.isnan(loss), combined[:, None], loss)
    w = weights * np.exp(-ETA * loss)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    return (1 - SHARE) * w + SHARE / N


def pooled_update(pool: np.ndarray, expert_log: np.ndarray, actual_log: np.ndarray) -> np.ndarray:
    """The server's weights, updated once per capture with the mean loss over the statements it scored."""
    if not len(actual_log):
        return pool
    loss = losses(expert_log, actual_log)
    combined = losses(combine(expert_log, np.tile(pool, (len(actual_log), 1)))[:, None], actual_log)[:, 0]
    loss = np.where(np.isnan(loss), combined[:, None], loss).mean(axis=0)
    w = pool * np.exp(-ETA * loss)
    w = w / max(w.sum(), 1e-300)
    return (1 - SHARE) * w + SHARE / N


def effective_weights(own: np.ndarray, updates: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """A statement's weights: its own after enough updates, its server's pooled weights before."""
    trust = (updates / (updates + POOL_PRIOR))[:, None]
    return trust * own + (1 - trust) * pool[None, :]


def dominant(weights: np.ndarray, expert_log: np.ndarray) -> list[str]:
    """The forecaster that dominated each combination, or the mix of the two or three that did."""
    awake = ~np.isnan(expert_log)
    w = np.where(awake, weights, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    order = np.argsort(-w, axis=1, kind="stable")[:, :3]
    top = np.take_along_axis(w, order, axis=1)
    names = [FORECASTERS[i] for i in order[:, 0].tolist()]
    mixed = np.flatnonzero(top[:, 0] < DOMINANT)
    for r, leaders, shares in zip(mixed.tolist(), order[mixed].tolist(), top[mixed].tolist(), strict=True):
        parts = [f"{FORECASTERS[i]} {v:.2f}" for i, v in zip(leaders, shares, strict=True) if v >= 0.1]
        names[r] = "mix(" + ", ".join(parts) + ")"
    return names


class Segments:
    """Per statement, the mean of its log means since the last detected change (Welford, bounded memory)."""

    def __init__(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray, flag: np.ndarray, last: np.ndarray):
        self.n, self.mean, self.m2, self.flag, self.last = n, mean, m2, flag, last

    @classmethod
    def start(cls, x: np.ndarray) -> Segments:
        k = len(x)
        return cls(np.ones(k), x.astype(float).copy(), np.zeros(k), np.zeros(k), x.astype(float).copy())

    def spread(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.n - 1, 1))

    def add(self, x: np.ndarray) -> Segments:
        """The segments after one more interval ``x`` per statement (NaN: the statement did not run)."""
        ran = ~np.isnan(x)
        x0 = np.where(ran, x, self.mean)
        dev = x0 - self.mean
        limit = CHANGE_Z * np.maximum(np.where(self.n >= 3, self.spread(), CHANGE_FLOOR), CHANGE_FLOOR)
        side = np.where(ran & (np.abs(dev) > limit), np.sign(dev), 0.0)
        changed = (side != 0) & (side == self.flag)
        suspect = (side != 0) & ~changed
        # Welford with the count capped: an exponential forgetting of the oldest once SEGMENT_MEMORY is reached.
        n_new = np.minimum(self.n + 1, SEGMENT_MEMORY)
        mean_new = self.mean + dev / n_new
        m2_new = self.m2 * (n_new - 1) / np.maximum(self.n, 1) + dev * (x0 - mean_new)
        keep = ~ran | suspect
        n = np.where(keep, self.n, n_new)
        mean = np.where(keep, self.mean, mean_new)
        m2 = np.where(keep, self.m2, np.maximum(m2_new, 0))
        # A confirmed change: the segment restarts from the two intervals that left the old one.
        n = np.where(changed, 2.0, n)
        mean = np.where(changed, (self.last + x0) / 2, mean)
        m2 = np.where(changed, (self.last - x0) ** 2 / 2, m2)
        flag = np.where(ran, np.where(suspect, side, 0.0), self.flag)
        last = np.where(ran, x0, self.last)
        return Segments(n, mean, m2, flag, last)


def window_experts(log_means: np.ndarray, valid: np.ndarray, ewma: np.ndarray) -> dict[str, np.ndarray]:
    """The forecasters that need only the statement's latest window: last, EWMA and the local trend.

    The trend is the least-squares line through the window's log means, one interval further on
    (at least 3 intervals): it follows growth with less noise than the last value does.
    """
    count = valid.sum(axis=1)
    t = np.broadcast_to(np.arange(log_means.shape[1], dtype=float), log_means.shape)
    safe = np.maximum(count, 1)
    tm = np.where(valid, t, 0).sum(axis=1) / safe
    xm = np.where(valid, log_means, 0).sum(axis=1) / safe
    dt = np.where(valid, t - tm[:, None], 0)
    dx = np.where(valid, log_means - xm[:, None], 0)
    slope = (dt * dx).sum(axis=1) / np.maximum((dt * dt).sum(axis=1), 1e-12)
    trend = np.where(count >= 3, xm + slope * (log_means.shape[1] - tm), np.nan)
    return {"last": log_means[:, -1], "ewma": ewma, "trend": trend}


class ServerLoad:
    """The server-load forecasters: a statement's usual level plus its share of what the server does.

    At each capture the server's load level L is the median, over the statements that ran, of their
    log mean's distance from their own slow average mu. Each statement learns its sensitivity b to L
    (an exponentially weighted regression through the origin, starting at 1). When the whole server
    slows down or speeds up, every statement follows at once, with its own noise averaged away: what
    "last interval" cannot do.

    `server_load` forecasts mu + b * L: the level stays where it is. `server_next` forecasts
    mu + b * L', where L' is the level expected next (`transition`), starting from an AR(1) fit of the
    server's levels, L' = m' + phi * (L - m) (an exponentially weighted regression of each level on the
    one before; phi kept in [0, 1] and shrunk toward 1 while few levels are known). A load that switches between
    regimes is mean-reverting (phi well below 1): after a jump part of it is expected to come back,
    which spreads the error of the interval after the next jump over both sides instead of taking it
    whole. A load that persists or drifts gives phi near 1, and the two forecasters agree.

    The AR(1) is a straight line through every state. Where the server's past levels say more,
    `transition` replaces it: the expected change of the level given its last two levels, read from
    the server's recent history by kernel regression (Nadaraya-Watson, Gaussian kernel, Silverman's
    bandwidth) and shrunk toward the AR(1)'s change by TRANSITION_PRIOR pseudo-pairs. Regimes that
    switch, a cycle's phase (its level and the one before), a level that just jumped or has stayed:
    each is a state whose next level the history answers, without a model of its shape.
    """

    MEMORY = 0.1  # weight of the newest interval in mu and in the regression sums
    PRIOR = 0.02  # pseudo-observations of b = 1, in units of L^2
    MIN_STATEMENTS = 5
    AR_MEMORY = 0.05  # weight of the newest pair of levels in the AR(1) fit
    AR_PRIOR = 0.01  # pseudo-variance of phi = 1, divided by the pairs seen: the prior fades as they come
    AR_MIN = 3  # pairs of levels seen before phi is used
    LEVELS_KEPT = 120  # the server's latest levels that the transition estimate reads
    TRANSITION_MIN = 5  # levels seen before it is used
    TRANSITION_PRIOR = 1.0  # weight of the AR(1)'s change, in kernel weights (a past state equal to now weighs 1)
    BANDWIDTH_MIN = 0.02  # a server whose level hardly moves is matched within 2%, not exactly

    @staticmethod
    def level(x: np.ndarray, mu: np.ndarray) -> float:
        d = x - mu
        d = d[np.isfinite(d)]
        return float(np.median(d)) if len(d) >= ServerLoad.MIN_STATEMENTS else 0.0

    @staticmethod
    def update(x: np.ndarray, mu: np.ndarray, sdl: np.ndarray, sll: np.ndarray, load: float):
        a = ServerLoad.MEMORY
        d = x - mu
        return (1 - a) * mu + a * x, (1 - a) * sdl + a * d * load, (1 - a) * sll + a * load * load

    @staticmethod
    def sensitivity(sdl: np.ndarray, sll: np.ndarray) -> np.ndarray:
        """b, kept between 0 and 3 (stored as forecasts.load_sensitivity for _after_capture's alarm)."""
        return np.clip((sdl + ServerLoad.PRIOR) / (sll + ServerLoad.PRIOR), 0.0, 3.0)

    @staticmethod
    def forecast(mu: np.ndarray, sdl: np.ndarray, sll: np.ndarray, load: float) -> np.ndarray:
        return mu + ServerLoad.sensitivity(sdl, sll) * load

    # The AR(1) fit of the server's level: [count, mean of previous levels, mean of levels, their
    # covariance, variance of previous levels], exponentially weighted.
    @staticmethod
    def ar_update(ar: np.ndarray | None, previous: float, load: float) -> np.ndarray:
        if ar is None or len(ar) != 5 or not np.all(np.isfinite(ar)):
            return np.array([1.0, previous, load, 0.0, 0.0])
        a = ServerLoad.AR_MEMORY
        n, mp, ml, cov, var = ar
        dp, dl = previous - mp, load - ml
        return np.array([n + 1, mp + a * dp, ml + a * dl, (1 - a) * (cov + a * dp * dl), (1 - a) * (var + a * dp * dp)])

    @staticmethod
    def phi(ar: np.ndarray | None) -> float:
        if ar is None or len(ar) != 5 or ar[0] < ServerLoad.AR_MIN:
            return 1.0
        prior = ServerLoad.AR_PRIOR / ar[0]
        return float(np.clip((ar[3] + prior) / (ar[4] + prior), 0.0, 1.0))

    @staticmethod
    def next_level(ar: np.ndarray | None, load: float) -> float:
        """The server's expected level in the next interval: m + phi * (L - m), or L itself before a fit."""
        phi = ServerLoad.phi(ar)
        if phi >= 1.0:
            return load
        mp, ml = ar[1], ar[2]
        return float(ml + phi * (load - mp))

    @staticmethod
    def keep_level(levels: np.ndarray | None, load: float) -> np.ndarray:
        """The server's latest levels, oldest first, with ``load`` appended (at most LEVELS_KEPT)."""
        kept = np.zeros(0) if levels is None else np.asarray(levels, dtype=float)
        return np.append(kept[np.isfinite(kept)], load)[-ServerLoad.LEVELS_KEPT :]

    @staticmethod
    def transition(ar: np.ndarray | None, levels: np.ndarray | None, load: float) -> float:
        """The level expected next given the last two (``levels`` ends with the current one, ``load``).

        A kernel-weighted mean of the changes that followed past states (level before, level) near the
        current one, with the AR(1)'s change (next_level) as the prior.
        """
        prior = ServerLoad.next_level(ar, load) - load
        if levels is None or len(levels) < ServerLoad.TRANSITION_MIN:
            return load + prior
        lv = np.asarray(levels, dtype=float)
        h = max(1.06 * float(np.std(lv)) * len(lv) ** -0.2, ServerLoad.BANDWIDTH_MIN)
        before, then, after = lv[:-2], lv[1:-1], lv[2:]
        w = np.exp(-0.5 * (((then - load) / h) ** 2 + ((before - lv[-2]) / h) ** 2))
        change = (np.sum(w * (after - then)) + ServerLoad.TRANSITION_PRIOR * prior) / (
            np.sum(w) + ServerLoad.TRANSITION_PRIOR
        )
        return float(load + change)


def replay(
    groups: np.ndarray, order_key: np.ndarray, expert_log: np.ndarray, actual_log: np.ndarray, pool: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The combination as it would have run online over rows (statement ``groups``, time ``order_key``).

    Rows are taken in time order; each statement's own weights start from the pool and the pool is
    updated with every time step's mean loss. Returns each row's combined log forecast (made before
    its row was seen) and the pool at the end.
    """
    combined = np.full(len(actual_log), np.nan)
    own: dict[int, np.ndarray] = {}
    updates: dict[int, int] = {}
    for key in np.unique(order_key):
        rows = np.flatnonzero(order_key == key)
        g = groups[rows]
        w_own = np.array([own.get(int(x), pool) for x in g])
        n_up = np.array([updates.get(int(x), 0) for x in g], dtype=float)
        w = effective_weights(w_own, n_up, pool)
        combined[rows] = combine(expert_log[rows], w)
        new_own = hedge_update(w_own, expert_log[rows], actual_log[rows])
        for x, row in zip(g, new_own, strict=True):
            own[int(x)] = row
            updates[int(x)] = updates.get(int(x), 0) + 1
        pool = pooled_update(pool, expert_log[rows], actual_log[rows])
    return combined, pool
