"""Prediction speed: pgml_predict against SELECT 1 (the ceiling) and against the architecture it replaces.

Targets (learning-loop issue): warm median <= 1 ms per pgml_predict call; the first call in a new
connection <= 300 ms; pgml_predict_all() over 10,000 statements <= 1 s. The replaced architecture is
a small Python HTTP service that reads a statement's history with psycopg and runs the same model
per request (bench/http_baseline.py), driven by wrk as pgbench drives PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchlib import PG_BIN, ROOT, Cluster, bench_cluster, median_ms, print_table
from pgcluster import free_port

DB = "bench"
SECONDS = 5
CLIENT_LEVELS = (1, 2, 8)
PLOTS = Path(__file__).resolve().parent / "plots"


def load_synthetic_history(cluster: Cluster, server_id: str, statements: int, captures: int = 8) -> None:
    """Cumulative collector payloads for ``statements`` statements, then a model trained on them."""
    rng = np.random.default_rng(7)
    levels = np.exp(rng.uniform(-3, 4, statements))
    calls, total = np.zeros(statements), np.zeros(statements)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with cluster.connect(DB) as conn:
        for k in range(captures):
            n = rng.integers(50, 200, statements)
            calls += n
            total += n * levels * np.exp(rng.normal(0, 0.1, statements))
            rows = [
                {"queryid": i - statements // 2, "calls": int(c), "total_exec_time": float(t)}
                for i, (c, t) in enumerate(zip(calls, total, strict=True))
            ]
            payload = {"captured_at": (start + timedelta(minutes=5 * k)).isoformat(), "rows": rows}
            conn.execute("SELECT pgml_ingest_stats(%s, %s::jsonb)", (server_id, json.dumps(payload)))
        conn.execute("SELECT * FROM pgml_train(90, 'random_forest', %s)", (server_id,))


def pgbench(cluster: Cluster, script: str, clients: int) -> tuple[float, float, float]:
    """TPS, p50 and p99 latency (ms) of ``script`` for SECONDS with ``clients`` connections."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(script)
        result = subprocess.run(
            [
                PG_BIN / "pgbench",
                "-n",
                "-T",
                str(SECONDS),
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-f",
                path,
                "-l",
                "--log-prefix",
                str(Path(tmp) / "log"),
                DB,
            ],
            env=cluster.libpq_env(DB),
            capture_output=True,
            text=True,
            check=True,
        )
        latencies = np.concatenate([np.loadtxt(f, usecols=2, ndmin=1) for f in Path(tmp).glob("log*")]) / 1000
    tps = float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))
    return tps, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


WRK_SCRIPT = """
math.randomseed(7)
request = function()
  return wrk.format("GET", "/predict?query_hash=" .. (math.random(1, %d) - %d))
end
"""


