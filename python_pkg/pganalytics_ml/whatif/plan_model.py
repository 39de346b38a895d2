"""The plan model: a statement's mean execution time from its plan, learned across statements.

It answers for statements never run: what it knows of one is its current plan (capture/plan_features:
costs, node counts, relation sizes), the structure of its text (forecasting/features STRUCTURE) and the
server's load over the interval (LOAD). pgml_train fits it beside the per-statement forecaster, on the
statements of the training sample that have a captured plan.

It predicts log milliseconds as the optimizer's cost scaled by one fitted factor (log ms = log k +
log cost, the baseline) plus a correction learned by gradient boosting, so that it extrapolates with
the cost where the trees cannot. It is evaluated for unseen statements only: whole statements are held
out (grouped folds by queryid), never intervals, and the baseline is scored on the same folds, its
factor fitted on the same training statements. The 90% interval is the split-conformal quantile of the
held-out statements' absolute log errors.

Whether the correction is used at all is decided on shapes held out whole, not statements: a statement
never run is often of a shape never seen (bench/bench_whatif_unseen.py), and a correction that learned
the quirks of the seen shapes, which held-out statements of those shapes share, can be worse than the
cost alone for a new one. A shape is the plan's node-type multiset (COUNT_NAMES) with the text's
structure (STRUCTURE): no relation, index or size. The correction is kept only when, on shapes held out
(grouped folds by shape), it beats the cost baseline at p50 and is no worse at p90; with fewer than
MIN_SHAPES shapes, when it is not worse at both on statements held out.

Rows: each statement contributes its latest ``ROWS_PER_STATEMENT`` intervals of the (already bounded)
training sample, each with the server's load over the interval before it, weighted so that every
statement counts once (bench/bench_whatif_unseen.py compares this with one row per statement).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pganalytics_ml.capture.plan_features import COUNT_NAMES
from pganalytics_ml.errors import PgmlError, not_found
from pganalytics_ml.forecasting import evaluation, models
from pganalytics_ml.forecasting.features import LOAD, PLAN, STRUCTURE

FEATURE_NAMES = tuple(n for n in PLAN if n != "has_plan") + STRUCTURE + LOAD
MIN_STATEMENTS = 12  # statements with a plan below which no plan model is trained
MIN_SHAPES = 3  # plan shapes below which the correction is judged on held-out statements, not shapes
FOLDS = 5
ROWS_PER_STATEMENT = 8
MAX_ROWS = 40_000  # the plan model's rows at most (one per statement beyond): its 6 fits stay short
COVERAGE = 0.9
MIN_COST = 1e-3
_COST = FEATURE_NAMES.index("log_plan_cost")
_SHAPE = tuple(FEATURE_NAMES.index(n) for n in (*COUNT_NAMES, *STRUCTURE))
_RATES = ("server_calls_per_s", "server_reads_per_s", "server_busy_ms_per_s")
_LOAD_RATES = tuple(FEATURE_NAMES.index(n) for n in _RATES)
_SIGNED = ("plan_model_id", "model_id", "server_id", "feature_names", "calibration", "sklearn_version")


def make_estimator(rows_per_statement: float) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Absolute loss: the q-error is a function of |log error|. A leaf spans at least three statements'
    # rows, so that a correction is learned from several statements, never one.
    return HistGradientBoostingRegressor(
        loss="absolute_error",
        max_iter=150,
        learning_rate=0.05,
        max_depth=3,
        min_samples_leaf=max(3, round(3 * rows_per_statement)),
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    )


def log_cost(x: np.ndarray) -> np.ndarray:
    """log of the plans' total cost, from the log_plan_cost feature (log1p of the cost)."""
    return np.log(np.maximum(np.expm1(x[:, _COST]), MIN_COST))


