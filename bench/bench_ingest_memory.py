"""Peak backend memory and time of one pgml_ingest_stats push, by rows per push.

Each push runs in a new connection to a fresh cluster, so the backend's VmHWM (peak resident memory,
from /proc/<pid>/status) is what that push needed. Beside it, in the same run and the same kind of
fresh connection: an idle backend, and one that only receives the same payload as jsonb and counts its
rows (the least any SQL function taking the payload must hold). Rows carry a ~1 KB statement text,
as a collector would send them: 50,000 rows make a ~56 MB payload.

    python bench/bench_ingest_memory.py --rows 50000 100000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import psycopg

from benchlib import bench_cluster, print_table

TEXT_BYTES = 1000


def payload(rows: int, seed: int) -> str:
    padding = "x" * TEXT_BYTES
    return json.dumps(
        {
            "captured_at": "2026-12-01T12:00:00Z",
            "rows": [
                {
                    "queryid": seed * 10_000_000 + i,
                    "calls": 10 + i % 7,
                    "total_exec_time": 12.5 + i % 11,
                    "rows": i % 100,
                    "shared_blks_hit": 1000 + i,
                    "shared_blks_read": i % 50,
                    "mean_exec_time": 1.25,
                    "stddev_exec_time": 0.5,
                    "query": f"SELECT c{i % 97}, '{padding}' FROM t{i % 89} WHERE id = $1",
                    "datname": "app",
                }
                for i in range(rows)
            ],
        }
    )


def peak_kib(conn: psycopg.Connection) -> int:
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc status")


def measure(cluster, sql: str, params: tuple) -> tuple[float, float]:
    """(seconds, peak MiB) of ``sql`` in a new connection."""
    with cluster.connect("bench") as conn:
        conn.execute("SELECT 1")
        start = time.perf_counter()
        conn.execute(sql, params)
        seconds = time.perf_counter() - start
        return seconds, peak_kib(conn) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 100_000])
    args = parser.parse_args()
    cluster = bench_cluster("ingest-memory")
    try:
        cluster.create_database("bench")
        with cluster.connect("bench") as conn:
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        idle = measure(cluster, "SELECT 1", ())
        table = [["idle backend (SELECT 1)", "-", "-", f"{idle[0]:.2f}", f"{idle[1]:.0f}", "-"]]
        for n, rows in enumerate(args.rows, start=1):
            text = payload(rows, n)
            mb = len(text.encode()) / 2**20
            base = measure(cluster, "SELECT jsonb_array_length(%s::jsonb -> 'rows')", (text,))
            push = measure(cluster, "SELECT pgml_ingest_stats(%s, %s::jsonb)", (f"remote-{n}", text))
            table.append(
                [
                    "baseline: jsonb received, rows counted",
                    f"{rows:,}",
                    f"{mb:.0f}",
                    f"{base[0]:.2f}",
                    f"{base[1]:.0f}",
                    "-",
                ]
            )
            table.append(
                [
                    "pgml_ingest_stats push",
                    f"{rows:,}",
                    f"{mb:.0f}",
                    f"{push[0]:.2f}",
                    f"{push[1]:.0f}",
                    f"{(push[1] - base[1]) / rows * 10_000:.0f}",
                ]
            )
        print_table(
            ["what", "rows", "payload MB", "seconds", "peak backend MiB (VmHWM)", "MiB above baseline per 10k rows"],
            table,
        )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
