"""The SQL in docs/go-integration.md, run as written through node-postgres: the contract is plain SQL.

Every statement runs on real history (collector payloads ingested with pgml_ingest_stats), as a login
role holding only the grants the page asks for, and each documented error is checked by its SQLSTATE.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import Database
from history_builder import History, planted_history, statements

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "node" / "run_contract.mjs"
DOC = ROOT / "docs" / "go-integration.md"
BOOL, INT8, INT4, TEXT, FLOAT8, TIMESTAMPTZ, JSONB = 16, 20, 23, 25, 701, 1184, 3802

CONTRACT = {
    "train",
    "train_async",
    "job_status",
    "predict",
    "predict_row",
    "predict_all",
    "validate",
    "status",
    "models",
    "activate",
    "ingest",
    "detect_patterns",
    "patterns",
    "predict_scenario",
}
SERVER = "db-1"
BIG_QUERYID = -4800823524040242111  # beyond 2**53: a float64 or a JavaScript number would round it
QUERIES = statements(6) | {BIG_QUERYID: 12.5}
PREDICTION_ROW = {
    "prediction_id": INT8,
    "query_hash": INT8,
    "predicted_execution_time_ms": FLOAT8,
    "lower_bound_ms": FLOAT8,
    "upper_bound_ms": FLOAT8,
    "confidence": FLOAT8,
    "model_id": INT8,
    "model_version": INT4,
    "source": TEXT,
}
MODEL_ROW = {
    "model_id": INT8,
    "server_id": TEXT,
    "model_type": TEXT,
    "version": INT4,
    "is_active": BOOL,
    "activated_at": TIMESTAMPTZ,
}
# RFC 3339 with an offset, as Go's time.Time unmarshals it.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)")
# timestamptz as the server sends it to a driver in text form: always with its offset.
TIMESTAMPTZ_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?")


def run_documented(db: Database, calls: dict[str, list], user: str = "postgres") -> dict:
    result = subprocess.run(
        ["node", RUNNER, DOC, json.dumps(calls)],
        env=db.cluster.libpq_env(db.name, user),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert not [call for call in calls if out[call].get("missing")], "a call names no documented statement"
    return out


def field_types(result: dict) -> dict[str, int]:
    assert "error" not in result, result.get("error")
    return {f["name"]: f["type_oid"] for f in result["fields"]}


def values(result: dict) -> list[dict]:
    """The rows with each value as a Go client decodes it: bigint exact, JSON parsed with 64-bit integers."""
    decoded = []
    for row in result["rows"]:
        out = {}
        for name, cell in row.items():
            value = cell["value"]
            if cell["type"] == "json":
                value = json.loads(value)
            elif cell["type"] == "string" and re.fullmatch(r"-?\d+", value):
                value = int(value)
            out[name] = value
        decoded.append(out)
    return decoded


def is_number(value: object) -> bool:
    """A JSON number, which a Go float64 field accepts whether it is written 1 or 1.0."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def only_row(result: dict) -> dict:
    rows = values(result)
    assert len(rows) == 1, rows
    return rows[0]


def assert_error(result: dict, sqlstate: str, *, hint: bool = True) -> None:
    assert "error" in result, f"expected SQLSTATE {sqlstate}, got rows {result.get('rows')}"
    assert result["error"]["sqlstate"] == sqlstate, result["error"]
    if hint:
        assert result["error"]["hint"], result["error"]


@pytest.fixture
def roles(db: Database) -> Iterator[dict[str, str]]:
    """Login roles: the backend (pgml_trainer, as the page says), an administrator, and one without grants."""
    names = {
        "backend": f"{db.name}_backend",
        "admin": f"{db.name}_admin",
        "stranger": f"{db.name}_stranger",
    }
    db.conn.execute(f"CREATE ROLE {names['backend']} LOGIN IN ROLE pgml_trainer")
    db.conn.execute(f"CREATE ROLE {names['admin']} LOGIN IN ROLE pgml_admin")
    db.conn.execute(f"CREATE ROLE {names['stranger']} LOGIN")
    yield names
    for name in names.values():
        db.conn.execute(f"DROP ROLE {name}")


