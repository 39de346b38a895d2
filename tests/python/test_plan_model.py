"""The plan model (issue 15): trained by pgml_train across statements, evaluated on statements held out whole
beside the cost-scaled baseline, stored signed, and answering for statements never run."""

from __future__ import annotations

import json
import math
import random

import pytest

from conftest import Database
from history_builder import History

pytestmark = pytest.mark.integration

SERVER = "db-1"
# Each kind of plan costs the optimizer differently from what it takes: one factor on the cost cannot fit
# them all, the node counts can.
MS_PER_TUPLE = {"seq": 5e-5, "join": 1e-4}
MS_PER_INDEX_ROW = 1e-3


def node(kind: str, relation: str, cost: float, rows: float, children: list | None = None) -> dict:
    out = {"Node Type": kind, "Total Cost": cost, "Plan Rows": rows, "Plan Width": 16}
    if relation:
        out |= {"Relation Name": relation, "Schema": "public"}
    if kind == "Index Scan":
        out["Index Name"] = f"{relation}_pkey"
    return out | ({"Plans": children} if children else {})


def synthetic(i: int, rng: random.Random) -> tuple[list, list, float]:
    """(plan, relation sizes, true mean ms) of statement ``i``."""
    kind = ("seq", "index", "join")[i % 3]
    tuples = 10 ** rng.uniform(3, 6)
    sizes = [{"relation": f"public.t{i}", "pages": int(tuples / 100), "tuples": tuples, "indexes": 1}]
    if kind == "seq":
        plan = node("Seq Scan", f"t{i}", tuples / 100 + tuples * 0.01, tuples / 10)
        ms = tuples * MS_PER_TUPLE["seq"]
    elif kind == "index":
        rows = 10 ** rng.uniform(0, 3)
        plan = node("Index Scan", f"t{i}", 4 + rows * 4, rows)
        ms = 0.01 + rows * MS_PER_INDEX_ROW
    else:
        other = tuples / 10
        sizes.append({"relation": f"public.u{i}", "pages": int(other / 100), "tuples": other, "indexes": 1})
        scan_a = node("Seq Scan", f"t{i}", tuples * 0.011, tuples)
        scan_b = node("Seq Scan", f"u{i}", other * 0.011, other)
        plan = node(
            "Hash Join", "", (tuples + other) * 0.02, tuples, [scan_a, node("Hash", "", other * 0.012, other, [scan_b])]
        )
        ms = (tuples + other) * MS_PER_TUPLE["join"]
    return [{"Plan": plan}], sizes, ms


def ingest(
    db: Database, statements: int, intervals: int = 12, seed: int = 3, server: str = SERVER, planned: int | None = None
) -> None:
    """``statements`` statements, the first ``planned`` of them (all by default) with a pushed plan."""
    rng = random.Random(seed)
    truth = {}
    extra = {}
    for i in range(statements):
        plan, sizes, ms = synthetic(i, rng)
        queryid = -(i + 1) * 7919
        truth[queryid] = ms
        if planned is None or i < planned:
            extra[queryid] = {"plan": plan, "relations": sizes}
    history = History(db.conn, server)
    for k in range(intervals):
        means = {q: ms * math.exp(rng.gauss(0, 0.1)) for q, ms in truth.items()}
        history.capture(means, extra=extra if k == 0 else None)


def train(db: Database, server: str = SERVER) -> dict:
    cur = db.conn.execute("SELECT * FROM pgml_train(90, 'decision_tree', %s)", (server,))
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


PREDICT_UNSEEN = """
CREATE OR REPLACE FUNCTION pg_temp.predict_unseen(server text, cases text) RETURNS text LANGUAGE plpython3u AS $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import json, time
from pganalytics_ml.capture import plan_features
from pganalytics_ml.errors import PgmlError
from pganalytics_ml.whatif import estimate
out = []
for plan, sizes in json.loads(cases):
    description = plan_features.describe(plan, {s["relation"]: s for s in sizes}, time.time())
    try:
        e = estimate.absolute(plpy, server, description)
        out.append([e.predicted_ms, e.lower_ms, e.upper_ms, e.source, e.model_id])
    except PgmlError as exc:
        out.append([exc.sqlstate, str(exc), exc.hint])
return json.dumps(out)
$$
"""


def predict_unseen(db: Database, cases: list, server: str = SERVER) -> list:
    db.conn.execute(PREDICT_UNSEEN)
    return json.loads(db.one("SELECT pg_temp.predict_unseen(%s, %s)", (server, json.dumps(cases))))


def test_training_yields_a_plan_model_evaluated_on_statements_held_out_whole(db: Database):
    ingest(db, 45)
    result = train(db)
    assert result["plan_model_statements"] == 45
    assert result["plan_model_id"] is not None
    for column in (
        "plan_model_q_error_p50",
        "plan_model_q_error_p90",
        "plan_cost_q_error_p50",
        "plan_cost_q_error_p90",
    ):
        assert result[column] >= 1.0, column
    # The kinds of plan differ in time per unit of cost by 10x: no single factor fits them, the model does.
    assert result["plan_cost_q_error_p50"] > 1.5
    assert result["plan_model_q_error_p50"] < result["plan_cost_q_error_p50"] / 1.5
    assert "held out whole" in result["plan_model_note"]
    stored = db.conn.execute(
        "SELECT p.model_id, p.statements, p.metrics, m.metrics->'plan_model' FROM pganalytics_ml.plan_models p"
        " JOIN pganalytics_ml.models m USING (model_id) WHERE p.plan_model_id = %s",
        (result["plan_model_id"],),
    ).fetchone()
    assert stored[0] == result["model_id"] and stored[1] == 45
    assert stored[2]["q_error_p50"] == result["plan_model_q_error_p50"] == stored[3]["q_error_p50"]
    assert stored[2]["baseline_cost_q_error_p90"] == result["plan_cost_q_error_p90"]


