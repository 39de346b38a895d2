"""Reading captured history into the windows the feature function takes, for training and for serving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pganalytics_ml.forecasting import sampling
from pganalytics_ml.forecasting.chunks import in_chunk
from pganalytics_ml.forecasting.features import (
    CHANNELS,
    LOAD,
    MIN_HISTORY,
    STRUCTURE,
    WINDOW,
    Features,
    Windows,
    feature_matrix,
    load_row,
    structure_row,
)
from pganalytics_ml.forecasting.plans import plan_rows

# query_stats columns behind each channel, in CHANNELS order.
CHANNEL_SQL = (
    "q.calls::float8",
    "q.total_exec_time",
    "extract(epoch FROM q.interval_end - q.interval_start)::float8",
    "q.rows::float8",
    "q.shared_blks_hit::float8",
    "q.shared_blks_read::float8",
    "(q.temp_blks_read + q.temp_blks_written)::float8",
    "q.mean_plan_time",
    "q.stddev_exec_time",
)
_LATEST_SQL = f"""
    SELECT array_agg(s.queryid) AS queryid, array_agg(h.start_epoch) AS start_epoch,
           array_agg(h.end_epoch) AS end_epoch,
           {", ".join(f"array_agg(h.c{i}) AS c{i}" for i in range(len(CHANNELS)))}
      FROM pganalytics_ml.statements s
     CROSS JOIN LATERAL (
           SELECT extract(epoch FROM q.interval_start)::float8 AS start_epoch,
                  extract(epoch FROM q.interval_end)::float8 AS end_epoch,
                  {", ".join(f"{sql} AS c{i}" for i, sql in enumerate(CHANNEL_SQL))}
             FROM pganalytics_ml.query_stats q
            WHERE q.server_id = s.server_id AND q.queryid = s.queryid
            ORDER BY q.interval_end DESC
            LIMIT {WINDOW}) h
     WHERE s.server_id = $1 AND s.queryid <> ALL ($3::bigint[]) {{only}}
"""
REPRESENT_PER_STATEMENT = 2  # latest intervals of a statement no chosen capture has, so that every one is learned
_LOAD_SQL = """
    SELECT array_agg(extract(epoch FROM interval_end)::float8) AS end_epoch,
           array_agg(extract(epoch FROM interval_end - interval_start)::float8) AS seconds,
           array_agg(calls) AS calls, array_agg(reads) AS reads, array_agg(busy) AS busy
      FROM (SELECT interval_start, interval_end, sum(calls)::float8 AS calls,
                   sum(shared_blks_read)::float8 AS reads, sum(total_exec_time) AS busy
              FROM pganalytics_ml.query_stats
             WHERE server_id = $1 AND interval_end > $2 AND interval_end <= $3
             GROUP BY interval_start, interval_end) per_interval
"""
_STRUCTURE_SQL = f"""
    SELECT s.queryid, s.statement_kind, s.parse_ok,
           {", ".join(f"s.{n}" for n in STRUCTURE if n.startswith(("n_", "has_")))}
      FROM pganalytics_ml.statements s WHERE s.server_id = $1 {{only}}
"""


def _only(sql: str, queryids: list[int] | None) -> str:
    """``sql`` restricted to the statements of ``queryids`` ($2), or to none when that is None."""
    return sql.format(only="" if queryids is None else f"AND {in_chunk('s')}")


@dataclass
class Intervals:
    """Captured intervals of a server, sorted by statement then time."""

    queryid: np.ndarray
    start: np.ndarray  # epoch seconds
    end: np.ndarray
    values: np.ndarray  # (n, len(CHANNELS))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Intervals:
        if row["queryid"] is None:
            empty = np.zeros(0)
            return cls(np.zeros(0, dtype=np.int64), empty, empty, np.zeros((0, len(CHANNELS))))
        values = np.column_stack([np.array(row[f"c{i}"], dtype=float) for i in range(len(CHANNELS))])
        return cls(
            np.array(row["queryid"], dtype=np.int64),
            np.array(row["start_epoch"], dtype=float),
            np.array(row["end_epoch"], dtype=float),
            values,
        )


@dataclass
class TrainingSet:
    windows: Windows
    target: np.ndarray  # log mean of the target interval
    target_end: np.ndarray  # epoch of the target interval's end (for the time-ordered holdout)
    queryid: np.ndarray
    longrun: np.ndarray  # calls-weighted mean (ms) of the statement's earlier intervals read: a baseline
    statements: int
    holdout: np.ndarray | None = None  # the holdout rows when the window was sampled (else cut by the caller)
    plan: sampling.Plan | None = None


FEATURE_CHUNK = 50_000  # rows per feature_matrix call: its temporaries stay small whatever the sample


def chunked_features(windows: Windows) -> Features:
    """``feature_matrix`` of many windows, computed FEATURE_CHUNK rows at a time."""
    n = len(windows.values)
    if n <= FEATURE_CHUNK:
        return feature_matrix(windows)
    parts = [
        feature_matrix(
            Windows(
                windows.values[i : i + FEATURE_CHUNK],
                windows.structure[i : i + FEATURE_CHUNK],
                windows.load[i : i + FEATURE_CHUNK],
                None if windows.plan is None else windows.plan[i : i + FEATURE_CHUNK],
            )
        )
        for i in range(0, n, FEATURE_CHUNK)
    ]
    return Features(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("matrix", "anchor", "scale", "history")))


class ServerLoad:
    """Totals of every captured interval of a server, looked up by the interval's end."""

    def __init__(self, row: dict[str, Any]):
        ends = row["end_epoch"] or []
        self._by_end = {
            e: load_row(c, r, b, s, e)
            for e, s, c, r, b in zip(
                ends, row["seconds"] or [], row["calls"] or [], row["reads"] or [], row["busy"] or [], strict=True
            )
        }

    def before(self, start_epoch: float) -> list[float]:
        """LOAD features for a target interval starting at ``start_epoch``: the interval that ended then."""
        found = self._by_end.get(start_epoch)
        if found is None:
            return [0.0, 0.0, 0.0, *load_row(0, 0, 0, 1, start_epoch)[3:]]
        return found


