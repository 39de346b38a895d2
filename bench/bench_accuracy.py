"""Accuracy on a realistic, changing workload: the model against two naive baselines, in one run.

Targets (learning-loop issue): holdout q-error p50 <= 1.15 and p90 <= 1.6, p90 at least 15% better
than both baselines (the last interval's mean, the statement's long-run mean), 90% interval covering
85-95%. After training, the workload goes on and the live predictions are scored against what
really happened, next to the same baselines.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import live_accuracy
import mixed_workload as workload
from benchlib import bench_cluster, print_table

PLOTS = Path(__file__).resolve().parent / "plots"
LIVE_BASELINES = """
WITH scored AS (
    SELECT p.predicted_ms, p.actual_ms, p.within_interval,
           (SELECT q.mean_exec_time FROM pganalytics_ml.query_stats q
             WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end = p.based_on) AS last_ms,
           (SELECT sum(q.total_exec_time) / sum(q.calls) FROM pganalytics_ml.query_stats q
             WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end <= p.based_on) AS longrun_ms
      FROM pganalytics_ml.predictions p
     WHERE p.validated_by = 'observed' AND p.source = 'model'
)
SELECT count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(predicted_ms / actual_ms, actual_ms / predicted_ms)),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY greatest(predicted_ms / actual_ms, actual_ms / predicted_ms)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(last_ms / actual_ms, actual_ms / last_ms)),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY greatest(last_ms / actual_ms, actual_ms / last_ms)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(longrun_ms / actual_ms, actual_ms / longrun_ms)),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY greatest(longrun_ms / actual_ms, actual_ms / longrun_ms)),
       avg(CASE WHEN within_interval THEN 1.0 ELSE 0.0 END)::float8
  FROM scored
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between snapshots")
    parser.add_argument("--phase-seconds", type=int, default=0, help="shorten every phase (0: as defined)")
    parser.add_argument("--model-type", default="auto")
    args = parser.parse_args()
    phases = workload.PHASES
    if args.phase_seconds:
        phases = tuple(dataclasses.replace(p, seconds=args.phase_seconds) for p in phases)
    cluster = bench_cluster("accuracy")
    try:
        workload.prepare(cluster)
        with cluster.connect(workload.MAIN_DB) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            conn.execute("SELECT * FROM pgml_snapshot()")
            started = time.monotonic()
            workload.run(cluster, phases, args.tick, lambda *_: conn.execute("SELECT * FROM pgml_snapshot()"))
            intervals = conn.execute("SELECT count(*) FROM pganalytics_ml.snapshots").fetchone()[0] - 1
            cur = conn.execute("SELECT * FROM pgml_train(1, %s)", (args.model_type,))
            trained = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
            candidates = conn.execute(
                "SELECT metrics->'candidates' FROM pganalytics_ml.models WHERE model_id = %s", (trained["model_id"],)
            ).fetchone()[0]

            def predict_and_capture(*_: object) -> None:
                conn.execute("SELECT * FROM pgml_snapshot()")
                conn.execute("SELECT count(*) FROM pgml_predict_all(log => true)")

            conn.execute("SELECT count(*) FROM pgml_predict_all(log => true)")
            workload.run(cluster, phases[:2], args.tick, predict_and_capture)
            live = conn.execute(LIVE_BASELINES).fetchone()
            scores = live_accuracy.load_scores(conn)
            seconds = time.monotonic() - started
    finally:
        cluster.destroy()

    print(
        f"\nWorkload: {len(phases)} phases, {intervals} captured intervals of {args.tick:g} s, "
        f"{trained['training_samples'] + trained['holdout_samples']} samples; {seconds:.0f} s in all\n"
    )
    print("Holdout (latest 20% of the window, time-ordered): q-error = max(predicted/actual, actual/predicted)\n")
    print_table(
        ["predictor", "q-error p50", "q-error p90", "q-error p95", "90% interval coverage"],
        [
            [
                f"model: {trained['model_type']} (active model {trained['model_id']})",
                trained["q_error_p50"],
                trained["q_error_p90"],
                trained["q_error_p95"],
                trained["interval_coverage"],
            ],
            ["baseline: last interval's mean", "-", trained["baseline_last_q_error_p90"], "-", "-"],
            ["baseline: statement's long-run mean", "-", trained["baseline_longrun_q_error_p90"], "-", "-"],
        ],
    )
    print(
        "\nCandidates on the same holdout (p90 q-error): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(candidates.items(), key=lambda kv: kv[1]))
    )
    n, m50, m90, l50, l90, r50, r90, coverage = live
    print(f"\nLive: {n} logged predictions made after training, scored by later snapshots\n")
    print_table(
        ["predictor", "q-error p50", "q-error p90", "90% interval coverage"],
        [
            ["model", m50, m90, coverage],
            ["baseline: last interval's mean", l50, l90, "-"],
            ["baseline: statement's long-run mean", r50, r90, "-"],
        ],
    )
    best_baseline = min(trained["baseline_last_q_error_p90"], trained["baseline_longrun_q_error_p90"])
    gain = 1 - (trained["q_error_p90"] - 1) / (best_baseline - 1) if best_baseline > 1 else 0.0
    checks = [
        (f"holdout p50 <= 1.15 (measured {trained['q_error_p50']:.3f})", trained["q_error_p50"] <= 1.15),
        (f"holdout p90 <= 1.6 (measured {trained['q_error_p90']:.3f})", trained["q_error_p90"] <= 1.6),
        (
            f"p90 beats both baselines by >= 15% (measured {trained['q_error_p90']:.3f} against {best_baseline:.3f})",
            trained["q_error_p90"] <= 0.85 * best_baseline,
        ),
        (
            f"coverage within 85-95% (measured {trained['interval_coverage']:.1%})",
            0.85 <= trained["interval_coverage"] <= 0.95,
        ),
    ]
    print(f"\np90 excess error (q - 1) vs the best baseline: {gain:.0%} smaller")
    for name, ok in checks:
        print(f"  {'meets' if ok else 'MISSES'}: {name}")
    if len(scores):
        title = "accuracy benchmark, live predictions"
        pictures = [
            live_accuracy.plot_q_error_distribution(
                scores, trained["model_type"], PLOTS / "accuracy_q_error.png", title
            ),
            live_accuracy.plot_predicted_vs_actual(scores, PLOTS / "accuracy_predicted_vs_actual.png", title),
        ]
        print("\nPlots: " + ", ".join(str(p) for p in pictures))


if __name__ == "__main__":
    main()