def wrk(port: int, statements: int, clients: int) -> tuple[float, float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % (statements, statements // 2 + 1))
        script.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(min(clients, 2)),
                "-c",
                str(clients),
                "-d",
                f"{SECONDS}s",
                "--latency",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    tps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def percentile(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return tps, percentile("50"), percentile("99")


def median_of(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(statistics.median(r[i] for r in runs) for i in range(3))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cluster = bench_cluster("predict")
    service = None
    try:
        cluster.create_database(DB)
        with cluster.connect(DB) as conn:
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        load_synthetic_history(cluster, "s1k", 1_000)
        load_synthetic_history(cluster, "s10k", 10_000)

        predict = "\\set i random(1, 10000)\nSELECT * FROM pgml_predict(:i - 5001, 's10k');\n"
        rows = []
        port = free_port()
        service = subprocess.Popen(
            [
                sys.executable,
                ROOT / "bench" / "http_baseline.py",
                "--dsn",
                cluster.conninfo(DB),
                "--server-id",
                "s10k",
                "--port",
                str(port),
                "--warmup-hash",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert service.stdout is not None and service.stdout.readline().strip() == "ready"
        for clients in CLIENT_LEVELS:
            ceiling = median_of([pgbench(cluster, "SELECT 1;\n", clients) for _ in range(args.runs)])
            ours = median_of([pgbench(cluster, predict, clients) for _ in range(args.runs)])
            http = median_of([wrk(port, 10_000, clients) for _ in range(args.runs)])
            rows += [
                ["SELECT 1 (ceiling)", clients, *ceiling],
                ["pgml_predict (SQL)", clients, *ours],
                ["Python HTTP service (replaced)", clients, *http],
            ]

        def first_call() -> tuple[float, float]:
            start = time.perf_counter()
            conn = cluster.connect(DB)
            connected = time.perf_counter()
            conn.execute("SELECT * FROM pgml_predict(17, 's10k')").fetchall()
            done = time.perf_counter()
            conn.close()
            return (connected - start) * 1000, (done - connected) * 1000

        cold = [first_call() for _ in range(10)]
        with cluster.connect(DB) as conn:
            all_1k, _ = median_ms(lambda: conn.execute("SELECT count(*) FROM pgml_predict_all('s1k')"), 5)
            all_10k, _ = median_ms(lambda: conn.execute("SELECT count(*) FROM pgml_predict_all('s10k')"), 5)
            logged_10k, _ = median_ms(lambda: conn.execute("SELECT count(*) FROM pgml_predict_all('s10k', true)"), 5)
            sources = conn.execute("SELECT source, count(*) FROM pganalytics_ml.forecasts GROUP BY 1").fetchall()
    finally:
        if service is not None:
            service.terminate()
        cluster.destroy()

    print(
        f"\nPrediction throughput and latency, {SECONDS} s per run, median of {args.runs} runs "
        f"(forecast sources: {dict(sources)})\n"
    )
    print_table(["predictor", "clients", "calls/s", "p50 ms", "p99 ms"], rows)
    print("\nFirst pgml_predict in a brand-new connection (10 connections)\n")
    connect_ms = [c for c, _ in cold]
    first_ms = [f for _, f in cold]
    print_table(
        ["measure", "median ms", "max ms"],
        [
            ["connect", statistics.median(connect_ms), max(connect_ms)],
            ["first pgml_predict after connect", statistics.median(first_ms), max(first_ms)],
        ],
    )
    print("\npgml_predict_all() (median of 5)\n")
    print_table(
        ["statements", "median ms", "logged"],
        [[1_000, all_1k, "no"], [10_000, all_10k, "no"], [10_000, logged_10k, "yes"]],
    )
    warm = next(r for r in rows if r[0].startswith("pgml_predict") and r[1] == 1)[3]
    checks = [
        (f"warm median <= 1 ms per pgml_predict, 1 client (measured {warm:.3f} ms)", warm <= 1),
        (f"first call in a new connection <= 300 ms (measured at most {max(first_ms):.0f} ms)", max(first_ms) <= 300),
        (f"pgml_predict_all() over 10,000 statements <= 1 s (measured {all_10k:.0f} ms)", all_10k <= 1000),
    ]
    for name, ok in checks:
        print(f"  {'meets' if ok else 'MISSES'}: {name}")
    print(f"\nPlot: {plot(rows, PLOTS / 'predict.png')}")


def plot(rows: list[list[object]], path: Path) -> Path:
    """Throughput and latency per client count, one line per predictor."""
    import live_accuracy

    plt = live_accuracy.pyplot()
    fig, (rate_ax, latency_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        clients = [r[1] for r in mine]
        (line,) = rate_ax.plot(clients, [r[2] for r in mine], marker="o", label=name)
        latency_ax.plot(clients, [r[3] for r in mine], marker="o", color=line.get_color(), label=f"{name} p50")
        latency_ax.plot(clients, [r[4] for r in mine], linestyle="--", color=line.get_color(), label=f"{name} p99")
    rate_ax.set(xlabel="clients", ylabel="calls/s", yscale="log", title="throughput", xticks=list(CLIENT_LEVELS))
    latency_ax.set(xlabel="clients", ylabel="ms", yscale="log", title="latency", xticks=list(CLIENT_LEVELS))
    for ax in (rate_ax, latency_ax):
        ax.grid(True, which="both", alpha=0.2)
    rate_ax.legend(fontsize=8)
    latency_ax.legend(fontsize=7)
    return live_accuracy.save(fig, path)


if __name__ == "__main__":
    main()