def _structures(plpy: Any, server_id: str, queryids: list[int] | None = None) -> dict[int, list[float]]:
    plan = plpy.prepare(_only(_STRUCTURE_SQL, queryids), ["text", "bigint[]"])
    return {row["queryid"]: structure_row(row) for row in plpy.execute(plan, [server_id, queryids])}


def _load(plpy: Any, server_id: str, start: str, end: str) -> ServerLoad:
    plan = plpy.prepare(_LOAD_SQL, ["text", "timestamptz", "timestamptz"])
    return ServerLoad(plpy.execute(plan, [server_id, start, end])[0])


# Training reads history in chunks, as packed binary columns (one bytes object per column, not one
# Python object per value): for each target interval its own row (lag 0) and its WINDOW predecessors
# in the training window, found through the primary key.
_US = "'epoch'::timestamptz + ({} * interval '1 microsecond')"
_PACKED = ", ".join(
    [
        "string_agg(int4send(t.k::integer), ''::bytea) AS k",
        "string_agg(int4send(w.lag::integer), ''::bytea) AS lag",
        "string_agg(int8send(t.queryid), ''::bytea) AS queryid",
        "string_agg(int8send((extract(epoch FROM w.interval_end) * 1000000)::bigint), ''::bytea) AS end_us",
        "string_agg(int8send((extract(epoch FROM w.interval_start) * 1000000)::bigint), ''::bytea) AS start_us",
        *(f"string_agg(float8send(coalesce(w.c{i}, 'NaN')), ''::bytea) AS c{i}" for i in range(len(CHANNELS))),
    ]
)
_WINDOW_ROWS = f"""
 CROSS JOIN LATERAL (
       SELECT p.*, (row_number() OVER (ORDER BY p.interval_end DESC) - 1) AS lag
         FROM (SELECT q.interval_start, q.interval_end,
                      {", ".join(f"{sql} AS c{i}" for i, sql in enumerate(CHANNEL_SQL))}
                 FROM pganalytics_ml.query_stats q
                WHERE q.server_id = $1 AND q.queryid = t.queryid AND q.interval_end <= t.interval_end
                  AND q.interval_end > {_US.format("$3::bigint")}
                ORDER BY q.interval_end DESC
                LIMIT {WINDOW + 1}) p) w
"""
_PACKED_CHANNELS = ", ".join(
    f"string_agg(float8send(coalesce({sql}, 'NaN')), ''::bytea) AS c{i}" for i, sql in enumerate(CHANNEL_SQL)
)
# Every interval of the given captures (a chunk's targets and the captures before them), packed.
_RANGE_SQL = f"""
    SELECT string_agg(int8send(q.queryid), ''::bytea) AS queryid,
           string_agg(int8send((extract(epoch FROM q.interval_end) * 1000000)::bigint), ''::bytea) AS end_us,
           string_agg(int8send((extract(epoch FROM q.interval_start) * 1000000)::bigint), ''::bytea) AS start_us,
           {_PACKED_CHANNELS}
      FROM pganalytics_ml.query_stats q
     WHERE q.server_id = $1
       AND q.interval_end = ANY (ARRAY(SELECT {_US.format("u")} FROM unnest($2::bigint[]) u))
"""
# Given targets (statement, end), each with its WINDOW predecessors: for the statements that skipped
# captures, whose predecessors lie before the captures read.
_EXACT_SQL = f"""
    SELECT {_PACKED}
      FROM (SELECT t.queryid, {_US.format("t.end_us")} AS interval_end, t.k - 1 AS k
              FROM unnest($2::bigint[], $4::bigint[]) WITH ORDINALITY AS t(queryid, end_us, k)) t
    {_WINDOW_ROWS}
"""
_CHANNEL_NUMBERS = range(len(CHANNELS))
# Runs of one statement's intervals (the training part of a sampled window): every interval of each run's
# statement ending in (lo, hi], numbered by run (k). OFFSET 0 keeps the lateral read per run, by the key.
_RUNS_SQL = f"""
    SELECT string_agg(int4send(r.k::integer), ''::bytea) AS k,
           string_agg(int8send(r.queryid), ''::bytea) AS queryid,
           string_agg(int8send((extract(epoch FROM w.interval_end) * 1000000)::bigint), ''::bytea) AS end_us,
           string_agg(int8send((extract(epoch FROM w.interval_start) * 1000000)::bigint), ''::bytea) AS start_us,
           {", ".join(f"string_agg(float8send(coalesce(w.c{i}, 'NaN')), ''::bytea) AS c{i}" for i in _CHANNEL_NUMBERS)}
      FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS r(queryid, lo_us, hi_us, k)
     CROSS JOIN LATERAL (
           SELECT q.interval_start, q.interval_end, {", ".join(f"{sql} AS c{i}" for i, sql in enumerate(CHANNEL_SQL))}
             FROM pganalytics_ml.query_stats q
            WHERE q.server_id = $1 AND q.queryid = r.queryid
              AND q.interval_end > {_US.format("r.lo_us")} AND q.interval_end <= {_US.format("r.hi_us")}
           OFFSET 0) w
"""
# Targets: the latest intervals before the holdout of the statements no chosen capture represents.
_REPRESENT_SQL = f"""
    SELECT {_PACKED}
      FROM (SELECT x.*, row_number() OVER (ORDER BY x.interval_end, x.queryid) - 1 AS k
              FROM (SELECT s.queryid, l.interval_end
              FROM pganalytics_ml.statements s
              LEFT JOIN unnest($2::bigint[]) r(queryid) ON r.queryid = s.queryid
             CROSS JOIN LATERAL (
                   SELECT q.interval_end FROM pganalytics_ml.query_stats q
                    WHERE q.server_id = s.server_id AND q.queryid = s.queryid
                      AND q.interval_end > {_US.format("$3::bigint")} AND q.interval_end < {_US.format("$4::bigint")}
                    ORDER BY q.interval_end DESC
                    LIMIT {REPRESENT_PER_STATEMENT}) l
             WHERE s.server_id = $1 AND s.last_active_at > {_US.format("$3::bigint")} AND r.queryid IS NULL
             ORDER BY s.queryid, l.interval_end
             LIMIT $5) x) t
    {_WINDOW_ROWS}
"""
_LOAD_AT_SQL = f"""
    SELECT string_agg(int8send((extract(epoch FROM interval_end) * 1000000)::bigint), ''::bytea) AS end_us,
           string_agg(float8send(extract(epoch FROM interval_end - interval_start)::float8), ''::bytea) AS seconds,
           string_agg(float8send(calls), ''::bytea) AS calls, string_agg(float8send(reads), ''::bytea) AS reads,
           string_agg(float8send(busy), ''::bytea) AS busy
      FROM (SELECT interval_start, interval_end, sum(calls)::float8 AS calls,
                   sum(shared_blks_read)::float8 AS reads, sum(total_exec_time) AS busy
              FROM pganalytics_ml.query_stats
             WHERE server_id = $1
               AND interval_end = ANY (ARRAY(SELECT {_US.format("u")} FROM unnest($2::bigint[]) u))
             GROUP BY interval_start, interval_end) per_interval
"""


