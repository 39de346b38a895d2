"""Logged predictions scored by later snapshots, next to the two naive baselines, and their pictures.

Shared by the demo and the accuracy benchmark. For every validated model prediction, the baselines
say what was known at the same moment: the statement's last observed interval mean, and its
long-run (calls-weighted) mean up to then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCORED = """
SELECT p.queryid, p.predicted_ms, p.actual_ms, p.within_interval, extract(epoch FROM p.validated_at)::float8,
       (SELECT q.mean_exec_time FROM pganalytics_ml.query_stats q
         WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end = p.based_on) AS last_ms,
       (SELECT sum(q.total_exec_time) / sum(q.calls) FROM pganalytics_ml.query_stats q
         WHERE q.server_id = p.server_id AND q.queryid = p.queryid AND q.interval_end <= p.based_on) AS longrun_ms
  FROM pganalytics_ml.predictions p
 WHERE p.server_id = %s AND p.validated_by = 'observed' AND p.source = 'model' AND p.actual_ms > 0
 ORDER BY p.validated_at, p.queryid
"""
PREDICTORS = ("model", "last", "longrun")
BASELINE_NAMES = {"last": "baseline: last interval's mean", "longrun": "baseline: statement's long-run mean"}
COLORS = {"model": "tab:blue", "last": "tab:orange", "longrun": "tab:green"}


def q_error(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.maximum(predicted / actual, actual / predicted)


@dataclass
class Scores:
    queryid: np.ndarray
    actual: np.ndarray
    within: np.ndarray  # inside the prediction's own 90% interval
    validated_at: np.ndarray  # epoch seconds of the snapshot that scored it
    predicted: dict[str, np.ndarray]  # by predictor: the model and the two baselines

    def __len__(self) -> int:
        return len(self.actual)

    def q(self, predictor: str) -> np.ndarray:
        return q_error(self.predicted[predictor], self.actual)


def load_scores(conn: Any, server_id: str = "local") -> Scores:
    rows = [r for r in conn.execute(SCORED, (server_id,)).fetchall() if r[5] and r[6]]

    def column(i: int, dtype: Any = float) -> np.ndarray:
        return np.array([r[i] for r in rows], dtype=dtype)

    return Scores(
        queryid=column(0, np.int64),
        actual=column(2),
        within=column(3, bool),
        validated_at=column(4),
        predicted={"model": column(1), "last": column(5), "longrun": column(6)},
    )


def names(model_name: str) -> dict[str, str]:
    return {"model": f"model ({model_name})", **BASELINE_NAMES}


def plot_predicted_vs_actual(scores: Scores, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    predicted, actual, inside = scores.predicted["model"], scores.actual, scores.within
    ax.scatter(actual[inside], predicted[inside], s=10, alpha=0.6, label="inside its 90% interval")
    ax.scatter(actual[~inside], predicted[~inside], s=12, alpha=0.8, color="tab:red", label="outside")
    low = min(actual.min(), predicted.min()) / 1.5
    high = max(actual.max(), predicted.max()) * 1.5
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = actual")
    for factor in (2, 0.5):
        ax.plot([low, high], [low * factor, high * factor], color="gray", linewidth=0.8, linestyle=":")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(low, high),
        ylim=(low, high),
        xlabel="actual mean execution time of the interval (ms)",
        ylabel="predicted (ms)",
        title=f"{title} (dotted: x2)",
    )
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_q_error_distribution(scores: Scores, model_name: str, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = names(model_name)
    for predictor in PREDICTORS:
        values = np.sort(scores.q(predictor))
        ax.step(
            values,
            np.arange(1, len(values) + 1) / len(values),
            where="post",
            color=COLORS[predictor],
            label=f"{labels[predictor]}: p50 {np.percentile(values, 50):.2f}, p90 {np.percentile(values, 90):.2f}",
        )
    ax.axhline(0.9, color="gray", linestyle=":", linewidth=0.8)
    ax.set(
        xscale="log",
        xlabel="q-error = max(predicted/actual, actual/predicted)",
        ylabel="share of predictions with at most that q-error",
        title=title,
    )
    plain_log_ticks(ax.xaxis)
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def plain_log_ticks(axis: Any) -> None:
    """Ticks of a log-scale q-error axis as plain numbers (1.5, 2, 3) rather than powers of ten."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(FixedLocator([1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100]))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def save(fig: Any, path: Path) -> Path:
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
