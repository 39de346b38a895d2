"""Live accuracy of the online combination per workload, its regression alarm, and the cost of its update.

Targets (issue 12), on the live scores of every workload, each judged alone: p50 q-error no worse
than the best naive forecaster (last interval, long-run mean) measured on the same predictions; p90
at least 10% better than it (15% on the growth and cycle workloads); the 90% interval covering
87-93% once 5 live snapshots have passed; planted regressions all flagged within two snapshots, with
false alarms on at most 1% of the (statement, interval) pairs where nothing was planted; the online
update adding at most 20% to a snapshot at 5,000 statements.

Workloads, each on a fresh cluster: three synthetic shapes (forecast_workloads.py: abrupt frequent load
switches, data growing while it runs, a cycle compressed in time) sent through pgml_ingest_stats, so
they go through the real capture, training, forecast and validation path; and the existing mixed live
SQL workload (mixed_workload.py: pgbench at two scales, analytics, growing orders), in which the index
two statements use is dropped half-way through the live part. The synthetic workloads also run, in
the same cluster and from the same counters, as a second server with the combination switched off
(pganalytics_ml.forecast_combination = off): the forecasts of 0.2.0 (EWMA or model), for reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import forecast_workloads as fw
import numpy as np

import mixed_workload
from benchlib import bench_cluster, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_pkg"))

from pganalytics_ml.forecasting.online import SUMS, unpack

DB = "bench"


class Progress:
    """One line on stderr per step, with the time since the start."""

    def __init__(self, steps: int):
        self.steps, self.done, self.started = steps, 0, time.monotonic()

    def step(self, what: str) -> None:
        self.done += 1
        print(f"  [{time.monotonic() - self.started:6.0f} s] {self.done}/{self.steps} {what}", file=sys.stderr)


FORECASTERS = ("last", "ewma", "since_change", "longrun", "trend", "server_load", "seasonal", "model", "server_next")
WARMUP = 5
TARGET_P90 = {"switches": 0.10, "growth": 0.15, "cycle": 0.15, "mixed": 0.10}
SCORED = """
SELECT p.queryid, p.predicted_ms, p.actual_ms, p.within_interval, extract(epoch FROM p.validated_at)::float8,
       (SELECT q.mean_exec_time FROM pganalytics_ml.query_stats q
         WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end = p.based_on) AS last_ms,
       (SELECT sum(q.total_exec_time) / sum(q.calls) FROM pganalytics_ml.query_stats q
         WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end <= p.based_on) AS longrun_ms,
       p.expert_ms, p.confidence
  FROM pganalytics_ml.predictions p
 WHERE p.server_id = %s AND p.validated_by = 'observed' AND p.actual_ms > 0
 ORDER BY p.validated_at, p.queryid