def _packed(row: dict[str, Any], name: str, dtype: str) -> np.ndarray:
    return np.frombuffer(row[name] or b"", dtype=dtype).astype(dtype.lstrip(">"))


@dataclass
class _Chunk:
    """Targets of one chunk: each with its window, all as arrays."""

    queryid: np.ndarray
    start_us: np.ndarray
    end_us: np.ndarray
    target: np.ndarray  # (n, len(CHANNELS)): the target interval's own counters
    window: np.ndarray  # (n, WINDOW, len(CHANNELS))
    # Every interval read (with repeats), for the long-run baseline: statement, end, calls, total time.
    seen_queryid: np.ndarray
    seen_end_us: np.ndarray
    seen_time: np.ndarray  # (m, 2)
    priority: np.ndarray | None = None  # of the run each target was drawn in (sampled training part)


def _read_chunk(row: dict[str, Any]) -> _Chunk:
    """A chunk read with _EXACT_SQL or _REPRESENT_SQL: rows numbered by target (k) and lag."""
    k, lag = _packed(row, "k", ">i4"), _packed(row, "lag", ">i4")
    channels = np.column_stack([_packed(row, f"c{i}", ">f8") for i in range(len(CHANNELS))])
    queryid, end_us = _packed(row, "queryid", ">i8"), _packed(row, "end_us", ">i8")
    start_us = _packed(row, "start_us", ">i8")
    stacked = np.full((int(k.max()) + 1 if len(k) else 0, WINDOW + 1, len(CHANNELS)), np.nan)
    stacked[k, WINDOW - lag] = channels
    own = np.flatnonzero(lag == 0)
    own = own[np.argsort(k[own])]
    rows = k[own]
    return _Chunk(
        queryid[own],
        start_us[own],
        end_us[own],
        stacked[rows, WINDOW],
        stacked[rows, :WINDOW],
        queryid,
        end_us,
        channels[:, :2].copy(),
    )


