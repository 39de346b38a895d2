"""What the regression alarm excuses: a statement's learned elasticity to its own rate of calls.

A statement that waits on others running it (a hot row's lock, a shared buffer, a queue) gets slower
when it is called more often: by queueing, its mean time grows with its arrival rate, while the
server's median statement does not move. The alarm (``_after_capture``) must not take that for a
regression. Each statement learns, online, the elasticity e of its log mean time on its log calls per
second, from interval-to-interval changes (what the change of the server's load level L already explains
for it taken out, b its learned sensitivity to L: combination.ServerLoad):

    dx - b * dL  ~  e * du

an exponentially weighted least-squares fit through the origin, shrunk toward 0 by PRIOR
pseudo-observations and kept between 0 and CAP. The alarm then moves a statement's bound by e times
the change of its rate (since the interval its forecast knew, or, for a kept bound, since the first
interval of the run). The excuse comes from e learned on past intervals,
and from the rate, not from the time: a statement that becomes slower by itself (an index dropped)
does not run more often for it (it runs less often when its callers wait for it), so it is not excused.
"""

from __future__ import annotations

import numpy as np

MEMORY = 0.1  # weight of the newest interval in the sums (as ServerLoad.MEMORY)
PRIOR = 0.1  # pseudo-observations of e = 0, in units of du^2: as much as one change of the rate by x2.7 (du = 1)
CAP = 3.0  # as the server-load sensitivity
MAX_CHANGE = 5.0  # |dx| counted at most (as calibration.update_scale counts |error|)


def log_rate(calls: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """log(calls per second) of intervals; NaN where there is none."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log(np.asarray(calls, float) / np.maximum(np.asarray(seconds, float), 1e-3))
    out[~np.isfinite(out)] = np.nan
    return out


def elasticity(sxu: np.ndarray, suu: np.ndarray) -> np.ndarray:
    """e, from the sums (0 where none were learned; stored as forecasts.rate_elasticity for the alarm)."""
    e = np.clip(np.asarray(sxu, float) / (np.asarray(suu, float) + PRIOR), 0.0, CAP)
    return np.where(np.isfinite(e), e, 0.0)


def update(sxu: np.ndarray, suu: np.ndarray, dx: np.ndarray, du: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sums after one interval whose log mean changed by ``dx`` (beyond the server's move) and log rate by
    ``du``; rows where either is unknown keep their sums."""
    sxu = np.where(np.isfinite(sxu), sxu, 0.0)
    suu = np.where(np.isfinite(suu), suu, 0.0)
    ok = np.isfinite(dx) & np.isfinite(du)
    y = np.clip(np.where(ok, dx, 0.0), -MAX_CHANGE, MAX_CHANGE)
    u = np.where(ok, du, 0.0)
    a = np.where(ok, MEMORY, 0.0)
    return (1 - a) * sxu + a * y * u, (1 - a) * suu + a * u * u
