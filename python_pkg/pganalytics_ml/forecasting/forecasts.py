"""Forecasts: each statement's predicted next-interval mean, kept ready so pgml_predict is a lookup.

A statement with an active model and enough history gets the model's forecast; any other gets an
honest baseline from its own recent intervals (their EWMA), marked source = 'baseline'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pganalytics_ml.errors import PgmlError
from pganalytics_ml.forecasting import evaluation, features, history, models
from pganalytics_ml.forecasting.chunks import sorted_chunks

BASELINE_Z = 1.645  # a two-sided 90% normal interval in log space
BASELINE_MIN_SCALE = 0.1
BASELINE_FEW_INTERVALS_SCALE = 0.5

_UPSERT = """
    INSERT INTO pganalytics_ml.forecasts AS f (server_id, queryid, predicted_ms, lower_ms, upper_ms, confidence,
                                               model_id, model_version, source, based_on, computed_at)
    SELECT $1, u.queryid, u.predicted, u.lower, u.upper, u.confidence,
           CASE WHEN u.from_model THEN $7::bigint END, CASE WHEN u.from_model THEN $8::integer END,
           CASE WHEN u.from_model THEN 'model' ELSE 'baseline' END,
           -- the end of the statement's latest interval, kept by every capture (query_stats holds only
           -- intervals with calls; a max over it would visit every day partition)
           (SELECT st.last_active_at FROM pganalytics_ml.statements st
             WHERE st.server_id = $1 AND st.queryid = u.queryid),
           pg_catalog.now()
      FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $9::boolean[])
           AS u(queryid, predicted, lower, upper, confidence, from_model)
    ON CONFLICT (server_id, queryid) DO UPDATE
       SET predicted_ms = EXCLUDED.predicted_ms, lower_ms = EXCLUDED.lower_ms, upper_ms = EXCLUDED.upper_ms,
           confidence = EXCLUDED.confidence, model_id = EXCLUDED.model_id, model_version = EXCLUDED.model_version,
           source = EXCLUDED.source, based_on = EXCLUDED.based_on, computed_at = EXCLUDED.computed_at
