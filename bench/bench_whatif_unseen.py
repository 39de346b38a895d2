"""Unseen statements (issue 15): predict query shapes that never ran, from their plans, then run them and score.

Each run builds a workload on a fresh cluster: tables of several sizes and query shapes (templates)
instantiated on each table, run by a login role for a few snapshot intervals. A few shapes are held out
entirely: none of their statements runs before the prediction. pgml_capture_plans() plans the statements
that ran, pgml_train() trains the forecaster and the plan model, and then each held-out statement is
planned as the role (never executed), with the parameter values it will run with written in as
literals, and predicted: by the plan model, and by the baseline, the
optimizer's total cost times the one factor fitted on the same training statements. Only then are the
held-out statements run, and their mean time from pg_stat_statements is the actual.

Prediction goes through pgml_predict_sql(sql) when the extension has it, else through the Python API
(capture.plans.plan_as as the role, then whatif.estimate.absolute) in the database.

Targets: p50 q-error <= 1.5, p90 <= 3, and p50 excess error (q - 1) at most half the baseline's.
Workload shapes x seeds, every run shown, medians. The same run also compares, on the training
history, how many rows per statement the plan model learns from (grouped holdout figures).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from typing import Any

from benchlib import Cluster, bench_cluster, print_table

ROLE = "bench_app"
INTERVALS = 10
REPEATS = 2  # executions of each statement per interval
HELD_OUT_SHAPES = 3
HELD_OUT_RUNS = 5

# Templates: {t} a table, {u} the next one (a join partner); params(n) its parameters on a table of n rows.
SHAPES: dict[str, tuple[str, Any]] = {
    "count": ("SELECT count(*) FROM {t}", lambda n, r: ()),
    "point": ("SELECT * FROM {t} WHERE id = %s", lambda n, r: (r.randint(1, n),)),
    "range_sum": ("SELECT sum(b) FROM {t} WHERE id BETWEEN %s AND %s", lambda n, r: (1, n // 20)),
    "group": ("SELECT a, count(*) FROM {t} GROUP BY a", lambda n, r: ()),
    "topn": ("SELECT id, b FROM {t} ORDER BY b DESC LIMIT %s", lambda n, r: (10,)),
    "filter": ("SELECT count(*) FROM {t} WHERE b < %s", lambda n, r: (100,)),
    "eq_a": ("SELECT id, pad FROM {t} WHERE a = %s", lambda n, r: (r.randint(0, 999),)),
    "distinct": ("SELECT count(DISTINCT b) FROM {t}", lambda n, r: ()),
    "join": ("SELECT count(*) FROM {t} x JOIN {u} y ON y.id = x.a", lambda n, r: ()),
    "join_filter": (
        "SELECT sum(y.b) FROM {t} x JOIN {u} y ON y.id = x.id WHERE x.b < %s",
        lambda n, r: (500,),
    ),
    "like": ("SELECT count(*) FROM {t} WHERE pad LIKE %s", lambda n, r: ("%7a%",)),
    "window": ("SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY b) AS r FROM {t}) s", lambda n, r: ()),
    "in_list": ("SELECT count(*) FROM {t} WHERE a IN (%s, %s, %s)", lambda n, r: (1, 2, 3)),
    "or_filter": ("SELECT count(*) FROM {t} WHERE b < %s OR a = %s", lambda n, r: (50, 7)),
    "group_b": ("SELECT b, count(*) FROM {t} GROUP BY b", lambda n, r: ()),
    "sort_limit": ("SELECT id FROM {t} ORDER BY a, b LIMIT %s", lambda n, r: (20,)),
    "exists": ("SELECT count(*) FROM {t} x WHERE EXISTS (SELECT 1 FROM {u} y WHERE y.id = x.b)", lambda n, r: ()),
    "self_join": (
        "SELECT count(*) FROM {t} x JOIN {t} y ON x.a = y.a WHERE x.id < %s",
        lambda n, r: (max(n // 100, 10),),
    ),
    "min_max": ("SELECT min(b), max(b), avg(b) FROM {t}", lambda n, r: ()),
    "pad_order": ("SELECT pad FROM {t} WHERE id < %s ORDER BY pad", lambda n, r: (n // 10,)),
    "cte_agg": (
        "WITH s AS (SELECT a, sum(b) AS total FROM {t} GROUP BY a) SELECT max(total) FROM s",
        lambda n, r: (),
    ),
    "left_join": ("SELECT count(y.id) FROM {t} x LEFT JOIN {u} y ON y.id = x.id", lambda n, r: ()),
}
WORKLOADS = {
    "scans": {
        "sizes": (5_000, 20_000, 60_000, 150_000),
        "index_a": False,
        "shapes": (
            "count",
            "group",
            "topn",
            "filter",
            "distinct",
            "join",
            "like",
            "window",
            "range_sum",
            "or_filter",
            "group_b",
            "sort_limit",
            "min_max",
            "cte_agg",
            "left_join",
            "exists",
        ),
    },
    "lookups": {
        "sizes": (10_000, 50_000, 200_000),
        "index_a": True,
        "shapes": (
            "point",
            "eq_a",
            "range_sum",
            "join_filter",
            "join",
            "filter",
            "topn",
            "count",
            "group",
            "in_list",
            "self_join",
            "pad_order",
            "or_filter",
            "exists",
            "left_join",
        ),
    },
    "mixed": {
        "sizes": (2_000, 10_000, 30_000, 80_000, 150_000),
        "index_a": True,
        "shapes": tuple(SHAPES),
    },
}

PREDICT_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.bench_predict(texts text[], role text) RETURNS text LANGUAGE plpython3u AS $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import json, math
from pganalytics_ml.capture import plans
from pganalytics_ml.whatif import estimate, plan_model
loaded = plan_model.load(plpy, 'local')
load = estimate.server_load(plpy, 'local')
out = []
for sql in texts:
    planned = plans.plan_as(plpy, sql, role)
    if not isinstance(planned, plans.Planned):
        out.append({"skipped": planned.reason, "detail": planned.detail})
        continue
    d = planned.description | {"sql": sql}
    e = estimate.absolute(plpy, 'local', d)
    x = plan_model.feature_row(d, estimate.structure_of(d), load, 1.0)
    out.append({"predicted": e.predicted_ms, "lower": e.lower_ms, "upper": e.upper_ms, "source": e.source,
                "baseline": math.exp(float(loaded.model.baseline_log(x)[0])), "cost": d["total_cost"],
                "x": x[0].tolist(), "fingerprint": d["fingerprint"]})
return json.dumps(out)
$$
"""
ROWS_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.bench_rows() RETURNS text LANGUAGE plpython3u AS $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import json
from pganalytics_ml.forecasting import history, training
from pganalytics_ml.whatif import plan_model
start, end = training._window(plpy, 'local', 90)
data = history.training_set(plpy, 'local', start.isoformat(), end.isoformat())
out = {n: plan_model.fit(data, n).metrics for n in (1, plan_model.ROWS_PER_STATEMENT, 0)}
w = data.windows
x, y, groups = plan_model.rows(w.structure, w.load, w.plan, data.target, data.queryid)
out["train"] = {"x": x.tolist(), "y": y.tolist(), "groups": [int(g) for g in groups]}
return json.dumps(out)
$$
"""


def statements(workload: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(shape, table, sql with %s, rows of the table) of every statement of the workload."""
    sizes = workload["sizes"]
    out = []
    for shape in workload["shapes"]:
        template = SHAPES[shape][0]
        for i, n in enumerate(sizes):
            out.append((shape, f"t{i}", template.format(t=f"t{i}", u=f"t{(i + 1) % len(sizes)}"), n))
    return out


