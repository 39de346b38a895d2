"""Forecasts from the online combination: read the state, learn from the newest interval, forecast, store.

At every capture, for the statements that ran: what each forecaster had proposed for the interval
just observed is scored (|log q|), the statement's weights, its server's pooled weights and the
interval calibration are updated (combination, calibration), and the next forecasts are stored in
pganalytics_ml.forecasts, where pgml_predict reads them, with what was learned. Three reads and two
writes per capture, each one statement over arrays, whatever the number of statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pganalytics_ml.forecasting import alarm, features, history
from pganalytics_ml.forecasting import calibration as cal
from pganalytics_ml.forecasting import combination as comb
from pganalytics_ml.forecasting.chunks import in_chunk

# The regression alarm's bound (see _after_capture): forecast * exp(max(ALARM_Z * alarm_scale, ALARM_MIN)):
# three times the statement's own error scale beyond load and its own rate of calls, and never less than 1.5 times
# the forecast. What moves the bound is in forecasting.alarm.
ALARM_Z = 3.0
ALARM_MIN = np.log(1.5)
# What the combination learns of a statement is kept in its row of pganalytics_ml.forecasts, written with its
# forecast: in columns what SQL reads too (the regression alarm, pgml_set_season), packed the rest (pack).
_COLUMNS = ("load_mu", "rate_log", "load_sensitivity", "rate_elasticity", "season_seconds")
# The running sums only this module reads, in forecasts.packed with the weights and proposals.
SUMS = (
    "combined_ms",
    "half_log",
    "err_scale",
    "correction",
    "seg_n",
    "seg_mean",
    "seg_m2",
    "seg_flag",
    "seg_last",
    "longrun_calls",
    "longrun_ms",
    "load_sdl",
    "load_sll",
    "alarm_scale",
    "rate_sxu",
    "rate_suu",
    "updates",  # validated intervals that updated the statement's own weights
    "load_mu",  # also columns, for the regression alarm's SQL, at 9 significant digits
    "rate_log",
)
_STATE_COLUMNS = tuple(dict.fromkeys(_COLUMNS + SUMS))
_WRITTEN = tuple(c for c in _COLUMNS if c != "season_seconds")  # set by pgml_set_season only
# The period of a statement's seasonal forecaster: the one set with pgml_set_season, else the cycle of its mean
# time that the patterns job found (pganalytics_ml.seasonal_profiles, issue 16; one per statement and metric).
_SEASON = "coalesce(st.season_seconds, sp.period_hours * 3600)::float8"
_WITH_SEASON = """pganalytics_ml.forecasts st
      LEFT JOIN pganalytics_ml.seasonal_profiles sp
        ON sp.server_id = st.server_id AND sp.query_hash = st.queryid AND sp.metric = 'mean_time'"""
_READ_STATE = f"""
    SELECT array_agg(st.queryid) AS queryid,
           array_agg(extract(epoch FROM st.based_on)::float8) AS based_on,
           array_agg({_SEASON}) AS season_seconds, array_agg(st.packed) AS packed
      FROM {_WITH_SEASON}
     WHERE st.server_id = $1 AND {in_chunk("st")} AND st.packed IS NOT NULL
"""
# The end of a statement's latest interval, as every capture keeps it (a max over query_stats would probe
# every day partition once per statement: 94 with 90 days of retention).
_LAST_ACTIVE = """(SELECT s.last_active_at FROM pganalytics_ml.statements s
             WHERE s.server_id = $1 AND s.queryid = u.queryid)"""
_READ_POOL = """
    SELECT weights, q, q_start, recent_scores, updates, load_level, load_ar, load_levels
      FROM pganalytics_ml.forecaster_pool WHERE server_id = $1