def test_the_same_history_gives_the_same_plan_model_figures(db: Database):
    ingest(db, 30, seed=5)
    first, second = train(db), train(db)
    keys = ("plan_model_q_error_p50", "plan_model_q_error_p90", "plan_cost_q_error_p50", "plan_cost_q_error_p90")
    assert [first[k] for k in keys] == [second[k] for k in keys]


def test_unseen_statements_are_predicted_from_their_plans(db: Database):
    ingest(db, 45)
    result = train(db)
    rng = random.Random(99)  # statements of other sizes, never ingested
    cases = [synthetic(1000 + i, rng) for i in range(9)]
    answers = predict_unseen(db, [[plan, sizes] for plan, sizes, _ in cases])
    q = []
    for (predicted, lower, upper, source, model_id), (_, _, ms) in zip(answers, cases, strict=True):
        assert source == "plan_model" and model_id == result["plan_model_id"]
        assert lower < predicted < upper
        q.append(max(predicted / ms, ms / predicted))
    assert sorted(q)[len(q) // 2] < 1.5, q


def test_without_enough_planned_statements_training_succeeds_without_a_plan_model(db: Database):
    ingest(db, 30, planned=8)
    result = train(db)
    assert result["model_id"] is not None
    assert result["plan_model_id"] is None and result["plan_model_statements"] == 8
    assert result["plan_model_q_error_p50"] is None and result["plan_cost_q_error_p90"] is None
    assert "at least 12 are needed" in result["plan_model_note"]
    assert db.one("SELECT count(*) FROM pganalytics_ml.plan_models") == 0
    rng = random.Random(1)
    plan, sizes, _ = synthetic(500, rng)
    (answer,) = predict_unseen(db, [[plan, sizes]])
    assert answer[0] == "P0002" and "no plan model" in answer[1] and "pgml_train" in answer[2]


def test_tampered_plan_model_bytes_are_refused(db: Database):
    ingest(db, 30)
    train(db)
    rng = random.Random(2)
    plan, sizes, _ = synthetic(600, rng)
    assert predict_unseen(db, [[plan, sizes]])[0][3] == "plan_model"
    db.conn.execute("UPDATE pganalytics_ml.plan_models SET model = model || '\\x00'::bytea")
    (answer,) = predict_unseen(db, [[plan, sizes]])
    assert answer[0] == "XX001" and "integrity check" in answer[1]
    # A signature copied from the forecaster's row does not pass either.
    db.conn.execute(
        "UPDATE pganalytics_ml.plan_models p SET model = m.model, signature = m.signature"
        " FROM pganalytics_ml.models m WHERE m.model_id = p.model_id"
    )
    assert predict_unseen(db, [[plan, sizes]])[0][0] == "XX001"


def test_the_plan_model_of_the_active_model_answers_and_cleanup_leaves_no_orphans(db: Database):
    ingest(db, 30)
    first, second = train(db), train(db)
    db.one("SELECT count(*) FROM pgml_activate_model(%s)", (first["model_id"],))
    rng = random.Random(4)
    plan, sizes, _ = synthetic(700, rng)
    assert predict_unseen(db, [[plan, sizes]])[0][4] == first["plan_model_id"]
    db.one("SELECT count(*) FROM pgml_activate_model(%s)", (second["model_id"],))
    assert predict_unseen(db, [[plan, sizes]])[0][4] == second["plan_model_id"]
    db.one("SELECT pgml_cleanup_models(0)")
    left = db.all(
        "SELECT p.model_id, m.model_id FROM pganalytics_ml.plan_models p LEFT JOIN pganalytics_ml.models m"
        " USING (model_id)"
    )
    assert left == [(second["model_id"], second["model_id"])]


def test_pgml_predict_sql_answers_from_the_plan_model(db: Database):
    ingest(db, 30)
    result = train(db)
    db.conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
    db.conn.execute("INSERT INTO orders SELECT g, g FROM generate_series(1, 5000) g")
    db.conn.execute("ANALYZE orders")
    row = db.conn.execute(
        "SELECT predicted_execution_time_ms, lower_bound_ms, upper_bound_ms, source, model_id"
        " FROM pgml_predict_sql('SELECT count(*) FROM orders WHERE total > 10', '{}', %s)",
        (SERVER,),
    ).fetchone()
    assert row[3] == "plan_model" and row[4] == result["plan_model_id"]
    assert 0 < row[1] < row[0] < row[2]
    err = db.error("SELECT * FROM pgml_predict_sql('SELECT count(*) FROM orders', '{}', 'no-such-server')")
    assert err.sqlstate == "P0002" and "no plan model" in str(err)
