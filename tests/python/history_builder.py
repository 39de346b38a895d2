"""Crafted query history for integration tests: cumulative collector payloads from per-interval means."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

# Recent enough that "the last 24 hours" includes it, old enough that no capture is in the future.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=12)
STEP = timedelta(minutes=5)


class History:
    """Sends pgml_ingest_stats payloads for one server, keeping the cumulative counters."""

    def __init__(self, conn: Any, server_id: str = "db-1", start: datetime = T0):
        self.conn = conn
        self.server_id = server_id
        self.start = start
        self.totals: dict[int, list[float]] = {}
        self.captures = 0

    def capture(
        self, means: dict[int, float], calls: int | dict[int, int] = 100, extra: dict[int, dict[str, Any]] | None = None
    ) -> datetime:
        """One interval in which each statement ran ``calls`` times (or ``calls[queryid]``) with the given mean
        (ms); ``extra`` adds fields to a statement's row (e.g. its plan)."""
        rows = []
        for queryid, mean in means.items():
            total = self.totals.setdefault(queryid, [0, 0.0])
            ran = calls[queryid] if isinstance(calls, dict) else calls
            total[0] += ran
            total[1] += ran * mean
            rows.append(
                {
                    "queryid": queryid,
                    "calls": total[0],
                    "total_exec_time": total[1],
                    "rows": total[0],
                    "query": f"SELECT * FROM table_{abs(queryid)} WHERE id = $1",
                    **(extra or {}).get(queryid, {}),
                }
            )
        for queryid, total in self.totals.items():
            if queryid not in means:
                rows.append({"queryid": queryid, "calls": total[0], "total_exec_time": total[1], "rows": total[0]})
        at = self.start + self.captures * STEP
        self.captures += 1
        self.conn.execute(
            "SELECT pgml_ingest_stats(%s, %s::jsonb)",
            (self.server_id, json.dumps({"captured_at": at.isoformat(), "rows": rows})),
        )
        return at

    def steady(self, statements: dict[int, float], intervals: int, noise: float = 0.05, seed: int = 0) -> None:
        """``intervals`` captures of statements whose means wander around a level, with a load cycle."""
        rng = random.Random(seed)
        for k in range(intervals):
            load = 1 + 0.5 * math.sin(k / 4)
            self.capture(
                {
                    q: level * load ** (abs(q) % 3 * 0.5) * math.exp(rng.gauss(0, noise))
                    for q, level in statements.items()
                }
            )


def statements(n: int, seed: int = 1) -> dict[int, float]:
    rng = random.Random(seed)
    return {-(i + 1) * 1000003: math.exp(rng.uniform(-2, 4)) for i in range(n)}


# Planted workload patterns, for pattern detection: per statement a known pattern on top of realistic noise
# (Poisson calls, log-normal mean times at 5-minute intervals), captured at an irregular cadence with missed
# captures and an outage. Written straight into the history tables (ingesting weeks of 5-minute captures
# through pgml_ingest_stats would take minutes); test_patterns.py also ingests one history the real way.
PLANTED = ("daily_cycle", "weekly_cycle", "trend", "spike", "level_shift", "noise")


@dataclass
class Planted:
    queryid: int
    pattern: str
    calls: list[int]
    mean_ms: list[float]
    spikes: list[datetime] = field(default_factory=list)  # hours of planted spikes
    shift_at: datetime | None = None
    peak_hour: float | None = None  # UTC hour of the planted daily peak


