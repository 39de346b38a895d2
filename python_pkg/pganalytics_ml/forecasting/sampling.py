"""Which part of a training window pgml_train learns from: a bounded sample, chosen before any history is read.

Whatever the window, training reads at most ``training_max_samples`` target intervals, at most
``training_max_samples_per_statement`` of any one statement, and no more than what
``training_memory_limit`` leaves room for. The latest captures are the holdout, whole (time-ordered,
as before: no interval is split). The earlier part is drawn per statement, in runs of BLOCK
consecutive captures: each (statement, block) has its own priority, a deterministic hash over a
recency weight ``1 / (1 + age / 7 days)``, and the best blocks are taken until the budget is met.
Every capture of the window is then represented by some statements, so the model sees the server's
load at all of them (whole captures gave it a few hundred load situations, and cost the trees 2-7% of
p90 against the whole history); a block's targets share their windows, so reading costs about two
intervals per target. The choice needs only the snapshots table (one row per capture, with the
number of intervals it wrote) and the list of statements active in the window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pganalytics_ml.errors import PgmlError, invalid

INSUFFICIENT_RESOURCES = "53200"  # out_of_memory
MiB = 1 << 20

DEFAULT_MAX_SAMPLES = 200_000
DEFAULT_MAX_PER_STATEMENT = 1_000
DEFAULT_MEMORY_LIMIT = "1GB"
# Measured (bench/bench_training.py): a backend that imported scikit-learn, read its chunks and holds
# the active model, before any sample; and what each sample adds at the peak of training (its window,
# its features, the copies scikit-learn makes and the training/validation splits). 3.0 kB: the linear
# model's peak at 10M intervals was 836 MiB for 190,000 samples (2.85 kB each above the base).
BASE_BYTES = 320 * MiB
BYTES_PER_SAMPLE = 3_000
MIN_TRAINABLE = 1_000  # fewer samples than this: training is refused rather than run on a sliver
RECENCY_DAYS = 7.0
CHUNK_TARGETS = 20_000  # target intervals read per query
HOLDOUT_FRACTION = 0.2
BLOCK = 8  # consecutive captures of one statement drawn together (their windows overlap)
STATEMENT_CHUNK = 500  # statements whose blocks are ranked at once: the ranking's memory stays small

_STATEMENTS_SQL = """
    SELECT string_agg(int8send(queryid), ''::bytea ORDER BY queryid) AS queryid
      FROM pganalytics_ml.statements
     WHERE server_id = $1 AND last_active_at > $2
"""

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1 << 10, "mb": MiB, "gb": 1 << 30, "tb": 1 << 40}

_CAPTURES_SQL = """
    SELECT string_agg(int8send((extract(epoch FROM captured_at) * 1000000)::bigint), ''::bytea ORDER BY captured_at)
               AS end_us,
           string_agg(int8send((extract(epoch FROM interval_start) * 1000000)::bigint), ''::bytea ORDER BY captured_at)
               AS start_us,
           string_agg(int4send(active_statements), ''::bytea ORDER BY captured_at) AS active,
           string_agg(float8send(coalesce(server_calls, 'NaN')), ''::bytea ORDER BY captured_at) AS calls,
           string_agg(float8send(coalesce(server_blks_read, 'NaN')), ''::bytea ORDER BY captured_at) AS reads,
           string_agg(float8send(coalesce(server_exec_time, 'NaN')), ''::bytea ORDER BY captured_at) AS busy
      FROM pganalytics_ml.snapshots
     WHERE server_id = $1 AND captured_at > $2 AND captured_at <= $3 AND interval_start IS NOT NULL
       AND active_statements > 0
