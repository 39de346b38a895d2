"""Training time and peak memory of pgml_train at 10k, 100k and 1M samples, per model type.

Each figure is a real pgml_train call in a brand-new backend; peak memory is that backend's
VmHWM (/proc/self/status read through pg_read_file). The baseline, measured the same way in the same
run, loads the same history and builds the same features without fitting anything (the part of
training every model type shares). A sample is one statement-interval with 3 earlier intervals:
history of 100, 1,000 and 10,000 statements over 104 captures (bench/synthetic_history.py).

Then (issue 13) pgml_train for every model type on histories of 100k, 1M and 10M intervals (1,000
statements over 103 and 1,030 intervals, 2,000 over 5,150), as installed (the bounded sample) and on
the whole history where it fits: wall time, the backend's CPU time (/proc/self/stat: what the figure
would be on an idle machine), peak memory, samples used of those available, holdout q-errors.
Targets: <= 1 GB and <= 2 min for every model type at every size; random_forest <= 30 s at 100k
samples; the sample's holdout p90 q-error within 2% of the whole history's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import synthetic_history as synthetic
from benchlib import Cluster, bench_cluster, print_table

DB = "bench"
MODEL_TYPES = ("linear_regression", "decision_tree", "random_forest", "gradient_boosting")
CAPTURES = 104  # 103 intervals: 100 samples per statement
TEMPLATE_STATEMENTS = 100
SIZES = (10_000, 100_000, 1_000_000)
PLOTS = Path(__file__).resolve().parent / "plots"

BASELINE_SQL = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import features, history, training
start, end = training._window(plpy, {server!r}, 1)
data = history.training_set(plpy, {server!r}, start.isoformat(), end.isoformat())
features.feature_matrix(data.windows)
$$ LANGUAGE plpython3u
"""


def peak_mib(conn: Any) -> float:
    status = conn.execute("SELECT pg_read_file('/proc/self/status')").fetchone()[0]
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def measure(cluster: Cluster, sql: str, params: Any = None) -> tuple[float, float, Any]:
    """Seconds and peak MiB of ``sql`` in a new backend, and its first row."""
    with cluster.connect(DB) as conn:
        start = time.perf_counter()
        cur = conn.execute(sql, params)
        seconds = time.perf_counter() - start
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True)) if cur.description else None
        return seconds, peak_mib(conn), row


def build_history(cluster: Cluster, sizes: tuple[int, ...]) -> dict[int, str]:
    """One server per size, all copies of one ingested template."""
    servers = {}
    with cluster.connect(DB) as conn:
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        synthetic.ingest_template(conn, "train-template", TEMPLATE_STATEMENTS, CAPTURES)
        for size in sizes:
            servers[size] = f"train-{size}"
            copies = size // synthetic.samples(TEMPLATE_STATEMENTS, CAPTURES)
            synthetic.clone_server(conn, "train-template", servers[size], copies)
    return servers


BASELINE = "baseline: load history + build features, no fit"
IMPORT_SQL = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import sklearn.ensemble, sklearn.linear_model, sklearn.pipeline, sklearn.preprocessing, sklearn.tree
$$ LANGUAGE plpython3u
"""


def repeat(cluster: Cluster, sql: str, params: Any, runs: int, cell_budget: float) -> list[tuple[float, float, Any]]:
    """Up to ``runs`` measurements; a further run only while the cell's total stays within ``cell_budget`` s."""
    samples = [measure(cluster, sql, params)]
    while len(samples) < runs and sum(s for s, _, _ in samples) * (len(samples) + 1) / len(samples) <= cell_budget:
        samples.append(measure(cluster, sql, params))
    return samples