"""


def q_error(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.maximum(predicted / actual, actual / predicted)


@dataclasses.dataclass
class Live:
    n: int
    p50: float
    p90: float
    last: tuple[float, float]
    longrun: tuple[float, float]
    coverage: float  # after the warm-up
    confidence_mean: float  # mean stated confidence, after the warm-up
    within_25: float  # share actually within 25%, after the warm-up
    forecasters: dict[str, tuple[float, float]]

    @property
    def best_naive_p50(self) -> float:
        return min(self.last[0], self.longrun[0])

    @property
    def best_naive_p90(self) -> float:
        return min(self.last[1], self.longrun[1])


def live_scores(conn: Any, server_id: str, warm_after: float) -> Live:
    rows = [r for r in conn.execute(SCORED, (server_id,)).fetchall() if r[5] and r[6]]
    actual = np.array([r[2] for r in rows])
    predicted = np.array([r[1] for r in rows])
    at = np.array([r[4] for r in rows])
    warm = at > warm_after
    q = q_error(predicted, actual)

    def pct(values: np.ndarray) -> tuple[float, float]:
        return (round(float(np.percentile(values, 50)), 3), round(float(np.percentile(values, 90)), 3))

    forecasters = {}
    experts = np.array(
        [[np.nan if v is None else v for v in (r[7] or [None] * len(FORECASTERS))] for r in rows], dtype=float
    )
    for i, name in enumerate(FORECASTERS):
        column = experts[:, i] if len(experts) else np.zeros(0)
        ok = np.isfinite(column) & (column > 0)
        if ok.sum() >= 20:
            forecasters[name] = pct(q_error(column[ok], actual[ok]))
    return Live(
        n=len(rows),
        p50=pct(q)[0],
        p90=pct(q)[1],
        last=pct(q_error(np.array([r[5] for r in rows]), actual)),
        longrun=pct(q_error(np.array([r[6] for r in rows]), actual)),
        coverage=round(float(np.mean([r[3] for r, w in zip(rows, warm, strict=True) if w])), 4),
        confidence_mean=round(float(np.mean([r[8] for r, w in zip(rows, warm, strict=True) if w])), 3),
        within_25=round(float(np.mean(q[warm] <= 1.25)), 3),
        forecasters=forecasters,
    )


def error_breakdown(conn: Any, server_id: str, sender: fw.Sender, w: fw.Workload) -> dict[str, tuple]:
    """p90 q-error of the combination and of the last interval, on intervals where the load changed and elsewhere."""
    changed_at = {round(sender.at(t).timestamp()) for t in np.flatnonzero(w.load_changed())}
    rows = [r for r in conn.execute(SCORED, (server_id,)).fetchall() if r[5] and r[6]]
    out = {}
    for label, pick in (("load changed", True), ("load steady", False)):
        mine = [r for r in rows if (round(r[4]) in changed_at) == pick]
        if len(mine) >= 20:
            actual = np.array([r[2] for r in mine])
            combined = np.percentile(q_error(np.array([r[1] for r in mine]), actual), 90)
            last = np.percentile(q_error(np.array([r[5] for r in mine]), actual), 90)
            out[label] = (len(mine), round(float(combined), 3), round(float(last), 3))
    return out


@dataclasses.dataclass
class Alarms:
    planted: int
    detected: int  # within two snapshots of the onset
    delays: list[int]
    false_alarms: int
    pairs: int  # (statement, interval) pairs where nothing was planted

    @property
    def recall(self) -> float:
        return self.detected / self.planted if self.planted else float("nan")

    @property
    def false_rate(self) -> float:
        return self.false_alarms / self.pairs if self.pairs else float("nan")


def score_alarms(flagged: list[set[int]], active: list[set[int]], onsets: dict[int, int], ran: list[set[int]]):
    """flagged[t]: alarms after live capture t; active[t]: planted regressions in effect; ran[t]: statements."""
    delays, detected = [], 0
    for qid, onset in onsets.items():
        hits = [t for t in range(onset, len(flagged)) if qid in flagged[t]]
        if hits:
            delays.append(hits[0] - onset + 1)
            detected += hits[0] - onset + 1 <= 2
    false_alarms = sum(len(flagged[t] - active[t]) for t in range(len(flagged)))
    pairs = sum(len(ran[t] - active[t]) for t in range(len(flagged)))
    return Alarms(len(onsets), detected, delays, false_alarms, pairs)


@dataclasses.dataclass
class Run:
    workload: str
    seed: int
    live: Live
    reference: Live | None  # the same counters with the combination off (0.2.0's forecasts)
    alarms: Alarms
    trained: dict
    seconds: float
    breakdown: dict = dataclasses.field(default_factory=dict)


def trained_row(conn: Any, server_id: str, model_type: str) -> dict:
    cur = conn.execute("SELECT * FROM pgml_train(2, %s, %s)", (model_type, server_id))  # the history ends at midnight
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


# --dump: per live tick, each statement's state as the alarm saw it, and at the end the captured intervals
# (for reading what the alarms are made of offline; not part of the verdicts).
_TICK_STATE = """
SELECT f.queryid, f.predicted_ms, f.alarm_upper_ms, f.checked_observed_ms, f.checked_upper_ms, f.consecutive_above,
       f.server_shift, f.load_mu, f.packed
  FROM pganalytics_ml.forecasts f
 WHERE f.server_id = %s AND f.packed IS NOT NULL
