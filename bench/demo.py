"""The demo: pganalytics_ml learning a real, changing workload on a throwaway PostgreSQL 15 cluster.

It starts a cluster in ./demo (its own port, pg_stat_statements and pg_cron preloaded), runs the
workload of bench/mixed_workload.py (pgbench at two scales, analytical queries, a growing table, load
going up and down), captures history with the scheduled snapshots (pg_cron, every 10 s), trains through
a queued job drained by pg_cron, predicts every statement, lets the workload go on while every snapshot
scores the predictions, and reports how good they were next to two naive baselines, with plots. Last,
the workload patterns of a synthetic ten-day history (the live one is minutes long: too short for any),
and a missing index: found by pgml_recommend_indexes (hypopg), created, and its predicted speed-up
printed beside the measured one (pganalytics_ml.recommendation_outcomes).

make demo         run it (8 to 9.5 minutes); leaves the cluster running to explore with psql
make demo-stop    stop it and remove ./demo
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

import live_accuracy
import mixed_workload as workload
from benchlib import ROOT, print_table
from pgcluster import Cluster
from progress import Bar

sys.path.insert(0, str(ROOT / "tests" / "python"))
from history_builder import planted_history

DEMO_DIR = ROOT / "demo"
PLOTS = DEMO_DIR / "plots"
DEMO_PORT = 55499
DEMO_DB = workload.MAIN_DB
SNAPSHOT_SECONDS = 10
CAPTURE_MINUTES = 5  # scheduled snapshots before the training job is queued
LIVE_SECONDS = 120  # predictions scored while the workload goes on
TIME_BUDGET = 570  # the live phase is shortened so that the whole demo stays under ~9.5 minutes
MIN_LIVE_SECONDS = 60
POLL = 0.5
WORST_MIN_SCORED = 3


def phase(number: int, title: str) -> None:
    print(f"\n==> [{number}/8] {title}", flush=True)


def stop() -> None:
    cluster = Cluster(base_dir=DEMO_DIR, port=DEMO_PORT)
    if cluster.data_dir.exists():
        cluster.stop("fast")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    print(f"demo cluster stopped and {DEMO_DIR} removed")


def start_cluster() -> Cluster:
    stop()
    phase(1, f"a throwaway PostgreSQL 15 cluster in {DEMO_DIR} on port {DEMO_PORT}, and the workload's data")
    cluster = Cluster(
        base_dir=DEMO_DIR,
        port=DEMO_PORT,
        settings={"cron.database_name": DEMO_DB, "fsync": "on"},
    )
    bar = Bar("setting up", len(workload.PREPARE_STEPS) + 2)
    bar.update(0, "initdb, start")
    cluster.init().start()
    workload.prepare(cluster, lambda i, name: bar.update(i + 1, name))
    bar.update(len(workload.PREPARE_STEPS) + 1, "CREATE EXTENSION pganalytics_ml")
    with cluster.connect(DEMO_DB) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION pg_cron")
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
    bar.close("pg_stat_statements, pg_cron, pganalytics_ml installed")
    return cluster


def seconds_to_next_minute() -> float:
    now = time.time()
    return 60 - now % 60


def scalar(conn: Any, query: str, params: Any = None) -> Any:
    return conn.execute(query, params).fetchone()[0]


def snapshot_count(conn: Any) -> int:
    return scalar(conn, "SELECT count(*) FROM pganalytics_ml.snapshots WHERE server_id = 'local'")


def describe(load: workload.Background) -> str:
    p = load.phase
    return f"load: {p.small_clients}+{p.large_clients} pgbench, {p.analytics_clients} analytics clients"


def schedule_and_capture(conn: Any, load: workload.Background) -> float:
    """Registers the pg_cron schedules and waits for CAPTURE_MINUTES of scheduled snapshots."""
    phase(2, f"scheduled capture: pgml_schedule(snapshot_seconds => {SNAPSHOT_SECONDS}), the workload running")
    cur = conn.execute(
        "SELECT job_name, schedule, command FROM pgml_schedule(snapshot_seconds => %s)", (SNAPSHOT_SECONDS,)
    )
    print_table(["pg_cron job", "schedule", "command"], cur.fetchall())
    print("    pg_cron runs at minute granularity: the first snapshot comes at the next minute boundary.")
    wait = seconds_to_next_minute()
    bar = Bar("first pg_cron tick", wait + 5)
    started = time.monotonic()
    while snapshot_count(conn) == 0:
        bar.update(time.monotonic() - started, describe(load))
        time.sleep(POLL)
    bar.close("baseline snapshot taken")
    first_tick = time.time()
    first_tick -= first_tick % 60
    # The training job is queued just before a minute boundary, where the drain job picks it up.
    capture_end = first_tick + CAPTURE_MINUTES * 60 - 3
    bar = Bar("capturing history", capture_end - time.time())
    begin = time.time()
    while time.time() < capture_end:
        intervals = snapshot_count(conn) - 1
        statements = scalar(conn, "SELECT count(*) FROM pganalytics_ml.statements WHERE server_id = 'local'")
        bar.update(time.time() - begin, f"{intervals} intervals, {statements} statements; {describe(load)}")
        time.sleep(POLL)
    bar.close(f"{snapshot_count(conn) - 1} intervals of {SNAPSHOT_SECONDS} s captured")
    return first_tick


def train_through_queue(conn: Any) -> dict[str, Any]:
    phase(3, "training through the job queue: pgml_train_async(1, 'auto'), drained by pg_cron")
    job_id, status = conn.execute("SELECT job_id, status FROM pgml_train_async(1, 'auto')").fetchone()
    print(f"    queued job {job_id} ({status}); polling pgml_job_status(job_id)")
    queued = time.monotonic()
    wait_bar = Bar("waiting for the drain", seconds_to_next_minute() + 5)
    train_bar = None
    while True:
        job = one_row(conn, "SELECT * FROM pgml_job_status(%s)", (job_id,))
        if job["status"] == "pending":
            eta = seconds_to_next_minute()
            when = "any moment now" if eta > 55 else f"in {eta:.0f} s"
            wait_bar.update(time.monotonic() - queued, f"pending; pg_cron drains the queue {when}")
        elif job["status"] in ("training", "running"):
            if train_bar is None:
                wait_bar.close(
                    f"picked up {(job['started_at'] - job['created_at']).total_seconds():.1f} s after queueing"
                )
                train_bar = Bar("training", 100)
            progress = job["progress"] or {}
            train_bar.update(progress.get("percent", 0), f"{progress.get('phase', '')} (attempt {job['attempts']})")
        else:
            break
        time.sleep(POLL)
    if train_bar is None:
        wait_bar.close("picked up")
    if job["status"] != "completed":
        if train_bar is not None:
            train_bar.close(job["status"])
        raise SystemExit(f"the training job {job['status']}: {job['error']}")
    train_bar.close(f"completed in {(job['completed_at'] - job['started_at']).total_seconds():.1f} s")
    return job


def one_row(conn: Any, query: str, params: Any = None) -> dict[str, Any]:
    cur = conn.execute(query, params)
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def predict_and_score(conn: Any, load: workload.Background, demo_started: float) -> None:
    """Predicts every statement after every snapshot while the workload goes on."""
    remaining = TIME_BUDGET - (time.monotonic() - demo_started) - 20
    live_seconds = max(MIN_LIVE_SECONDS, min(LIVE_SECONDS, remaining))
    phase(4, f"predicting every statement, pgml_predict_all(log => true), for {live_seconds:.0f} s of workload")
    rows = conn.execute("SELECT source, count(*) FROM pgml_predict_all(log => true) GROUP BY 1 ORDER BY 1").fetchall()
    print("    first call: " + ", ".join(f"{n} from the {source}" for source, n in rows))
    last_seen = scalar(conn, "SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'local'")
    bar = Bar("predicting, validating", live_seconds)
    begin = time.monotonic()
    calls, validated = 1, 0
    # Predictions stop one snapshot before the end, so that the last ones are scored too.
    while time.monotonic() - begin < live_seconds - SNAPSHOT_SECONDS:
        latest = scalar(conn, "SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'local'")
        if latest != last_seen:
            last_seen = latest
            conn.execute("SELECT count(*) FROM pgml_predict_all(log => true)")
            calls += 1
        validated = scalar(conn, "SELECT count(*) FROM pganalytics_ml.predictions WHERE validated_at IS NOT NULL")
        bar.update(time.monotonic() - begin, f"{calls} pgml_predict_all calls, {validated} scored; {describe(load)}")
        time.sleep(POLL)
    while time.monotonic() - begin < live_seconds:
        validated = scalar(conn, "SELECT count(*) FROM pganalytics_ml.predictions WHERE validated_at IS NOT NULL")
        bar.update(time.monotonic() - begin, f"{validated} scored; the next snapshot scores the last predictions")
        time.sleep(POLL)
    bar.close(f"{calls} pgml_predict_all calls, {validated} predictions scored by the snapshots")


def why_chosen(model: dict[str, Any]) -> str:
    metrics, chosen = model["metrics"], model["model_type"]
    best = metrics["candidates"][chosen]
    tied = sorted(name for name, p90 in metrics["candidates"].items() if name != chosen and abs(p90 - best) < 1e-9)
    ranking = (
        f"Its holdout p90 q-error, {best:.3f}, ties with {', '.join(tied)}; the first in training order is kept."
        if tied
        else f"Its holdout p90 q-error, {best:.3f}, is the lowest of the {len(metrics['candidates'])} candidates."
    )
    weight = model["parameters"].get("residual_weight")
    correction = (
        "On validation no learned correction carried over (weight 0), so it forecasts each statement's recent "
        "average (EWMA)."
        if weight == 0
        else f"It corrects each statement's recent average (EWMA) by what it learned, at weight {weight} (chosen "
        "on validation)."
    )
    activated = "no model was active" if metrics.get("active_model_q_error_p90") is None else "it beat the active model"
    return (
        f"All candidates were trained on the same {metrics['training_samples']} samples and scored on the latest "
        f"{metrics['holdout_samples']} (time-ordered holdout). {ranking} {correction} Activated because {activated}."
    )


@dataclass
class Outcome:
    scores: live_accuracy.Scores
    model_type: str
    job: dict[str, Any]
    first_tick: float


def report(conn: Any, job: dict[str, Any], first_tick: float) -> Outcome | None:
    phase(5, "report")
    model_id = job["result"]["model_id"]
    model = one_row(
        conn, "SELECT model_type, metrics, parameters FROM pganalytics_ml.models WHERE model_id = %s", (model_id,)
    )
    metrics = model["metrics"]
    seen = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE parse_ok), count(DISTINCT database),
               (SELECT count(DISTINCT queryid) FROM pganalytics_ml.query_stats WHERE server_id = 'local'),
               (SELECT count(*) FROM pganalytics_ml.forecasts WHERE server_id = 'local' AND source = 'model')
          FROM pganalytics_ml.statements WHERE server_id = 'local'
        """
    ).fetchone()
    intervals = snapshot_count(conn) - 1
    print(
        f"\nStatements seen: {seen[0]} in {seen[2]} databases ({seen[1]} parsed), {seen[3]} ran between captures, "
        f"{seen[4]} predicted by the model; {intervals} intervals of {SNAPSHOT_SECONDS} s captured by pg_cron"
    )
    print(f"\nModel chosen: {model['model_type']} (model {model_id}). {why_chosen(model)}\n")
    chosen = model["model_type"]
    candidates = sorted(metrics["candidates"].items(), key=lambda kv: (kv[1], kv[0] != chosen))
    print_table(
        ["candidate", "holdout p90 q-error"],
        [[name + ("  <- chosen" if name == chosen else ""), p90] for name, p90 in candidates],
    )

    scores = live_accuracy.load_scores(conn)
    if not len(scores):
        print("\nNo model prediction was scored (the workload ran too short after training).")
        regressions(conn)
        return None
    print(
        f"\nLive accuracy: {len(scores)} model predictions of {len(set(scores.queryid.tolist()))} statements, "
        "logged by pgml_predict_all(log => true) and scored by the snapshots that observed their interval "
        "(q-error = max(predicted/actual, actual/predicted))\n"
    )
    labels = live_accuracy.names(model["model_type"])
    print_table(
        ["predictor", "q-error p50", "q-error p90", "90% interval coverage"],
        [
            [
                labels[p],
                *np.percentile(scores.q(p), [50, 90]),
                f"{scores.within.mean():.1%}" if p == "model" else "-",
            ]
            for p in live_accuracy.PREDICTORS
        ],
    )
    print(
        f"\nOn the training holdout: model p50 {metrics['q_error_p50']:.3f}, p90 {metrics['q_error_p90']:.3f}; "
        f"baselines p90 {metrics['baseline_last_q_error_p90']:.3f} (last interval) and "
        f"{metrics['baseline_longrun_q_error_p90']:.3f} (long-run mean); interval coverage "
        f"{metrics['interval_coverage']:.1%}"
    )
    worst(conn, scores)
    regressions(conn)
    return Outcome(scores, model["model_type"], job, first_tick)