"""
# A statement's long run starts from at most its last LONGRUN_SEED_DAYS of history, then grows with every
# capture: a statement first forecast over a long history (an upgrade, a bulk import) would otherwise
# sum all of it, 36 s of CPU for 2,000 statements at 100M intervals (bench_training).
LONGRUN_SEED_DAYS = 7
_LONGRUN = f"""
    SELECT array_agg(queryid) AS queryid, array_agg(calls) AS calls, array_agg(total) AS total
      FROM (SELECT q.queryid, sum(q.calls)::float8 AS calls, sum(q.total_exec_time) AS total
              FROM pganalytics_ml.query_stats q
             WHERE q.server_id = $1 AND {in_chunk("q")}
               AND q.interval_end > to_timestamp($3) - interval '{LONGRUN_SEED_DAYS} days'
             GROUP BY q.queryid) s
"""
# The seasonal forecaster: the interval one period before the one to come (nearest end within half an interval).
_SEASONAL = f"""
    SELECT array_agg(st.queryid) AS queryid, array_agg(x.mean_exec_time) AS mean
      FROM {_WITH_SEASON}
     CROSS JOIN LATERAL (SELECT {_SEASON} AS seconds) season
     CROSS JOIN LATERAL (
           SELECT q.mean_exec_time FROM pganalytics_ml.query_stats q
            WHERE q.server_id = st.server_id AND q.queryid = st.queryid
              AND q.interval_end BETWEEN to_timestamp($3 - season.seconds - $4 / 2)
                                     AND to_timestamp($3 - season.seconds + $4 / 2)
            ORDER BY abs(extract(epoch FROM q.interval_end) - ($3 - season.seconds)) LIMIT 1) x
     WHERE st.server_id = $1 AND {in_chunk("st")} AND season.seconds IS NOT NULL
"""
_WRITE_POOL = """
    INSERT INTO pganalytics_ml.forecaster_pool AS p (server_id, weights, q, q_start, recent_scores, updates,
                                                     load_level, load_ar, load_levels, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, pg_catalog.now())
    ON CONFLICT (server_id) DO UPDATE
       SET weights = EXCLUDED.weights, q = EXCLUDED.q, q_start = EXCLUDED.q_start,
           recent_scores = EXCLUDED.recent_scores, updates = EXCLUDED.updates, load_level = EXCLUDED.load_level,
           load_ar = EXCLUDED.load_ar, load_levels = EXCLUDED.load_levels, updated_at = EXCLUDED.updated_at
"""
_WRITE_FORECASTS = f"""
    INSERT INTO pganalytics_ml.forecasts AS f (server_id, queryid, predicted_ms, lower_ms, upper_ms, confidence,
                                               model_id, model_version, source, based_on, computed_at,
                                               forecaster, expert_ms, alarm_upper_ms, packed, {", ".join(_WRITTEN)})
    SELECT $1, u.queryid, u.predicted, u.lower, u.upper, u.confidence,
           CASE WHEN u.from_model THEN $7::bigint END, CASE WHEN u.from_model THEN $8::integer END,
           CASE WHEN u.from_model THEN 'model' ELSE 'baseline' END,
           {_LAST_ACTIVE},
           pg_catalog.now(), u.forecaster, u.expert_ms::float8[], u.alarm_upper, u.packed,
           {", ".join(f"u.{c}" for c in _WRITTEN)}
      FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $9::boolean[],
                  $10::float8[], $11::text[], $12::text[], $13::bytea[],
                  {", ".join(f"${i + 14}::float8[]" for i in range(len(_WRITTEN)))})
           AS u(queryid, predicted, lower, upper, confidence, from_model, alarm_upper, forecaster, expert_ms, packed,
                {", ".join(_WRITTEN)})
    ON CONFLICT (server_id, queryid) DO UPDATE
       SET predicted_ms = EXCLUDED.predicted_ms, lower_ms = EXCLUDED.lower_ms, upper_ms = EXCLUDED.upper_ms,
           confidence = EXCLUDED.confidence, model_id = EXCLUDED.model_id, model_version = EXCLUDED.model_version,
           source = EXCLUDED.source, based_on = EXCLUDED.based_on, computed_at = EXCLUDED.computed_at,
           forecaster = EXCLUDED.forecaster, expert_ms = EXCLUDED.expert_ms, alarm_upper_ms = EXCLUDED.alarm_upper_ms,
           packed = EXCLUDED.packed, {", ".join(f"{c} = EXCLUDED.{c}" for c in _WRITTEN)}
