"""Shared pieces of the benchmarks: a throwaway cluster, timing, and printing a table."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from pgcluster import PG_BIN, Cluster  # noqa: E402, F401


def bench_cluster(name: str, **settings: Any) -> Cluster:
    return Cluster(name=f"pganalytics_ml-bench-{name}", settings=settings).init().start()


def time_ms(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def median_ms(action: Callable[[], Any], runs: int) -> tuple[float, list[float]]:
    samples = [time_ms(action) for _ in range(runs)]
    return statistics.median(samples), samples


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Prints a Markdown table (readable in a terminal too) and returns its text."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text)
    return text


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"
    return str(value)