@pytest.fixture
def history(db: Database) -> Database:
    History(db.conn, SERVER).steady(QUERIES, intervals=30)
    return db


def test_every_documented_statement_is_exercised(db: Database):
    out = run_documented(db, {})
    assert set(out["documented"]) == CONTRACT
    source = Path(__file__).read_text()
    unexercised = [name for name in CONTRACT if not re.search(rf'"{name}(@[\w-]+)?": \[', source)]
    assert unexercised == []


def test_status_and_ingest(db: Database, roles: dict[str, str]):
    payload = {
        "captured_at": "2026-11-28T17:00:00Z",
        "rows": [{"queryid": str(BIG_QUERYID), "calls": 10, "total_exec_time": 52.5}],
    }
    out = run_documented(
        db,
        {
            "ingest": ["db-prod-1", json.dumps(payload)],
            "ingest@bad-row": ["db-prod-1", json.dumps({"rows": [{"queryid": 1}]})],
            "ingest@not-json": ["db-prod-1", "{"],
            "status": [],
        },
        user=roles["backend"],
    )
    assert field_types(out["ingest"]) == {"rows_ingested": INT4}
    assert out["ingest"]["rows"] == [{"rows_ingested": {"type": "number", "value": 1}}]
    assert_error(out["ingest@bad-row"], "22023")
    assert "stats.rows[0] has no calls" in out["ingest@bad-row"]["error"]["message"]
    assert_error(out["ingest@not-json"], "22P02", hint=False)
    assert db.one("SELECT array_agg(queryid) FROM pganalytics_ml.statements") == [BIG_QUERYID]

    assert field_types(out["status"]) == {"status": JSONB}
    status = only_row(out["status"])["status"]
    assert status["service"] == "pganalytics_ml" and status["status"] in ("healthy", "degraded")
    assert status["database_connected"] is True and status["statements_tracked"] == 1
    for count in ("pending_jobs", "training_jobs", "statements_tracked"):
        assert isinstance(status[count], int), count
    (server,) = status["servers"]
    assert server["server_id"] == "db-prod-1" and RFC3339.fullmatch(server["last_snapshot_at"])
    assert datetime.fromisoformat(server["last_snapshot_at"]) == datetime.fromisoformat(payload["captured_at"])

    refused = run_documented(db, {"status": [], "models": [None]}, user=roles["stranger"])
    assert_error(refused["status"], "42501", hint=False)
    assert_error(refused["models"], "42501", hint=False)