class PlanModel:
    """log ms = log cost + log_factor + correction(features); the correction is left out (``use_correction``
    False) when it did not beat the cost baseline on held-out shapes (see the module's docstring)."""

    def __init__(self, estimator: Any, log_factor: float, use_correction: bool = True):
        self.estimator = estimator
        self.log_factor = log_factor
        self.use_correction = use_correction

    def baseline_log(self, x: np.ndarray) -> np.ndarray:
        return log_cost(x) + self.log_factor

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        base = self.baseline_log(x)
        return base + self.estimator.predict(x) if self.use_correction else base


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def fit_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> PlanModel:
    """The cost factor (weighted median of log ms - log cost, each statement weighing once) and the correction."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse.ravel()]
    residual = y - log_cost(x)
    factor = _weighted_median(residual, weight)
    estimator = make_estimator(len(y) / len(counts)).fit(x, residual - factor, sample_weight=weight)
    return PlanModel(estimator, factor)


def per_statement(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean of ``values`` per statement, in the order of np.unique(groups)."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return np.bincount(inverse.ravel(), weights=values) / counts


@dataclass
class Fitted:
    """A plan model trained and evaluated, not yet stored; or why there is none (``model`` None)."""

    model: PlanModel | None
    statements: int
    note: str
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    plan_model_id: int | None = None

    def result(self) -> dict[str, Any]:
        """pgml_train's plan model columns."""
        m = self.metrics
        return {
            "plan_model_id": self.plan_model_id,
            "plan_model_statements": self.statements,
            "plan_model_q_error_p50": m.get("q_error_p50"),
            "plan_model_q_error_p90": m.get("q_error_p90"),
            "plan_cost_q_error_p50": m.get("baseline_cost_q_error_p50"),
            "plan_cost_q_error_p90": m.get("baseline_cost_q_error_p90"),
            "plan_model_note": self.note,
        }


def rows(
    structure: np.ndarray,
    load: np.ndarray,
    plan: np.ndarray | None,
    target: np.ndarray,
    queryid: np.ndarray,
    per_statement_rows: int = ROWS_PER_STATEMENT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, log ms, queryid) of the statements that have a plan: their latest ``per_statement_rows``
    rows (the training set is ordered by statement, then time; 0 keeps every row), fewer per statement
    when that would exceed MAX_ROWS."""
    if plan is None:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0), np.zeros(0, np.int64)
    has_plan = plan[:, PLAN.index("has_plan")] > 0
    keep = np.flatnonzero(has_plan)
    statements = len(np.unique(queryid[keep]))
    if statements and len(keep) > MAX_ROWS:  # fewer rows per statement, never fewer statements
        per_statement_rows = max(1, min(per_statement_rows or MAX_ROWS, MAX_ROWS // statements))
    if per_statement_rows and len(keep):
        q = queryid[keep]
        starts = np.r_[0, np.flatnonzero(np.diff(q)) + 1]
        ends = np.r_[starts[1:], len(q)]
        rank_from_end = np.repeat(ends, ends - starts) - 1 - np.arange(len(q))
        keep = keep[rank_from_end < per_statement_rows]
    plan_part = np.delete(plan[keep], PLAN.index("has_plan"), axis=1)
    x = np.hstack([plan_part, structure[keep], load[keep]])
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), target[keep], queryid[keep]


def shapes(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's statement's plan shape (node-type counts and text structure, from its latest row), as labels."""
    _, first_from_end = np.unique(groups[::-1], return_index=True)
    latest = len(groups) - 1 - first_from_end  # each statement's last row, in np.unique(groups) order
    _, statement_of = np.unique(groups, return_inverse=True)
    _, shape_of = np.unique(np.round(x[latest][:, _SHAPE], 6), axis=0, return_inverse=True)
    return np.asarray(shape_of).ravel()[np.asarray(statement_of).ravel()]


def evaluate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, split: np.ndarray | None = None) -> dict[str, Any]:
    """Grouped out-of-fold predictions (every statement predicted by a model that never saw it), per statement:
    the model's and the cost baseline's log predictions and the actual log mean. ``split``: labels held out
    whole instead of statements (plan shapes)."""
    from sklearn.model_selection import GroupKFold

    split = groups if split is None else split
    folds = min(FOLDS, len(np.unique(split)))
    model_log, base_log = np.zeros(len(y)), np.zeros(len(y))
    for train_rows, test_rows in GroupKFold(n_splits=folds).split(x, y, split):
        fitted = fit_model(x[train_rows], y[train_rows], groups[train_rows])
        base_log[test_rows] = fitted.baseline_log(x[test_rows])
        model_log[test_rows] = fitted.predict_log(x[test_rows])
    return {
        "model": per_statement(model_log, groups),
        "baseline": per_statement(base_log, groups),
        "actual": per_statement(y, groups),
    }


