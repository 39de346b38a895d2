"""Which part of a training window pgml_train learns from: a bounded sample, chosen before any history is read.

Whatever the window, training reads at most ``training_max_samples`` target intervals, at most
``training_max_samples_per_statement`` of any one statement, and no more than what
``training_memory_limit`` leaves room for. The unit of choice is a capture: a statement has at most one
interval per capture, and every statement active at a chosen capture is taken whole, so no interval
is ever split. The latest captures are the holdout (time-ordered, as before); earlier ones are drawn
by a deterministic hash of their time, recent ones more likely (weight ``1 / (1 + age / 7 days)``).
The choice needs only the snapshots table (one row per capture, with the number of intervals it wrote).
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
# its features, the copies scikit-learn makes and the training/validation splits).
BASE_BYTES = 320 * MiB
BYTES_PER_SAMPLE = 2_600
MIN_TRAINABLE = 1_000  # fewer samples than this: training is refused rather than run on a sliver
RECENCY_DAYS = 7.0
CHUNK_TARGETS = 20_000  # target intervals read per query
HOLDOUT_FRACTION = 0.2

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1 << 10, "mb": MiB, "gb": 1 << 30, "tb": 1 << 40}

_CAPTURES_SQL = """
    SELECT string_agg(int8send((extract(epoch FROM captured_at) * 1000000)::bigint), ''::bytea ORDER BY captured_at)
               AS end_us,
           string_agg(int8send((extract(epoch FROM interval_start) * 1000000)::bigint), ''::bytea ORDER BY captured_at)
               AS start_us,
           string_agg(int4send(active_statements), ''::bytea ORDER BY captured_at) AS active
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
class Plan:
    """The captures whose intervals are the targets, and what was left out."""

    window_us: np.ndarray  # every capture of the window, oldest first (epoch microseconds)
    end_us: np.ndarray  # the chosen ones
    start_us: np.ndarray  # the capture before each (its intervals' start)
    active: np.ndarray  # intervals each chosen capture wrote
    holdout_from_us: int | None  # first holdout capture; None: every capture taken, the holdout is cut later
    available: int  # intervals in the window
    limit: int  # the sample size the settings and the memory limit allow
    estimated_bytes: int
    settings: Settings

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
        return Plan(end_us, end_us, start_us, active, None, available, limit, estimated_bytes(available), chosen)
    # A twentieth of the sample is left for the statements no chosen capture has (history.training_set).
    keep, holdout_from = _choose(end_us, active, limit - limit // 20, per_statement)
    kept = np.flatnonzero(keep)
    return Plan(
        end_us,
        end_us[kept],
        start_us[kept],
        active[kept],
        int(end_us[holdout_from]),
        available,
        limit,
        estimated_bytes(int(active[kept].sum())),
        chosen,
    )


def _choose(end_us: np.ndarray, active: np.ndarray, limit: int, per_statement: int) -> tuple[np.ndarray, int]:
    """A mask of captures (the latest for the holdout, then a recency-weighted hash draw, within both caps)
    and the index of the first holdout capture."""
    n = len(end_us)
    keep = np.zeros(n, dtype=bool)
    holdout_rows = HOLDOUT_FRACTION * limit
    holdout_captures = max(1, int(per_statement * HOLDOUT_FRACTION))
    rows, i = 0, n - 1
    while i > 0 and rows < holdout_rows and (n - 1 - i) < holdout_captures:
        keep[i] = True
        rows += int(active[i])
        i -= 1
    earlier = np.arange(i + 1)
    budget_rows = max(0, limit - rows)
    budget_captures = max(0, per_statement - int(keep.sum()))
    age_days = (end_us[i] - end_us[earlier]) / 86_400e6
    weight = 1.0 / (1.0 + age_days / RECENCY_DAYS)
    u = _unit_hash(end_us[earlier])
    # The scale c of the inclusion probabilities min(1, c * weight): bisection on the expected sizes.
    lo, hi = 0.0, 1.0
    while np.sum(np.minimum(1, hi * weight) * active[earlier]) < budget_rows and hi < 1e12:
        hi *= 2
    for _ in range(60):
        c = (lo + hi) / 2
        p = np.minimum(1, c * weight)
        if np.sum(p * active[earlier]) > budget_rows or p.sum() > budget_captures:
            hi = c
        else:
            lo = c
    p = np.minimum(1, lo * weight)
    drawn = earlier[u < p]
    # The draw is random in size: keep the surest of it (smallest u / p) within both caps, exactly.
    drawn = drawn[np.argsort(u[drawn] / p[drawn], kind="stable")]
    fits = (np.cumsum(active[drawn]) <= budget_rows) & (np.arange(1, len(drawn) + 1) <= budget_captures)
    keep[drawn[fits]] = True
    return keep, i + 1
