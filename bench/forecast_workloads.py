"""Synthetic workloads of three shapes for the forecasting benchmark, sent through pgml_ingest_stats.

Each statement has a level, a sensitivity to the server's load, a number of calls per interval and
a per-call spread, so that its interval mean carries the sampling noise a real one has (spread /
sqrt(calls)) on top of what the shape does:

- switches: the server's load jumps between three levels every 1-6 intervals (abrupt and frequent);
- growth: the data grows 3% per interval while it runs; scans slow down with it, lookups barely;
- cycle: a repeating cycle of 12 intervals (a day compressed), with a sharp peak in each.

In the live part a few statements become several times slower at a known interval and stay so
(planted regressions, as a dropped index would do).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

SHAPES = ("switches", "growth", "cycle")
STEP = timedelta(minutes=1)
CYCLE = 12
TEXTS = (
    "SELECT * FROM orders_{i} WHERE id = $1",
    "SELECT customer_id, sum(amount) FROM orders_{i} GROUP BY customer_id ORDER BY 2 DESC LIMIT $1",
    "SELECT o.id, c.name FROM orders_{i} o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > $1",
    "UPDATE accounts_{i} SET balance = balance + $1 WHERE id = $2",
    "INSERT INTO events_{i} (kind, payload) VALUES ($1, $2)",
)


@dataclass
class Workload:
    shape: str
    means: np.ndarray  # (captures, statements) interval mean in ms
    calls: np.ndarray  # (captures, statements)
    live_from: int  # first capture of the live part
    planted: dict[int, int] = field(default_factory=dict)  # statement index -> capture where it slows down
    period_intervals: int | None = None
    load: np.ndarray | None = None  # the server's load per capture (what the shape does to every statement)
    # What a forecaster can only estimate: each statement's level, sensitivity to load and growth exponent
    # (bench/forecast_bounds.py scores forecasters that know them).
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    def load_changed(self) -> np.ndarray:
        """Captures whose load differs from the one before by more than 10%: what no past interval tells."""
        moved = np.abs(np.diff(np.log(np.maximum(self.load, 1e-9)), prepend=np.log(max(self.load[0], 1e-9))))
        return moved > math.log(1.1)


def make(shape: str, statements: int, train: int, live: int, seed: int, regressions: int = 3) -> Workload:
    rng = np.random.default_rng(seed)
    captures = train + live
    level = np.exp(rng.uniform(-2, 4, statements))
    sensitivity = rng.uniform(0.0, 1.2, statements)
    base_calls = np.exp(rng.uniform(np.log(5), np.log(400), statements))
    spread = rng.uniform(0.3, 1.5, statements)  # per-call coefficient of variation
    k = np.arange(captures)
    kind = np.zeros(statements)
    if shape == "switches":
        levels = np.array([0.6, 1.0, 2.5])
        load, current = np.empty(captures), 1
        left = 0
        for t in range(captures):
            if left == 0:
                current = int(rng.choice([i for i in range(3) if i != current]))
                left = int(rng.integers(1, 7))
            load[t], left = levels[current], left - 1
        factor = load[:, None] ** sensitivity[None, :]
    elif shape == "growth":
        size = np.exp(0.03 * k)
        kind = rng.choice([1.0, 0.15, 0.0], size=statements, p=[0.5, 0.25, 0.25])  # scan, lookup, flat
        wobble = np.exp(np.cumsum(rng.normal(0, 0.03, captures)) * 0.5)
        load = wobble
        factor = size[:, None] ** kind[None, :] * wobble[:, None] ** sensitivity[None, :]
    elif shape == "cycle":
        phase = (k % CYCLE) / CYCLE
        load = 1 + 0.7 * np.sin(2 * math.pi * phase) + 1.2 * (k % CYCLE == 3)
        factor = load[:, None] ** sensitivity[None, :]
    else:
        raise ValueError(shape)
    calls = np.maximum(rng.poisson(base_calls[None, :] * np.clip(load, 0.3, 3)[:, None]), 1)
    noise = rng.normal(0, 1, (captures, statements)) * spread[None, :] / np.sqrt(calls) + rng.normal(
        0, 0.04, (captures, statements)
    )
    means = level[None, :] * factor * np.exp(noise)
    planted = {}
    picks = rng.choice(statements, size=regressions, replace=False)
    for j, i in enumerate(picks):
        onset = train + 6 + j * max((live - 10) // max(regressions, 1), 1)
        planted[int(i)] = int(onset)
        means[onset:, i] *= 5.0
    truth = {"level": level, "sensitivity": sensitivity, "growth": kind}
    return Workload(
        shape, means, calls, train, planted, CYCLE if shape == "cycle" else None, np.asarray(load, float), truth
    )


def queryid(i: int) -> int:
    return (i + 1) * 1_000_000_007 - (1 << 45)


class Sender:
    """Cumulative counters of a workload, sent one capture at a time through pgml_ingest_stats."""

    def __init__(self, conn: Any, server_id: str, workload: Workload):
        self.conn, self.server_id, self.w = conn, server_id, workload
        n = workload.means.shape[1]
        self.calls = np.zeros(n)
        self.total = np.zeros(n)
        # Ending at the last midnight (UTC): the captures' hours of day, which the model's features read, are
        # the same in every run, so a seed gives the same figures whenever it runs.
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start = midnight - (len(workload.means) + 1) * STEP

    def at(self, t: int) -> datetime:
        return self.start + t * STEP

    def send(self, t: int) -> None:
        self.calls += self.w.calls[t]
        self.total += self.w.calls[t] * self.w.means[t]
        rows = [
            {
                "queryid": queryid(i),
                "query": TEXTS[i % len(TEXTS)].format(i=i),
                "calls": int(self.calls[i]),
                "total_exec_time": float(self.total[i]),
                "rows": int(self.calls[i]),
            }
            for i in range(len(self.calls))
        ]
        payload = {"captured_at": self.at(t).isoformat(), "rows": rows}
        self.conn.execute("SELECT pgml_ingest_stats(%s, %s::jsonb)", (self.server_id, json.dumps(payload)))
