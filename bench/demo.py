"""The demo: a throwaway PostgreSQL 15 cluster in ./demo, a pgbench workload, and what pganalytics_ml captured.

make demo         start (or restart) it; leaves the cluster running to explore with psql
make demo-stop    stop it and remove ./demo
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from benchlib import ROOT, print_table
from pgcluster import PG_BIN, Cluster

DEMO_DIR = ROOT / "demo"
DEMO_PORT = 55499
DEMO_DB = "pgml_demo"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def pgbench(cluster: Cluster, *args: str) -> None:
    subprocess.run(
        [PG_BIN / "pgbench", *args, DEMO_DB], env=cluster.libpq_env(DEMO_DB), check=True, capture_output=True, text=True
    )


def stop() -> None:
    cluster = Cluster(base_dir=DEMO_DIR, port=DEMO_PORT)
    if cluster.data_dir.exists():
        cluster.stop("fast")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    print(f"demo cluster stopped and {DEMO_DIR} removed")


def start() -> Cluster:
    stop()
    step(f"starting a throwaway PostgreSQL 15 cluster in {DEMO_DIR} on port {DEMO_PORT}")
    cluster = Cluster(base_dir=DEMO_DIR, port=DEMO_PORT, settings={"cron.database_name": DEMO_DB, "fsync": "on"})
    cluster.init().start()
    cluster.create_database(DEMO_DB)
    with cluster.connect(DEMO_DB) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION pg_cron")
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
    return cluster


def run_demo() -> None:
    cluster = start()
    step("loading pgbench data (scale 5)")
    pgbench(cluster, "-i", "-q", "-s", "5")
    with cluster.connect(DEMO_DB) as conn:
        step("first snapshot: sets the baseline of pg_stat_statements counters")
        conn.execute("SELECT * FROM pgml_snapshot()")
        for clients in (1, 4, 2):
            step(f"pgbench for 5 s with {clients} client(s), then a snapshot")
            pgbench(cluster, "-n", "-T", "5", "-c", str(clients))
            _, statements, _, active, seconds = conn.execute("SELECT * FROM pgml_snapshot()").fetchone()
            print(f"    captured {active} active of {statements} statements over {seconds:.1f} s")
        rows = conn.execute(
            """
            SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 60), s.statement_kind,
                   sum(q.calls), round((sum(q.total_exec_time) / sum(q.calls))::numeric, 3)
              FROM pganalytics_ml.query_stats q
              JOIN pganalytics_ml.statements s USING (server_id, queryid)
             GROUP BY s.query, s.statement_kind
             ORDER BY sum(q.total_exec_time) DESC
             LIMIT 8
            """
        ).fetchall()
        print("\nStatements captured, by total time:\n")
        print_table(["statement", "kind", "calls", "mean ms"], rows)
        status = conn.execute("SELECT pgml_status()").fetchone()[0]
    print(
        f"\npgml_status(): {status['status']}, {status['statements_tracked']} statements tracked, "
        f"last snapshot {status['last_snapshot_at']}"
    )
    print("\nThe cluster is still running. Explore it with:\n")
    print(f"    psql -h {cluster.socket_dir} -p {cluster.port} -U postgres {DEMO_DB}\n")
    print("and remove it with: make demo-stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stop", action="store_true", help="stop the demo cluster and remove its directory")
    args = parser.parse_args()
    stop() if args.stop else run_demo()


if __name__ == "__main__":
    sys.exit(main())