def fit(training_set: Any, per_statement_rows: int = ROWS_PER_STATEMENT) -> Fitted:
    """Trains and evaluates the plan model on a forecasting training set (history.TrainingSet)."""
    w = training_set.windows
    x, y, groups = rows(w.structure, w.load, w.plan, training_set.target, training_set.queryid, per_statement_rows)
    n = len(np.unique(groups))
    if n < MIN_STATEMENTS:
        return Fitted(
            None,
            n,
            f"no plan model: {n} statements of the sample have a captured plan, at least {MIN_STATEMENTS} are "
            "needed (pgml_capture_plans() captures them; the plans job does so for new statements)",
        )
    held = evaluate(x, y, groups)
    actual = np.exp(held["actual"])
    q_model = evaluation.q_errors(np.exp(held["model"]), actual)
    q_base = evaluation.q_errors(np.exp(held["baseline"]), actual)
    model = fit_model(x, y, groups)
    shape = shapes(x, groups)
    n_shapes = len(np.unique(shape))
    shape_scores: dict[str, Any] = {"shapes": n_shapes}
    if n_shapes >= MIN_SHAPES:
        by_shape = evaluate(x, y, groups, shape)
        shape_actual = np.exp(by_shape["actual"])
        s_model = evaluation.q_errors(np.exp(by_shape["model"]), shape_actual)
        s_base = evaluation.q_errors(np.exp(by_shape["baseline"]), shape_actual)
        model.use_correction = s_model["p50"] < s_base["p50"] and s_model["p90"] <= s_base["p90"]
        shape_scores |= {
            "shape_folds": min(FOLDS, n_shapes),
            **{f"shape_q_error_{k}": v for k, v in s_model.items()},
            **{f"shape_baseline_cost_q_error_{k}": v for k, v in s_base.items()},
        }
    else:
        model.use_correction = not (q_model["p50"] > q_base["p50"] and q_model["p90"] > q_base["p90"])
    served = held["model"] if model.use_correction else held["baseline"]
    scores = np.abs(served - held["actual"])
    calibration = {
        "coverage": COVERAGE,
        "q": evaluation.conformal_quantile(scores, COVERAGE),
        "baseline_q": evaluation.conformal_quantile(np.abs(held["baseline"] - held["actual"]), COVERAGE),
        # P(within 25%), as pgml_predict's confidence: the share of held-out statements that close.
        "confidence": round(float(np.mean(scores <= evaluation.CLOSE)), 4),
    }
    metrics = {
        "statements": n,
        "rows": len(y),
        "rows_per_statement": per_statement_rows,
        "folds": min(FOLDS, n),
        **{f"q_error_{k}": v for k, v in q_model.items()},
        **{f"baseline_cost_q_error_{k}": v for k, v in q_base.items()},
        **shape_scores,
        "cost_factor": round(math.exp(model.log_factor), 8),
        "uses_correction": model.use_correction,
        "interval_q": round(calibration["q"], 4),
        "confidence": calibration["confidence"],
    }
    note = (
        f"plan model on {n} statements, evaluated on statements held out whole ({metrics['folds']} grouped folds)"
        if model.use_correction
        else f"on the {n_shapes} plan shapes of {n} statements held out whole, the learned correction did not beat "
        "the cost baseline: the plan model answers with the cost scaled by its fitted factor"
        if n_shapes >= MIN_SHAPES
        else f"on {n} statements held out whole, the learned correction did worse than the cost baseline at "
        "p50 and p90: the plan model answers with the cost scaled by its fitted factor"
    )
    return Fitted(model, n, note, metrics, calibration)


def _signature(key: bytes, blob: bytes, record: dict[str, Any]) -> bytes:
    values = {f: record[f] for f in _SIGNED}
    if isinstance(values["calibration"], str):
        values["calibration"] = json.loads(values["calibration"])
    meta = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    # Domain-separated from the models' signatures: a models row's bytes are never accepted here.
    return hmac.new(key, b"plan_model\0" + blob + b"\0" + meta, hashlib.sha256).digest()