"""


@dataclass
class Settings:
    max_samples: int | None  # None: no limit but the memory limit
    max_per_statement: int | None
    memory_limit: int  # bytes


@dataclass
class Runs:
    """The training part of a sampled window: runs of consecutive captures of one statement, best first."""

    queryid: np.ndarray
    first: np.ndarray  # index in Plan.window_us of each run's first target capture
    last: np.ndarray  # ... and of its last
    priority: np.ndarray  # smaller is drawn first
    budget: int  # target intervals the training part may hold

    def ranges_us(self, window_us: np.ndarray, window_start_us: int) -> tuple[np.ndarray, np.ndarray]:
        """What to read for each run: intervals ending after ``lo`` (room for WINDOW predecessors of its
        first target, when the statement ran at every capture) and up to ``hi``."""
        from pganalytics_ml.forecasting.features import WINDOW

        before = self.first - WINDOW - 1
        lo = np.where(before >= 0, window_us[np.maximum(before, 0)], window_start_us)
        return np.maximum(lo, window_start_us), window_us[self.last]


@dataclass
class Plan:
    """The captures whose intervals are the targets, and what was left out."""

    window_us: np.ndarray  # every capture of the window, oldest first (epoch microseconds)
    end_us: np.ndarray  # the captures read whole: every one, or the holdout's when sampled
    start_us: np.ndarray  # the capture before each (its intervals' start)
    active: np.ndarray  # intervals each of those captures wrote
    holdout_from_us: int | None  # first holdout capture; None: every capture taken, the holdout is cut later
    available: int  # intervals in the window
    limit: int  # the sample size the settings and the memory limit allow
    estimated_bytes: int
    settings: Settings
    runs: Runs | None = None  # when sampled: the training part, drawn per statement
    # The server's totals over each capture's interval (calls, blocks read, busy ms, seconds), for the load
    # features; NaN for a capture that did not record them (captured before 0.3.0).
    window_totals: np.ndarray | None = None

    def totals_at(self, ends_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``ends_us`` (sorted) are captures of the window with recorded totals, and those totals."""
        at = np.minimum(np.searchsorted(self.window_us, ends_us), max(len(self.window_us) - 1, 0))
        if self.window_totals is None or not len(self.window_us):
            return np.zeros(len(ends_us), dtype=bool), np.zeros((len(ends_us), 4))
        known = (self.window_us[at] == ends_us) & np.isfinite(self.window_totals[at]).all(axis=1)
        return known, self.window_totals[at[known]]

    @property
    def sampled(self) -> bool:
        return self.holdout_from_us is not None

    def report(self, used: int) -> dict[str, Any]:
        """What pgml_train reports and stores about the sample."""
        return {
            "samples_available": self.available,
            "samples_used": used,
            "sampled": self.sampled,
            "estimated_memory_mb": round(self.estimated_bytes / MiB, 1),
            "sample_limit": self.limit,
            "memory_limit_mb": round(self.settings.memory_limit / MiB, 1),
        }

    def chunks(self) -> list[np.ndarray]:
        """Indices of the chosen captures, in groups of at most CHUNK_TARGETS intervals (a capture is never split)."""
        groups, current, size = [], [], 0
        for i, n in enumerate(self.active):
            if current and size + n > CHUNK_TARGETS:
                groups.append(np.array(current))
                current, size = [], 0
            current.append(i)
            size += int(n)
        if current:
            groups.append(np.array(current))
        return groups


def parse_size(text: str, name: str) -> int:
    match = _SIZE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise invalid(
            f"{name} must be a positive size such as '1GB' or '512MB', got {text[:40]!r}",
            hint=f"SET {name} = '1GB' (the default).",
        )
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


def _count(text: str | None, name: str, default: int) -> int | None:
    if text is None or text.strip() == "":
        return default
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise invalid(
            f"{name} must be a whole number (0 for no limit), got {text[:40]!r}",
            hint=f"SET {name} = {default} (the default).",
        )
    return int(text) or None


def settings(plpy: Any) -> Settings:
    row = plpy.execute(
        "SELECT current_setting('pganalytics_ml.training_max_samples', true) AS m,"
        " current_setting('pganalytics_ml.training_max_samples_per_statement', true) AS n,"
        " current_setting('pganalytics_ml.training_memory_limit', true) AS memory"
    )[0]
    memory = row["memory"] if row["memory"] and row["memory"].strip() else DEFAULT_MEMORY_LIMIT
    return Settings(
        max_samples=_count(row["m"], "pganalytics_ml.training_max_samples", DEFAULT_MAX_SAMPLES),
        max_per_statement=_count(
            row["n"], "pganalytics_ml.training_max_samples_per_statement", DEFAULT_MAX_PER_STATEMENT
        ),
        memory_limit=parse_size(memory, "pganalytics_ml.training_memory_limit"),
    )