"""
_DUMPS = {
    "query_stats": "SELECT queryid, extract(epoch FROM interval_start)::float8,"
    " extract(epoch FROM interval_end)::float8, calls, total_exec_time FROM pganalytics_ml.query_stats"
    " WHERE server_id = %s ORDER BY interval_end, queryid",
    "snapshots": "SELECT extract(epoch FROM interval_start)::float8, extract(epoch FROM captured_at)::float8,"
    " server_calls, server_exec_time FROM pganalytics_ml.snapshots WHERE server_id = %s ORDER BY captured_at",
    "statements": "SELECT queryid, left(query, 80), is_internal FROM pganalytics_ml.statements WHERE server_id = %s",
}


class Dump:
    def __init__(self, directory: str | None, name: str):
        self.path = f"{directory}/{name}.json" if directory else None
        self.ticks: list[dict] = []

    def tick(self, conn: Any, server_id: str, flagged: set[int], active: set[int]) -> None:
        if self.path:
            # forecasts.packed decoded: load_sdl, load_sll, alarm_scale and err_scale after load_mu
            rows = [
                [*r[:-1], *(sums[0, SUMS.index(k)] for k in ("load_sdl", "load_sll", "alarm_scale", "err_scale"))]
                for r in conn.execute(_TICK_STATE, (server_id,)).fetchall()
                for sums in [unpack([r[-1]])[0]]
            ]
            self.ticks.append({"rows": rows, "flagged": sorted(flagged), "active": sorted(active)})

    def write(self, conn: Any, server_id: str, **extra: Any) -> None:
        if self.path:
            import json

            out = {k: [list(r) for r in conn.execute(q, (server_id,)).fetchall()] for k, q in _DUMPS.items()}
            with open(self.path, "w") as f:
                json.dump({"ticks": self.ticks, **out, **extra}, f, default=float)


def alarms_now(conn: Any, server_id: str) -> set[int]:
    rows = conn.execute("SELECT query_hash FROM pganalytics_ml.regressions WHERE server_id = %s", (server_id,))
    return {r[0] for r in rows.fetchall()}


def synthetic_run(
    shape: str, seed: int, statements: int, train: int, live: int, model_type: str, dump_dir: str | None = None
) -> Run:
    started = time.monotonic()
    dump = Dump(dump_dir, f"{shape}-{seed}")
    w = fw.make(shape, statements, train, live, seed)
    cluster = bench_cluster(f"forecast-{shape}")
    try:
        cluster.create_database(DB)
        with cluster.connect(DB) as on, cluster.connect(DB) as off:
            on.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            off.execute("SET pganalytics_ml.forecast_combination = off")
            senders = {"on": fw.Sender(on, "wl-on", w), "off": fw.Sender(off, "wl-off", w)}
            for t in range(train):
                for s in senders.values():
                    s.send(t)
            trained = trained_row(on, "wl-on", model_type)
            trained_row(off, "wl-off", model_type)
            if w.period_intervals:
                on.execute("SELECT pgml_set_season(%s, 'wl-on')", (w.period_intervals * fw.STEP.total_seconds(),))
            flagged, active, ran = [], [], []
            onsets = {fw.queryid(i): t - train for i, t in w.planted.items()}
            for conn, server in ((on, "wl-on"), (off, "wl-off")):
                conn.execute("SELECT count(*) FROM pgml_predict_all(%s, log => true)", (server,))
            for t in range(train, train + live):
                for conn, server in ((on, "wl-on"), (off, "wl-off")):
                    senders["on" if server == "wl-on" else "off"].send(t)
                    conn.execute("SELECT count(*) FROM pgml_predict_all(%s, log => true)", (server,))
                flagged.append(alarms_now(on, "wl-on"))
                active.append({q for q, o in onsets.items() if t - train >= o})
                ran.append({fw.queryid(i) for i in range(statements)})
                dump.tick(on, "wl-on", flagged[-1], active[-1])
            warm_after = senders["on"].at(train + WARMUP).timestamp()
            scores = live_scores(on, "wl-on", warm_after)
            reference = live_scores(off, "wl-off", warm_after)
            breakdown = error_breakdown(on, "wl-on", senders["on"], w)
            dump.write(on, "wl-on", planted={str(fw.queryid(i)): t - train for i, t in w.planted.items()})
        return Run(
            shape,
            seed,
            scores,
            reference,
            score_alarms(flagged, active, onsets, ran),
            trained,
            time.monotonic() - started,
            breakdown,
        )
    finally:
        cluster.destroy()


INDEXED = ("%FROM orders WHERE customer_id = $%", "%customer_id BETWEEN%")


def mixed_run(
    phase_seconds: int, tick: float, model_type: str, progress: Progress, plans: bool = False, dump: Dump | None = None
) -> Run:
    """The mixed live workload. No job worker runs here, so no plan is captured unless ``plans``: then the
    queued capture of new statements is run right after each snapshot (as a worker draining it would),
    and every statement is planned again before training (as the hourly job would): issue 14's A/B."""
    started = time.monotonic()
    dump = dump or Dump(None, "")
    cluster = bench_cluster("forecast-mixed")
    try:
        mixed_workload.prepare(cluster)
        phases = tuple(dataclasses.replace(p, seconds=phase_seconds) for p in mixed_workload.PHASES)
        with cluster.connect(mixed_workload.MAIN_DB) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            conn.execute("SELECT * FROM pgml_snapshot()")

            def snapshot() -> None:
                conn.execute("SELECT * FROM pgml_snapshot()")
                if plans:
                    conn.execute("SELECT * FROM pgml_capture_plans(true)")

            progress.step("mixed: training part of the workload")
            mixed_workload.run(cluster, phases, tick, lambda *_: snapshot())
            if plans:
                conn.execute("SELECT * FROM pgml_capture_plans()")
            planned = conn.execute("SELECT count(DISTINCT queryid) FROM pganalytics_ml.plan_capture").fetchone()[0]
            print(f"    statements with a captured plan before training: {planned}", file=sys.stderr)
            trained = trained_row(conn, "local", model_type)
            conn.execute("SELECT count(*) FROM pgml_predict_all(log => true)")
            ticks = {"n": 0, "drop_at": int(len(phases) * phase_seconds / tick / 2)}
            flagged, active, ran = [], [], []
            onsets: dict[int, int] = {}
            planted: set[int] = set()

            def live_tick(*_: object) -> None:
                if ticks["n"] == ticks["drop_at"]:
                    conn.execute("SET lock_timeout = '10s'")
                    conn.execute("DROP INDEX orders_customer")
                    planted.update(
                        r[0]
                        for r in conn.execute(
                            "SELECT queryid FROM pganalytics_ml.statements WHERE query LIKE ANY (%s)", (list(INDEXED),)
                        ).fetchall()
                    )
                    # The snapshot right after the DROP closes an interval that ran with the index: the
                    # first interval without it is the next one.
                    for qid in planted:
                        onsets[qid] = ticks["n"] + 1
                snapshot()
                conn.execute("SELECT count(*) FROM pgml_predict_all(log => true)")
                flagged.append(alarms_now(conn, "local"))
                active.append(set(planted) if ticks["n"] > ticks["drop_at"] else set())
                for qid in sorted(flagged[-1] - active[-1]):  # what the false alarms are made of, on stderr
                    text, shift = conn.execute(
                        "SELECT left(s.query, 60), f.server_shift FROM pganalytics_ml.statements s JOIN"
                        " pganalytics_ml.forecasts f USING (server_id, queryid) WHERE s.server_id = 'local'"
                        " AND s.queryid = %s",
                        (qid,),
                    ).fetchone()
                    when = "after the drop" if ticks["n"] > ticks["drop_at"] else "before the drop"
                    print(f"    false alarm, tick {ticks['n']} ({when}), shift {shift:.2f}: {text}", file=sys.stderr)
                ran.append(
                    {
                        r[0]
                        for r in conn.execute(
                            "SELECT f.queryid FROM pganalytics_ml.forecasts f JOIN pganalytics_ml.statements s"
                            " USING (server_id, queryid) WHERE f.server_id = 'local' AND NOT s.is_internal"
                            " AND f.checked_interval_end = (SELECT max(captured_at) FROM pganalytics_ml.snapshots)"
                        ).fetchall()
                    }
                )
                dump.tick(conn, "local", flagged[-1], active[-1])
                ticks["n"] += 1

            progress.step("mixed: live part, index dropped half-way")
            warm_after = time.time() + WARMUP * tick
            mixed_workload.run(cluster, phases, tick, live_tick)
            scores = live_scores(conn, "local", warm_after)
            dump.write(conn, "local", onsets={str(k): v for k, v in onsets.items()}, drop_at=ticks["drop_at"])
        return Run(
            "mixed", 0, scores, None, score_alarms(flagged, active, onsets, ran), trained, time.monotonic() - started
        )
    finally:
        cluster.destroy()


