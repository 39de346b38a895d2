"""Crafted query history for integration tests: cumulative collector payloads from per-interval means."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

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
        self, means: dict[int, float], calls: int = 100, extra: dict[int, dict[str, Any]] | None = None
    ) -> datetime:
        """One interval in which each statement ran ``calls`` times with the given mean (ms); ``extra``
        adds fields to a statement's row (e.g. its plan)."""
        rows = []
        for queryid, mean in means.items():
            total = self.totals.setdefault(queryid, [0, 0.0])
            total[0] += calls
            total[1] += calls * mean
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
