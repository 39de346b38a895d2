"""pgml_train: learn each statement's next interval mean from captured history.

The model predicts the difference between the next interval's log mean and the EWMA of the recent
ones; it is evaluated on a time-ordered holdout (the latest part of the window, never shuffled) next
to two naive baselines, and its 90% interval is calibrated there (normalized split conformal).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from pganalytics_ml.errors import (
    NO_DATA_FOUND,
    READ_ONLY_TRANSACTION,
    PgmlError,
    invalid,
    null_argument,
    shown,
    sql_entry,
)
from pganalytics_ml.forecasting import evaluation, features, history, models
from pganalytics_ml.servers import SERVER_ID_PATTERN
from pganalytics_ml.whatif import plan_model

MODEL_TYPES = ("linear_regression", "decision_tree", "random_forest", "gradient_boosting")
AUTO = "auto"
MIN_SAMPLES = 60
MIN_HOLDOUT = 20
HOLDOUT_FRACTION = 0.2
# Each tree of a forest sees at most this many rows: 40 trees on 100k samples train in about 10 s of CPU
# (bench/RESULTS.md, bench_training), the time of the default model bounded whatever the sample.
MAX_FOREST_SAMPLES = 20_000
MAX_RESIDUAL = 50.0  # log units: a factor of e^50 from the EWMA, beyond any real change of a mean time
WEIGHT_FIT_ROWS = 40_000  # rows of the fit that chooses the residual weight (_residual_weight)
WEIGHT_FIT_TREES = 10

Progress = Callable[[str, float], None]


def check_train_arguments(lookback_days: Any, model_type: Any, **options: Any) -> dict[str, Any]:
    """pgml_train's arguments, validated and normalized (no database access)."""
    server_id = options.pop("server_id", "local")
    if options:
        raise invalid(f"unknown training options: {', '.join(sorted(options))}", hint="Options: server_id.")
    if lookback_days is None:
        raise null_argument("lookback_days", hint="Pass how many days of history to learn from, e.g. 90.")
    if model_type is None:
        raise null_argument("model_type", hint=f"Use one of: {', '.join((*MODEL_TYPES, AUTO))}.")
    if server_id is None:
        raise null_argument("server_id", hint="Use 'local' for this server's own history.")
    if isinstance(lookback_days, bool) or not isinstance(lookback_days, int) or not 1 <= lookback_days <= 3650:
        raise invalid(
            f"lookback_days must be between 1 and 3650, got {shown(lookback_days)}",
            hint="Pass how many days of history to learn from, e.g. 90.",
        )
    if model_type not in (*MODEL_TYPES, AUTO):
        raise invalid(
            f"unknown model_type {str(model_type)[:60]!r}",
            hint=f"Valid model types: {', '.join((*MODEL_TYPES, AUTO))}.",
        )
    if not isinstance(server_id, str) or not SERVER_ID_PATTERN.fullmatch(server_id):
        raise invalid(
            f"invalid server_id {shown(server_id)}",
            hint="Use 'local' for this server's own history, or the name its statistics were ingested under.",
        )
    return {"lookback_days": lookback_days, "model_type": model_type, "server_id": server_id}


def make_estimator(model_type: str, n_samples: int) -> Any:
    if model_type == "linear_regression":
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    if model_type == "decision_tree":
        from sklearn.tree import DecisionTreeRegressor

        return DecisionTreeRegressor(max_depth=8, min_samples_leaf=30, random_state=0)
    if model_type == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=40,
            min_samples_leaf=5,
            max_features=0.5,
            n_jobs=1,
            random_state=0,
            max_samples=min(1.0, MAX_FOREST_SAMPLES / max(n_samples, 1)),
        )
    if model_type == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor

        # Absolute loss: the q-error is a function of |log error|, and interval means have heavy tails.
        return HistGradientBoostingRegressor(
            loss="absolute_error",
            max_iter=200,
            learning_rate=0.08,
            min_samples_leaf=20,
            early_stopping=False,
            random_state=0,
        )
    raise invalid(f"unknown model_type {model_type!r}")