"""


def readable(ms: float) -> float:
    """Four significant digits: what a forecast keeps of a time (float8_array writes its columns so)."""
    return float(f"{ms:.4g}")


def float8_array(values: np.ndarray, form: str = "%.4g") -> str:
    """``values`` as one float8[] literal, each in ``form`` (4 significant digits: what psql shows of a time),
    NULL where not finite. One text parameter that PostgreSQL parses: a list of floats passes float by float
    through its repr, about twice as slow (bench/bench_plpy_arguments.py)."""
    values = np.asarray(values, dtype=float)
    text = list(map(form.__mod__, values.tolist()))
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        text[i] = "NULL"
    return "{" + ",".join(text) + "}"


def float8_arrays(rows: np.ndarray, form: str = "%.4g") -> list[str]:
    """Each row of a 2-d array as a float8[] literal, as float8_array writes one (a text[] parameter)."""
    rows = np.where(np.isfinite(rows), rows, np.nan)
    literal = "{" + ",".join([form] * rows.shape[1]) + "}"
    text = [literal % row for row in map(tuple, rows.tolist())]
    return [t.replace("nan", "NULL") if "nan" in t else t for t in text]


def _usable_model(plpy: Any, server_id: str) -> models.LoadedModel | None:
    model_id = models.active_model_id(plpy, server_id)
    if model_id is None:
        return None
    try:
        model = models.load(plpy, model_id)
    except PgmlError as err:
        plpy.warning(f"{err.message}; forecasts of server {server_id!r} fall back to the baseline", hint=err.hint)
        return None
    if features.model_width(model.feature_names) is None:
        plpy.warning(
            f"model {model_id} was trained on other features; forecasts fall back to the baseline",
            hint="Retrain with SELECT * FROM pgml_train().",
        )
        return None
    return model


@dataclass
class Forecast:
    """Forecasts of a set of statements: what refresh stores, and what pgml_predict then returns."""

    queryid: np.ndarray
    predicted_ms: np.ndarray
    lower_ms: np.ndarray
    upper_ms: np.ndarray
    confidence: np.ndarray
    from_model: np.ndarray
    model: models.LoadedModel | None


def compute(plpy: Any, server_id: str, queryids: list[int] | None = None) -> Forecast:
    """The single-forecaster forecasts of 0.2 (EWMA, or the model): what the combination is compared with."""
    latest = history.latest_windows(plpy, server_id, queryids)
    feats = features.feature_matrix(latest.windows)
    scale = np.where(feats.history >= 2, np.maximum(feats.scale, BASELINE_MIN_SCALE), BASELINE_FEW_INTERVALS_SCALE)
    predicted_log = feats.anchor.copy()
    half_width = BASELINE_Z * scale
    confidence = evaluation.baseline_confidence(scale)
    from_model = np.zeros(len(latest.queryid), dtype=bool)

    model = _usable_model(plpy, server_id) if len(latest.queryid) else None
    if model is not None:
        from_model = feats.history >= features.MIN_HISTORY
        if from_model.any():
            rows = np.flatnonzero(from_model)
            width = features.model_width(model.feature_names)
            predicted_log[rows] = feats.anchor[rows] + model.estimator.predict(feats.matrix[rows, :width])
            half_width[rows] = model.calibration["q"] * feats.scale[rows]
            confidence[rows] = evaluation.confidence(feats.scale[rows], model.calibration["scores"])
    return Forecast(
        queryid=latest.queryid,
        predicted_ms=np.exp(predicted_log),
        lower_ms=np.exp(predicted_log - half_width),
        upper_ms=np.exp(predicted_log + half_width),
        confidence=confidence,
        from_model=from_model,
        model=model,
    )


def combination_enabled(plpy: Any) -> bool:
    """The online combination runs unless pganalytics_ml.forecast_combination is 'off' (for comparison)."""
    row = plpy.execute("SELECT current_setting('pganalytics_ml.forecast_combination', true) AS v")[0]
    return (row["v"] or "on").lower() not in ("off", "false", "0")


def refresh(plpy: Any, server_id: str, queryids: list[int] | None = None, observe: bool = False) -> int:
    """Recomputes and stores the forecasts of ``queryids`` (all statements when None); returns how many.

    chunks.REFRESH_CHUNK statements at a time: memory stays bounded however many statements are tracked. With
    ``observe``, each statement's newest interval is first scored against what the forecasters had
    proposed for it, and the weights and the calibration learn from it (online.update).
    """
    if queryids is None:
        ids = plpy.execute(
            plpy.prepare(
                "SELECT coalesce(array_agg(queryid ORDER BY queryid), '{}') AS ids FROM pganalytics_ml.statements"
                " WHERE server_id = $1",
                ["text"],
            ),
            [server_id],
        )[0]["ids"]
    else:
        ids = list(queryids)
    if combination_enabled(plpy):
        from pganalytics_ml.forecasting import online

        return sum(online.refresh(plpy, server_id, chunk, observe) for chunk in sorted_chunks(ids))
    return sum(_refresh_chunk(plpy, server_id, chunk) for chunk in sorted_chunks(ids))


def _refresh_chunk(plpy: Any, server_id: str, queryids: list[int]) -> int:
    forecast = compute(plpy, server_id, queryids)
    if not len(forecast.queryid):
        return 0
    plan = plpy.prepare(_UPSERT, ["text", "bigint[]", "text", "text", "text", "text", "bigint", "integer", "boolean[]"])
    model = forecast.model
    plpy.execute(
        plan,
        [
            server_id,
            forecast.queryid.tolist(),
            float8_array(forecast.predicted_ms),
            float8_array(forecast.lower_ms),
            float8_array(forecast.upper_ms),
            float8_array(forecast.confidence, "%.3f"),
            model.model_id if model else None,
            model.version if model else None,
            forecast.from_model.tolist(),
        ],
    )
    return len(forecast.queryid)


def after_capture(plpy: Any, server_id: str, captured_at: str, queue: bool = False) -> dict[str, Any]:
    """What every capture triggers: validation of what it observed, then fresh forecasts for what ran.

    With ``queue`` (a push, when pganalytics_ml._push_forecast_mode() says 'queued'), only statements
    without a forecast yet get theirs here, so that pgml_predict answers for every statement with history
    right after the push; the others keep their forecast until the server's forecast job, queued here
    (``queue_refresh``), refreshes them.
    """
    plan = plpy.prepare("SELECT * FROM pganalytics_ml._after_capture($1, $2)", ["text", "timestamptz"])
    checked = plpy.execute(plan, [server_id, captured_at])[0]
    if queue:
        ran = plpy.execute(plpy.prepare(_RAN, ["text", "timestamptz"]), [server_id, captured_at])[0]
        if ran["known"]:
            queue_refresh(plpy, server_id)
        return {
            "predictions_validated": checked["predictions_validated"],
            "forecasts_checked": checked["forecasts_checked"],
            "forecasts_refreshed": refresh(plpy, server_id, list(ran["new"]), observe=True) if ran["new"] else 0,
            "forecast_queued": bool(ran["known"]),
        }
    active = plpy.execute(
        plpy.prepare(
            "SELECT coalesce(array_agg(queryid), '{}') AS ids FROM pganalytics_ml.query_stats"
            " WHERE server_id = $1 AND interval_end = $2",
            ["text", "timestamptz"],
        ),
        [server_id, captured_at],
    )[0]["ids"]
    refreshed = refresh(plpy, server_id, list(active), observe=True) if active else 0
    return {
        "predictions_validated": checked["predictions_validated"],
        "forecasts_checked": checked["forecasts_checked"],
        "forecasts_refreshed": refreshed,
    }


# One waiting forecast job per server: a push finds the one already queued and adds nothing. Pushes of one
# server hold its capture lock (sql/10_capture.sql) until they commit, so two cannot both queue one.
_QUEUE_REFRESH = """
    SELECT pganalytics_ml._enqueue('forecast', pg_catalog.jsonb_build_object('server_id', $1::text))
     WHERE NOT EXISTS (SELECT FROM pganalytics_ml.jobs j
                        WHERE j.kind = 'forecast' AND j.status = 'pending'
                          AND j.arguments @> pg_catalog.jsonb_build_object('server_id', $1::text))
