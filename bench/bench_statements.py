"""Snapshot, forecast refresh and pgml_predict_all at 5,000 and 20,000 tracked statements.

Targets (issue 13): a snapshot at 5,000 statements takes at most 1 s and the cost grows no worse than
linearly with the statements tracked; forecast refresh over every statement and pgml_predict_all stay
bounded in memory (forecasts are computed and written 2,000 statements at a time). The workload is
bench_snapshot's (5 statement shapes per table), on more tables; pg_stat_statements.max is 25,000.
Each figure is a median; each backend's peak memory is its VmHWM.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import bench_snapshot
import psycopg

from benchlib import bench_cluster, print_table, time_ms

EXTRA: dict[str, str] = {}  # server settings beyond the test clusters' defaults (--shared-buffers)
REFRESH_SQL = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import forecasts
forecasts.refresh(plpy, 'local')
$$ LANGUAGE plpython3u
"""


def peak_mib(conn: Any) -> float:
    status = conn.execute("SELECT pg_read_file('/proc/self/status')").fetchone()[0]
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def in_new_backend(cluster: Any, sql: str, warm: str | None = None) -> tuple[float, float]:
    """Milliseconds of ``sql`` in a new backend (after ``warm``, untimed), and the backend's peak MiB."""
    with cluster.connect() as conn:
        if warm:
            conn.execute(warm)

        def call() -> None:
            cur = conn.execute(sql)
            if cur.description:
                cur.fetchall()

        return time_ms(call), peak_mib(conn)


def cpu_ms(conn: Any) -> float:
    fields = conn.execute("SELECT pg_read_file('/proc/self/stat')").fetchone()[0].rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 10.0  # utime + stime, clock ticks of 10 ms


def snapshot_ms(conn: Any) -> tuple[float, float]:
    """Wall and backend CPU milliseconds of one pgml_snapshot() in ``conn``."""
    cpu = cpu_ms(conn)
    wall = time_ms(lambda: conn.execute("SELECT * FROM pgml_snapshot()").fetchall())
    return wall, cpu_ms(conn) - cpu


def table_sizes(conn: Any) -> str:
    """The total size (with indexes and TOAST) of the tables every capture rewrites a row of per statement, and
    the share of their updates that were HOT (no new index entry)."""
    rows = conn.execute(
        "SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid)), t.n_tup_hot_upd, t.n_tup_upd"
        " FROM pg_class c JOIN pg_stat_user_tables t ON t.relid = c.oid"
        " WHERE c.oid IN ('pganalytics_ml.statements'::regclass, 'pganalytics_ml.forecasts'::regclass,"
        " 'pganalytics_ml.counter_baseline'::regclass) ORDER BY 1"
    ).fetchall()
    return ", ".join(f"{name} {size} ({hot:,} of {updates:,} updates HOT)" for name, size, hot, updates in rows)


def workload_cluster(name: str, tables: int) -> Any:
    """A started cluster with the extension and bench_snapshot's ``tables`` tables (5 statement shapes each),
    every statement tracked (pg_stat_statements.track = all, max 25,000)."""
    bench_snapshot.TABLES = tables
    cluster = bench_cluster(name, **{"pg_stat_statements.track": "all", "pg_stat_statements.max": 25000, **EXTRA})
    try:
        _create_workload(cluster, tables)
    except BaseException:
        cluster.destroy()
        raise
    return cluster


def _create_workload(cluster: Any, tables: int) -> None:
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        # The tables' DDL and loads are not the workload: tracked, they would be idle statements beside it
        # (2 per table), a larger share of the tracked ones at 1,000 tables than at 4,000.
        conn.execute("SET pg_stat_statements.track = 'none'")
        for first in range(0, tables, 500):
            conn.execute(
                f"DO $$ BEGIN FOR i IN {first}..{min(first + 500, tables) - 1} LOOP "
                "EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v int)', i); "
                "EXECUTE format('INSERT INTO t%s SELECT g, g FROM generate_series(1, 10) g', i); "
                "END LOOP; END $$"
            )