class ResidualModel:
    """An estimator of the next log mean's difference from the EWMA, damped by a weight chosen on validation.

    Interval means are noisy: when what the estimator learns does not carry over to later intervals,
    the weight goes towards 0 and the forecast towards the EWMA, rather than adding noise.
    """

    def __init__(self, estimator: Any, weight: float):
        self.estimator = estimator
        self.weight = weight
        self.bounds: tuple[float, float] | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> ResidualModel:
        self.estimator.fit(x, y)
        self.bounds = (float(np.min(y)), float(np.max(y))) if len(y) else None
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The damped residual, never beyond the residuals it was trained on: a linear model extrapolating
        from a feature that barely varied in training would otherwise forecast without bound (an overflow
        to an infinite time, NaN q-errors)."""
        if self.weight == 0:
            return np.zeros(len(x))
        learned = np.nan_to_num(self.estimator.predict(x), nan=0.0)
        bounds = getattr(self, "bounds", None)  # a model pickled before the bound: clipped only to finite
        low, high = bounds if bounds else (-MAX_RESIDUAL, MAX_RESIDUAL)
        return self.weight * np.clip(learned, low, high)


RESIDUAL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def latest(end: np.ndarray, fraction: float) -> np.ndarray:
    """The rows of the latest intervals: at least ``fraction`` of them, never splitting one interval."""
    cutoff = np.sort(end)[min(int(len(end) * (1 - fraction)), len(end) - 1)]
    return end >= cutoff


def _residual_weight(
    model_type: str, x: np.ndarray, residual: np.ndarray, end: np.ndarray, fit_cap: int | None = WEIGHT_FIT_ROWS
) -> float:
    """The weight of the learned residual that does best on the latest quarter of the training rows.

    The estimator that judges it is fitted on at most ``fit_cap`` of the earlier rows (a seeded draw), a
    forest with WEIGHT_FIT_TREES trees: the weight is one of five levels, and the cheaper fit chose the
    same one as the full fit in 6 of 8 (model type, workload) cases, a lower one with a holdout p90 no
    worse in the other 2, at a sixth to a half of its time (bench/RESULTS.md, bench_weight_fit).
    ``fit_cap`` None: every earlier row and the full estimator."""
    check_rows = latest(end, 0.25)
    fit_rows = ~check_rows
    if fit_rows.sum() < MIN_HOLDOUT or check_rows.sum() < MIN_HOLDOUT:
        return 1.0
    rows = np.flatnonzero(fit_rows)
    if fit_cap is not None and len(rows) > fit_cap:
        rows = np.sort(np.random.default_rng(0).choice(rows, fit_cap, replace=False))
    estimator = make_estimator(model_type, len(rows))
    if fit_cap is not None and model_type == "random_forest":
        estimator.set_params(n_estimators=WEIGHT_FIT_TREES)
    estimator.fit(x[rows], residual[rows])
    learned = estimator.predict(x[check_rows])
    errors = [np.percentile(np.abs(residual[check_rows] - w * learned), 90) for w in RESIDUAL_WEIGHTS]
    return RESIDUAL_WEIGHTS[int(np.argmin(errors))]


def _importance(estimator: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    estimator = estimator.estimator if isinstance(estimator, ResidualModel) else estimator
    model = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(model, "feature_importances_"):
        raw = np.asarray(model.feature_importances_, dtype=float)
    elif hasattr(model, "coef_"):
        raw = np.abs(np.asarray(model.coef_, dtype=float))  # on standardized features
    else:
        from sklearn.inspection import permutation_importance

        rows = slice(0, min(len(y), 2000))
        raw = permutation_importance(estimator, x[rows], y[rows], n_repeats=2, random_state=0).importances_mean
    raw = np.maximum(np.nan_to_num(raw), 0)
    return raw / raw.sum() if raw.sum() > 0 else raw


def _window(plpy: Any, server_id: str, lookback_days: int) -> tuple[datetime, datetime]:
    """The training window ends at the server's latest capture (remote history may be older than now)."""
    plan = plpy.prepare("SELECT max(captured_at) AS last FROM pganalytics_ml.snapshots WHERE server_id = $1", ["text"])
    last = plpy.execute(plan, [server_id])[0]["last"]
    if last is None:
        raise PgmlError(
            f'no history captured for server "{server_id}"',
            sqlstate=NO_DATA_FOUND,
            hint="Run pgml_snapshot() regularly (or schedule it with pgml_schedule()) before training.",
        )
    end = datetime.fromisoformat(last)
    return end - timedelta(days=lookback_days), end