def save(plpy: Any, fitted: Fitted, server_id: str, model_id: int) -> int | None:
    """Stores the plan model beside ``model_id`` (the forecaster trained with it); its id, or None without one."""
    if fitted.model is None:
        return None
    import sklearn

    blob = pickle.dumps(fitted.model, protocol=pickle.HIGHEST_PROTOCOL)
    plan_model_id = int(
        plpy.execute("SELECT pg_catalog.nextval('pganalytics_ml.plan_models_plan_model_id_seq') AS id")[0]["id"]
    )
    record = {
        "plan_model_id": plan_model_id,
        "model_id": model_id,
        "server_id": server_id,
        "feature_names": list(FEATURE_NAMES),
        "calibration": fitted.calibration,
        "sklearn_version": sklearn.__version__,
    }
    query = plpy.prepare(
        """
        INSERT INTO pganalytics_ml.plan_models (plan_model_id, model_id, server_id, statements, feature_names,
               metrics, calibration, sklearn_version, model, signature)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10)
        """,
        ["bigint", "bigint", "text", "integer", "text[]", "text", "text", "text", "bytea", "bytea"],
    )
    plpy.execute(
        query,
        [
            plan_model_id,
            model_id,
            server_id,
            fitted.statements,
            list(FEATURE_NAMES),
            json.dumps(fitted.metrics),
            json.dumps(fitted.calibration),
            sklearn.__version__,
            blob,
            _signature(models._key(plpy), blob, record),
        ],
    )
    fitted.plan_model_id = plan_model_id
    return plan_model_id


@dataclass
class Loaded:
    plan_model_id: int
    model: PlanModel
    calibration: dict[str, Any]


_cache: dict[tuple[int, bytes], Loaded] = {}

# The plan model trained with the server's active model, else its newest.
_CURRENT_SQL = """
    SELECT p.plan_model_id, p.model_id, p.server_id, p.feature_names, p.calibration::text AS calibration,
           p.sklearn_version, p.model, p.signature
      FROM pganalytics_ml.plan_models p
      LEFT JOIN pganalytics_ml.models m ON m.model_id = p.model_id AND m.is_active
     WHERE p.server_id = $1
     ORDER BY m.model_id IS NULL, p.plan_model_id DESC
     LIMIT 1
"""


def load(plpy: Any, server_id: str) -> Loaded:
    """The server's plan model, after its signature and scikit-learn version are checked; P0002 without one."""
    found = plpy.execute(plpy.prepare(_CURRENT_SQL, ["text"]), [server_id])
    if not len(found):
        raise not_found(
            f'server "{server_id}" has no plan model to predict a statement that never ran',
            hint="Run SELECT * FROM pgml_train(); it trains one once at least "
            f"{MIN_STATEMENTS} statements have captured plans (pgml_capture_plans()).",
        )
    row = dict(found[0])
    blob, stored = bytes(row["model"]), bytes(row["signature"])
    if not hmac.compare_digest(_signature(models._key(plpy), blob, row), stored):
        raise PgmlError(
            f"plan model {row['plan_model_id']} failed its integrity check: its bytes or metadata were changed "
            "outside pganalytics_ml",
            sqlstate="XX001",
            hint="Do not load it. Train again with SELECT * FROM pgml_train(); then remove this one.",
        )
    cached = _cache.get((row["plan_model_id"], stored))
    if cached is not None:
        return cached
    import sklearn

    if row["sklearn_version"] != sklearn.__version__:
        raise PgmlError(
            f"plan model {row['plan_model_id']} was written by scikit-learn {row['sklearn_version']}; "
            f"this server runs scikit-learn {sklearn.__version__}",
            sqlstate="55000",
            hint="Retrain with SELECT * FROM pgml_train(); models do not move between scikit-learn versions.",
        )
    if list(row["feature_names"]) != list(FEATURE_NAMES):
        raise PgmlError(
            f"plan model {row['plan_model_id']} was trained on other features than this version computes",
            sqlstate="55000",
            hint="Retrain with SELECT * FROM pgml_train().",
        )
    model = models._Unpickler(io.BytesIO(blob)).load()
    loaded = Loaded(int(row["plan_model_id"]), model, json.loads(row["calibration"]))
    _cache[(loaded.plan_model_id, stored)] = loaded
    return loaded


def feature_row(
    description: dict[str, Any], structure: list[float], load: list[float], load_scale: float
) -> np.ndarray:
    """One feature row: a plan description (capture/plan_features.describe), STRUCTURE and LOAD values,
    the load's rates multiplied by ``load_scale``."""
    plan = description["features"]
    values = [float(plan.get(name, 0.0)) for name in PLAN if name != "has_plan"] + list(structure) + list(load)
    x = np.nan_to_num(np.array([values], dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    for i in _LOAD_RATES:
        x[0, i] = math.log1p(math.expm1(x[0, i]) * load_scale)
    return x
