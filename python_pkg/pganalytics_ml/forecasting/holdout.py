"""What training's time-ordered holdout says about each forecaster and about their online combination.

Each forecaster proposes every holdout row from what was known before it (the seasonal one needs a
known cycle, which training does not assume: it sleeps here). The combination is replayed online
over the holdout, in time order, exactly as captures would have run it: its q-errors stand beside
each forecaster's, and the pooled weights it ends with (the model's among them) become the server's
start weights when the model is activated, as the holdout's calibration becomes the start of q.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pganalytics_ml.forecasting import calibration as cal
from pganalytics_ml.forecasting import combination as comb
from pganalytics_ml.forecasting import evaluation, features

NOTHING_ADDED = 0.05  # a model whose pooled weight ends below this adds nothing to the combination
NOTHING_GAINED = 0.002  # ... nor does one that lowers the combination's mean |log q| by less than this


def experts(windows: features.Windows, feats: features.Features, longrun: np.ndarray, model_log: np.ndarray):
    """(rows, forecasters) log proposals from each row's window; NaN where a forecaster cannot answer."""
    values = windows.values
    log_means = features.log_means(values)
    valid = ~np.isnan(values[..., 0])
    out = np.full((len(values), comb.N), np.nan)
    for name, proposal in comb.window_experts(log_means, valid, feats.anchor).items():
        out[:, comb.INDEX[name]] = proposal
    seg = comb.Segments.start(np.where(valid[:, 0], log_means[:, 0], log_means[:, -1]))
    for k in range(1, values.shape[1]):
        seg = seg.add(np.where(valid[:, k], log_means[:, k], np.nan))
    out[:, comb.INDEX["since_change"]] = seg.mean
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, comb.INDEX["longrun"]] = np.log(longrun)
    out[:, comb.INDEX["model"]] = model_log
    out[~np.isfinite(out)] = np.nan
    return out


def report(
    windows: features.Windows,
    feats: features.Features,
    longrun: np.ndarray,
    queryid: np.ndarray,
    end: np.ndarray,
    actual_log: np.ndarray,
    model_log: np.ndarray,
) -> dict[str, Any]:
    """Per-forecaster and combined q-errors on the holdout rows, the pooled weights and the start of q."""
    proposals = experts(windows, feats, longrun, model_log)
    start = np.full(comb.N, 1.0 / comb.N)
    combined, pool = comb.replay(queryid, end, proposals, actual_log, start)
    # What the model adds: the same replay without it. A model the combination does as well without
    # (its mean |log q| lower by less than NOTHING_GAINED) starts at the fixed-share floor: live
    # validations can still raise it, if it proves itself there.
    without = proposals.copy()
    without[:, comb.INDEX["model"]] = np.nan
    combined_without, pool_without = comb.replay(queryid, end, without, actual_log, start)
    gained = float(np.mean(np.abs(combined_without - actual_log)) - np.mean(np.abs(combined - actual_log)))
    if gained < NOTHING_GAINED:
        combined, pool = combined_without, pool_without.copy()
        pool[comb.INDEX["model"]] = comb.SHARE / comb.N
        pool = pool / pool.sum()
    # Weights as shares of the forecasters that could answer on the holdout (a sleeping one keeps its prior).
    awake_anywhere = ~np.all(np.isnan(proposals), axis=0)
    shares = np.where(awake_anywhere, pool, 0.0) / max(float(np.sum(pool[awake_anywhere])), 1e-12)
    actual = np.exp(actual_log)
    forecasters: dict[str, Any] = {}
    for name in comb.FORECASTERS:
        column = proposals[:, comb.INDEX[name]]
        awake = ~np.isnan(column)
        entry: dict[str, Any] = {"weight": round(float(shares[comb.INDEX[name]]), 4)}
        if awake.any():
            entry |= {f"q_error_{k}": v for k, v in evaluation.q_errors(np.exp(column[awake]), actual[awake]).items()}
        forecasters[name] = entry
    combination = evaluation.q_errors(np.exp(combined), actual)
    forecasters["combination"] = {f"q_error_{k}": v for k, v in combination.items()}
    scale = cal.start_scale(feats.scale)
    q_start = cal.start_quantile(cal.scores(combined, actual_log, scale))
    model_weight = float(shares[comb.INDEX["model"]])
    others = sorted(((shares[i], n) for i, n in enumerate(comb.FORECASTERS) if n != "model"), reverse=True)
    leaders = ", ".join(f"{n} {w:.2f}" for w, n in others[:2])
    if model_weight < NOTHING_ADDED or gained < NOTHING_GAINED:
        note = (
            f"the model adds nothing on the holdout (it lowers the combination's mean |log q| by {gained:.3f}; "
            f"weight {model_weight:.2f}); forecasts rest on {leaders}"
        )
    else:
        note = f"the model carries weight {model_weight:.2f} of the combination beside {leaders}"
    return {
        "forecasters": forecasters,
        "combination": combination,
        "pool": pool,
        "q_start": q_start,
        "model_weight": round(model_weight, 4),
        "model_gain": round(gained, 4),
        "note": note,
    }