def capture_times(days: float, seed: int, step_minutes: int = 5, end: datetime | None = None) -> list[datetime]:
    """Captures every ``step_minutes`` (give or take 40 s) over ``days`` ending at ``end``, with 3% missed
    and a 3-hour outage a third of the way through."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC).replace(second=0, microsecond=0)
    n = int(days * 24 * 60 / step_minutes)
    start = end - timedelta(minutes=step_minutes * n)
    outage = (n // 3, n // 3 + 180 // step_minutes)
    times = []
    for k in range(n + 1):
        if outage[0] <= k < outage[1] or (0 < k < n and rng.random() < 0.03):
            continue
        jitter = timedelta(seconds=rng.uniform(-40, 40)) if 0 < k < n else timedelta(0)
        times.append(start + k * timedelta(minutes=step_minutes) + jitter)
    return times


def planted_statement(pattern: str, queryid: int, times: list[datetime], seed: int) -> Planted:
    """Calls and mean time of each interval (times[k-1], times[k]] for one statement with ``pattern``."""
    rng = np.random.default_rng(seed)
    rate = float(rng.uniform(20, 200))  # calls per minute at the level
    level = float(np.exp(rng.uniform(0, 4)))  # mean ms
    peak = float(rng.uniform(0, 24))
    start = times[0]
    spike_hours = []
    if pattern == "spike":
        hours = int((times[-1] - start).total_seconds() // 3600)
        spike_hours = [
            start.replace(minute=0) + timedelta(hours=int(h))
            for h in rng.choice(range(30, hours - 2), 3, replace=False)
        ]
    shift_at = start + (times[-1] - start) * 0.6 if pattern == "level_shift" else None
    calls, means = [], []
    for a, b in itertools.pairwise(times):
        minutes = (b - a).total_seconds() / 60
        hour = b.hour + b.minute / 60
        days = (b - start).total_seconds() / 86400
        load, slow = 1.0, 1.0
        if pattern == "daily_cycle":
            load = math.exp(0.5 * math.cos(2 * math.pi * (hour - peak) / 24))
        elif pattern == "weekly_cycle":
            load = 0.45 if b.weekday() >= 5 else 1.1
        elif pattern == "trend":
            load = 1.04**days
        elif pattern == "spike" and any(h <= b < h + timedelta(hours=1) for h in spike_hours):
            slow = 5.0
        elif pattern == "level_shift" and shift_at is not None and b >= shift_at:
            slow = 2.0
        calls.append(int(rng.poisson(rate * minutes * load)) + 1)
        means.append(level * slow * float(np.exp(rng.normal(0, 0.25))))
    return Planted(queryid, pattern, calls, means, spike_hours, shift_at, peak if pattern == "daily_cycle" else None)


_WRITE_STATS = """
INSERT INTO pganalytics_ml.query_stats (server_id, queryid, interval_start, interval_end, calls, total_exec_time,
    mean_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written,
    local_blks_hit, local_blks_read, local_blks_dirtied, local_blks_written, temp_blks_read, temp_blks_written,
    blk_read_time, blk_write_time, wal_records, wal_fpi, wal_bytes, plans, total_plan_time)
SELECT %(server)s, %(queryid)s, s, e, c, c * m, m, c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
  FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[], %(calls)s::bigint[], %(means)s::float8[])
       AS t(s, e, c, m)
"""


def write_planted(conn: Any, server_id: str, times: list[datetime], statements: list[Planted]) -> None:
    """The snapshots of ``times`` and each statement's intervals, as captures would have written them."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO pganalytics_ml.snapshots (server_id, captured_at, interval_start, statements, new_statements,"
            " active_statements) SELECT %s, e, s, %s, 0, %s"
            " FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS t(e, s)",
            (server_id, len(statements), len(statements), times, [None, *times[:-1]]),
        )
        for st in statements:
            conn.execute(
                "INSERT INTO pganalytics_ml.statements (server_id, queryid, query, first_seen) VALUES (%s, %s, %s, %s)",
                (server_id, st.queryid, f"SELECT * FROM {st.pattern}_{abs(st.queryid) % 1000} WHERE id = $1", times[0]),
            )
            conn.execute(
                _WRITE_STATS,
                {
                    "server": server_id,
                    "queryid": st.queryid,
                    "starts": times[:-1],
                    "ends": times[1:],
                    "calls": st.calls,
                    "means": st.mean_ms,
                },
            )
    conn.execute("ANALYZE pganalytics_ml.query_stats")


def planted_history(
    conn: Any, server_id: str, days: float, seed: int, per_pattern: int = 2, patterns: tuple[str, ...] = PLANTED
) -> list[Planted]:
    times = capture_times(days, seed)
    statements = [
        planted_statement(
            p,
            -(1 + i * len(PLANTED) + PLANTED.index(p)) * 1_000_003 - seed,
            times,
            seed * 1000 + i * 10 + PLANTED.index(p),
        )
        for i in range(per_pattern)
        for p in patterns
    ]
    write_planted(conn, server_id, times, statements)
    return statements
