"""Reading captured history into the windows the feature function takes, for training and for serving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pganalytics_ml.forecasting.features import (
    CHANNELS,
    LOAD,
    MIN_HISTORY,
    STRUCTURE,
    WINDOW,
    Windows,
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
_INTERVALS_SQL = f"""
    SELECT array_agg(queryid) AS queryid, array_agg(start_epoch) AS start_epoch, array_agg(end_epoch) AS end_epoch,
           {", ".join(f"array_agg(c{i}) AS c{i}" for i in range(len(CHANNELS)))}
      FROM (SELECT q.queryid, extract(epoch FROM q.interval_start)::float8 AS start_epoch,
                   extract(epoch FROM q.interval_end)::float8 AS end_epoch,
                   {", ".join(f"{sql} AS c{i}" for i, sql in enumerate(CHANNEL_SQL))}
              FROM pganalytics_ml.query_stats q
             WHERE q.server_id = $1 AND q.interval_end > $2 AND q.interval_end <= $3
             ORDER BY q.queryid, q.interval_end) ordered
"""
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
            WHERE q.server_id = s.server_id AND q.queryid = s.queryid __RECENT__
            ORDER BY q.interval_end DESC
            LIMIT {WINDOW}) h
     WHERE s.server_id = $1 AND ($2::bigint[] IS NULL OR s.queryid = ANY ($2::bigint[]))
       AND s.queryid <> ALL ($3::bigint[])
"""
# query_stats is partitioned by day: a statement's latest intervals are first looked for in the last day
# (a few partitions), and only statements without a full window there are looked for in every partition.
RECENT = "1 day"
_RECENT_SQL = _LATEST_SQL.replace("__RECENT__", f"AND q.interval_end > $4::timestamptz - interval '{RECENT}'")
_LATEST_SQL = _LATEST_SQL.replace("__RECENT__", "")
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
    SELECT queryid, statement_kind, parse_ok, {", ".join(n for n in STRUCTURE if n.startswith(("n_", "has_")))}
      FROM pganalytics_ml.statements WHERE server_id = $1 AND ($2::bigint[] IS NULL OR queryid = ANY ($2::bigint[]))
"""


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
    longrun: np.ndarray  # calls-weighted mean (ms) of all the statement's earlier intervals: a baseline
    statements: int


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
    plan = plpy.prepare(_STRUCTURE_SQL, ["text", "bigint[]"])
    return {row["queryid"]: structure_row(row) for row in plpy.execute(plan, [server_id, queryids])}


def _load(plpy: Any, server_id: str, start: str, end: str) -> ServerLoad:
    plan = plpy.prepare(_LOAD_SQL, ["text", "timestamptz", "timestamptz"])
    return ServerLoad(plpy.execute(plan, [server_id, start, end])[0])


def training_set(plpy: Any, server_id: str, window_start: str, window_end: str) -> TrainingSet:
    """Every (statement, interval) of the window with at least MIN_HISTORY earlier intervals, as samples."""
    plan = plpy.prepare(_INTERVALS_SQL, ["text", "timestamptz", "timestamptz"])
    intervals = Intervals.from_row(plpy.execute(plan, [server_id, window_start, window_end])[0])
    found = build_training_set(
        intervals, _structures(plpy, server_id), _load(plpy, server_id, window_start, window_end)
    )
    found.windows.plan = plan_rows(plpy, server_id, found.queryid)  # issue 14: the PLAN features
    return found


def build_training_set(intervals: Intervals, structures: dict[int, list[float]], load: ServerLoad) -> TrainingSet:
    windows, structure, loads, target, target_end, qids, longrun = [], [], [], [], [], [], []
    n_statements = 0
    boundaries = np.flatnonzero(np.diff(intervals.queryid)) + 1
    for idx in np.split(np.arange(len(intervals.queryid)), boundaries):
        if len(idx) <= MIN_HISTORY:
            continue
        n_statements += 1
        values = intervals.values[idx]
        padded = np.vstack([np.full((WINDOW, len(CHANNELS)), np.nan), values])
        positions = np.arange(MIN_HISTORY, len(idx))
        # The window of target p is its WINDOW predecessors: rows p .. p+WINDOW-1 of the padded array.
        windows.append(np.stack([padded[p : p + WINDOW] for p in positions]))
        qid = int(intervals.queryid[idx[0]])
        structure.append(np.tile(structures.get(qid, [0.0] * len(STRUCTURE)), (len(positions), 1)))
        loads.append(np.array([load.before(intervals.start[idx[p]]) for p in positions]))
        calls, total = values[:, 0], values[:, 1]
        target.append(np.log(np.maximum(total[positions] / calls[positions], 1e-6)))
        target_end.append(intervals.end[idx[positions]])
        qids.append(np.full(len(positions), qid))
        cum_calls, cum_total = np.cumsum(calls), np.cumsum(total)
        longrun.append(cum_total[positions - 1] / cum_calls[positions - 1])
    if not windows:
        empty = np.zeros(0)
        return TrainingSet(
            Windows(np.zeros((0, WINDOW, len(CHANNELS))), np.zeros((0, len(STRUCTURE))), np.zeros((0, len(LOAD)))),
            empty,
            empty,
            np.zeros(0, dtype=np.int64),
            empty,
            0,
        )
    return TrainingSet(
        windows=Windows(np.concatenate(windows), np.concatenate(structure), np.concatenate(loads)),
        target=np.concatenate(target),
        target_end=np.concatenate(target_end),
        queryid=np.concatenate(qids),
        longrun=np.concatenate(longrun),
        statements=n_statements,
    )


@dataclass
class LatestWindows:
    """Each statement's latest window: what is known before its next interval."""

    queryid: np.ndarray
    based_on: np.ndarray  # epoch of the end of the statement's latest interval
    windows: Windows