def backend_cpu_ms(conn: Any) -> float:
    """User plus system CPU of the connection's backend so far (/proc/self/stat, clock ticks of 10 ms)."""
    fields = conn.execute("SELECT pg_read_file('/proc/self/stat')").fetchone()[0].rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 10.0


def snapshot_cost(statements: int, captures: int, repeats: int) -> dict[str, list[float]]:
    """ms (wall, and backend CPU) per pgml_ingest_stats of ``statements`` rows, with and without the online update,
    alternating: pair k is the k-th push of each, one right after the other."""
    w = fw.make("switches", statements, captures + 2 * repeats, 0, seed=7, regressions=0)
    cluster = bench_cluster("forecast-cost")
    try:
        cluster.create_database(DB)
        with cluster.connect(DB) as on, cluster.connect(DB) as off:
            on.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            off.execute("SET pganalytics_ml.forecast_combination = off")
            conns = {"on": on, "off": off}
            senders = {"on": fw.Sender(on, "cost-on", w), "off": fw.Sender(off, "cost-off", w)}
            for t in range(captures):
                for s in senders.values():
                    s.send(t)
            times: dict[str, list[float]] = {"on": [], "off": [], "on_cpu": [], "off_cpu": []}
            for t in range(captures, captures + 2 * repeats):
                order = ("on", "off") if t % 2 else ("off", "on")
                for name in order:
                    cpu = backend_cpu_ms(conns[name])
                    start = time.perf_counter()
                    senders[name].send(t)
                    times[name].append((time.perf_counter() - start) * 1000)
                    times[f"{name}_cpu"].append(backend_cpu_ms(conns[name]) - cpu)
            return times
    finally:
        cluster.destroy()


