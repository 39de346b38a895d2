"""Milliseconds from plans: for a statement never run (``absolute``), or a known one under a scenario (``scaled``).

This first version knows only the optimizer's costs: a known statement's forecast is scaled by the ratio of
the two plans' total costs (source 'plan_cost'); a statement never run has no answer until a plan model is
trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pganalytics_ml.errors import not_found

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


def absolute(plpy: Any, server_id: str, description: dict[str, Any], load_scale: float = 1.0) -> Estimate:
    """A statement never run: milliseconds from its plan ``description`` (capture.plan_features.describe)."""
    raise not_found(
        f'server "{server_id}" has no plan model to predict a statement that never ran',
        hint="pgml_train() trains one once enough statements have captured plans (pgml_capture_plans()).",
    )


def cost_ratio(current: dict[str, Any], scenario: dict[str, Any]) -> float:
    return max(float(scenario["total_cost"]), MIN_COST) / max(float(current["total_cost"]), MIN_COST)


def scaled(
    plpy: Any,
    server_id: str,
    current: dict[str, Any],
    scenario: dict[str, Any],
    current_ms: float,
    lower_ms: float,
    upper_ms: float,
    load_scale: float = 1.0,
) -> Estimate:
    """A known statement under a scenario: its forecast and interval times the ratio of the plans' costs.
    (Costs know nothing of load: ``load_scale`` changes nothing here.)"""
    ratio = cost_ratio(current, scenario)
    return Estimate(current_ms * ratio, lower_ms * ratio, upper_ms * ratio, "plan_cost", None)