def worst(conn: Any, scores: live_accuracy.Scores) -> None:
    q = scores.q("model")
    by_statement: dict[int, list[int]] = {}
    for i, qid in enumerate(scores.queryid.tolist()):
        by_statement.setdefault(qid, []).append(i)
    repeated = {qid: rows for qid, rows in by_statement.items() if len(rows) >= WORST_MIN_SCORED}
    ranked = sorted(repeated.items(), key=lambda kv: -statistics.median(q[kv[1]]))[:5]
    texts = dict(
        conn.execute(
            "SELECT queryid, regexp_replace(query, '\\s+', ' ', 'g') FROM pganalytics_ml.statements"
            " WHERE server_id = 'local' AND queryid = ANY (%s)",
            ([qid for qid, _ in ranked],),
        ).fetchall()
    )
    print(
        f"\nThe five worst-predicted statements (median q-error of their scored predictions; statements scored "
        f"at least {WORST_MIN_SCORED} times)\n"
    )
    print_table(
        ["statement", "scored", "median predicted ms", "median actual ms", "median q-error"],
        [
            [
                _short(texts.get(qid, str(qid)), 58),
                len(rows),
                statistics.median(scores.predicted["model"][rows]),
                statistics.median(scores.actual[rows]),
                statistics.median(q[rows]),
            ]
            for qid, rows in ranked
        ],
    )