def _read_range(
    plpy: Any, server_id: str, chosen: sampling.Plan, targets: np.ndarray, window_start_us: int
) -> tuple[_Chunk, list[_Chunk]]:
    """The targets at captures ``chosen.end_us[targets]``, read with the WINDOW captures before each.

    A target whose statement skipped some of those captures may have predecessors further back: those
    few are read again, exactly, through the primary key.
    """
    window_us = chosen.window_us
    at = np.searchsorted(window_us, chosen.end_us[targets])
    needed = np.unique((at[:, None] - np.arange(WINDOW + 1)).ravel())
    needed = needed[needed >= 0]
    # Runs of consecutive captures read: a predecessor counts only inside the target's run.
    run = np.cumsum(np.r_[1, np.diff(needed) != 1])
    run_first = needed[np.r_[0, np.flatnonzero(np.diff(run)) + 1]]
    query = plpy.prepare(_RANGE_SQL, ["text", "bigint[]"])
    row = plpy.execute(query, [server_id, window_us[needed].tolist()])[0]
    queryid, end_us, start_us = (_packed(row, c, ">i8") for c in ("queryid", "end_us", "start_us"))
    channels = np.column_stack([_packed(row, f"c{i}", ">f8") for i in range(len(CHANNELS))])
    del row
    order = np.lexsort((end_us, queryid))
    queryid, end_us, start_us, channels = queryid[order], end_us[order], start_us[order], channels[order]
    row_run = run[np.searchsorted(needed, np.searchsorted(window_us, end_us))]
    own = np.flatnonzero(np.isin(end_us, chosen.end_us[targets]))
    back = own[:, None] - np.arange(WINDOW, 0, -1)  # oldest first
    safe = np.maximum(back, 0)
    found = (back >= 0) & (queryid[safe] == queryid[own, None]) & (row_run[safe] == row_run[own, None])
    complete = found.all(axis=1) | (run_first[row_run[own] - 1] == 0)
    window = np.where(found[..., None], channels[safe], np.nan)
    good = np.flatnonzero(complete)
    chunk = _Chunk(
        queryid[own[good]],
        start_us[own[good]],
        end_us[own[good]],
        channels[own[good]],
        window[good],
        queryid,
        end_us,
        channels[:, :2].copy(),
    )
    again = []
    redo = own[~complete]
    for i in range(0, len(redo), sampling.CHUNK_TARGETS):
        part = redo[i : i + sampling.CHUNK_TARGETS]
        exact = plpy.prepare(_EXACT_SQL, ["text", "bigint[]", "bigint", "bigint[]"])
        again.append(
            _read_chunk(
                plpy.execute(exact, [server_id, queryid[part].tolist(), window_start_us, end_us[part].tolist()])[0]
            )
        )
    return chunk, again