def _latest_intervals(plpy: Any, server_id: str, queryids: list[int] | None, last_at: str | None) -> Intervals:
    """The latest WINDOW intervals of each statement, newest first."""
    recent = Intervals.from_row(
        plpy.execute(plpy.prepare(_RECENT_SQL, ["text", "bigint[]", "bigint[]", "timestamptz"]),
                     [server_id, queryids, [], last_at])[0]
    )  # fmt: skip
    ids, counts = np.unique(recent.queryid, return_counts=True)
    complete = ids[counts >= WINDOW]
    keep = np.isin(recent.queryid, complete)
    rest = Intervals.from_row(
        plpy.execute(plpy.prepare(_LATEST_SQL, ["text", "bigint[]", "bigint[]"]),
                     [server_id, queryids, complete.tolist()])[0]
    )  # fmt: skip
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
            " extract(epoch FROM max(captured_at))::float8 AS epoch FROM pganalytics_ml.snapshots WHERE server_id = $1",
            ["text"],
        ),
        [server_id],
    )[0]
    rows = _latest_intervals(plpy, server_id, queryids, last["at"])
    order = np.lexsort((rows.end, rows.queryid))  # the lateral query returns newest first
    rows = Intervals(rows.queryid[order], rows.start[order], rows.end[order], rows.values[order])
    structures = _structures(plpy, server_id, queryids)
    if last["at"] is None or not len(rows.queryid):
        return LatestWindows(
            np.zeros(0, dtype=np.int64),
            np.zeros(0),
            Windows(np.zeros((0, WINDOW, len(CHANNELS))), np.zeros((0, len(STRUCTURE))), np.zeros((0, len(LOAD)))),
        )
    load = _load(plpy, server_id, last["just_before"], last["at"]).before(last["epoch"])
    qids, based_on, windows = [], [], []
    boundaries = np.flatnonzero(np.diff(rows.queryid)) + 1
    for idx in np.split(np.arange(len(rows.queryid)), boundaries):
        values = rows.values[idx]
        windows.append(np.vstack([np.full((WINDOW - len(idx), len(CHANNELS)), np.nan), values]))
        qids.append(int(rows.queryid[idx[0]]))
        based_on.append(rows.end[idx[-1]])
    n = len(qids)
    latest_plans = plan_rows(plpy, server_id, np.array(qids, dtype=np.int64))  # issue 14: the PLAN features
    return LatestWindows(
        queryid=np.array(qids, dtype=np.int64),
        based_on=np.array(based_on),
        windows=Windows(
            np.stack(windows),
            np.array([structures.get(q, [0.0] * len(STRUCTURE)) for q in qids]),
            np.tile(load, (n, 1)),
            latest_plans,
        ),
    )