def regressions(conn: Any) -> None:
    rows = conn.execute(
        "SELECT regexp_replace(query, '\\s+', ' ', 'g'), observed_ms, upper_bound_ms, times_upper_bound, since"
        " FROM pganalytics_ml.regressions WHERE server_id = 'local' ORDER BY times_upper_bound DESC"
    ).fetchall()
    print(
        f"\nRegressions found (pganalytics_ml.regressions: two intervals in a row above the alarm bound, "
        f"beyond the server's own slowdown): {len(rows)}\n"
    )
    if rows:
        print_table(
            ["statement", "observed ms", "upper bound ms", "x upper bound", "since"],
            [[_short(r[0], 58), r[1], r[2], r[3], f"{r[4]:%H:%M:%S}"] for r in rows[:5]],
        )


def plan_change(conn: Any) -> None:
    """Plans captured as each statement's own role (issue 14); a dropped index shows up as a plan change."""
    conn.execute("SELECT * FROM pgml_capture_plans()").fetchall()  # pg_cron's queued jobs planned most already
    conn.execute("ALTER TABLE pgbench_accounts DROP CONSTRAINT pgbench_accounts_pkey")
    try:
        counts = dict(conn.execute("SELECT outcome, statements FROM pgml_capture_plans()").fetchall())
    finally:
        conn.execute("ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)")  # the demo cluster stays as it was
    rows = conn.execute(
        "SELECT regexp_replace(query, '\\s+', ' ', 'g'), old_summary, new_summary FROM pganalytics_ml.plan_changes"
        " WHERE server_id = 'local' ORDER BY detected_at DESC, query_hash LIMIT 5"
    ).fetchall()
    skipped = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k not in ("planned", "changed"))
    print(
        f"\nPlans (EXPLAIN as each statement's role, never executed): {counts.get('planned', 0)} planned, "
        f"skipped: {skipped or 'none'}. Without the primary key of pgbench_accounts, "
        f"{counts.get('changed', 0)} plan changes in that capture; the latest found, the workload's own included"
        " (pganalytics_ml.plan_changes):\n"
    )
    if rows:
        print_table(
            ["statement", "old plan", "new plan"],
            [[_short(r[0], 50), _short(r[1], 50), _short(r[2], 40)] for r in rows],
        )


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def plot(conn: Any, outcome: Outcome) -> list[Path]:
    scores = outcome.scores
    paths = [
        live_accuracy.plot_predicted_vs_actual(
            scores, PLOTS / "predicted_vs_actual.png", "Live predictions against what happened"
        ),
        live_accuracy.plot_q_error_distribution(
            scores, outcome.model_type, PLOTS / "q_error_distribution.png", "q-error distribution, live predictions"
        ),
    ]
    plt = live_accuracy.pyplot()
    load = conn.execute(
        """
        SELECT extract(epoch FROM interval_end)::float8, sum(calls) / extract(epoch FROM interval_end - interval_start)
          FROM pganalytics_ml.query_stats WHERE server_id = 'local'
         GROUP BY interval_start, interval_end ORDER BY interval_end
        """
    ).fetchall()
    fig, (acc, calls) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    origin = outcome.first_tick
    moments = sorted(set(scores.validated_at.tolist()))
    minutes = [(m - origin) / 60 for m in moments]
    labels = live_accuracy.names(outcome.model_type)
    for predictor in live_accuracy.PREDICTORS:
        q = scores.q(predictor)
        color = live_accuracy.COLORS[predictor]
        per_snapshot = [q[scores.validated_at == m] for m in moments]
        acc.plot(
            minutes,
            [np.percentile(v, 90) for v in per_snapshot],
            marker="o",
            markersize=3,
            color=color,
            label=f"{labels[predictor]} p90",
        )
        acc.plot(
            minutes,
            [np.percentile(v, 50) for v in per_snapshot],
            linestyle="--",
            color=color,
            alpha=0.7,
            label=f"{labels[predictor]} p50",
        )
    acc.set(yscale="log", ylabel="q-error per snapshot", title="Accuracy over time (each point: one snapshot's scores)")
    live_accuracy.plain_log_ticks(acc.yaxis)
    acc.grid(True, which="both", alpha=0.2)
    acc.legend(fontsize=7, ncol=2)
    calls.plot([(t - origin) / 60 for t, _ in load], [float(c) for _, c in load], color="black")
    job = outcome.job
    spans = (
        (origin, job["created_at"].timestamp(), "tab:gray", "history the model learns from"),
        (job["started_at"].timestamp(), job["completed_at"].timestamp(), "tab:purple", "training job"),
    )
    for ax in (acc, calls):
        for begin, end, color, label in spans:
            ax.axvspan(
                (begin - origin) / 60,
                (end - origin) / 60,
                color=color,
                alpha=0.12,
                label=label if ax is calls else None,
            )
    capture_end = (job["created_at"].timestamp() - origin) / 60
    acc.text(capture_end / 2, 1.15, "capturing history: no model yet", ha="center", fontsize=8, color="dimgray")
    calls.set(xlabel="minutes since the first scheduled snapshot", ylabel="calls/s (all statements)")
    calls.grid(True, alpha=0.2)
    calls.legend(fontsize=8)
    paths.append(live_accuracy.save(fig, PLOTS / "accuracy_over_time.png"))
    return paths