def train(plpy: Any, arguments: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Trains, evaluates and stores a model; activates it when it beats the active one on the same holdout.

    ``progress(phase, percent)`` may raise or commit: nothing is written before its last call.
    """
    report = progress or (lambda phase, percent: None)
    server_id, lookback = arguments["server_id"], arguments["lookback_days"]
    if plpy.execute("SELECT pg_catalog.pg_is_in_recovery() AS standby")[0]["standby"]:
        raise PgmlError(
            "pganalytics_ml cannot train on a hot standby",
            sqlstate=READ_ONLY_TRANSACTION,
            hint="Train on the primary; the standby receives the model by replication.",
        )
    report("loading history", 5)
    start, end = _window(plpy, server_id, lookback)
    data = history.training_set(plpy, server_id, start.isoformat(), end.isoformat())
    if len(data.target) < MIN_SAMPLES:
        raise PgmlError(
            f'too little history to train for server "{server_id}": {len(data.target)} samples in the last '
            f"{lookback} days, at least {MIN_SAMPLES} are needed",
            sqlstate=NO_DATA_FOUND,
            hint=f"A sample is a statement's interval with {features.MIN_HISTORY} earlier intervals; run "
            "pgml_snapshot() for longer (every few minutes while the workload runs) and train again.",
        )
    report("building features", 15)
    feats = history.chunked_features(data.windows)
    residual = data.target - feats.anchor
    holdout = data.holdout if data.holdout is not None else latest(data.target_end, HOLDOUT_FRACTION)
    if holdout.sum() < MIN_HOLDOUT or (~holdout).sum() < MIN_HOLDOUT:
        raise PgmlError(
            f"too little history to hold out the latest {HOLDOUT_FRACTION:.0%} for evaluation: "
            f"{int(holdout.sum())} holdout and {int((~holdout).sum())} training samples, at least {MIN_HOLDOUT} each",
            sqlstate=NO_DATA_FOUND,
            hint="Run pgml_snapshot() for longer so that history spans more intervals, then train again.",
        )
    train_rows, test_rows = ~holdout, holdout
    held_windows = _rows_of_windows(data.windows, test_rows)  # the forecasters' replay needs the holdout's
    plans = plan_model.fit(data)  # issue 15: the plan model, across statements, on statements held out whole
    data.windows = None  # from here on the features are all that is needed
    candidates = MODEL_TYPES if arguments["model_type"] == AUTO else (arguments["model_type"],)
    actual = np.exp(data.target[test_rows])
    baselines = {
        "last": evaluation.q_errors(np.exp(feats.matrix[test_rows, 0]), actual),
        "longrun": evaluation.q_errors(data.longrun[test_rows], actual),
    }
    results = []
    for i, model_type in enumerate(candidates):
        report(f"training {model_type}", 25 + 55 * i / len(candidates))
        weight = _residual_weight(
            model_type, feats.matrix[train_rows], residual[train_rows], data.target_end[train_rows]
        )
        estimator = ResidualModel(make_estimator(model_type, int(train_rows.sum())), weight)
        estimator.fit(feats.matrix[train_rows], residual[train_rows])
        predicted_log = feats.anchor[test_rows] + estimator.predict(feats.matrix[test_rows])
        q = evaluation.q_errors(np.exp(predicted_log), actual)
        results.append((q["p90"], model_type, estimator, predicted_log, q))
    report("evaluating", 82)
    _, model_type, estimator, predicted_log, q = min(results, key=lambda r: math.inf if r[0] is None else r[0])
    calibration = evaluation.calibrate(
        predicted_log, data.target[test_rows], feats.scale[test_rows], data.target_end[test_rows]
    )
    importance = _importance(estimator, feats.matrix[test_rows], residual[test_rows])
    held = _holdout_report(data, held_windows, feats, test_rows, predicted_log)
    metrics = {
        "training_samples": int(train_rows.sum()),
        "holdout_samples": int(test_rows.sum()),
        "statements": data.statements,
        **data.plan.report(len(data.target)),
        **evaluation.log_scale_fit(predicted_log, data.target[test_rows]),
        **{f"q_error_{k}": v for k, v in q.items()},
        **{f"baseline_{name}_q_error_{k}": v for name, qs in baselines.items() for k, v in qs.items()},
        "interval_coverage": calibration["coverage"],
        "candidates": {r[1]: r[0] for r in results},
        "feature_importance": dict(zip(features.FEATURE_NAMES, importance.round(5).tolist(), strict=True)),
        **{f"combination_q_error_{k}": v for k, v in held["combination"].items()},
        "model_weight": held["model_weight"],
        "forecasters": held["forecasters"],
        "forecaster_note": held["note"],
        "plan_model": plans.metrics | {"note": plans.note},
    }
    metrics = evaluation.finite_metrics(metrics)  # no NaN is ever stored: a metric that cannot be computed is None
    active_id = models.active_model_id(plpy, server_id)
    active_p90 = _active_p90(plpy, active_id, feats.matrix[test_rows], feats.anchor[test_rows], actual)
    # A model whose holdout q-error cannot be computed is stored, never activated.
    activate = q["p90"] is not None and (active_p90 is None or q["p90"] < active_p90)
    report("saving", 95)

    record = {
        "server_id": server_id,
        "model_type": model_type,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "lookback_days": lookback,
        "parameters": _json_params(estimator.estimator)
        | {"requested_model_type": arguments["model_type"], "residual_weight": estimator.weight},
        "metrics": metrics | {"active_model_q_error_p90": active_p90},
        "calibration": {k: calibration[k] for k in ("q", "scores")},
        "feature_names": list(features.FEATURE_NAMES),
    }
    model_id = models.save(plpy, record, estimator)
    plan_model.save(plpy, plans, server_id, model_id)
    if activate:
        from pganalytics_ml.forecasting import forecasts, online

        models.mark_active(plpy, model_id, server_id)
        online.seed_pool(plpy, server_id, held["pool"], held["q_start"])
        forecasts.refresh(plpy, server_id)
    return {
        "model_id": model_id,
        "model_type": model_type,
        "server_id": server_id,
        **{k: metrics[k] for k in ("r_squared", "rmse", "mae", "training_samples", "holdout_samples")},
        **{f"q_error_{k}": metrics[f"q_error_{k}"] for k in q},
        **{f"baseline_{b}_q_error_p90": metrics[f"baseline_{b}_q_error_p90"] for b in ("last", "longrun")},
        "interval_coverage": metrics["interval_coverage"],
        "active_model_q_error_p90": active_p90,
        "activated": activate,
        "feature_importance": metrics["feature_importance"],
        **{k: metrics[k] for k in ("samples_available", "samples_used", "sampled", "estimated_memory_mb")},
        "combination_q_error_p50": metrics["combination_q_error_p50"],
        "combination_q_error_p90": metrics["combination_q_error_p90"],
        "model_weight": metrics["model_weight"],
        "forecasters": metrics["forecasters"],
        "forecaster_note": metrics["forecaster_note"],
        **plans.result(),
    }


def _rows_of_windows(w: features.Windows, rows: np.ndarray) -> features.Windows:
    return features.Windows(w.values[rows], w.structure[rows], w.load[rows], None if w.plan is None else w.plan[rows])


def _holdout_report(
    data: Any, windows: features.Windows, feats: Any, rows: np.ndarray, predicted_log: np.ndarray
) -> dict[str, Any]:
    """Each forecaster and their online combination on the holdout rows (issue 12: forecasting.holdout)."""
    from pganalytics_ml.forecasting import holdout

    held = features.Features(feats.matrix[rows], feats.anchor[rows], feats.scale[rows], feats.history[rows])
    return holdout.report(
        windows, held, data.longrun[rows], data.queryid[rows], data.target_end[rows], data.target[rows], predicted_log
    )


def _active_p90(
    plpy: Any, active_id: int | None, x: np.ndarray, anchor: np.ndarray, actual: np.ndarray
) -> float | None:
    """The active model's p90 q-error on the new holdout; None when there is none it could be judged by."""
    if active_id is None:
        return None
    try:
        active = models.load(plpy, active_id)
    except PgmlError:
        return None  # an active model that no longer loads is replaced
    width = features.model_width(active.feature_names)
    if width is None:
        return None
    return evaluation.q_errors(np.exp(anchor + active.estimator.predict(x[:, :width])), actual)["p90"]


def _json_params(estimator: Any) -> dict[str, Any]:
    params = estimator.get_params(deep=True)
    return {
        k: v
        for k, v in params.items()
        if isinstance(v, str | int | float | bool | type(None)) and not (isinstance(v, float) and not math.isfinite(v))
    }


@sql_entry
def train_sql(plpy: Any, lookback_days: Any, model_type: Any, server_id: Any) -> list[dict[str, Any]]:
    """pgml_train(lookback_days, model_type, server_id)."""
    result = train(plpy, check_train_arguments(lookback_days, model_type, server_id=server_id))
    return [
        result
        | {
            "feature_importance": json.dumps(result["feature_importance"], allow_nan=False),
            "forecasters": json.dumps(result["forecasters"], allow_nan=False),
        }
    ]


@sql_entry
def check_train_arguments_sql(plpy: Any, lookback_days: Any, model_type: Any, server_id: Any) -> str:
    return json.dumps(check_train_arguments(lookback_days, model_type, server_id=server_id))
