"""The residual weight chosen by a cheap fit beside the full one, per workload shape: same choice, less time.

pgml_train damps what its estimator learned by a weight (0, 1/4, 1/2, 3/4 or 1) chosen on the latest
quarter of the training rows, with an estimator fitted on the earlier rows. That fit cost as much as
the model's own. Here, on the sample pgml_train draws, the weight is chosen both ways: "full" (every
earlier row, the estimator as trained: the previous behaviour) and "cheap" (at most 40,000 of them, a
forest of 10 trees: as installed); the model is then trained on every training row with each weight
and evaluated on the sample's holdout. Histories as bench_sample_accuracy's (none used to choose the
cap): the synthetic template's 1M, and the switches, growth and cycle shapes.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench_sample_accuracy import write_shape

import synthetic_history as synthetic
from benchlib import bench_cluster, print_table

EXP = """
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import json, time
import numpy as np
from pganalytics_ml.forecasting import evaluation, history, training
start, end = training._window(plpy, %(server)r, 3650)
d = history.training_set(plpy, %(server)r, start.isoformat(), end.isoformat())
f = history.chunked_features(d.windows)
res = d.target - f.anchor
tr, test = ~d.holdout, d.holdout
actual = np.exp(d.target[test])
for mt in %(types)r:
    for name, cap in (("full", None), ("cheap", training.WEIGHT_FIT_ROWS)):
        t0 = time.process_time()
        w = training._residual_weight(mt, f.matrix[tr], res[tr], d.target_end[tr], fit_cap=cap)
        cpu = time.process_time() - t0
        m = training.ResidualModel(training.make_estimator(mt, int(tr.sum())), w).fit(f.matrix[tr], res[tr])
        q = evaluation.q_errors(np.exp(f.anchor[test] + m.predict(f.matrix[test])), actual)
        plpy.notice(json.dumps({"type": mt, "fit": name, "weight": w, "cpu": round(cpu, 1), "p90": q["p90"],
                                "rows": int(tr.sum())}))
$$ LANGUAGE plpython3u
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--histories", default="template,switches,growth,cycle")
    parser.add_argument("--types", default="decision_tree,random_forest,gradient_boosting")
    args = parser.parse_args()
    cluster = bench_cluster("weight-fit")
    rows: list[list[Any]] = []
    started = time.time()
    try:
        cluster.create_database("bench")
        with cluster.connect("bench") as conn:
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            for k, name in enumerate(args.histories.split(",")):
                if name == "template":
                    synthetic.ingest_template(conn, "tpl", 100, 104)
                    synthetic.clone_history(conn, "tpl", name, 10, 10)
                else:
                    write_shape(conn, name, name, seed=101 + k)
        for name in args.histories.split(","):
            lines: list[str] = []
            with cluster.connect("bench") as conn:
                conn.add_notice_handler(lambda d, lines=lines: lines.append(d.message_primary))
                conn.execute(EXP % {"server": name, "types": args.types.split(",")})
            found = [json.loads(line) for line in lines]
            for r in found:
                full = next(x for x in found if x["type"] == r["type"] and x["fit"] == "full")
                change = r["p90"] / full["p90"] - 1
                rows.append(
                    [
                        name,
                        r["type"],
                        r["fit"],
                        f"{r['rows']:,}",
                        r["weight"],
                        r["cpu"],
                        r["p90"],
                        "-" if r["fit"] == "full" else f"{change:+.2%}",
                    ]
                )
                print(f"  {name} {r['type']} {r['fit']}: weight {r['weight']}, {r['cpu']} s", flush=True)
    finally:
        cluster.destroy()
    print(f"\nResidual weight chosen by the full and the cheap fit ({time.time() - started:.0f} s)\n")
    print_table(
        [
            "history",
            "model type",
            "weight fit",
            "training rows",
            "weight",
            "CPU s of the weight fit",
            "holdout q p90",
            "p90 against full",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