# Histories of the bounded-training part (issue 13): statements x intervals, as copies of the template
# (statement copies x back-to-back stretches of its 103 intervals).
# copies of the template's statements, stretches of its time span, and further copies of that whole span
# back in time (100M: the 10M history's 2,000 statements over ten times its 5,150 intervals, 179 days)
HISTORIES = {"100k": (10, 1, 0), "1M": (10, 10, 0), "10M": (20, 50, 0), "100M": (20, 50, 9)}
FULL_SETTINGS = (
    "SET pganalytics_ml.training_max_samples = 0; SET pganalytics_ml.training_max_samples_per_statement = 0; "
    "SET pganalytics_ml.training_memory_limit = '64GB'"
)
FULL_FITS = ("100k", "1M")  # the whole 10M history would need ~27 GB: more than this machine has
TRAIN_SQL = "SELECT * FROM pgml_train(3650, %s, %s)"
LOAD_SQL = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.forecasting import history, training
start, end = training._window(plpy, {server!r}, 3650)
data = history.training_set(plpy, {server!r}, start.isoformat(), end.isoformat())
history.chunked_features(data.windows)
$$ LANGUAGE plpython3u
"""


def cpu_seconds(conn: Any) -> float:
    fields = conn.execute("SELECT pg_read_file('/proc/self/stat')").fetchone()[0].rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def measure_bounded(cluster: Cluster, sql: str, params: Any, settings: str | None) -> dict[str, Any]:
    """Wall and CPU seconds, peak MiB and first row of ``sql`` in a new backend, after ``settings``."""
    with cluster.connect(DB) as conn:
        for statement in (settings or "").split(";"):
            if statement.strip():
                conn.execute(statement)
        cpu = cpu_seconds(conn)
        start = time.perf_counter()
        cur = conn.execute(sql, params)
        seconds = time.perf_counter() - start
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True)) if cur.description else {}
        return {"seconds": seconds, "cpu": cpu_seconds(conn) - cpu, "peak_mib": peak_mib(conn), "row": row}


def measure_runs(cluster: Cluster, sql: str, params: Any, settings: str | None, runs: int) -> dict[str, Any]:
    """``measure_bounded`` ``runs`` times: median wall and CPU, the highest peak, and every run."""
    every = [measure_bounded(cluster, sql, params, settings) for _ in range(runs)]
    return {
        "seconds": statistics.median(r["seconds"] for r in every),
        "cpu": statistics.median(r["cpu"] for r in every),
        "peak_mib": max(r["peak_mib"] for r in every),
        "row": every[-1]["row"],
        "every": " ".join(f"{r['seconds']:.0f}/{r['cpu']:.1f}" for r in every),
    }


def _progress(name: str) -> Any:
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        print(f"  history {name}: {done}/{total} copies back after {time.monotonic() - started:.0f} s", file=sys.stderr)

    return report


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bounded(
    cluster: Cluster, names: list[str], model_types: list[str], full: bool, auto: bool, runs: int = 1
) -> list[list[Any]]:
    """pgml_train on each history: default settings (bounded), and the whole history where it fits."""
    rows = []
    with cluster.connect(DB) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pganalytics_ml CASCADE")
        if not conn.execute("SELECT 1 FROM pganalytics_ml.snapshots WHERE server_id = 'bounded-template'").fetchone():
            synthetic.ingest_template(conn, "bounded-template", TEMPLATE_STATEMENTS, CAPTURES)
        for name in names:
            copies, stretches, back = HISTORIES[name]
            started = time.monotonic()
            built = synthetic.clone_history(conn, "bounded-template", f"history-{name}", copies, stretches)
            if back:
                built = synthetic.extend_back(conn, f"history-{name}", back, progress=_progress(name))
            # vacuumed and checkpointed, as a history written over days would have been by autovacuum
            conn.execute("VACUUM (ANALYZE) pganalytics_ml.query_stats, pganalytics_ml.snapshots")
            conn.execute("CHECKPOINT")
            print(f"  history {name}: {built:,} intervals in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for name in names:
        server = f"history-{name}"
        modes = [("bounded (defaults)", None)] + (
            [("whole history", FULL_SETTINGS)] if full and name in FULL_FITS else []
        )
        for mode, settings in modes:
            r = measure_runs(cluster, LOAD_SQL.format(server=server), None, settings, runs)
            rows.append(
                [
                    name,
                    "load + features, no fit",
                    mode,
                    "-",
                    r["seconds"],
                    r["cpu"],
                    r["peak_mib"],
                    "-",
                    "-",
                    load_average(),
                    r["every"],
                ]
            )
            for model_type in model_types + (["auto"] if auto and name == names[-1] and settings is None else []):
                r = measure_runs(cluster, TRAIN_SQL, (model_type, server), settings, runs)
                t = r["row"]
                rows.append(
                    [
                        name,
                        model_type,
                        mode,
                        f"{t['samples_used']:,} / {t['samples_available']:,}",
                        r["seconds"],
                        r["cpu"],
                        r["peak_mib"],
                        t["q_error_p50"],
                        t["q_error_p90"],
                        load_average(),
                        r["every"],
                    ]
                )
                print(f"  {name} {model_type} {mode}: {r['seconds']:.0f} s", file=sys.stderr, flush=True)
    return rows


BOUNDED_HEADERS = [
    "history (intervals)",
    "model type",
    "settings",
    "samples used / available",
    "wall s",
    "backend CPU s",
    "peak MiB (VmHWM)",
    "holdout q p50",
    "holdout q p90",
    "load average (1/5/15 min)",
    "every run (wall s / CPU s)",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (fewer where one run is long)")
    parser.add_argument("--cell-budget", type=float, default=90, help="seconds of repeated runs per figure")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated sample counts")
    parser.add_argument(
        "--budget", type=float, default=240, help="skip a model type at a size projected to take longer (s)"
    )
    parser.add_argument(
        "--histories",
        default="100k,1M,10M",
        help="bounded-training histories (issue 13): any of " + ", ".join(HISTORIES) + " (100M runs on its own)",
    )
    parser.add_argument("--no-full", action="store_true", help="skip training on the whole history")
    parser.add_argument("--no-auto", action="store_true", help="skip model type auto on the largest history")
    parser.add_argument("--skip-sizes", action="store_true", help="only the bounded-training part")
    parser.add_argument("--bounded-runs", type=int, default=1, help="runs per figure of the bounded-training part")
    parser.add_argument("--plot", type=Path, default=PLOTS / "training.png")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    cluster = bench_cluster("training")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    started = time.monotonic()
    bounded_rows: list[list[Any]] = []
    try:
        cluster.create_database(DB)
        if not args.skip_sizes:
            servers = build_history(cluster, sizes)
            history_seconds = time.monotonic() - started
            imports = summarize([measure(cluster, IMPORT_SQL) for _ in range(args.runs)])
            for size in sizes:
                server = servers[size]
                baseline_sql = BASELINE_SQL.format(server=server)
                results[(BASELINE, size)] = summarize(repeat(cluster, baseline_sql, None, args.runs, args.cell_budget))
                for model_type in MODEL_TYPES:
                    estimate = projected_seconds(results, model_type, size, sizes)
                    if estimate is not None and estimate > args.budget:
                        results[(model_type, size)] = {"skipped": estimate}
                        continue
                    train_sql = "SELECT * FROM pgml_train(1, %s, %s)"
                    samples = repeat(cluster, train_sql, (model_type, server), args.runs, args.cell_budget)
                    trained = samples[-1][2]
                    results[(model_type, size)] = summarize(samples) | {
                        "samples": trained["training_samples"] + trained["holdout_samples"]
                    }
                print(f"  {size:,} samples done after {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        if args.histories:
            bounded_rows = bounded(
                cluster,
                args.histories.split(","),
                list(MODEL_TYPES),
                not args.no_full,
                not args.no_auto,
                args.bounded_runs,
            )
    finally:
        cluster.destroy()

    if not args.skip_sizes:
        report_sizes(results, sizes, args, history_seconds, imports)
    if bounded_rows:
        print(
            f"\npgml_train on long histories (issue 13), each call in a new backend, median of {args.bounded_runs} "
            "run(s); "
            "a history is 1,000 or 2,000 statements over 103 to 5,150 intervals of 5 minutes; "
            "'bounded (defaults)' is pgml_train as installed (training_max_samples 200,000, "
            "training_max_samples_per_statement 1,000, training_memory_limit 1GB); 'whole history' sets "
            "the sample limits to 0 (none) and the memory limit to 64GB\n"
        )
        print_table(BOUNDED_HEADERS, bounded_rows)
        print()
        for line in verdicts(bounded_rows):
            print(f"  {line}")


def verdicts(rows: list[list[Any]]) -> list[str]:
    """One line per target of issue 13, from the bounded-training table."""
    out = []
    trained = [r for r in rows if r[1] in (*MODEL_TYPES, "auto")]
    for name, model_type, mode, _, wall, cpu, peak, *_ in trained:
        if mode.startswith("bounded") and model_type != "auto":
            ok = peak <= 1024 and wall <= 120
            out.append(
                f"{'meets' if ok else 'MISSES'}: {model_type} on {name} intervals within 1 GB and 2 min "
                f"(peak {peak:,.0f} MiB, {wall:.0f} s wall, {cpu:.0f} s backend CPU)"
            )
        if name == "100k" and model_type == "random_forest" and mode.startswith("bounded"):
            out.append(
                f"{'meets' if wall <= 30 else 'MISSES'}: the default model type (random_forest) within 30 s at "
                f"100k samples ({wall:.0f} s wall, {cpu:.0f} s backend CPU)"
            )
    full = {(r[0], r[1]): r for r in trained if r[2] == "whole history"}
    for (name, model_type), whole in full.items():
        sample = next(r for r in trained if r[0] == name and r[1] == model_type and r[2].startswith("bounded"))
        change = sample[8] / whole[8] - 1
        out.append(
            f"{'meets' if change <= 0.02 else 'MISSES'}: {model_type} on {name} intervals, holdout p90 q-error with "
            f"the sample within 2% of the whole history's ({sample[8]:.4f} against {whole[8]:.4f}, {change:+.1%})"
        )
    return out


def report_sizes(results: dict, sizes: tuple[int, ...], args: Any, history_seconds: float, imports: dict) -> None:
    print(
        f"\npgml_train per model type, each call in a new backend (median of up to {args.runs} runs; fewer where "
        f"one run is long); history of {len(sizes)} servers built in {history_seconds:.0f} s\n"
    )
    labels = [BASELINE, *MODEL_TYPES]
    rows = []
    for label in labels:
        for size in sizes:
            r = results[(label, size)]
            if "skipped" in r:
                rows.append([label, f"{size:,}", "-", f"skipped: projected {r['skipped']:.0f} s", "-", "-"])
            else:
                rows.append([label, f"{size:,}", f"{r.get('samples', size):,}", r["seconds"], r["peak_mib"], r["runs"]])
    print_table(["model type", "samples", "trained on", "median s", "peak MiB (VmHWM)", "runs"], rows)
    print(
        f"\nIncluded in every figure above: a new backend loading the package and importing scikit-learn takes "
        f"{imports['seconds']:.2f} s and {imports['peak_mib']:.0f} MiB (median of {imports['runs']})."
    )
    skipped = [f"{label} at {size:,}" for (label, size), r in results.items() if "skipped" in r]
    if skipped:
        print(
            f"Skipped, as their time projected linearly from the next smaller size exceeds {args.budget:.0f} s: "
            + ", ".join(skipped)
            + "."
        )
    print("\nGrowth of time and memory per 10x samples, between the smallest and largest size measured:\n")
    growth = []
    for label in labels:
        measured = [(s, results[(label, s)]) for s in sizes if "seconds" in results[(label, s)]]
        if len(measured) >= 2:
            (s0, r0), (s1, r1) = measured[0], measured[-1]
            decades = math.log10(s1 / s0)
            growth.append(
                [
                    label,
                    f"{s0:,} -> {s1:,}",
                    f"x{(r1['seconds'] / r0['seconds']) ** (1 / decades):.1f}",
                    f"x{(r1['peak_mib'] / r0['peak_mib']) ** (1 / decades):.1f}",
                ]
            )
    print_table(["model type", "sizes", "time per 10x", "peak memory per 10x"], growth)
    plot(results, labels, sizes, args.plot)
    print(f"\nPlot: {args.plot}")


def summarize(samples: list[tuple[float, float, Any]]) -> dict[str, Any]:
    return {
        "seconds": statistics.median(s for s, _, _ in samples),
        "peak_mib": statistics.median(m for _, m, _ in samples),
        "runs": len(samples),
    }


def projected_seconds(
    results: dict[tuple[str, int], dict[str, Any]], model_type: str, size: int, sizes: tuple[int, ...]
) -> float | None:
    """The time at ``size`` extrapolated linearly from the largest smaller size measured (None: unknown)."""
    smaller = [s for s in sizes if s < size and "seconds" in results.get((model_type, s), {})]
    if not smaller:
        return None
    base = max(smaller)
    return results[(model_type, base)]["seconds"] * size / base


def plot(results: dict[tuple[str, int], dict[str, Any]], labels: list[str], sizes: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label in labels:
        measured = [s for s in sizes if "seconds" in results[(label, s)]]
        style = {"linestyle": "--", "color": "black"} if label.startswith("baseline") else {"marker": "o"}
        name = "baseline (no fit)" if label.startswith("baseline") else label
        (line,) = time_ax.plot(measured, [results[(label, s)]["seconds"] for s in measured], label=name, **style)
        for s in sizes:
            if "skipped" in results[(label, s)]:
                time_ax.plot([s], [results[(label, s)]["skipped"]], marker="x", color=line.get_color())
                time_ax.annotate(
                    "skipped (projected)",
                    (s, results[(label, s)]["skipped"]),
                    fontsize=7,
                    xytext=(-90, -3),
                    textcoords="offset points",
                )
        memory_ax.plot(measured, [results[(label, s)]["peak_mib"] for s in measured], label=name, **style)
    for ax, title, unit in ((time_ax, "pgml_train time", "seconds"), (memory_ax, "backend peak memory", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training samples")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    time_ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