def numbered(sql: str) -> str:
    """The text as pg_stat_statements shows it: %s placeholders as $1, $2..."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))


def literal(sql: str, params: tuple[Any, ...]) -> str:
    """The text with its parameters written in as literals, as a DBA would ask about it."""
    parts = sql.split("%s")
    quoted = [str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'" for v in params]
    return parts[0] + "".join(q + p for q, p in zip(quoted, parts[1:], strict=True))


def setup(cluster: Cluster, workload: dict[str, Any], seed: int) -> None:
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {ROLE}")
        conn.execute("SET pganalytics_ml.plan_new_statements = off")
    with cluster.connect(user=ROLE) as app:
        app.execute(f"SELECT setseed({(seed % 1000) / 1000})")
        for i, n in enumerate(workload["sizes"]):
            app.execute(f"CREATE TABLE t{i} (id int PRIMARY KEY, a int, b int, pad text)")
            app.execute(
                f"INSERT INTO t{i} SELECT g, (random() * 999)::int, (random() * 9999)::int, md5(g::text || %s)"
                " FROM generate_series(1, %s) g",
                (str(seed), n),
            )
            if workload["index_a"]:
                app.execute(f"CREATE INDEX ON t{i} (a)")
        app.execute("VACUUM ANALYZE")
    with cluster.connect() as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def run_once(name: str, seed: int) -> dict[str, Any]:
    workload = WORKLOADS[name]
    rng = random.Random(seed)
    held_shapes = set(rng.sample(workload["shapes"], HELD_OUT_SHAPES))
    every = statements(workload)
    seen = [s for s in every if s[0] not in held_shapes]
    unseen = [s for s in every if s[0] in held_shapes]
    cluster = bench_cluster(f"unseen-{name}-{seed}", **{"pg_stat_statements.track": "top"})
    try:
        setup(cluster, workload, seed)
        with cluster.connect() as conn, cluster.connect(user=ROLE) as app:
            conn.execute("SET pganalytics_ml.plan_new_statements = off")
            conn.execute("SELECT * FROM pgml_snapshot()").fetchall()
            for k in range(INTERVALS):
                for shape, _, sql, n in seen:
                    for _ in range(REPEATS):
                        app.execute(sql, SHAPES[shape][1](n, rng)).fetchall()
                conn.execute("SELECT * FROM pgml_snapshot()").fetchall()
                if k == 0:
                    conn.execute("SELECT * FROM pgml_capture_plans()").fetchall()
            cur = conn.execute("SELECT * FROM pgml_train(1, 'decision_tree')")
            trained = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
            conn.execute(ROWS_FUNCTION)
            rows_compared = json.loads(conn.execute("SELECT pg_temp.bench_rows()").fetchone()[0])
            train_rows = rows_compared.pop("train")
            texts = [numbered(sql) for _, _, sql, _ in unseen]
            params = [SHAPES[shape][1](n, rng) for shape, _, _, n in unseen]
            asked = [literal(sql, p) for (_, _, sql, _), p in zip(unseen, params, strict=True)]
            # Predicted before any of them runs: none is in pg_stat_statements yet.
            ran = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE query = ANY (%s)", (texts,)).fetchone()
            assert ran[0] == 0, "a held-out statement ran before its prediction"
            via = "pgml_predict_sql" if _has_predict_sql(conn) else "Python API (plan_as + estimate.absolute)"
            predictions = _predict(conn, app, asked, via)
            for (_, _, sql, _), p in zip(unseen, params, strict=True):
                for _ in range(HELD_OUT_RUNS):
                    app.execute(sql, p).fetchall()
            actual = dict(
                conn.execute(
                    "SELECT query, mean_exec_time FROM pg_stat_statements WHERE query = ANY (%s)", (texts,)
                ).fetchall()
            )
    finally:
        cluster.destroy()
    cases = []
    for (shape, table, _, n), text, p in zip(unseen, texts, predictions, strict=True):
        if "predicted" not in p or text not in actual:
            cases.append({"shape": shape, "table": table, "skipped": p.get("skipped", "not run")})
            continue
        a = actual[text]
        cases.append(
            {
                "shape": shape,
                "table": table,
                "rows": n,
                "actual": a,
                "predicted": p["predicted"],
                "baseline": p["baseline"],
                "q_model": max(p["predicted"] / a, a / p["predicted"]),
                "q_base": max(p["baseline"] / a, a / p["baseline"]),
                "inside": p["lower"] <= a <= p["upper"],
                "source": p["source"],
                "x": p.get("x"),
                "fingerprint": p.get("fingerprint"),
            }
        )
    return {
        "train_rows": train_rows,
        "workload": name,
        "seed": seed,
        "held_out": sorted(held_shapes),
        "trained": trained,
        "rows_compared": rows_compared,
        "via": via,
        "cases": cases,
    }


def _has_predict_sql(conn: Any) -> bool:
    return bool(conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'pgml_predict_sql'").fetchone()[0])


def _predict(conn: Any, app: Any, texts: list[str], via: str) -> list[dict[str, Any]]:
    conn.execute(PREDICT_FUNCTION)  # also for the baseline's figure, cost x the fitted factor
    ours = json.loads(conn.execute("SELECT pg_temp.bench_predict(%s, %s)", (texts, ROLE)).fetchone()[0])
    if via != "pgml_predict_sql":
        return ours
    conn.execute(f"GRANT pgml_reader TO {ROLE}")
    out = []
    for text, mine in zip(texts, ours, strict=True):
        cur = app.execute("SELECT * FROM pgml_predict_sql(%s)", (text,))
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
        out.append(
            mine
            | {
                "predicted": row["predicted_execution_time_ms"],
                "lower": row["lower_bound_ms"],
                "upper": row["upper_bound_ms"],
                "source": row["source"],
            }
        )
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(run: dict[str, Any]) -> dict[str, Any]:
    scored = [c for c in run["cases"] if "actual" in c]
    qm = [c["q_model"] for c in scored]
    qb = [c["q_base"] for c in scored]
    t = run["trained"]
    return {
        "p50": percentile(qm, 50),
        "p90": percentile(qm, 90),
        "base_p50": percentile(qb, 50),
        "base_p90": percentile(qb, 90),
        "coverage": sum(c["inside"] for c in scored) / len(scored),
        "scored": len(scored),
        "skipped": len(run["cases"]) - len(scored),
        "train_statements": t["plan_model_statements"],
        "cv_p50": t["plan_model_q_error_p50"],
        "cv_p90": t["plan_model_q_error_p90"],
        "cv_base_p50": t["plan_cost_q_error_p50"],
        "cv_base_p90": t["plan_cost_q_error_p90"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--dump", help="write every run's training rows and unseen feature rows (JSON) here")
    args = parser.parse_args()
    runs = []
    for name in args.workloads:
        for seed in args.seeds:
            run = run_once(name, seed)
            runs.append(run | {"summary": summary(run)})
            if args.dump:
                with open(args.dump, "w") as f:
                    json.dump(runs, f)
            s = runs[-1]["summary"]
            print(
                f"# {name} seed {seed}: held out {', '.join(run['held_out'])}; unseen p50 {s['p50']:.2f} "
                f"p90 {s['p90']:.2f} (cost baseline {s['base_p50']:.2f} / {s['base_p90']:.2f}) via {run['via']}",
                flush=True,
            )
    print(f"\nUnseen statements: {HELD_OUT_SHAPES} shapes held out per run, every statement of them on every table\n")
    print_table(
        [
            "workload",
            "seed",
            "held-out shapes",
            "unseen stmts",
            "q p50",
            "q p90",
            "baseline p50",
            "baseline p90",
            "90% interval coverage",
            "train stmts",
            "grouped CV p50 / p90",
            "CV baseline p50 / p90",
        ],
        [
            [
                r["workload"],
                r["seed"],
                ", ".join(r["held_out"]),
                r["summary"]["scored"],
                r["summary"]["p50"],
                r["summary"]["p90"],
                r["summary"]["base_p50"],
                r["summary"]["base_p90"],
                f"{r['summary']['coverage']:.0%}",
                r["summary"]["train_statements"],
                f"{r['summary']['cv_p50']:.2f} / {r['summary']['cv_p90']:.2f}",
                f"{r['summary']['cv_base_p50']:.2f} / {r['summary']['cv_base_p90']:.2f}",
            ]
            for r in runs
        ],
    )
    print("\nEvery unseen statement (actual and predicted mean ms)\n")
    print_table(
        ["workload", "seed", "shape", "table rows", "actual", "plan model", "cost baseline", "q model", "q base"],
        [
            [
                r["workload"],
                r["seed"],
                c["shape"],
                c["rows"],
                c["actual"],
                c["predicted"],
                c["baseline"],
                c["q_model"],
                c["q_base"],
            ]
            if "actual" in c
            else [r["workload"], r["seed"], c["shape"], "-", "skipped: " + c["skipped"], "-", "-", "-", "-"]
            for r in runs
            for c in r["cases"]
        ],
    )
    print("\nRows per statement the plan model learns from (grouped 5-fold CV on the training history, medians)\n")
    modes = {"1": "1 (its latest interval)", "8": "8 latest intervals (default)", "0": "every interval"}
    print_table(
        ["rows per statement", "CV p50", "CV p90", "runs"],
        [
            [
                label,
                statistics.median(r["rows_compared"][k]["q_error_p50"] for r in runs),
                statistics.median(r["rows_compared"][k]["q_error_p90"] for r in runs),
                len(runs),
            ]
            for k, label in modes.items()
        ],
    )
    med = {k: statistics.median(r["summary"][k] for r in runs) for k in ("p50", "p90", "base_p50", "base_p90")}
    excess, base_excess = med["p50"] - 1, med["base_p50"] - 1
    print(
        f"\nMedians of {len(runs)} runs: unseen p50 {med['p50']:.3f}, p90 {med['p90']:.3f}; cost baseline "
        f"p50 {med['base_p50']:.3f}, p90 {med['base_p90']:.3f}\n"
    )
    verdict = "meets" if med["p50"] <= 1.5 else "MISSES"
    print(f"  {verdict}: unseen p50 q-error <= 1.5 (median {med['p50']:.3f})")
    verdict = "meets" if med["p90"] <= 3 else "MISSES"
    print(f"  {verdict}: unseen p90 q-error <= 3 (median {med['p90']:.3f})")
    verdict = "meets" if excess <= base_excess / 2 else "MISSES"
    print(
        f"  {verdict}: p50 excess error at most half the cost baseline's (model {excess:.3f}, baseline "
        f"{base_excess:.3f}: {excess / base_excess if base_excess else float('inf'):.0%} of it)"
    )
    per_workload = {
        name: [r["summary"] for r in runs if r["workload"] == name]
        for name in dict.fromkeys(r["workload"] for r in runs)
    }
    for name, rs in per_workload.items():
        print(
            f"  {name}: median p50 {statistics.median(s['p50'] for s in rs):.3f} (baseline "
            f"{statistics.median(s['base_p50'] for s in rs):.3f}), p90 {statistics.median(s['p90'] for s in rs):.3f} "
            f"(baseline {statistics.median(s['base_p90'] for s in rs):.3f})"
        )


if __name__ == "__main__":
    main()