"""


@dataclass
class Pool:
    weights: np.ndarray
    q: float
    q_start: float
    recent: np.ndarray
    updates: int
    load: float = 0.0
    # The AR(1) fit of the server's load level (combination.ServerLoad.ar_update) and the end of the
    # capture whose level it last took, so that the chunks of one capture count it once.
    load_ar: np.ndarray | None = None
    load_at: float = -np.inf
    levels: np.ndarray | None = None  # the server's latest levels, oldest first (ServerLoad.keep_level)

    @classmethod
    def fresh(cls, q_start: float = cal.START_Q) -> Pool:
        return cls(np.full(comb.N, 1.0 / comb.N), q_start, q_start, np.zeros(0), 0)


def read_pool(plpy: Any, server_id: str) -> Pool:
    rows = plpy.execute(plpy.prepare(_READ_POOL, ["text"]), [server_id])
    if not len(rows):
        return Pool.fresh()
    r = rows[0]
    weights = np.array(r["weights"], dtype=float)
    if len(weights) != comb.N:
        weights = np.full(comb.N, 1.0 / comb.N)
    recent = np.array(r["recent_scores"], dtype=float)
    ar = np.array(r["load_ar"], dtype=float) if r["load_ar"] is not None and len(r["load_ar"]) == 6 else None
    return Pool(
        weights,
        float(r["q"]),
        float(r["q_start"]),
        recent,
        r["updates"],
        float(r["load_level"]),
        None if ar is None else ar[:5],
        -np.inf if ar is None else float(ar[5]),
        None if r["load_levels"] is None else np.array(r["load_levels"], dtype=float),
    )


def write_pool(plpy: Any, server_id: str, pool: Pool) -> None:
    plan = plpy.prepare(
        _WRITE_POOL, ["text", "float8[]", "float8", "float8", "float8[]", "integer", "float8", "float8[]", "float8[]"]
    )
    plpy.execute(
        plan,
        [
            server_id,
            [round(float(w), 6) for w in pool.weights],
            pool.q,
            pool.q_start,
            [round(float(v), 4) for v in pool.recent],
            pool.updates,
            pool.load,
            None if pool.load_ar is None else [float(v) for v in (*pool.load_ar, pool.load_at)],
            None if pool.levels is None else [round(float(v), 6) for v in pool.levels],
        ],
    )


def seed_pool(plpy: Any, server_id: str, weights: np.ndarray, q_start: float) -> None:
    """What a training holdout teaches the server: its pooled weights and the start of its quantile."""
    pool = read_pool(plpy, server_id)
    pool.weights, pool.q, pool.q_start = weights, q_start, q_start
    write_pool(plpy, server_id, pool)


class _State:
    """The forecaster state of the statements in ``queryid`` order; missing rows filled by ``start``."""

    def __init__(self, plpy: Any, server_id: str, queryid: np.ndarray, pool: Pool):
        n = len(queryid)
        row = plpy.execute(plpy.prepare(_READ_STATE, ["text", "bigint[]"]), [server_id, queryid.tolist()])[0]
        self.known = np.zeros(n, dtype=bool)
        self.weights = np.tile(pool.weights, (n, 1))
        self.expert_log = np.full((n, comb.N), np.nan)
        self.based_on = np.full(n, -np.inf)
        self.cols = {c: np.full(n, np.nan) for c in _STATE_COLUMNS}
        if row["queryid"] is None:
            return
        position = {int(q): i for i, q in enumerate(queryid)}
        at = np.array([position[int(q)] for q in row["queryid"]])
        self.cols["season_seconds"][at] = np.array(row["season_seconds"], dtype=float)
        sums, weights, expert_log, complete = unpack(row["packed"])
        at = at[complete]
        self.known[at] = True
        self.based_on[at] = np.array(row["based_on"], dtype=float)[complete]
        self.weights[at], self.expert_log[at] = weights[complete], expert_log[complete]
        for k, c in enumerate(SUMS):
            self.cols[c][at] = sums[complete, k]


def pack(sums: np.ndarray, weights: np.ndarray, expert_log: np.ndarray) -> list[bytes]:
    """forecasts.packed of each statement: how many sums and forecasters follow, then the sums (SUMS order), the
    statement's own weights and the log of each forecaster's proposal (FORECASTERS order), float8 little-endian."""
    counts = np.tile([float(sums.shape[1]), float(weights.shape[1])], (len(sums), 1))
    rows = np.ascontiguousarray(np.hstack([counts, sums, weights, expert_log]), dtype="<f8")
    data, size = rows.tobytes(), 8 * rows.shape[1]
    return [data[i : i + size] for i in range(0, len(data), size)]


def unpack(values: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sums, weights and proposals of pack's values, and which were stored with today's SUMS and FORECASTERS.

    A value of another layout (a version that had fewer sums or forecasters) reads as NaN: its statement starts
    again as one seen for the first time.
    """
    n, k, m = len(values), len(SUMS), comb.N
    width = 2 + k + 2 * m
    rows = np.full((n, width), np.nan)
    complete = np.array([len(v) == 8 * width for v in values], dtype=bool)
    if complete.any():
        stored = b"".join(v for v, ok in zip(values, complete, strict=True) if ok)
        rows[complete] = np.frombuffer(stored, "<f8").reshape(-1, width)
        complete &= (rows[:, 0] == k) & (rows[:, 1] == m)
        rows[~complete] = np.nan
    return rows[:, 2 : 2 + k], rows[:, 2 + k : 2 + k + m], rows[:, 2 + k + m :], complete