def patterns(conn: Any) -> None:
    phase(7, "workload patterns")
    live = scalar(conn, "SELECT count(*) FROM pgml_detect_patterns(1)")
    print(f"    the live history is minutes long: {live} patterns (spikes need 2 days of history, daily cycles 3)")
    print("    so, a SYNTHETIC server 'synthetic-10d': ten days of 5-minute captures (missed ones and an outage")
    print(
        "    included) written by tests/python/history_builder.py, one statement per planted pattern and one of noise"
    )
    planted_history(conn, "synthetic-10d", days=10, seed=3, per_pattern=1)
    rows = conn.execute(
        "SELECT type, round(confidence::numeric, 2), description FROM pgml_detect_patterns(10, 'synthetic-10d')"
        " WHERE query_hash IS NOT NULL ORDER BY type, query_hash"
    ).fetchall()
    print_table(["type", "confidence", "description"], [[t, c, _short(d, 110)] for t, c, d in rows])
    print("    (weekly cycles need 14 days; the noise statement has none. SELECT * FROM pgml_detect_patterns(10,")
    print("    'synthetic-10d') shows them all, with their metadata.)")


SHOP_ROLE = "demo_shop"
SHOP_QUERY = "SELECT count(*), sum(total) FROM orders WHERE customer_id = %s"