def run(tables: int, runs: int) -> list[list[Any]]:
    cluster = workload_cluster(f"statements-{tables}", tables)
    try:
        with cluster.connect() as conn:
            workload = bench_snapshot.workload_sql()
            conn.execute(workload)
            tracked = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]
            conn.execute("SELECT * FROM pgml_snapshot()")
            baseline_ms = []
            for _ in range(max(runs, 5)):  # at least 5 intervals: enough history to train on
                conn.execute(workload)
                baseline_ms.append(snapshot_ms(conn))
            active = conn.execute(
                "SELECT active_statements FROM pganalytics_ml.snapshots ORDER BY captured_at DESC LIMIT 1"
            ).fetchone()[0]
            try:
                conn.execute("SELECT * FROM pgml_train(1, 'linear_regression')")
            except psycopg.Error as err:  # reported, and measured on without a model
                print(f"  pgml_train failed at {tables} tables: {err}", file=sys.stderr, flush=True)
            model_ms = []
            for _ in range(runs):
                conn.execute(workload)
                model_ms.append(snapshot_ms(conn))
            forecasts = conn.execute("SELECT count(*) FROM pganalytics_ml.forecasts WHERE source = 'model'").fetchone()[
                0
            ]
        refresh = [in_new_backend(cluster, REFRESH_SQL, REFRESH_SQL) for _ in range(runs)]
        predict_all = [in_new_backend(cluster, "SELECT count(*) FROM pgml_predict_all('local')") for _ in range(runs)]
        with cluster.connect() as conn:
            conn.execute(workload)
            snapshot_peak = in_new_backend(cluster, "SELECT * FROM pgml_snapshot()")
            print(f"  sizes at {tracked:,} statements tracked: {table_sizes(conn)}", flush=True)
    finally:
        cluster.destroy()
    med = statistics.median
    return [
        [
            "pgml_snapshot(), no model (baseline forecasts)",
            tracked,
            active,
            med(w for w, _ in baseline_ms),
            med(c for _, c in baseline_ms),
            "-",
            " ".join(f"{w:.0f}" for w, _ in baseline_ms),
        ],
        [
            f"pgml_snapshot(), model active ({forecasts:,} model forecasts)",
            tracked,
            active,
            med(w for w, _ in model_ms),
            med(c for _, c in model_ms),
            snapshot_peak[1],
            " ".join(f"{w:.0f}" for w, _ in model_ms),
        ],
        [
            "forecast refresh of every statement (warm backend)",
            tracked,
            "-",
            med(r[0] for r in refresh),
            "-",
            max(r[1] for r in refresh),
            " ".join(f"{r[0]:.0f}" for r in refresh),
        ],
        [
            "pgml_predict_all('local') (new backend)",
            tracked,
            "-",
            med(r[0] for r in predict_all),
            "-",
            max(r[1] for r in predict_all),
            " ".join(f"{r[0]:.0f}" for r in predict_all),
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", default="1000,4000", help="tables of the workload (5 statements each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shared-buffers", default=None, help="e.g. 1GB (default: PostgreSQL's, 128MB)")
    args = parser.parse_args()
    if args.shared_buffers:
        EXTRA["shared_buffers"] = args.shared_buffers
    rows, started = [], time.monotonic()
    for tables in (int(t) for t in args.tables.split(",")):
        rows += run(tables, args.runs)
    print(
        f"\nBy tracked statements (median ms; {time.monotonic() - started:.0f} s in all; "
        f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])})\n"
    )
    headers = ["operation", "statements tracked", "intervals written", "median ms", "backend CPU ms (median)"]
    print_table([*headers, "peak MiB (VmHWM)", "every run, ms"], rows)
    snapshots = [r for r in rows if r[0].startswith("pgml_snapshot(), model")]
    for small, large in itertools.pairwise(snapshots):
        ratio = (large[3] / small[3]) / (large[1] / small[1])
        cpu_ratio = (large[4] / small[4]) / (large[1] / small[1])
        per_interval = (large[3] / small[3]) / (large[2] / small[2])
        print(
            f"\nSnapshot cost per statement at {large[1]:,} against {small[1]:,}: x{ratio:.2f} wall, x{cpu_ratio:.2f}"
            f" backend CPU (<= 1: linear or better); per interval written ({large[2]:,} against {small[2]:,}):"
            f" x{per_interval:.2f} wall"
        )
        print(
            f"\n  {'meets' if ratio <= 1.1 else 'MISSES'}: snapshot cost grows no worse than linearly from "
            f"{small[1]:,} to {large[1]:,} statements (x{ratio:.2f} per statement)"
        )
    for r in snapshots[:1]:
        print(f"  {'meets' if r[3] <= 1000 else 'MISSES'}: snapshot at {r[1]:,} statements <= 1 s ({r[3]:.0f} ms)")


if __name__ == "__main__":
    main()
