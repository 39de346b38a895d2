"""Cost of pgml_snapshot() with 5,000 distinct statements tracked, beside reading pg_stat_statements.

Target (foundation issue): a snapshot at 5,000 statements takes at most 1 s. Then, on the same
cluster with those 5,000 statements still tracked, pgbench (TPC-B-like) TPS without snapshots and with
a snapshot every 10 s, in alternating runs of the same length, medians.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import threading

from benchlib import PG_BIN, Cluster, bench_cluster, median_ms, print_table, time_ms

TABLES = 1000
PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 2
SNAPSHOT_EVERY = 10.0
SHAPES = (
    "SELECT count(*) FROM t{i}",
    "SELECT v FROM t{i} WHERE id = $1",
    "SELECT max(v) FROM t{i} WHERE id < $1",
    "UPDATE t{i} SET v = v + 1 WHERE id = $1",
    "SELECT id FROM t{i} ORDER BY v LIMIT 5",
)
WORKLOAD = """
DO $$
BEGIN
  FOR i IN 0..{last} LOOP
    {statements}
  END LOOP;
END $$;
"""


def workload_sql() -> str:
    statements = "\n    ".join(
        f"EXECUTE replace('{s.replace('{i}', '@')}', '@', i::text) USING (i % 10) + 1;"
        if "$1" in s
        else f"EXECUTE replace('{s.replace('{i}', '@')}', '@', i::text);"
        for s in SHAPES
    )
    return WORKLOAD.format(last=TABLES - 1, statements=statements)


def pgbench_tps(cluster: Cluster, seconds: int, snapshot_every: float | None) -> tuple[float, list[float]]:
    """TPS of one pgbench run, and the times (ms) of the snapshots taken every ``snapshot_every`` s meanwhile."""
    stop = threading.Event()
    snapshot_ms: list[float] = []

    def snapshots() -> None:
        with cluster.connect() as conn:
            while not stop.wait(snapshot_every / 2 if not snapshot_ms else snapshot_every):
                snapshot_ms.append(time_ms(lambda: conn.execute("SELECT * FROM pgml_snapshot()").fetchall()))

    thread = threading.Thread(target=snapshots) if snapshot_every else None
    if thread:
        thread.start()
    try:
        out = subprocess.run(
            [PG_BIN / "pgbench", "-n", "-T", str(seconds), "-c", str(PGBENCH_CLIENTS), "-j", str(PGBENCH_CLIENTS)],
            env=cluster.libpq_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        stop.set()
        if thread:
            thread.join()
    return float(re.search(r"tps = ([\d.]+)", out).group(1)), snapshot_ms


def tps_with_and_without(cluster: Cluster, runs: int, seconds: int) -> dict[str, object]:
    subprocess.run(
        [PG_BIN / "pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE)],
        env=cluster.libpq_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    without, with_snapshots, snapshot_ms = [], [], []
    for _ in range(runs):  # alternating, so both see the same machine
        without.append(pgbench_tps(cluster, seconds, None)[0])
        tps, taken = pgbench_tps(cluster, seconds, SNAPSHOT_EVERY)
        with_snapshots.append(tps)
        snapshot_ms += taken
    return {"without": without, "with": with_snapshots, "snapshot_ms": snapshot_ms}


def run(runs: int, tps_runs: int, tps_seconds: int) -> tuple[list[list[object]], dict[str, object] | None]:
    cluster = bench_cluster("snapshot", **{"pg_stat_statements.track": "all"})
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            conn.execute(
                f"DO $$ BEGIN FOR i IN 0..{TABLES - 1} LOOP "
                "EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v int)', i); "
                "EXECUTE format('INSERT INTO t%s SELECT g, g FROM generate_series(1, 10) g', i); "
                "END LOOP; END $$"
            )
            workload = workload_sql()
            conn.execute(workload)
            tracked = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]
            first = time_ms(lambda: conn.execute("SELECT * FROM pgml_snapshot()"))

            samples_snapshot, samples_count = [], []
            active = 0
            for _ in range(runs):
                conn.execute(workload)
                samples_count.append(time_ms(lambda: conn.execute("SELECT count(*) FROM pg_stat_statements")))
                samples_snapshot.append(time_ms(lambda: conn.execute("SELECT * FROM pgml_snapshot()").fetchall()))
                active = conn.execute(
                    "SELECT active_statements FROM pganalytics_ml.snapshots ORDER BY captured_at DESC LIMIT 1"
                ).fetchone()[0]

        def snapshot_in_new_session() -> None:
            with cluster.connect() as fresh:
                fresh.execute("SELECT * FROM pgml_snapshot()")

        cold, _ = median_ms(snapshot_in_new_session, 3)
        tps = tps_with_and_without(cluster, tps_runs, tps_seconds) if tps_runs else None
    finally:
        cluster.destroy()

    snap = statistics.median(samples_snapshot)
    count = statistics.median(samples_count)
    return [
        ["SELECT count(*) FROM pg_stat_statements (baseline)", tracked, "-", count, runs],
        ["pgml_snapshot(), steady state, warm session", tracked, active, snap, runs],
        ["pgml_snapshot(), new session (loads Python)", tracked, "-", cold, 3],
        ["pgml_snapshot(), first: baseline + parse every text", tracked, tracked, first, 1],
    ], tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tps-runs", type=int, default=3, help="pgbench runs with and without snapshots (0: none)")
    parser.add_argument("--tps-seconds", type=int, default=30, help="length of each pgbench run")
    args = parser.parse_args()
    rows, tps = run(args.runs, args.tps_runs, args.tps_seconds)
    print("\nSnapshot cost with ~5,000 distinct statements in pg_stat_statements (median ms)\n")
    print_table(["operation", "statements tracked", "intervals written", "median ms", "runs"], rows)
    steady = rows[1][3]
    verdict = "meets" if steady <= 1000 else "MISSES"
    print(f"\n  {verdict}: steady-state snapshot at ~5,000 statements <= 1,000 ms (measured {steady:.0f} ms)")
    if tps is not None:
        without, with_snapshots = statistics.median(tps["without"]), statistics.median(tps["with"])
        print(
            f"\npgbench TPC-B-like, scale {PGBENCH_SCALE}, {PGBENCH_CLIENTS} clients, {args.tps_seconds} s runs, "
            f"alternating, median of {args.tps_runs} each; ~5,000 statements tracked\n"
        )
        print_table(
            ["pgbench", "TPS (median)", "min", "max", "snapshots taken", "snapshot median ms"],
            [
                ["without snapshots (baseline)", without, min(tps["without"]), max(tps["without"]), 0, "-"],
                [
                    f"with pgml_snapshot() every {SNAPSHOT_EVERY:g} s",
                    with_snapshots,
                    min(tps["with"]),
                    max(tps["with"]),
                    len(tps["snapshot_ms"]),
                    statistics.median(tps["snapshot_ms"]) if tps["snapshot_ms"] else "-",
                ],
            ],
        )
        print(f"\nTPS with a snapshot every {SNAPSHOT_EVERY:g} s: {with_snapshots / without - 1:+.1%} against without")


if __name__ == "__main__":
    main()