"""
# The statements that ran in a capture: those without a forecast yet, and how many have one.
_RAN = """
    SELECT coalesce(array_agg(q.queryid ORDER BY q.queryid) FILTER (WHERE f.queryid IS NULL), '{}') AS new,
           count(f.queryid) AS known
      FROM pganalytics_ml.query_stats q
      LEFT JOIN pganalytics_ml.forecasts f ON f.server_id = q.server_id AND f.queryid = q.queryid
     WHERE q.server_id = $1 AND q.interval_end = $2
"""
# The statements that ran since their forecast was computed (or never had one): what a forecast job refreshes.
_STALE = """
    SELECT coalesce(array_agg(st.queryid ORDER BY st.queryid), '{}') AS ids
      FROM pganalytics_ml.statements st
      LEFT JOIN pganalytics_ml.forecasts f ON f.server_id = st.server_id AND f.queryid = st.queryid
     WHERE st.server_id = $1 AND st.last_active_at IS NOT NULL
       AND (f.based_on IS NULL OR f.based_on < st.last_active_at)
"""


def queue_refresh(plpy: Any, server_id: str) -> None:
    plpy.execute(plpy.prepare(_QUEUE_REFRESH, ["text"]), [server_id])


def refresh_queued(plpy: Any, server_id: str) -> dict[str, Any]:
    """The forecast job: refreshes, as a push would have, every statement of ``server_id`` that ran since
    its forecast. It holds the server's capture lock, so that no push of the server lands between what it
    reads and what it writes; pushes of other servers go on."""
    plpy.execute(
        plpy.prepare(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pganalytics_ml.capture:' || $1, 0))",
            ["text"],
        ),
        [server_id],
    )
    ids = plpy.execute(plpy.prepare(_STALE, ["text"]), [server_id])[0]["ids"]
    refreshed = refresh(plpy, server_id, list(ids), observe=True) if ids else 0
    return {"server_id": server_id, "forecasts_refreshed": refreshed}


def validate_observed(plpy: Any) -> dict[str, int]:
    """The validation sweep: scores every logged prediction whose target interval has been captured."""
    rows = plpy.execute(
        "SELECT v.* FROM (SELECT server_id, max(captured_at) AS last FROM pganalytics_ml.snapshots GROUP BY 1) s,"
        " LATERAL pganalytics_ml._after_capture(s.server_id, s.last) v"
    )
    return {"predictions_validated": sum(r["predictions_validated"] for r in rows), "servers": len(rows)}
