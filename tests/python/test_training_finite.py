"""pgml_train never stores NaN: a history whose holdout lies far outside what training saw.

The shape is bench_statements' (captures a few seconds apart beside captures minutes apart): the two
training intervals differ only slightly in the server's load, the statements are all slower in the
second, and the holdout's load (read from an interval of two seconds) is hundreds of thousands of
those differences away. A linear model learns the slowdown from the load features and, unbounded,
extrapolates it to an infinite forecast: its q-errors were NaN, and storing them failed with
'invalid input syntax for type json' (Token "NaN"). Now the learned residual stays within the range
it was trained on, and a metric that cannot be computed is NULL with its reason.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from conftest import Database

pytestmark = pytest.mark.integration

SERVER = "burst"
STATEMENTS = 30
SEED = 13


def _send(conn: Any, at: datetime, totals: np.ndarray, calls: np.ndarray) -> None:
    rows = [
        {
            "queryid": 1000 + i,
            "calls": int(calls[i]),
            "total_exec_time": float(totals[i]),
            "rows": int(calls[i]),
            "query": f"SELECT * FROM burst_{i} WHERE id = $1",
        }
        for i in range(len(totals))
    ]
    payload = {"captured_at": at.isoformat(), "rows": rows}
    conn.execute("SELECT pgml_ingest_stats(%s, %s::jsonb)", (SERVER, json.dumps(payload)))


def burst_history(conn: Any) -> None:
    """Seven intervals: 5 minutes each, but the sixth lasts 2 seconds.

    Every statement's log mean follows its own trend (what a model can learn); interval 6 is 30% slower
    for all of them, and the interval before it had one call more per statement (a 0.1% difference of
    the server's load). Targets are intervals 4 to 7; interval 7 is the holdout, its load read from
    the 2-second interval (calls per second 150 times the others').
    """
    rng = np.random.default_rng(SEED)
    level = rng.uniform(-1, 3, STATEMENTS)
    slope = rng.uniform(-0.3, 0.3, STATEMENTS)
    seconds = [300, 300, 300, 300, 300, 2, 300]
    calls_per_interval = [1000, 1000, 1000, 1000, 1001, 1000, 1000]
    shift = [0, 0, 0, 0, 0, np.log(1.3), 0]
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    totals, calls = np.zeros(STATEMENTS), np.zeros(STATEMENTS)
    _send(conn, at, totals, calls)
    for k in range(len(seconds)):
        mean = np.exp(level + slope * k + shift[k] + rng.normal(0, 0.02, STATEMENTS))
        calls += calls_per_interval[k]
        totals += calls_per_interval[k] * mean
        at += timedelta(seconds=seconds[k])
        _send(conn, at, totals, calls)


def _non_finite(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    return [path] if isinstance(value, float) and not math.isfinite(value) else []


def test_training_on_a_burst_of_captures_stores_no_nan(db: Database) -> None:
    burst_history(db.conn)
    cur = db.conn.execute("SELECT * FROM pgml_train(1, 'linear_regression', %s)", (SERVER,))
    row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
    assert row["holdout_samples"] == STATEMENTS
    metrics, calibration = db.conn.execute(
        "SELECT metrics, calibration FROM pganalytics_ml.models WHERE model_id = %s", (row["model_id"],)
    ).fetchone()
    assert _non_finite(metrics) == [] and _non_finite(calibration) == []
    # Every q-error is a number (the bounded residual keeps the forecast finite) or NULL with a reason.
    for key in ("q_error_p50", "q_error_p90", "q_error_p95", "r_squared", "rmse", "mae"):
        value = metrics[key]
        assert (value is not None and math.isfinite(value)) or key in metrics.get("unavailable", {}), key
    assert row["q_error_p90"] is not None and math.isfinite(row["q_error_p90"])
    # The forecast the model makes for the holdout stays within what it learned: no factor of e^700.
    assert row["q_error_p90"] < 10
    # Forecasts after activation are finite numbers.
    assert (
        db.one(
            "SELECT count(*) FROM pganalytics_ml.forecasts WHERE server_id = %s"
            " AND NOT (predicted_ms > 0 AND predicted_ms < 'Infinity'::float8)",
            (SERVER,),
        )
        == 0
    )


def test_a_q_error_without_finite_rows_is_none_and_the_reason_is_kept() -> None:
    from pganalytics_ml.forecasting import evaluation

    assert evaluation.q_errors(np.array([np.inf, np.nan]), np.array([1.0, 2.0])) == {
        "p50": None,
        "p90": None,
        "p95": None,
    }
    # The finite rows alone count: one overflowed forecast does not make the percentiles NaN.
    assert evaluation.q_errors(np.array([np.inf, 2.0, 2.0]), np.array([1.0, 1.0, 1.0]))["p90"] == 2.0
    cleaned = evaluation.finite_metrics({"rmse": math.inf, "forecasters": {"last": {"q_error_p90": math.nan}}, "n": 3})
    assert cleaned["rmse"] is None and cleaned["forecasters"]["last"]["q_error_p90"] is None and cleaned["n"] == 3
    assert set(cleaned["unavailable"]) == {"rmse", "forecasters.last.q_error_p90"}
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == cleaned


def test_the_learned_residual_stays_within_what_training_saw() -> None:
    from sklearn.linear_model import LinearRegression

    from pganalytics_ml.forecasting import training

    x = np.array([[0.0], [1e-6], [0.0], [1e-6]])
    y = np.array([0.0, 0.3, 0.0, 0.3])
    model = training.ResidualModel(LinearRegression(), 1.0).fit(x, y)
    assert model.predict(np.array([[1.0]]))[0] == pytest.approx(0.3)  # unbounded: 300,000
    assert model.predict(np.array([[-1.0]]))[0] == pytest.approx(0.0)
