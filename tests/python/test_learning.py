"""The learning loop in SQL: train, store, activate, predict, validate, and the views over them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import uuid

import pytest

from conftest import Database
from history_builder import History, statements
from workload import pgbench

pytestmark = pytest.mark.integration

TABLES = ("models", "forecasts", "predictions", "model_key", "snapshots", "query_stats", "statements")
SERVER = "db-1"


def counts(db: Database) -> dict[str, int]:
    return {t: db.one(f"SELECT count(*) FROM pganalytics_ml.{t}") for t in TABLES}


def row(db: Database, query: str, params=None) -> dict:
    cur = db.conn.execute(query, params)
    names = [c.name for c in cur.description]
    values = cur.fetchone()
    return dict(zip(names, values, strict=True)) if values else {}


def train(db: Database, model_type: str = "random_forest", lookback: int = 90) -> dict:
    return row(db, "SELECT * FROM pgml_train(%s, %s, %s)", (lookback, model_type, SERVER))


@pytest.fixture
def trained(db: Database) -> Database:
    history = History(db.conn, SERVER)
    history.steady(statements(8), intervals=30)
    db.history = history
    db.first = train(db)
    return db


def test_training_stores_and_activates_a_model_and_forecasts_every_statement(trained: Database):
    result = trained.first
    assert result["activated"] is True and result["model_type"] == "random_forest"
    # 30 captures: the first is the baseline, and each statement's first 3 intervals are only history.
    assert result["training_samples"] + result["holdout_samples"] == 8 * (30 - 1 - 3)
    assert 1.0 <= result["q_error_p50"] <= result["q_error_p90"] <= result["q_error_p95"]
    assert result["baseline_last_q_error_p90"] >= 1.0 and result["baseline_longrun_q_error_p90"] >= 1.0
    assert 0 <= result["interval_coverage"] <= 1
    assert sum(result["feature_importance"].values()) == pytest.approx(1.0, abs=1e-3)
    model = row(trained, "SELECT * FROM pgml_models() WHERE model_id = %s", (result["model_id"],))
    assert model["is_active"] and model["server_id"] == SERVER and model["version"] == 1
    assert model["sklearn_version"] == "1.9.1" and model["size_bytes"] > 1000
    sources = trained.all("SELECT source, model_id, count(*) FROM pganalytics_ml.forecasts GROUP BY 1, 2")
    assert sources == [("model", result["model_id"], 8)]


def test_prediction_answers_from_the_model_and_logs_it(trained: Database):
    queryid = next(iter(statements(8)))
    p = row(trained, "SELECT * FROM pgml_predict(%s, %s)", (queryid, SERVER))
    assert p["source"] == "model" and p["model_id"] == trained.first["model_id"] and p["model_version"] == 1
    assert p["query_hash"] == queryid and p["logged"] is True and p["prediction_id"] > 0
    assert 0 < p["lower_bound_ms"] <= p["predicted_execution_time_ms"] <= p["upper_bound_ms"]
    assert 0 <= p["confidence"] <= 1
    logged = row(trained, "SELECT * FROM pganalytics_ml.predictions WHERE prediction_id = %s", (p["prediction_id"],))
    assert logged["predicted_ms"] == p["predicted_execution_time_ms"] and logged["validated_at"] is None

    doc = trained.one("SELECT pgml_predict_json(%s, %s)", (queryid, SERVER))
    assert set(doc) >= {
        "query_hash",
        "predicted_execution_time_ms",
        "confidence",
        "range",
        "model_version",
        "source",
        "timestamp",
    }
    assert doc["range"] == {"min": p["lower_bound_ms"], "max": p["upper_bound_ms"]}
    assert doc["query_hash"] == queryid and doc["model_version"] == 1


def test_predict_all_answers_every_statement_and_logs_only_when_asked(trained: Database):
    before = trained.one("SELECT count(*) FROM pganalytics_ml.predictions")
    rows = trained.all("SELECT prediction_id, source, logged FROM pgml_predict_all(%s)", (SERVER,))
    assert len(rows) == 8 and all(r == (None, "model", False) for r in rows)
    assert trained.one("SELECT count(*) FROM pganalytics_ml.predictions") == before
    logged = trained.all("SELECT prediction_id FROM pgml_predict_all(%s, log => true)", (SERVER,))
    assert all(r[0] is not None for r in logged)
    assert trained.one("SELECT count(*) FROM pganalytics_ml.predictions") == before + 8


def test_the_next_capture_validates_logged_predictions(trained: Database):
    queryid = next(iter(statements(8)))
    prediction_id = trained.one("SELECT prediction_id FROM pgml_predict(%s, %s)", (queryid, SERVER))
    means = {q: 7.0 for q in statements(8)}
    trained.history.capture(means)
    p = row(trained, "SELECT * FROM pganalytics_ml.predictions WHERE prediction_id = %s", (prediction_id,))
    assert p["validated_by"] == "observed" and p["actual_ms"] == pytest.approx(7.0)
    assert p["error_percent"] == pytest.approx(abs(p["predicted_ms"] - 7.0) / 7.0 * 100)
    assert p["within_interval"] == (p["lower_ms"] <= 7.0 <= p["upper_ms"])
    accuracy = row(trained, "SELECT * FROM pganalytics_ml.prediction_accuracy")
    assert accuracy["predictions"] == 1 and accuracy["model_id"] == trained.first["model_id"]
    assert accuracy["median_error_percent"] == pytest.approx(p["error_percent"], abs=0.005)  # rounded for reading


def test_two_means_in_a_row_above_the_alarm_bound_are_a_regression(trained: Database):
    queries = statements(8)
    slow = next(iter(queries))
    alarm = trained.one("SELECT alarm_upper_ms FROM pganalytics_ml.forecasts WHERE queryid = %s", (slow,))
    first = trained.history.capture({q: (alarm * 10 if q == slow else level) for q, level in queries.items()})
    assert trained.all("SELECT * FROM pganalytics_ml.regressions") == []  # one interval is not an alarm
    at = trained.history.capture({q: (alarm * 10 if q == slow else level) for q, level in queries.items()})
    regression = row(trained, "SELECT * FROM pganalytics_ml.regressions")
    assert regression["query_hash"] == slow and regression["observed_ms"] == pytest.approx(alarm * 10)
    assert regression["intervals_above"] == 2 and regression["times_upper_bound"] > 1
    assert regression["observed_at"] == at
    assert regression["since"] < first < at


def test_validate_scores_a_prediction_and_a_second_validation_replaces_the_first(trained: Database):
    queryid = next(iter(statements(8)))
    p = row(trained, "SELECT * FROM pgml_predict(%s, %s)", (queryid, SERVER))
    v = row(trained, "SELECT * FROM pgml_validate(%s, %s)", (p["prediction_id"], 2 * p["predicted_execution_time_ms"]))
    assert v["error_percent"] == pytest.approx(50.0)
    assert v["accuracy_score"] == pytest.approx(0.5)
    assert v["within_confidence_interval"] is (2 * p["predicted_execution_time_ms"] <= p["upper_bound_ms"])
    v2 = row(trained, "SELECT * FROM pgml_validate(%s, %s)", (p["prediction_id"], p["predicted_execution_time_ms"]))
    assert v2["error_percent"] == pytest.approx(0.0) and v2["accuracy_score"] == pytest.approx(1.0)
    stored = row(
        trained,
        "SELECT actual_ms, validated_by FROM pganalytics_ml.predictions WHERE prediction_id = %s",
        (p["prediction_id"],),
    )
    assert stored == {"actual_ms": p["predicted_execution_time_ms"], "validated_by": "manual"}


@pytest.mark.parametrize(
    ("call", "sqlstate", "message"),
    [
        ("pgml_validate(NULL, 1)", "22004", "prediction_id must not be NULL"),
        ("pgml_validate(1, NULL)", "22004", "actual_execution_time_ms must not be NULL"),
        ("pgml_validate(1, 0)", "22023", "positive, finite"),
        ("pgml_validate(1, -3)", "22023", "positive, finite"),
        ("pgml_validate(1, 'NaN')", "22023", "positive, finite"),
        ("pgml_validate(1, 'Infinity')", "22023", "positive, finite"),
        ("pgml_validate(987654321, 5)", "P0002", "unknown prediction_id 987654321"),
        ("pgml_predict(NULL)", "22004", "query_hash must not be NULL"),
        ("pgml_predict(42, 'db-1')", "P0002", "unknown query_hash 42"),
        ("pgml_predict(-1000003, NULL)", "22004", "server_id must not be NULL"),
        ("pgml_predict_all(NULL)", "22004", "must not be NULL"),
        ("pgml_train(NULL)", "22004", "lookback_days must not be NULL"),
        ("pgml_train(0)", "22023", "lookback_days must be between 1 and 3650"),
        ("pgml_train(3651)", "22023", "lookback_days must be between 1 and 3650"),
        ("pgml_train(90, NULL)", "22004", "model_type must not be NULL"),
        ("pgml_train(90, 'deep_learning')", "22023", "unknown model_type 'deep_learning'"),
        ("pgml_train(90, 'random_forest', NULL)", "22004", "server_id must not be NULL"),
        ("pgml_train(90, 'auto', 'never-seen')", "P0002", 'no history captured for server "never-seen"'),
        ("pgml_activate_model(NULL)", "22004", "model_id must not be NULL"),
        ("pgml_activate_model(987654)", "P0002", "model 987654 does not exist"),
        ("pgml_cleanup_models(NULL)", "22004", "keep_count must not be NULL"),
        ("pgml_cleanup_models(-1)", "22023", "keep_count must be 0 or more"),
    ],
)
def test_bad_arguments_get_a_sqlstate_a_hint_and_write_nothing(trained: Database, call, sqlstate, message):
    before = counts(trained)
    err = trained.error(f"SELECT * FROM {call}")
    assert err.sqlstate == sqlstate
    assert message in err.diag.message_primary
    assert err.diag.message_hint
    assert counts(trained) == before


def test_unknown_model_type_error_lists_the_valid_ones(db: Database):
    err = db.error("SELECT * FROM pgml_train(30, 'xgboost')")
    for name in ("linear_regression", "decision_tree", "random_forest", "gradient_boosting", "auto"):
        assert name in err.diag.message_hint


def test_too_little_history_says_how_much_and_what_to_do(db: Database):
    History(db.conn, SERVER).steady(statements(3), intervals=6)
    before = counts(db)
    err = db.error("SELECT * FROM pgml_train(90, 'random_forest', 'db-1')")
    assert err.sqlstate == "P0002"
    # 6 captures: a baseline, then 5 intervals per statement, the first 3 of them only history.
    assert "6 samples in the last 90 days, at least 60 are needed" in err.diag.message_primary
    assert "pgml_snapshot()" in err.diag.message_hint
    assert counts(db) == before


def test_a_new_model_activates_only_when_it_beats_the_active_one(trained: Database):
    again = train(trained)  # same data, same seed: the same holdout error, so no improvement
    assert again["activated"] is False
    assert again["active_model_q_error_p90"] == pytest.approx(trained.first["q_error_p90"])
    active = trained.all("SELECT model_id FROM pganalytics_ml.models WHERE is_active")
    assert active == [(trained.first["model_id"],)]
    other = train(trained, "linear_regression")
    assert other["activated"] == (other["q_error_p90"] < other["active_model_q_error_p90"])


def test_activate_rolls_back_and_cleanup_never_deletes_the_active_model(trained: Database):
    second = train(trained, "linear_regression")
    third = train(trained, "decision_tree")
    first_id = trained.first["model_id"]
    activated = row(trained, "SELECT * FROM pgml_activate_model(%s)", (first_id,))
    assert activated["is_active"] and activated["model_id"] == first_id
    assert trained.one("SELECT DISTINCT model_id FROM pganalytics_ml.forecasts") == first_id
    assert trained.one("SELECT pgml_cleanup_models(1)") == 1  # keeps the newest and the active one
    left = [r[0] for r in trained.all("SELECT model_id FROM pgml_models() ORDER BY model_id")]
    assert left == [first_id, third["model_id"]] and second["model_id"] not in left
    assert trained.one("SELECT pgml_cleanup_models(0)") == 1
    assert [r[0] for r in trained.all("SELECT model_id FROM pgml_models()")] == [first_id]


def test_without_a_model_forecasts_are_honest_baselines(db: Database):
    history = History(db.conn, SERVER)
    history.capture({7: 10.0})
    assert db.error("SELECT * FROM pgml_predict(7, 'db-1')").diag.message_primary.startswith(
        'statement 7 of server "db-1" has no execution history yet'
    )
    history.capture({7: 10.0})
    history.capture({7: 14.0})
    p = row(db, "SELECT * FROM pgml_predict(7, 'db-1')")
    assert p["source"] == "baseline" and p["model_id"] is None and p["model_version"] is None
    assert 10.0 < p["predicted_execution_time_ms"] < 14.0  # the EWMA of what was observed
    assert p["lower_bound_ms"] < p["predicted_execution_time_ms"] < p["upper_bound_ms"]


def test_a_changed_model_is_refused_and_forecasts_fall_back_to_the_baseline(trained: Database):
    model_id = trained.first["model_id"]
    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET model = model || '\\x00'::bytea WHERE model_id = %s", (model_id,)
    )
    err = trained.error("SELECT * FROM pgml_activate_model(%s)", (model_id,))
    assert err.sqlstate == "XX001" and "failed its integrity check" in err.diag.message_primary
    assert "pgml_train" in err.diag.message_hint
    trained.history.capture({q: 5.0 for q in statements(8)})
    assert trained.all("SELECT DISTINCT source FROM pganalytics_ml.forecasts") == [("baseline",)]


def test_a_malicious_pickle_never_runs(trained: Database):
    marker = f"/tmp/pgml-pickle-ran-{uuid.uuid4().hex}"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET model = %s WHERE model_id = %s",
        (pickle.dumps(Payload()), trained.first["model_id"]),
    )
    err = trained.error("SELECT * FROM pgml_activate_model(%s)", (trained.first["model_id"],))
    assert err.sqlstate == "XX001"
    trained.history.capture({q: 5.0 for q in statements(8)})  # a capture would load the active model too
    assert not os.path.exists(marker)


def test_a_model_from_another_scikit_learn_version_is_refused(trained: Database):
    model_id = trained.first["model_id"]
    # Re-sign as pganalytics_ml would have under scikit-learn 1.0.0 (only the owner can read the key).
    key = bytes(trained.one("SELECT key FROM pganalytics_ml.model_key"))
    rec = row(
        trained,
        "SELECT model_id, server_id, model_type, version, feature_names, calibration, model"
        " FROM pganalytics_ml.models WHERE model_id = %s",
        (model_id,),
    )
    meta = {k: rec[k] for k in ("model_id", "server_id", "model_type", "version", "feature_names", "calibration")}
    meta["sklearn_version"] = "1.0.0"
    signed = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    signature = hmac.new(key, bytes(rec["model"]) + b"\0" + signed, hashlib.sha256).digest()
    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET sklearn_version = '1.0.0', signature = %s WHERE model_id = %s",
        (signature, model_id),
    )
    err = trained.error("SELECT * FROM pgml_activate_model(%s)", (model_id,))
    assert err.sqlstate == "55000"
    assert "written by scikit-learn 1.0.0" in err.diag.message_primary and "Retrain" in err.diag.message_hint


def test_training_on_a_real_pgbench_history(db: Database):
    db.conn.execute("CREATE TABLE probe (id int PRIMARY KEY, v int)")
    db.conn.execute("INSERT INTO probe SELECT g, g FROM generate_series(1, 2000) g")
    script = (
        "\\set id random(1, 2000)\nSELECT v FROM probe WHERE id = :id;\nUPDATE probe SET v = v + 1 WHERE id = :id;\n"
        "SELECT count(*) FROM probe WHERE v > :id;\n"
    )
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    for i in range(40):
        pgbench(db.cluster, db.name, script, transactions=20 + 10 * (i % 4), clients=1 + i % 2)
        db.conn.execute("SELECT * FROM pgml_snapshot()")
    result = row(db, "SELECT * FROM pgml_train(1, 'linear_regression')")
    assert result["activated"] and result["training_samples"] > 0
    probe_ids = [
        r[0]
        for r in db.all(
            "SELECT queryid FROM pganalytics_ml.statements WHERE 'probe' = ANY (tables)"
            " AND statement_kind IN ('select', 'update') AND database = %s",
            (db.name,),
        )
    ]
    assert len(probe_ids) == 3
    sources = {
        r[0] for r in db.all("SELECT source FROM pganalytics_ml.forecasts WHERE queryid = ANY (%s)", (probe_ids,))
    }
    assert sources == {"model"}