def estimated_bytes(samples: int) -> int:
    return BASE_BYTES + samples * BYTES_PER_SAMPLE


def fitting(memory_limit: int) -> int:
    """How many samples training can hold within ``memory_limit``."""
    return max(0, (memory_limit - BASE_BYTES) // BYTES_PER_SAMPLE)


def _unit_hash(values: np.ndarray) -> np.ndarray:
    """A deterministic uniform number in [0, 1) per value (splitmix64)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(float) / float(1 << 53)


def _bytes_array(value: bytes | None, dtype: str) -> np.ndarray:
    return np.frombuffer(value or b"", dtype=dtype).astype(dtype.lstrip(">"))


def plan(plpy: Any, server_id: str, window_start: str, window_end: str, chosen: Settings | None = None) -> Plan:
    """The captures to train on; refuses (53200) before anything is read when not even a small sample fits."""
    chosen = chosen or settings(plpy)
    query = plpy.prepare(_CAPTURES_SQL, ["text", "timestamptz", "timestamptz"])
    row = plpy.execute(query, [server_id, window_start, window_end])[0]
    end_us, start_us = _bytes_array(row["end_us"], ">i8"), _bytes_array(row["start_us"], ">i8")
    active = _bytes_array(row["active"], ">i4").astype(np.int64)
    totals = (
        np.column_stack([_bytes_array(row[c], ">f8") for c in ("calls", "reads", "busy")] + [(end_us - start_us) / 1e6])
        if len(end_us)
        else np.zeros((0, 4))
    )
    available = int(active.sum())
    fit = fitting(chosen.memory_limit)
    limit = min(fit, chosen.max_samples or fit)
    if fit < MIN_TRAINABLE:
        raise PgmlError(
            f"pganalytics_ml.training_memory_limit ({chosen.memory_limit // MiB} MB) leaves no room to train: "
            f"at least {estimated_bytes(MIN_TRAINABLE) // MiB} MB are needed for {MIN_TRAINABLE:,} samples",
            sqlstate=INSUFFICIENT_RESOURCES,
            hint=f"SET pganalytics_ml.training_memory_limit = '1GB' (the default); training needs about "
            f"{BASE_BYTES // MiB} MB plus {BYTES_PER_SAMPLE / 1024:.1f} kB per sample (docs/operations.md).",
        )
    per_statement = chosen.max_per_statement or len(end_us)
    if available <= limit and len(end_us) <= per_statement:
        return Plan(
            end_us, end_us, start_us, active, None, available, limit, estimated_bytes(available), chosen, None, totals
        )
    # A twentieth of the sample is left for the statements no chosen block has (history.training_set).
    budget = limit - limit // 20
    holdout_from = _holdout(active, budget, per_statement)
    held = slice(holdout_from, None)
    statements = plpy.execute(plpy.prepare(_STATEMENTS_SQL, ["text", "timestamptz"]), [server_id, window_start])[0]
    queryid = _bytes_array(statements["queryid"], ">i8")
    holdout_captures = len(end_us) - holdout_from
    runs = choose_runs(
        end_us[:holdout_from],
        active[:holdout_from],
        queryid,
        max(0, budget - int(active[held].sum())),
        max(0, per_statement - holdout_captures),
        int(end_us[holdout_from]),
    )
    return Plan(
        end_us,
        end_us[held],
        start_us[held],
        active[held],
        int(end_us[holdout_from]),
        available,
        limit,
        estimated_bytes(limit),
        chosen,
        runs,
        totals,
    )


def _holdout(active: np.ndarray, limit: int, per_statement: int) -> int:
    """Index of the first holdout capture: the latest captures holding about HOLDOUT_FRACTION of the sample,
    and at most that share of the per-statement cap."""
    n = len(active)
    holdout_rows = HOLDOUT_FRACTION * limit
    holdout_captures = max(1, int(per_statement * HOLDOUT_FRACTION))
    rows, i = 0, n - 1
    while i > 0 and rows < holdout_rows and (n - 1 - i) < holdout_captures:
        rows += int(active[i])
        i -= 1
    return i + 1


def choose_runs(
    end_us: np.ndarray, active: np.ndarray, queryid: np.ndarray, budget: int, per_statement: int, holdout_from_us: int
) -> Runs:
    """The blocks of BLOCK consecutive captures (before the holdout) of each statement, best first, until
    the intervals they are expected to hold reach ``budget``; at most ``per_statement`` captures of one
    statement. A block's priority is hash(statement, block) / recency weight: the draw is repeatable,
    recent blocks come first more often, and every statement and every capture has its chance."""
    n_blocks = -(-len(end_us) // BLOCK)
    empty = Runs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), budget)
    if not n_blocks or not len(queryid) or budget <= 0 or per_statement <= 0:
        return empty
    first = np.arange(n_blocks) * BLOCK
    last = np.minimum(first + min(BLOCK, per_statement), len(end_us)) - 1  # a cap below BLOCK: shorter blocks
    age_days = (holdout_from_us - end_us[last]) / 86_400e6
    weight = 1.0 / (1.0 + age_days / RECENCY_DAYS)
    # Intervals a block of one statement is expected to hold: its captures' intervals over the statements.
    cumulative = np.r_[0.0, np.cumsum(active.astype(float))]
    expected = (cumulative[last + 1] - cumulative[first]) / len(queryid)
    max_blocks = max(1, per_statement // BLOCK)
    # The best blocks overall are among each statement chunk's best: keep that many of each chunk.
    wanted = int(min(n_blocks * len(queryid), 4 * budget / max(float(expected.mean()), 1e-9) + 1))
    best_q, best_b, best_p = [], [], []
    for i in range(0, len(queryid), STATEMENT_CHUNK):
        q = queryid[i : i + STATEMENT_CHUNK].astype(np.int64)
        key = (q[:, None].astype(np.uint64) * np.uint64(0x9E3779B1)) ^ np.arange(n_blocks, dtype=np.uint64)[None, :]
        priority = (_unit_hash(key) / weight[None, :]).ravel()
        keep = np.argpartition(priority, wanted)[:wanted] if wanted < len(priority) else np.arange(len(priority))
        best_q.append(np.repeat(q, n_blocks)[keep])
        best_b.append(np.tile(np.arange(n_blocks), len(q))[keep])
        best_p.append(priority[keep])
    q, b, p = (np.concatenate(a) for a in (best_q, best_b, best_p))
    order = np.argsort(p, kind="stable")
    q, b, p = q[order], b[order], p[order]
    # Within the per-statement cap (in blocks), best first, until the expected intervals reach the budget.
    by_statement = np.argsort(q, kind="stable")  # each statement's blocks, in priority order
    sorted_q = q[by_statement]
    group_start = np.r_[0, np.flatnonzero(np.diff(sorted_q)) + 1] if len(q) else np.zeros(0, np.int64)
    rank = np.empty(len(q), dtype=np.int64)
    rank[by_statement] = np.arange(len(q)) - np.repeat(group_start, np.diff(np.r_[group_start, len(q)]))
    allowed = rank < max_blocks
    q, b, p = q[allowed], b[allowed], p[allowed]
    taken = np.cumsum(expected[b]) <= budget
    q, b, p = q[taken], b[taken], p[taken]
    # Adjacent blocks of one statement are read as one run.
    order = np.lexsort((b, q))
    q, b, p = q[order], b[order], p[order]
    new_run = np.r_[True, (np.diff(q) != 0) | (np.diff(b) != 1)] if len(q) else np.zeros(0, bool)
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], len(q)] - 1
    run_p = np.minimum.reduceat(p, starts) if len(starts) else np.zeros(0)
    out = np.argsort(run_p, kind="stable")
    return Runs(q[starts][out], first[b[starts]][out], last[b[ends]][out], run_p[out], budget)