def _read_runs(
    plpy: Any, server_id: str, chosen: sampling.Plan, runs: np.ndarray, window_start_us: int
) -> tuple[_Chunk, list[_Chunk]]:
    """The targets of ``chosen.runs[runs]``, each with the WINDOW intervals of its statement before it.

    A run is read with room for WINDOW predecessors of its first target; a target with fewer before it in
    its run (its statement skipped captures) is read again, exactly, through the primary key.
    """
    r = chosen.runs
    lo, hi = r.ranges_us(chosen.window_us, window_start_us)
    query = plpy.prepare(_RUNS_SQL, ["text", "bigint[]", "bigint[]", "bigint[]"])
    row = plpy.execute(query, [server_id, r.queryid[runs].tolist(), lo[runs].tolist(), hi[runs].tolist()])[0]
    k = _packed(row, "k", ">i4") - 1
    queryid, end_us, start_us = (_packed(row, c, ">i8") for c in ("queryid", "end_us", "start_us"))
    channels = np.column_stack([_packed(row, f"c{i}", ">f8") for i in range(len(CHANNELS))])
    del row
    order = np.lexsort((end_us, k))
    k, queryid, end_us, start_us, channels = k[order], queryid[order], end_us[order], start_us[order], channels[order]
    run_start = np.searchsorted(k, np.arange(len(runs)))
    position = np.arange(len(k)) - run_start[k]
    own = np.flatnonzero(end_us >= chosen.window_us[r.first[runs]][k])  # the run's targets
    back = own[:, None] - np.arange(WINDOW, 0, -1)  # oldest first
    found = position[own, None] - np.arange(WINDOW, 0, -1)[None, :] >= 0
    window = np.where(found[..., None], channels[np.maximum(back, 0)], np.nan)
    complete = (position[own] >= WINDOW) | (lo[runs][k[own]] <= window_start_us)
    good = np.flatnonzero(complete)
    chunk = _Chunk(
        queryid[own[good]],
        start_us[own[good]],
        end_us[own[good]],
        channels[own[good]],
        window[good],
        queryid,
        end_us,
        channels[:, :2].copy(),
    )
    chunk.priority = r.priority[runs][k[own[good]]]
    again = []
    redo = own[~complete]
    exact = plpy.prepare(_EXACT_SQL, ["text", "bigint[]", "bigint", "bigint[]"])
    for i in range(0, len(redo), sampling.CHUNK_TARGETS):
        part = redo[i : i + sampling.CHUNK_TARGETS]
        read = _read_chunk(
            plpy.execute(exact, [server_id, queryid[part].tolist(), window_start_us, end_us[part].tolist()])[0]
        )
        read.priority = r.priority[runs][k[part]]
        again.append(read)
    return chunk, again


def _run_groups(runs: sampling.Runs) -> list[np.ndarray]:
    """Indices of the runs, best first, in groups expected to hold at most CHUNK_TARGETS targets."""
    size = (runs.last - runs.first + 1).astype(np.int64)
    group = np.cumsum(size) // sampling.CHUNK_TARGETS
    return [np.flatnonzero(group == g) for g in np.unique(group)]


def _best(chunks: list[_Chunk], budget: int) -> list[_Chunk]:
    """The targets of the runs' chunks, cut to the ``budget`` of highest priority (their windows kept)."""
    priority = np.concatenate([c.priority for c in chunks]) if chunks else np.zeros(0)
    if len(priority) <= budget:
        return chunks
    cutoff = np.sort(priority, kind="stable")[budget - 1]
    out, kept = [], 0
    for c in chunks:
        keep = np.flatnonzero(c.priority <= cutoff)[: max(0, budget - kept)]
        kept += len(keep)
        out.append(
            _Chunk(
                c.queryid[keep],
                c.start_us[keep],
                c.end_us[keep],
                c.target[keep],
                c.window[keep],
                c.seen_queryid,
                c.seen_end_us,
                c.seen_time,
            )
        )
    return out