def shop_round(app: Any, calls: int, first: int) -> None:
    for i in range(calls):
        app.execute(SHOP_QUERY, ((first + i * 37) % 5000,)).fetchall()


def index_recommendation(cluster: Cluster, conn: Any) -> None:
    """A missing index found (hypothetically), created for real, and its predicted against measured speed-up."""
    phase(8, "a missing index: pgml_recommend_indexes(), then created, then checked (recommendation_outcomes)")
    conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    conn.execute(f"DO $$ BEGIN CREATE ROLE {SHOP_ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SHOP_ROLE} AUTHORIZATION {SHOP_ROLE}")
    with cluster.connect(DEMO_DB, user=SHOP_ROLE) as app:
        app.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric)")
        app.execute("INSERT INTO orders SELECT g, g % 5000, g % 1000 FROM generate_series(1, 300000) g")
        app.execute("VACUUM ANALYZE orders")
        shown = SHOP_QUERY.replace("%s", "$1")
        print(f"    {SHOP_ROLE}.orders: 300,000 rows, no index on customer_id; '{shown}' run by {SHOP_ROLE}")
        conn.execute("SELECT * FROM pgml_snapshot()").fetchall()
        for r in range(3):
            shop_round(app, 40, r)
            conn.execute("SELECT * FROM pgml_snapshot()").fetchall()
        rows = conn.execute(
            "SELECT index_sql, query_hashes, speedups, saved_ms_per_s, saved_lower_ms_per_s, saved_upper_ms_per_s,"
            " estimated_size_bytes, source FROM pgml_recommend_indexes()"
        ).fetchall()
        print("\nRecommended (tried with hypopg, each statement planned as its own role; nothing created):\n")
        print_table(
            ["index", "statements", "predicted speed-up", "ms saved / s (interval)", "size", "source"],
            [
                [
                    _short(r[0], 70),
                    len(r[1]),
                    ", ".join(f"{x:.1f}x" for x in r[2]),
                    f"{r[3]:.2f} ({r[4]:.2f} to {r[5]:.2f})",
                    f"{r[6] / 2**20:.1f} MB",
                    r[7],
                ]
                for r in rows
            ],
        )
        mine = [r[0] for r in rows if f" {SHOP_ROLE}.orders " in r[0]]
        if not mine:
            print(f"    (no recommendation on {SHOP_ROLE}.orders: nothing to create)")
            return
        app.execute(mine[0])  # created by the table's owner, as a DBA would
        print(f"\n    created: {mine[0]}; the next snapshot notices it, then the workload runs on")
        conn.execute("SELECT * FROM pgml_snapshot()").fetchall()
        for r in range(2):
            shop_round(app, 40, 10 + r)
            conn.execute("SELECT * FROM pgml_snapshot()").fetchall()
    outcome = conn.execute(
        "SELECT index_sql, appeared_index, predicted_ms_before, predicted_ms_after, predicted_speedup,"
        " actual_ms_before, actual_ms_after, actual_speedup FROM pganalytics_ml.recommendation_outcomes"
        " WHERE index_sql = %s ORDER BY recommendation_id DESC LIMIT 1",
        (mine[0],),
    ).fetchone()
    print("\nPredicted against measured (pganalytics_ml.recommendation_outcomes):\n")
    print_table(
        ["index found", "predicted ms", "predicted speed-up", "measured ms", "measured speed-up"],
        [
            [
                outcome[1],
                f"{outcome[2]:.3f} -> {outcome[3]:.3f}",
                f"{outcome[4]:.1f}x",
                f"{outcome[5]:.3f} -> {outcome[6]:.3f}" if outcome[6] is not None else "-",
                f"{outcome[7]:.1f}x" if outcome[7] is not None else "-",
            ]
        ],
    )


