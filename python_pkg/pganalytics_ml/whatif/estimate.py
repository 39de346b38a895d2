"""Milliseconds from plans: for a statement never run (``absolute``), or a known one under a scenario (``scaled``).

Both ask the server's plan model (whatif/plan_model.py: the one trained with the active model, else the
newest). ``absolute`` answers with the model's prediction and its 90% interval, calibrated on statements
held out whole when it was trained. ``scaled`` multiplies a known statement's forecast and interval by
model(scenario) / model(current), both at the server's latest load (the scenario's times ``load_scale``);
its confidence is unknown (None) here: the caller's forecast has its own.
Without a plan model ``absolute`` has no answer (P0002) and ``scaled`` falls back to the ratio of the two
plans' total costs (source 'plan_cost').

A description may carry the statement's text structure: ``"structure"`` (capture/statements.parse_statement
output) or ``"sql"`` (parsed here); without either, the STRUCTURE features are those of an unparsed text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pganalytics_ml.errors import PgmlError, invalid
from pganalytics_ml.forecasting import history
from pganalytics_ml.forecasting.features import LOAD, STRUCTURE, structure_row
from pganalytics_ml.whatif import plan_model

MIN_COST = 1e-3  # a plan's total cost below this is taken as this, so that a ratio stays finite


@dataclass
class Estimate:
    predicted_ms: float
    lower_ms: float
    upper_ms: float
    source: str  # 'plan_model' (the trained plan model) or 'plan_cost' (from the optimizer's costs)
    model_id: int | None  # the plan model's id, or None
    # Estimated probability of landing within 25% of predicted_ms (as pgml_predict's confidence), None: unknown.
    confidence: float | None = None


def cost_ratio(current: dict[str, Any], scenario: dict[str, Any]) -> float:
    return max(float(scenario["total_cost"]), MIN_COST) / max(float(current["total_cost"]), MIN_COST)


def structure_of(description: dict[str, Any]) -> list[float]:
    """The STRUCTURE features of the described statement (see the module's docstring)."""
    from pganalytics_ml.capture.statements import parse_statement

    statement = description.get("structure")
    if statement is None and isinstance(description.get("sql"), str):
        try:
            statement = parse_statement(description["sql"]) | {"parse_ok": True}
        except ValueError:
            statement = None
    if statement is None:
        return [0.0] * len(STRUCTURE)
    return structure_row({"parse_ok": True, **statement})


def server_load(plpy: Any, server_id: str) -> list[float]:
    """The LOAD features of the server's latest interval (zeros for the rates when none was captured)."""
    last = plpy.execute(
        plpy.prepare(
            "SELECT max(captured_at)::text AS at, (max(captured_at) - interval '1 microsecond')::text AS just_before,"
            " extract(epoch FROM max(captured_at))::float8 AS epoch FROM pganalytics_ml.snapshots WHERE server_id = $1",
            ["text"],
        ),
        [server_id],
    )[0]
    if last["at"] is None:
        return [0.0] * len(LOAD)
    return history._latest_load(plpy, server_id, last)


def _check_load_scale(load_scale: Any) -> float:
    if isinstance(load_scale, bool) or not isinstance(load_scale, int | float) or not 0 < load_scale <= 1000:
        raise invalid(f"load must be a number above 0 and at most 1000, got {load_scale!r}", hint='e.g. {"load": 1.5}')
    return float(load_scale)


def absolute(plpy: Any, server_id: str, description: dict[str, Any], load_scale: float = 1.0) -> Estimate:
    """A statement never run: milliseconds from its plan ``description`` (capture.plan_features.describe).
    Raises PgmlError P0002 with a hint (run pgml_train) when the server has no plan model."""
    scale = _check_load_scale(load_scale)
    loaded = plan_model.load(plpy, server_id)
    x = plan_model.feature_row(description, structure_of(description), server_load(plpy, server_id), scale)
    predicted = float(loaded.model.predict_log(x)[0])
    width = float(loaded.calibration["q"])
    return Estimate(
        math.exp(predicted),
        math.exp(predicted - width),
        math.exp(predicted + width),
        "plan_model" if loaded.model.use_correction else "plan_cost",
        loaded.plan_model_id,
        loaded.calibration.get("confidence"),
    )


def scaled(
    plpy: Any,
    server_id: str,
    current: dict[str, Any],
    scenario: dict[str, Any],
    current_ms: float,
    lower_ms: float,
    upper_ms: float,
    load_scale: float = 1.0,
    served_ratio: float = 1.0,
) -> Estimate:
    """A known statement under a scenario: its forecast (current_ms, interval) times the ratio
    model(scenario)/model(current). Without a plan model: the ratio of the plans' total costs, source 'plan_cost'.
    ``served_ratio`` (whatif.served.ratio) multiplies either: the two plans costed as their pages are served
    (cache hits), over their default costs' ratio."""
    scale = _check_load_scale(load_scale)
    try:
        loaded = plan_model.load(plpy, server_id)
    except PgmlError as exc:
        if exc.sqlstate != "P0002":
            raise
        ratio = cost_ratio(current, scenario) * served_ratio
        return Estimate(current_ms * ratio, lower_ms * ratio, upper_ms * ratio, "plan_cost", None)
    load = server_load(plpy, server_id)
    now = plan_model.feature_row(current, structure_of(current), load, 1.0)
    then = plan_model.feature_row(scenario, structure_of(scenario), load, scale)
    ratio = math.exp(float(loaded.model.predict_log(then)[0] - loaded.model.predict_log(now)[0])) * served_ratio
    source = "plan_model" if loaded.model.use_correction else "plan_cost"
    return Estimate(current_ms * ratio, lower_ms * ratio, upper_ms * ratio, source, loaded.plan_model_id)