def _seasonal(plpy: Any, server_id: str, queryid: np.ndarray, next_end: float, step: float) -> np.ndarray:
    out = np.full(len(queryid), np.nan)
    plan = plpy.prepare(_SEASONAL, ["text", "bigint[]", "float8", "float8"])
    row = plpy.execute(plan, [server_id, queryid.tolist(), next_end, step])[0]
    if row["queryid"] is not None:
        position = {int(q): i for i, q in enumerate(queryid)}
        for q, mean in zip(row["queryid"], row["mean"], strict=True):
            if mean and mean > 0:
                out[position[int(q)]] = np.log(mean)
    return out


def refresh(plpy: Any, server_id: str, queryids: list[int] | None, observe: bool) -> int:
    from pganalytics_ml.forecasting.forecasts import _usable_model, float8_array, float8_arrays

    latest = history.latest_windows(plpy, server_id, queryids)
    n = len(latest.queryid)
    if not n:
        return 0
    feats = features.feature_matrix(latest.windows)
    values = latest.windows.values
    log_means = features.log_means(values)
    valid = ~np.isnan(values[..., 0])
    newest = log_means[:, -1]
    seconds_at = features.CHANNELS.index("seconds")
    rates = alarm.log_rate(values[..., 0], values[..., seconds_at])  # log calls per second of each interval
    pool = read_pool(plpy, server_id)
    state = _State(plpy, server_id, latest.queryid, pool)
    c = state.cols

    # Statements seen for the first time: the segment is read from their window, the long run from all history.
    new = ~state.known
    if new.any():
        seg = comb.Segments.start(np.where(valid[new, 0], log_means[new, 0], newest[new]))
        for k in range(1, features.WINDOW):
            seg = seg.add(np.where(valid[new, k], log_means[new, k], np.nan))
        c["seg_n"][new], c["seg_mean"][new], c["seg_m2"][new] = seg.n, seg.mean, seg.m2
        c["seg_flag"][new], c["seg_last"][new] = seg.flag, seg.last
        plan = plpy.prepare(_LONGRUN, ["text", "bigint[]", "float8"])
        lr = plpy.execute(plan, [server_id, latest.queryid[new].tolist(), float(np.max(latest.based_on))])[0]
        totals = {
            int(q): (cl, t) for q, cl, t in zip(lr["queryid"] or [], lr["calls"] or [], lr["total"] or [], strict=True)
        }
        pairs = np.array([totals.get(int(q), (np.nan, np.nan)) for q in latest.queryid[new]], dtype=float)
        c["longrun_calls"][new], c["longrun_ms"][new] = pairs[:, 0], pairs[:, 1]
        c["updates"][new] = 0
        c["err_scale"][new] = cal.start_scale(np.where(feats.history[new] >= 2, feats.scale[new], 0.5))
        c["correction"][new] = 0.0
        c["load_mu"][new], c["load_sdl"][new], c["load_sll"][new] = feats.anchor[new], 0.0, 0.0
        c["alarm_scale"][new] = c["err_scale"][new]
        c["rate_sxu"][new], c["rate_suu"][new] = 0.0, 0.0

    # Learning from the interval just observed: only where it is newer than what the proposals knew.
    learn = state.known & (latest.based_on > state.based_on) if observe else np.zeros(n, dtype=bool)
    if learn.any():
        x = newest[learn]
        proposals = state.expert_log[learn]
        pool.weights = comb.pooled_update(pool.weights, proposals, x)
        state.weights[learn] = comb.hedge_update(state.weights[learn], proposals, x)
        c["updates"][learn] += 1
        abs_error = np.abs(x - np.log(c["combined_ms"][learn]))
        missed = abs_error > c["half_log"][learn]
        batch = cal.scores(np.log(c["combined_ms"][learn]), x, c["err_scale"][learn])
        c["correction"][learn] = cal.track_statement(c["correction"][learn], pool.q, missed)
        pool.q = cal.track_quantile(pool.q, missed)
        pool.recent = cal.keep_recent(pool.recent, batch)
        pool.updates += 1
        c["err_scale"][learn] = cal.update_scale(c["err_scale"][learn], abs_error)
        seg = comb.Segments(*(c[k][learn] for k in ("seg_n", "seg_mean", "seg_m2", "seg_flag", "seg_last"))).add(x)
        c["seg_n"][learn], c["seg_mean"][learn], c["seg_m2"][learn] = seg.n, seg.mean, seg.m2
        c["seg_flag"][learn], c["seg_last"][learn] = seg.flag, seg.last
        c["longrun_calls"][learn] += values[learn, -1, 0]
        c["longrun_ms"][learn] += values[learn, -1, 1]
        # The alarm's scale: the combination's error beyond what the server's shift and the statement's change of
        # rate explain for it (its elasticity as learned before this interval), as _after_capture judges it.
        residual = x - np.log(c["combined_ms"][learn])
        shift = comb.ServerLoad.level(residual, np.zeros(len(residual)))
        b = comb.ServerLoad.sensitivity(c["load_sdl"][learn], c["load_sll"][learn])
        rate_change = np.nan_to_num(rates[learn, -1] - c["rate_log"][learn])
        elasticity = alarm.elasticity(c["rate_sxu"][learn], c["rate_suu"][learn])
        beyond = residual - (np.maximum(b, 1.0) if shift > 0 else b) * shift - elasticity * rate_change
        c["alarm_scale"][learn] = cal.update_scale(c["alarm_scale"][learn], np.abs(beyond))
        level = comb.ServerLoad.level(x, c["load_mu"][learn])
        captured = float(np.max(latest.based_on[learn]))
        if captured > pool.load_at:  # the first chunk of a new capture: one more pair of levels for the AR(1)
            pool.load_ar, pool.load_at = comb.ServerLoad.ar_update(pool.load_ar, pool.load, level), captured
            pool.levels = comb.ServerLoad.keep_level(pool.levels, level)
        # The elasticity learns from the change since the statement's interval before, beyond what the change of
        # the server's load level explains for it (as a kept alarm bound moves).
        dx = x - log_means[learn, -2] - b * (level - pool.load)
        c["rate_sxu"][learn], c["rate_suu"][learn] = alarm.update(
            c["rate_sxu"][learn], c["rate_suu"][learn], dx, rates[learn, -1] - rates[learn, -2]
        )
        pool.load = level
        c["load_mu"][learn], c["load_sdl"][learn], c["load_sll"][learn] = comb.ServerLoad.update(
            x, c["load_mu"][learn], c["load_sdl"][learn], c["load_sll"][learn], pool.load
        )

    c["rate_log"] = rates[:, -1]  # what the alarm compares the next interval's rate with
    # What _after_capture's alarm reads of the sums: one definition of each, here.
    c["load_sensitivity"] = comb.ServerLoad.sensitivity(c["load_sdl"], c["load_sll"])
    c["rate_elasticity"] = alarm.elasticity(c["rate_sxu"], c["rate_suu"])

    experts = np.full((n, comb.N), np.nan)
    for name, proposal in comb.window_experts(log_means, valid, feats.anchor).items():
        experts[:, comb.INDEX[name]] = proposal
    experts[:, comb.INDEX["since_change"]] = c["seg_mean"]
    load_fit = (c["load_mu"], c["load_sdl"], c["load_sll"])
    experts[:, comb.INDEX["server_load"]] = comb.ServerLoad.forecast(*load_fit, pool.load)
    experts[:, comb.INDEX["server_next"]] = comb.ServerLoad.forecast(
        *load_fit, comb.ServerLoad.transition(pool.load_ar, pool.levels, pool.load)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        experts[:, comb.INDEX["longrun"]] = np.log(c["longrun_ms"] / c["longrun_calls"])
    if np.isfinite(c["season_seconds"]).any():
        seconds = values[:, -1, features.CHANNELS.index("seconds")]
        step = float(np.nanmedian(seconds)) if np.isfinite(seconds).any() else 60.0
        experts[:, comb.INDEX["seasonal"]] = _seasonal(
            plpy, server_id, latest.queryid, float(np.max(latest.based_on)) + step, step
        )
    model = _usable_model(plpy, server_id)
    from_model = np.zeros(n, dtype=bool)
    if model is not None:
        from_model = feats.history >= features.MIN_HISTORY
        if from_model.any():
            rows = np.flatnonzero(from_model)
            width = features.model_width(model.feature_names)  # a model trained before the PLAN group: its columns
            experts[rows, comb.INDEX["model"]] = feats.anchor[rows] + model.estimator.predict(
                feats.matrix[rows, :width]
            )
    experts[~np.isfinite(experts)] = np.nan

    weights = comb.effective_weights(state.weights, c["updates"], pool.weights)
    predicted = comb.combine(experts, weights)
    half = cal.half_width(pool.q, c["correction"], c["err_scale"])
    confidence = cal.confidence(c["err_scale"], pool.q, c["correction"], pool.recent)
    names = comb.dominant(weights, experts)

    combined_ms = np.exp(predicted)
    c["combined_ms"], c["half_log"] = combined_ms, half
    expert_text = float8_arrays(np.exp(experts), "%.6g")
    write_pool(plpy, server_id, pool)
    plan = plpy.prepare(
        _WRITE_FORECASTS,
        [
            "text",
            "bigint[]",
            "text",
            "text",
            "text",
            "text",
            "bigint",
            "integer",
            "boolean[]",
            "text",
            "text[]",
            "text[]",
            "bytea[]",
        ]
        + ["text"] * len(_WRITTEN),
    )
    plpy.execute(
        plan,
        [
            server_id,
            latest.queryid.tolist(),
            float8_array(combined_ms),
            float8_array(np.exp(predicted - half)),
            float8_array(np.exp(predicted + half)),
            float8_array(confidence, "%.3f"),
            model.model_id if model else None,
            model.version if model else None,
            (from_model & ~np.isnan(experts[:, comb.INDEX["model"]])).tolist(),
            float8_array(combined_ms * np.exp(np.maximum(ALARM_Z * c["alarm_scale"], ALARM_MIN))),
            names,
            expert_text,
            pack(np.column_stack([c[k] for k in SUMS]), state.weights, experts),
            *[float8_array(c[k], "%.9g") for k in _WRITTEN],  # for SQL only: this module reads them packed
        ],
    )
    return n