def _loads_at(plpy: Any, server_id: str, ends_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The server's totals over the intervals ending at ``ends_us``: sorted ends and their (calls, reads, busy, s)."""
    query = plpy.prepare(_LOAD_AT_SQL, ["text", "bigint[]"])
    row = plpy.execute(query, [server_id, np.unique(ends_us).tolist()])[0]
    ends = _packed(row, "end_us", ">i8")
    totals = np.column_stack([_packed(row, c, ">f8") for c in ("calls", "reads", "busy", "seconds")])
    order = np.argsort(ends)
    return ends[order], totals[order].reshape(-1, 4)


def _server_totals(
    plpy: Any, server_id: str, chosen: sampling.Plan, start_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The server's totals over the intervals that ended when the targets started: as each capture recorded
    them, else (history captured before they were recorded) summed over the statements' intervals."""
    needed = np.unique(start_us)
    known, totals = chosen.totals_at(needed)
    if known.all():
        return needed, totals
    ends, summed = _loads_at(plpy, server_id, needed[~known])
    all_ends = np.concatenate([needed[known], ends])
    order = np.argsort(all_ends, kind="stable")
    return all_ends[order], np.concatenate([totals, summed])[order]


def _load_features(start_us: np.ndarray, ends: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """LOAD features of targets starting at ``start_us``: the server's interval that ended then, or the
    latest read before it (a target only the representation step added); zeros when there is none."""
    epoch = start_us / 1e6
    hour = (epoch % 86400) / 3600
    out = np.zeros((len(start_us), len(LOAD)))
    out[:, 3], out[:, 4] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
    if len(ends):
        at = np.searchsorted(ends, start_us, side="right") - 1
        found = at >= 0
        calls, reads, busy, seconds = (totals[at[found], i] for i in range(4))
        seconds = np.maximum(seconds, 1e-3)
        out[found, 0] = np.log1p(calls / seconds)
        out[found, 1] = np.log1p(reads / seconds)
        out[found, 2] = np.log1p(busy / seconds)
    return out


def _longrun(chunks: list[_Chunk], queryid: np.ndarray, end_us: np.ndarray) -> np.ndarray:
    """Calls-weighted mean (ms) of each target's statement over its intervals read before the target."""
    seen_q = np.concatenate([c.seen_queryid for c in chunks])
    seen_e = np.concatenate([c.seen_end_us for c in chunks])
    time = np.concatenate([c.seen_time for c in chunks])
    statements, seen_code = np.unique(seen_q, return_inverse=True)
    ends, seen_rank = np.unique(seen_e, return_inverse=True)
    key = seen_code.ravel().astype(np.int64) * len(ends) + seen_rank.ravel()
    key, first = np.unique(key, return_index=True)  # each interval once, by statement then time
    calls, total = time[first, 0], time[first, 1]
    code = key // len(ends)
    starts = np.r_[0, np.flatnonzero(np.diff(code)) + 1]
    group = np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    cum_calls, cum_total = np.cumsum(calls), np.cumsum(total)
    before_calls = cum_calls - calls - np.r_[0.0, cum_calls][group]
    before_total = cum_total - total - np.r_[0.0, cum_total][group]
    target_key = np.searchsorted(statements, queryid).astype(np.int64) * len(ends) + np.searchsorted(ends, end_us)
    at = np.searchsorted(key, target_key)
    return before_total[at] / np.maximum(before_calls[at], 1e-12)


def training_set(plpy: Any, server_id: str, window_start: str, window_end: str) -> TrainingSet:
    """Samples of the window: (statement, interval) targets with at least MIN_HISTORY earlier intervals.

    Which intervals is decided by ``sampling.plan`` before anything is read; they are then read in
    chunks of at most ``sampling.CHUNK_TARGETS`` targets, as arrays.
    """
    chosen = sampling.plan(plpy, server_id, window_start, window_end)
    start_us = int(
        plpy.execute(
            plpy.prepare("SELECT (extract(epoch FROM $1::timestamptz) * 1000000)::bigint AS us", ["timestamptz"]),
            [window_start],
        )[0]["us"]
    )
    chunks = []
    for targets in chosen.chunks():  # every capture, or the holdout's when sampled: read whole
        chunk, again = _read_range(plpy, server_id, chosen, targets, start_us)
        chunks += [chunk, *again]
    if chosen.runs is not None:  # the training part, runs of one statement's intervals, best first
        drawn = []
        for runs in _run_groups(chosen.runs):
            chunk, again = _read_runs(plpy, server_id, chosen, runs, start_us)
            drawn += [chunk, *again]
            if sum(len(c.queryid) for c in drawn) >= chosen.runs.budget:
                break
        chunks += _best(drawn, chosen.runs.budget)
    if chosen.sampled:
        represented = np.unique(np.concatenate([c.queryid for c in chunks])) if chunks else np.zeros(0, np.int64)
        room = max(0, chosen.limit - int(sum(len(c.queryid) for c in chunks)))
        if room:
            query = plpy.prepare(_REPRESENT_SQL, ["text", "bigint[]", "bigint", "bigint", "bigint"])
            extra = plpy.execute(query, [server_id, represented.tolist(), start_us, chosen.holdout_from_us, room])[0]
            chunks.append(_read_chunk(extra))
    return _assemble(plpy, server_id, chunks, chosen)


def _assemble(plpy: Any, server_id: str, chunks: list[_Chunk], chosen: sampling.Plan) -> TrainingSet:
    width = len(CHANNELS)
    window = np.concatenate([c.window for c in chunks]) if chunks else np.zeros((0, WINDOW, width))
    target = np.concatenate([c.target for c in chunks]) if chunks else np.zeros((0, width))
    queryid = np.concatenate([c.queryid for c in chunks]) if chunks else np.zeros(0, np.int64)
    start_us = np.concatenate([c.start_us for c in chunks]) if chunks else np.zeros(0, np.int64)
    end_us = np.concatenate([c.end_us for c in chunks]) if chunks else np.zeros(0, np.int64)
    keep = (~np.isnan(window[:, :, 0])).sum(axis=1) >= MIN_HISTORY
    window, target, queryid, start_us, end_us = window[keep], target[keep], queryid[keep], start_us[keep], end_us[keep]
    order = np.lexsort((end_us, queryid))  # by statement, then time, as the holdout and tests expect
    window, target, queryid, start_us, end_us = (a[order] for a in (window, target, queryid, start_us, end_us))
    longrun = _longrun(chunks, queryid, end_us) if len(queryid) else np.zeros(0)
    ends, totals = (
        _server_totals(plpy, server_id, chosen, start_us) if len(queryid) else (np.zeros(0, np.int64), np.zeros((0, 4)))
    )
    structures = _structures(plpy, server_id)
    unknown = [0.0] * len(STRUCTURE)
    distinct, inverse = np.unique(queryid, return_inverse=True)
    structure = np.array([structures.get(int(q), unknown) for q in distinct]).reshape(-1, len(STRUCTURE))[
        inverse.ravel()
    ]
    calls, total = target[:, 0], target[:, 1]
    return TrainingSet(
        windows=Windows(window, structure, _load_features(start_us, ends, totals), plan_rows(plpy, server_id, queryid)),
        target=np.log(np.maximum(total / calls, 1e-6)),
        target_end=end_us / 1e6,
        queryid=queryid,
        longrun=longrun,
        statements=len(distinct),
        holdout=(end_us >= chosen.holdout_from_us) if chosen.sampled else None,
        plan=chosen,
    )


@dataclass
class LatestWindows:
    """Each statement's latest window: what is known before its next interval."""

    queryid: np.ndarray
    based_on: np.ndarray  # epoch of the end of the statement's latest interval
    windows: Windows


_LATEST_LOAD: dict[tuple[str, str], list[float]] = {}


def _latest_load(plpy: Any, server_id: str, last: dict[str, Any]) -> list[float]:
    """The server's load over its latest interval: computed once per capture, not once per chunk of a refresh
    (each computation sums every statement's latest interval)."""
    key = (server_id, last["at"])
    if key not in _LATEST_LOAD:
        _LATEST_LOAD.clear()
        _LATEST_LOAD[key] = _load(plpy, server_id, last["just_before"], last["at"]).before(last["epoch"])
    return _LATEST_LOAD[key]


# The server's latest WINDOW captures, every statement at once: one range scan of the (server_id,
# interval_end) index per partition, packed, instead of one lateral read per statement and partition.
# A statement with WINDOW intervals since the WINDOW-th latest capture has its latest WINDOW among them;
# so has every statement when the server has no interval older than the range (a short history).
_SINCE_SQL = f"""
    SELECT min(captured_at)::text AS since
      FROM (SELECT captured_at FROM pganalytics_ml.snapshots
             WHERE server_id = $1 ORDER BY captured_at DESC LIMIT {WINDOW}) latest
"""
_RANGE_LATEST_SQL = f"""
    SELECT string_agg(int8send(q.queryid), ''::bytea) AS queryid,
           string_agg(float8send(extract(epoch FROM q.interval_start)::float8), ''::bytea) AS start_epoch,
           string_agg(float8send(extract(epoch FROM q.interval_end)::float8), ''::bytea) AS end_epoch,
           {_PACKED_CHANNELS}
      FROM pganalytics_ml.query_stats q
     WHERE q.server_id = $1 AND q.interval_end >= $2::timestamptz
"""
_OLDER_SQL = """
    SELECT EXISTS (SELECT FROM pganalytics_ml.query_stats q
                    WHERE q.server_id = $1 AND q.interval_end < $2::timestamptz) AS older
"""
# The read of the latest captures, kept for the chunks of one refresh (same server, capture and transaction).
_LATEST_RANGE: dict[tuple[str, str, str], tuple[Intervals, str]] = {}


def _latest_range(plpy: Any, server_id: str, last: dict[str, Any]) -> tuple[Intervals, str]:
    """Every interval of the server's latest WINDOW captures, and the start of that range."""
    key = (server_id, last["at"], last["tx"])
    if key not in _LATEST_RANGE:
        since = plpy.execute(plpy.prepare(_SINCE_SQL, ["text"]), [server_id])[0]["since"]
        row = plpy.execute(plpy.prepare(_RANGE_LATEST_SQL, ["text", "text"]), [server_id, since])[0]
        _LATEST_RANGE.clear()
        _LATEST_RANGE[key] = (
            Intervals(
                _packed(row, "queryid", ">i8"),
                _packed(row, "start_epoch", ">f8"),
                _packed(row, "end_epoch", ">f8"),
                np.column_stack([_packed(row, f"c{i}", ">f8") for i in range(len(CHANNELS))]).reshape(
                    -1, len(CHANNELS)
                ),
            ),
            since,
        )
    return _LATEST_RANGE[key]


def _latest_intervals(
    plpy: Any, server_id: str, queryids: list[int] | None, tracked: list[int], last: dict[str, Any]
) -> Intervals:
    """The latest WINDOW intervals of each statement of ``tracked`` (those of ``queryids`` in the statements
    table), in no particular order."""
    if last["at"] is None:
        return Intervals.from_row({"queryid": None})
    found, since = _latest_range(plpy, server_id, last)
    order = np.flatnonzero(np.isin(found.queryid, tracked))
    order = order[np.lexsort((-found.end[order], found.queryid[order]))]  # by statement, newest first
    qid = found.queryid[order]
    first = np.r_[0, np.flatnonzero(np.diff(qid)) + 1] if len(qid) else np.zeros(0, dtype=int)
    rank = np.arange(len(qid)) - np.repeat(first, np.diff(np.r_[first, len(qid)]))
    order = order[rank < WINDOW]  # each statement's latest WINDOW
    recent = Intervals(found.queryid[order], found.start[order], found.end[order], found.values[order])
    ids, counts = np.unique(recent.queryid, return_counts=True)
    complete = ids[counts >= WINDOW]
    if len(complete) == len(tracked):
        return recent
    if not plpy.execute(plpy.prepare(_OLDER_SQL, ["text", "text"]), [server_id, since])[0]["older"]:
        return recent  # the range holds every interval of the server
    keep = np.isin(recent.queryid, complete)
    rest = Intervals.from_row(
        plpy.execute(
            plpy.prepare(_only(_LATEST_SQL, queryids), ["text", "bigint[]", "bigint[]"]),
            [server_id, queryids, complete.tolist()],
        )[0]
    )
    return Intervals(
        np.concatenate([recent.queryid[keep], rest.queryid]),
        np.concatenate([recent.start[keep], rest.start]),
        np.concatenate([recent.end[keep], rest.end]),
        np.concatenate([recent.values[keep], rest.values]),
    )


def latest_windows(plpy: Any, server_id: str, queryids: list[int] | None) -> LatestWindows:
    last = plpy.execute(
        plpy.prepare(
            "SELECT max(captured_at)::text AS at, (max(captured_at) - interval '1 microsecond')::text AS just_before,"
            " extract(epoch FROM max(captured_at))::float8 AS epoch, pg_catalog.now()::text AS tx"
            " FROM pganalytics_ml.snapshots WHERE server_id = $1",
            ["text"],
        ),
        [server_id],
    )[0]
    structures = _structures(plpy, server_id, queryids)
    rows = _latest_intervals(plpy, server_id, queryids, list(structures), last)
    order = np.lexsort((rows.end, rows.queryid))
    rows = Intervals(rows.queryid[order], rows.start[order], rows.end[order], rows.values[order])
    if last["at"] is None or not len(rows.queryid):
        return LatestWindows(
            np.zeros(0, dtype=np.int64),
            np.zeros(0),
            Windows(np.zeros((0, WINDOW, len(CHANNELS))), np.zeros((0, len(STRUCTURE))), np.zeros((0, len(LOAD)))),
        )
    load = _latest_load(plpy, server_id, last)
    # Each statement's rows (sorted by time, at most WINDOW) right-aligned in its window, NaN before them.
    starts = np.r_[0, np.flatnonzero(np.diff(rows.queryid)) + 1]
    counts = np.diff(np.r_[starts, len(rows.queryid)])
    group = np.repeat(np.arange(len(starts)), counts)
    slot = WINDOW - np.repeat(counts, counts) + (np.arange(len(rows.queryid)) - np.repeat(starts, counts))
    stacked = np.full((len(starts), WINDOW, len(CHANNELS)), np.nan)
    stacked[group, slot] = rows.values
    qids = rows.queryid[starts].tolist()
    based_on = rows.end[starts + counts - 1]
    n = len(qids)
    latest_plans = plan_rows(plpy, server_id, np.array(qids, dtype=np.int64))  # issue 14: the PLAN features
    return LatestWindows(
        queryid=np.array(qids, dtype=np.int64),
        based_on=based_on,
        windows=Windows(
            stacked,
            np.array([structures.get(q, [0.0] * len(STRUCTURE)) for q in qids]),
            np.tile(load, (n, 1)),
            latest_plans,
        ),
    )