def test_train_async_and_its_status(history: Database, roles: dict[str, str]):
    db = history
    out = run_documented(
        db,
        {
            "train_async": [30, "linear_regression", SERVER],
            "train_async@bad-lookback": [0, "linear_regression", SERVER],
            "train_async@null": [None, "linear_regression", SERVER],
            "train_async@never-captured": [30, "linear_regression", "db-unknown"],
            "job_status@unknown": ["no-such-job"],
            "job_status@null": [None],
        },
        user=roles["backend"],
    )
    assert field_types(out["train_async"]) == {"job_id": TEXT, "status": TEXT, "created_at": TIMESTAMPTZ}
    queued = only_row(out["train_async"])
    assert queued["status"] == "pending" and TIMESTAMPTZ_TEXT.fullmatch(queued["created_at"])
    assert_error(out["train_async@bad-lookback"], "22023")
    assert_error(out["train_async@null"], "22004")
    assert_error(out["train_async@never-captured"], "P0002")
    assert_error(out["job_status@unknown"], "P0002")
    assert_error(out["job_status@null"], "22004")
    assert db.one("SELECT count(*) FROM pganalytics_ml.jobs") == 1  # the failed calls queued nothing

    job_id = queued["job_id"]
    pending = run_documented(db, {"job_status": [job_id]}, user=roles["backend"])["job_status"]
    assert field_types(pending) == {
        "job_id": TEXT,
        "kind": TEXT,
        "status": TEXT,
        "created_at": TIMESTAMPTZ,
        "updated_at": TIMESTAMPTZ,
        "started_at": TIMESTAMPTZ,
        "completed_at": TIMESTAMPTZ,
        "attempts": INT4,
        "max_attempts": INT4,
        "error": TEXT,
        "result": JSONB,
        "progress": JSONB,
        "dead_lettered": BOOL,
    }
    job = only_row(pending)
    assert (job["job_id"], job["kind"], job["status"], job["attempts"]) == (job_id, "train", "pending", 0)
    assert job["started_at"] is None and job["result"] is None and job["dead_lettered"] is False

    db.conn.execute("CALL pganalytics_ml.run_jobs()")  # the worker pg_cron runs every minute
    job = only_row(run_documented(db, {"job_status": [job_id]}, user=roles["backend"])["job_status"])
    assert job["status"] == "completed" and job["attempts"] == 1 and job["error"] is None
    assert TIMESTAMPTZ_TEXT.fullmatch(job["started_at"]) and TIMESTAMPTZ_TEXT.fullmatch(job["completed_at"])
    assert job["progress"]["percent"] == 100
    result = job["result"]
    assert isinstance(result["model_id"], int) and result["model_type"] == "linear_regression"
    assert result["server_id"] == SERVER and result["activated"] is True
    for metric in ("r_squared", "rmse", "mae", "q_error_p50", "q_error_p90", "interval_coverage"):
        assert is_number(result[metric]), metric
    assert isinstance(result["training_samples"], int) and isinstance(result["feature_importance"], dict)
    assert db.one("SELECT model_id FROM pganalytics_ml.models WHERE is_active") == result["model_id"]