def run_demo() -> None:
    demo_started = time.monotonic()
    cluster = start_cluster()
    load = workload.Background(cluster).start()
    try:
        with cluster.connect(DEMO_DB) as conn:
            first_tick = schedule_and_capture(conn, load)
            job = train_through_queue(conn)
            predict_and_score(conn, load, demo_started)
            load.stop()
            outcome = report(conn, job, first_tick)
            plan_change(conn)
            phase(6, f"pictures in {PLOTS}")
            for path in plot(conn, outcome) if outcome else []:
                print(f"    {path}")
            patterns(conn)
            index_recommendation(cluster, conn)
    finally:
        load.stop()  # idempotent; raises what broke the workload, if anything did
    elapsed = time.monotonic() - demo_started
    print(f"\nDone in {elapsed / 60:.1f} minutes ({datetime.now():%H:%M:%S}). The workload has stopped; the cluster is")
    print(f"still running, with the pg_cron snapshots every {SNAPSHOT_SECONDS} s. Explore it with:\n")
    print(f"    psql -h {cluster.socket_dir} -p {cluster.port} -U postgres {DEMO_DB}\n")
    print("    SELECT * FROM pgml_models();  SELECT * FROM pganalytics_ml.prediction_accuracy;")
    print("    SELECT * FROM pgml_jobs();    SELECT pgml_status();")
    print("    SELECT * FROM pgml_detect_patterns(10, 'synthetic-10d');")
    print("    SELECT * FROM pganalytics_ml.plan_changes;")
    print("    SELECT * FROM pganalytics_ml.recommendation_outcomes;\n")
    print("and remove it with: make demo-stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stop", action="store_true", help="stop the demo cluster and remove its directory")
    args = parser.parse_args()
    stop() if args.stop else run_demo()


if __name__ == "__main__":
    sys.exit(main())