def every(values) -> str:
    return " ".join(f"{v:.0f}" for v in values)


def med(values) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--mixed-runs", type=int, default=1, help="runs of the mixed workload, each on a fresh cluster")
    parser.add_argument("--dump", default=None, help="a directory: each run's intervals and alarm state, as JSON")
    parser.add_argument("--statements", type=int, default=120)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--live", type=int, default=40)
    parser.add_argument("--model-type", default="auto")
    parser.add_argument("--mixed-phase-seconds", type=int, default=25, help="0 skips the mixed workload")
    parser.add_argument("--tick", type=float, default=5.0)
    parser.add_argument("--cost-statements", type=int, default=5000, help="0 skips the cost measurement")
    parser.add_argument("--cost-repeats", type=int, default=12, help="pushes of each kind, alternating")
    parser.add_argument("--shapes", default=",".join(fw.SHAPES))
    parser.add_argument(
        "--mixed-plans", action="store_true", help="capture plans in the mixed workload (plan features, issue 14)"
    )
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    progress = Progress(len(shapes) * args.seeds + (2 * args.mixed_runs if args.mixed_phase_seconds else 0) + 1)
    runs: list[Run] = []
    for shape in shapes:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            progress.step(f"{shape}, seed {seed}")
            runs.append(synthetic_run(shape, seed, args.statements, args.train, args.live, args.model_type, args.dump))
    for k in range(args.mixed_runs if args.mixed_phase_seconds else 0):
        dump = Dump(args.dump, f"mixed-{k + 1}")
        run = mixed_run(args.mixed_phase_seconds, args.tick, args.model_type, progress, args.mixed_plans, dump)
        runs.append(dataclasses.replace(run, seed=k + 1))
    cost = None
    if args.cost_statements:
        progress.step(f"cost at {args.cost_statements} statements")
        cost = snapshot_cost(args.cost_statements, captures=6, repeats=args.cost_repeats // 2)
    report(runs, cost, args)


def report(runs: list[Run], cost: dict | None, args: Any) -> None:
    print(
        f"\nSynthetic workloads: {args.statements} statements, {args.train} captures before training and "
        f"{args.live} live ones (1-minute intervals), {args.seeds} seeds each; mixed live workload: phases of "
        f"{args.mixed_phase_seconds} s, a snapshot every {args.tick:g} s. q-error = max(predicted/actual, "
        f"actual/predicted); baselines on the same predictions; coverage after {WARMUP} live snapshots.\n"
    )
    rows = []
    for r in runs:
        ref = r.reference
        rows.append(
            [
                r.workload,
                r.seed,
                r.live.n,
                r.live.p50,
                r.live.p90,
                r.live.last[0],
                r.live.last[1],
                r.live.longrun[0],
                r.live.longrun[1],
                f"{1 - r.live.p90 / r.live.best_naive_p90:.0%}",
                f"{r.live.coverage:.1%}",
                f"{ref.p50:.3f} / {ref.p90:.3f} / {ref.coverage:.1%}" if ref else "-",
            ]
        )
    print_table(
        [
            "workload",
            "seed",
            "scored",
            "p50",
            "p90",
            "last p50",
            "last p90",
            "long-run p50",
            "long-run p90",
            "p90 better than best naive",
            "coverage",
            "0.2.0 forecasts p50 / p90 / coverage",
        ],
        rows,
    )
    print("\nPer forecaster, live (p50 / p90), and the holdout note of pgml_train\n")
    frows = []
    for r in runs:
        cells = [
            f"{r.live.forecasters[n][0]:.3f} / {r.live.forecasters[n][1]:.3f}" if n in r.live.forecasters else "-"
            for n in FORECASTERS
        ]
        frows.append([r.workload, r.seed, *cells, r.trained.get("forecaster_note", "")])
    print_table(["workload", "seed", *FORECASTERS, "pgml_train says"], frows)
    print("\nWhat the p90 is made of (synthetic workloads): intervals where the server's load changed, and the rest\n")
    print_table(
        ["workload", "seed", "part", "scored", "combination p90", "last interval p90"],
        [[r.workload, r.seed, part, *values] for r in runs for part, values in r.breakdown.items()],
    )
    print("\nConfidence (stated chance of landing within 25%) against what happened, after the warm-up\n")
    print_table(
        ["workload", "seed", "mean confidence", "share within 25%"],
        [[r.workload, r.seed, r.live.confidence_mean, r.live.within_25] for r in runs],
    )
    print("\nRegression alarms (pganalytics_ml.regressions after each live capture)\n")
    print_table(
        [
            "workload",
            "seed",
            "planted",
            "flagged within 2 snapshots",
            "delays (snapshots)",
            "false alarms",
            "pairs",
            "false alarm rate",
        ],
        [
            [
                r.workload,
                r.seed,
                r.alarms.planted,
                r.alarms.detected,
                str(r.alarms.delays),
                r.alarms.false_alarms,
                r.alarms.pairs,
                f"{r.alarms.false_rate:.2%}",
            ]
            for r in runs
        ],
    )
    if cost:
        print(f"\nSnapshot cost at {args.cost_statements} statements (pgml_ingest_stats, ms, alternating runs)\n")
        print_table(
            ["forecasts", "median ms", "min", "max", "backend CPU ms (median)", "every run, ms"],
            [
                [label, med(cost[k]), min(cost[k]), max(cost[k]), med(cost[f"{k}_cpu"]), every(cost[k])]
                for label, k in (("online combination (issue 12)", "on"), ("0.2.0 forecasts (combination off)", "off"))
            ],
        )
        pairs = sorted(a / b for a, b in zip(cost["on"], cost["off"], strict=True))
        print("\n  per pair, online against off (wall): " + " ".join(f"{r:.2f}" for r in pairs))
    print("\nVerdicts, per workload, on the medians of its runs\n")
    for workload in dict.fromkeys(r.workload for r in runs):
        mine = [r for r in runs if r.workload == workload]
        p50, p90 = med([r.live.p50 for r in mine]), med([r.live.p90 for r in mine])
        naive50, naive90 = med([r.live.best_naive_p50 for r in mine]), med([r.live.best_naive_p90 for r in mine])
        coverage = med([r.live.coverage for r in mine])
        recall = med([r.alarms.recall for r in mine])
        false_rate = med([r.alarms.false_rate for r in mine])
        gain = TARGET_P90[workload]
        checks = [
            (
                f"{workload}: p50 no worse than the best naive (median {p50:.3f} against {naive50:.3f})",
                p50 <= naive50,
            ),
            (
                f"{workload}: p90 at least {gain:.0%} better than the best naive (median {p90:.3f} against "
                f"{naive90:.3f}: {1 - p90 / naive90:.1%} better)",
                p90 <= (1 - gain) * naive90,
            ),
            (f"{workload}: live coverage within 87-93% (median {coverage:.1%})", 0.87 <= coverage <= 0.93),
            (f"{workload}: regression recall 1.0 within two snapshots (median {recall:.2f})", recall == 1.0),
            (f"{workload}: false alarms <= 1% of pairs (median {false_rate:.2%})", false_rate <= 0.01),
        ]
        for name, ok in checks:
            print(f"  {'meets' if ok else 'MISSES'}: {name}")
    if cost:
        on, off = med(cost["on"]), med(cost["off"])
        pair = med([a / b for a, b in zip(cost["on"], cost["off"], strict=True)])
        cpu = med(cost["on_cpu"]) / med(cost["off_cpu"])
        print(
            f"  {'meets' if on <= 1.2 * off else 'MISSES'}: online update adds <= 20% to a snapshot at "
            f"{args.cost_statements} statements (median {on:.0f} ms against {off:.0f} ms: {on / off - 1:+.0%};"
            f" median of the pairs {pair - 1:+.0%}; backend CPU {cpu - 1:+.0%})"
        )


if __name__ == "__main__":
    main()