def test_train_predict_validate_and_activate(history: Database, roles: dict[str, str]):
    db = history
    backend = roles["backend"]
    out = run_documented(
        db,
        {
            "train": [90, "linear_regression", SERVER],
            "train@unknown-type": [90, "neural_net", SERVER],
            "train@never-captured": [90, "linear_regression", "db-unknown"],
            "predict": [str(BIG_QUERYID), SERVER],
            "predict@unknown": ["12345", SERVER],
            "predict@not-an-integer": ["12abc", SERVER],
            "predict_row": [str(BIG_QUERYID), SERVER],
            "predict_row@unknown": ["12345", SERVER],
            "predict_scenario": [str(BIG_QUERYID), SERVER, "current"],
            "predict_scenario@optimized-remote": [str(BIG_QUERYID), SERVER, "optimized"],
            "predict_scenario@unknown": [str(BIG_QUERYID), SERVER, "faster"],
            "predict_all": [SERVER, False],
            "predict_all@logged": [SERVER, True],
            "predict_all@null": [None, False],
            "models": [SERVER],
        },
        user=backend,
    )
    assert field_types(out["train"]) == {
        "model_id": INT8,
        "model_type": TEXT,
        "server_id": TEXT,
        "r_squared": FLOAT8,
        "rmse": FLOAT8,
        "mae": FLOAT8,
        "training_samples": INT4,
        "holdout_samples": INT4,
        "q_error_p50": FLOAT8,
        "q_error_p90": FLOAT8,
        "interval_coverage": FLOAT8,
        "activated": BOOL,
    }
    trained = only_row(out["train"])
    model_id = trained["model_id"]
    assert isinstance(model_id, int) and trained["activated"] is True and trained["server_id"] == SERVER
    assert trained["training_samples"] > 0 and 1 <= trained["q_error_p50"] <= trained["q_error_p90"]
    assert_error(out["train@unknown-type"], "22023")
    assert_error(out["train@never-captured"], "P0002")

    assert field_types(out["predict"]) == {"prediction": JSONB}
    doc = only_row(out["predict"])["prediction"]
    assert doc["query_hash"] == BIG_QUERYID  # exact: JSON integers keep 64 bits
    assert doc["query_hash_text"] == str(BIG_QUERYID)  # and as text, for decoders that read doubles
    assert doc["source"] == "model" and doc["model_id"] == model_id and doc["model_version"] == 1
    assert isinstance(doc["prediction_id"], int) and doc["logged"] is True and doc["server_id"] == SERVER
    assert 0 < doc["range"]["min"] <= doc["predicted_execution_time_ms"] <= doc["range"]["max"]
    assert all(is_number(doc[k]) for k in ("confidence", "predicted_execution_time_ms")) and 0 <= doc["confidence"] <= 1
    assert RFC3339.fullmatch(doc["timestamp"]) and datetime.fromisoformat(doc["timestamp"]).tzinfo is not None
    assert_error(out["predict@unknown"], "P0002")
    current = only_row(out["predict_scenario"])["prediction"]  # "current" is predict, logged
    assert current["logged"] is True and current["prediction_id"] > doc["prediction_id"]
    assert current["scenario"] == {"scenario": "current"} and current["recommended_indexes"] == []
    assert current["optimization_suggestion"] is None
    assert_error(out["predict_scenario@optimized-remote"], "0A000")  # (tests/go/ optimizes a local statement)
    assert_error(out["predict_scenario@unknown"], "22023")
    assert_error(out["predict@not-an-integer"], "22P02", hint=False)

    assert field_types(out["predict_row"]) == PREDICTION_ROW | {"predicted_at": TIMESTAMPTZ}
    row = only_row(out["predict_row"])
    assert row["query_hash"] == BIG_QUERYID and row["model_id"] == model_id and row["source"] == "model"
    assert row["prediction_id"] == doc["prediction_id"] + 1 and TIMESTAMPTZ_TEXT.fullmatch(row["predicted_at"])
    assert row["predicted_execution_time_ms"] == doc["predicted_execution_time_ms"]
    assert (row["lower_bound_ms"], row["upper_bound_ms"]) == (doc["range"]["min"], doc["range"]["max"])
    assert_error(out["predict_row@unknown"], "P0002")

    assert field_types(out["predict_all"]) == PREDICTION_ROW | {"based_on": TIMESTAMPTZ}
    every = values(out["predict_all"])
    assert sorted(r["query_hash"] for r in every) == sorted(QUERIES)
    assert all(r["prediction_id"] is None and r["source"] == "model" for r in every)
    assert all(isinstance(r["prediction_id"], int) for r in values(out["predict_all@logged"]))
    assert_error(out["predict_all@null"], "22004")
    # Logged: predict, predict_row, predict_scenario "current" and the logged predict_all; the failed calls
    # (and the "optimized" one, which is never logged) wrote nothing.
    assert db.one("SELECT count(*) FROM pganalytics_ml.predictions") == 3 + len(QUERIES)

    assert field_types(out["models"]) == MODEL_ROW | {
        "created_at": TIMESTAMPTZ,
        "training_samples": INT4,
        "r_squared": FLOAT8,
        "rmse": FLOAT8,
        "mae": FLOAT8,
        "q_error_p50": FLOAT8,
        "q_error_p90": FLOAT8,
        "interval_coverage": FLOAT8,
    }
    (listed,) = values(out["models"])
    assert listed["model_id"] == model_id and listed["is_active"] is True and listed["version"] == 1

    prediction_id = doc["prediction_id"]
    out = run_documented(
        db,
        {
            "validate@not-positive": [prediction_id, -3],
            "validate@unknown": [prediction_id + 1000, 3.5],
            "validate@null": [None, 3.5],
            "validate": [prediction_id, 11.0],
            "train": [90, "decision_tree", SERVER],
            "activate@not-admin": [model_id],
        },
        user=backend,
    )
    assert field_types(out["validate"]) == {
        "prediction_id": INT8,
        "query_hash": INT8,
        "predicted_execution_time_ms": FLOAT8,
        "actual_execution_time_ms": FLOAT8,
        "error_percent": FLOAT8,
        "accuracy_score": FLOAT8,
        "within_confidence_interval": BOOL,
        "validated_at": TIMESTAMPTZ,
    }
    scored = only_row(out["validate"])
    predicted = doc["predicted_execution_time_ms"]
    assert scored["prediction_id"] == prediction_id and scored["query_hash"] == BIG_QUERYID
    assert scored["actual_execution_time_ms"] == 11.0
    # rounded for reading (0.01 %, 4 decimals); the prediction log keeps every digit
    assert scored["error_percent"] == pytest.approx(abs(predicted - 11.0) / 11.0 * 100, abs=0.005)
    assert scored["accuracy_score"] == pytest.approx(max(0.0, 1 - abs(predicted - 11.0) / 11.0), abs=5e-5)
    assert scored["within_confidence_interval"] == (doc["range"]["min"] <= 11.0 <= doc["range"]["max"])
    assert_error(out["validate@not-positive"], "22023")
    assert_error(out["validate@unknown"], "P0002")
    assert_error(out["validate@null"], "22004")
    assert_error(out["activate@not-admin"], "42501", hint=False)

    second = only_row(out["train"])["model_id"]
    inactive = (
        second if db.one("SELECT is_active FROM pganalytics_ml.models WHERE model_id = %s", (model_id,)) else model_id
    )
    out = run_documented(
        db,
        {"activate": [inactive], "activate@unknown": [second + 1000], "activate@null": [None], "models": [None]},
        user=roles["admin"],
    )
    assert field_types(out["activate"]) == MODEL_ROW
    activated = only_row(out["activate"])
    assert activated["model_id"] == inactive and activated["is_active"] is True
    assert TIMESTAMPTZ_TEXT.fullmatch(activated["activated_at"])
    assert_error(out["activate@unknown"], "P0002")
    assert_error(out["activate@null"], "22004")
    listing = {m["model_id"]: m["is_active"] for m in values(out["models"])}
    assert listing == {model_id: model_id == inactive, second: second == inactive}
    forecast_models = db.all("SELECT DISTINCT model_id FROM pganalytics_ml.forecasts WHERE server_id = %s", (SERVER,))
    assert forecast_models == [(inactive,)]  # activation refreshed the forecasts: predictions use it now


