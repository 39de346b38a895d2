"""The whole public API under unusual session settings: nothing that crosses into Python depends on them.

PL/Python receives timestamps, intervals and numbers as the session would print them; every function that
runs Python pins DateStyle, IntervalStyle, TimeZone, extra_float_digits and lc_numeric for its own run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import Database
from history_builder import History, statements

pytestmark = pytest.mark.integration

UNUSUAL = {
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "sql_standard",
    "TimeZone": "Pacific/Chatham",  # +12:45 / +13:45
    "extra_float_digits": "-15",
    "lc_numeric": "C",  # the only locales this machine has are C and POSIX; pinned all the same
}
OTHER_DATESTYLES = ("German", "Postgres, MDY", "ISO, DMY")


def unusual(db: Database, settings: dict[str, str] = UNUSUAL) -> None:
    for name, value in settings.items():
        db.conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def row(db: Database, query: str, params: Any = None) -> dict[str, Any]:
    # Binary results: the test's own client must not depend on the session's DateStyle either.
    cur = db.conn.execute(query, params, binary=True)
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def one(db: Database, query: str, params: Any = None) -> Any:
    return db.conn.execute(query, params, binary=True).fetchone()[0]


def history(db: Database) -> None:
    History(db.conn, "db-1").steady(statements(8), intervals=30)


TRAINED = ("model_type", "training_samples", "holdout_samples", "r_squared", "q_error_p90", "activated")


def test_training_gives_the_same_model_whatever_the_session_settings(db: Database):
    history(db)
    expected = row(db, "SELECT * FROM pgml_train(1, 'decision_tree', 'db-1')")
    window = one(db, "SELECT window_end FROM pganalytics_ml.models WHERE model_id = %s", (expected["model_id"],))
    for datestyle in (UNUSUAL["DateStyle"], *OTHER_DATESTYLES):
        unusual(db, UNUSUAL | {"DateStyle": datestyle})
        got = row(db, "SELECT * FROM pgml_train(1, 'decision_tree', 'db-1')")
        assert {k: got[k] for k in TRAINED} | {"activated": True} == {k: expected[k] for k in TRAINED} | {
            "activated": True
        }, datestyle
        assert one(db, "SELECT window_end FROM pganalytics_ml.models WHERE model_id = %s", (got["model_id"],)) == window


def test_every_public_function_works_under_unusual_settings(db: Database):
    history(db)
    unusual(db)
    conn = db.conn

    # capture: local snapshots, a push with and without its own time
    conn.execute("SELECT * FROM pgml_snapshot()")
    conn.execute("SELECT 1")
    assert one(db, "SELECT statements FROM pgml_snapshot()") > 0
    at = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=1)
    rows = [{"queryid": 7, "calls": 3, "total_exec_time": 1.5}]
    one(db, "SELECT pgml_ingest_stats('db-2', %s::jsonb)", (json.dumps({"captured_at": at.isoformat(), "rows": rows}),))
    assert one(db, "SELECT max(captured_at) FROM pganalytics_ml.snapshots WHERE server_id = 'db-2'") == at
    rows[0]["calls"] = 6
    assert one(db, "SELECT pgml_ingest_stats('db-2', %s::jsonb)", (json.dumps(rows),)) == 1

    # training, models
    trained = row(db, "SELECT * FROM pgml_train(1, 'linear_regression', 'db-1')")
    assert trained["activated"] and trained["training_samples"] > 0
    models = db.conn.execute("SELECT model_id, is_active FROM pgml_models('db-1')", binary=True).fetchall()
    assert models[0] == (trained["model_id"], True)
    assert one(db, "SELECT count(*) FROM pgml_activate_model(%s)", (trained["model_id"],)) == 1
    assert one(db, "SELECT pgml_cleanup_models(5)") == 0

    # prediction and validation
    queryid = one(db, "SELECT queryid FROM pganalytics_ml.forecasts WHERE server_id = 'db-1' ORDER BY 1 LIMIT 1")
    predicted = row(db, "SELECT * FROM pgml_predict(%s, 'db-1')", (queryid,))
    assert predicted["source"] == "model" and predicted["logged"]
    document = one(db, "SELECT pgml_predict_json(%s, 'db-1')", (queryid,))
    assert document["predicted_execution_time_ms"] == predicted["predicted_execution_time_ms"]
    assert one(db, "SELECT count(*) FROM pgml_predict_all('db-1')") == 8
    validated = row(db, "SELECT * FROM pgml_validate(%s, 2.5)", (predicted["prediction_id"],))
    assert validated["actual_execution_time_ms"] == 2.5

    # jobs: limits and start times given as the session writes them
    job = row(db, "SELECT * FROM pgml_train_async(1, 'decision_tree', 'db-1')")
    assert job["status"] == "pending"
    sleep = row(
        db,
        "SELECT * FROM pgml_job_enqueue('sleep', '{\"seconds\": 0}', 2, interval '4 min', interval '5 min',"
        " now() - interval '1 second')",
    )
    later = row(db, "SELECT * FROM pgml_job_enqueue('sleep', '{\"seconds\": 0}', run_at => now() + interval '1 day')")
    stored = one(
        db,
        "SELECT soft_limit = interval '4 min' AND hard_limit = interval '5 min' FROM pganalytics_ml.jobs"
        " WHERE job_id = %s",
        (sleep["job_id"],),
    )
    assert stored is True
    conn.execute("CALL pganalytics_ml.run_jobs(max_seconds => 60)")
    assert one(db, "SELECT status FROM pgml_job_status(%s)", (job["job_id"],)) == "completed"
    assert one(db, "SELECT status FROM pgml_job_status(%s)", (sleep["job_id"],)) == "completed"
    assert one(db, "SELECT status FROM pgml_job_status(%s)", (later["job_id"],)) == "pending"
    assert one(db, "SELECT count(*) FROM pgml_jobs() WHERE kind <> 'plans'") == 3  # snapshots queue plans jobs
    assert one(db, "SELECT status FROM pgml_job_cancel(%s)", (later["job_id"],)) == "failed"
    assert one(db, "SELECT status FROM pgml_job_retry(%s)", (later["job_id"],)) == "pending"
    assert one(db, "SELECT requeued FROM pganalytics_ml.rescue_jobs()") == 0
    before = one(db, "SELECT count(*) FROM pganalytics_ml.snapshots WHERE server_id = 'local'")
    conn.execute("CALL pganalytics_ml.run_snapshots(1, 1)")
    assert one(db, "SELECT count(*) FROM pganalytics_ml.snapshots WHERE server_id = 'local'") == before + 1

    # plans and workload patterns (issues 14 and 16)
    assert one(db, "SELECT sum(statements) FROM pgml_capture_plans() WHERE outcome <> 'changed'") > 0
    patterns = one(db, "SELECT pgml_detect_patterns_json(1, 'db-1')")
    assert patterns["patterns_detected"] == len(patterns["patterns"])
    assert datetime.fromisoformat(patterns["timestamp"]).tzinfo is not None

    # the session keeps its own settings
    for name, value in UNUSUAL.items():
        assert one(db, "SELECT current_setting(%s)", (name,)) == value, name
    status = one(db, "SELECT pgml_status()")
    assert status["database_connected"] is True and status["active_models"] == 1