def test_detect_patterns_and_the_stored_patterns(db: Database, roles: dict[str, str]):
    planted = planted_history(db.conn, SERVER, days=4, seed=6, per_pattern=1, patterns=("daily_cycle", "noise"))
    db.one("SELECT job_id FROM pgml_job_enqueue('patterns', '{\"lookback_days\": 4}')")
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    out = run_documented(
        db,
        {
            "detect_patterns": [4, SERVER],
            "detect_patterns@bad": [0, SERVER],
            "detect_patterns@unknown": [4, "nowhere"],
            "patterns": [SERVER],
        },
        user=roles["backend"],
    )
    assert field_types(out["detect_patterns"]) == {"patterns": JSONB}
    document = only_row(out["detect_patterns"])["patterns"]
    assert isinstance(document["patterns_detected"], int) and document["patterns_detected"] == len(document["patterns"])
    assert RFC3339.fullmatch(document["timestamp"]) and RFC3339.fullmatch(document["window_end"])
    daily = [p for p in document["patterns"] if p["query_hash"] == planted[0].queryid]
    assert [p["type"] for p in daily] == ["daily_cycle"]
    for p in document["patterns"]:
        assert isinstance(p["type"], str) and isinstance(p["description"], str)
        assert is_number(p["confidence"]) and 0 <= p["confidence"] <= 1 and isinstance(p["metadata"], dict)
    assert_error(out["detect_patterns@bad"], "22023")
    assert_error(out["detect_patterns@unknown"], "P0002")
    assert field_types(out["patterns"]) == {
        "type": TEXT,
        "query_hash": INT8,
        "metric": TEXT,
        "description": TEXT,
        "confidence": FLOAT8,
        "metadata": JSONB,
        "detected_at": TIMESTAMPTZ,
    }
    stored = values(out["patterns"])
    assert sorted(r["description"] for r in stored) == sorted(p["description"] for p in document["patterns"])
