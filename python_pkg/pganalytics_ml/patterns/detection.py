"""pgml_detect_patterns, its JSON document, and the 'patterns' job that keeps pganalytics_ml.patterns.

The history is read as hourly buckets (pganalytics_ml._pattern_series): server-wide, and for the
statements with the most execution time in the window. Each series goes through the detectors; plan
changes come from pganalytics_ml.plan_changes when that view exists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pganalytics_ml.errors import invalid, not_found, null_argument, shown, sql_entry

MAX_LOOKBACK_DAYS = 366
DEFAULT_STATEMENTS = 100  # statements analysed one by one, by execution time; setting pganalytics_ml.pattern_statements
MAX_STATEMENTS = 10_000
STATEMENT_TEXT = 60  # characters of a statement's text in a description
SUBJECTS = {
    (True, "calls"): "The server's call rate",
    (True, "total_time"): "The server's total execution time",
    (False, "calls"): "The call rate of statement {hash}{text}",
    (False, "mean_time"): "The mean time of statement {hash}{text}",
}
SERIES_SQL = "SELECT * FROM pganalytics_ml._pattern_series($1, $2, $3)"
TIME_COLUMNS = ("changed_at", "detected_at", "at", "captured_at", "first_seen", "seen_at", "interval_end")


def check_arguments(plpy: Any, lookback_days: int | None, server_id: str | None) -> None:
    hint = "lookback_days counts days back from the server's latest capture, e.g. 7 (the default) or 30."
    if lookback_days is None:
        raise null_argument("lookback_days", hint=hint)
    if not 1 <= lookback_days <= MAX_LOOKBACK_DAYS:
        raise invalid(f"lookback_days must be from 1 to {MAX_LOOKBACK_DAYS}, got {lookback_days}", hint=hint)
    if server_id is None:
        raise null_argument("server_id", hint="'local' is this database's own history.")
    plan = plpy.prepare("SELECT EXISTS (SELECT FROM pganalytics_ml.snapshots WHERE server_id = $1) AS known", ["text"])
    if not plpy.execute(plan, [server_id])[0]["known"]:
        raise not_found(
            f"no history captured for server {shown(server_id)}",
            hint="Capture history first: pgml_snapshot() here, pgml_ingest_stats() for a remote server.",
        )


@sql_entry
def detect_sql(plpy: Any, lookback_days: int | None, server_id: str | None) -> list[dict[str, Any]]:
    check_arguments(plpy, lookback_days, server_id)
    result = detect(plpy, lookback_days, server_id)
    return [_sql_row(p) for p in result["patterns"]]


@sql_entry
def detect_json(plpy: Any, lookback_days: int | None, server_id: str | None) -> str:
    check_arguments(plpy, lookback_days, server_id)
    result = detect(plpy, lookback_days, server_id)
    return json.dumps(_document(result, server_id, lookback_days))


def detect(
    plpy: Any, lookback_days: int, server_id: str, progress: Callable[[str, float], None] | None = None
) -> dict[str, Any]:
    """Every pattern of the window, with the seasonal profiles found and the window's bounds."""
    from pganalytics_ml.patterns import detectors

    plan = plpy.prepare(SERIES_SQL, ["text", "integer", "integer"])
    rows = plpy.execute(plan, [server_id, lookback_days, _statement_count(plpy)])
    patterns: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    window = (rows[0]["first_hour"], rows[0]["last_capture"]) if len(rows) else None
    start = _epoch(plpy, rows[0]["first_hour"]) if len(rows) else 0.0
    for k, row in enumerate(rows):
        if progress is not None and k % 20 == 0:
            progress("detecting patterns", 10 + 80 * k / max(1, len(rows)))
        for series in _series(row, start):
            found, profile = detectors.detect(series)
            for f in found:
                patterns.append(_pattern(f, row))
            if profile is not None:
                profiles.append({"query_hash": row["query_hash"], "metric": series.metric, **profile})
    if window is not None:
        patterns += plan_changes(plpy, server_id, window[0])
    patterns.sort(key=lambda p: (-p["confidence"], p["type"], p["query_hash"] is not None, p["query_hash"] or 0))
    return {"patterns": patterns, "profiles": profiles, "window": window}


def _statement_count(plpy: Any) -> int:
    value = plpy.execute(f"SELECT pganalytics_ml._setting('pattern_statements', '{DEFAULT_STATEMENTS}') AS v")[0]["v"]
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_STATEMENTS:
        raise invalid(
            f"the setting pganalytics_ml.pattern_statements must be an integer from 0 to {MAX_STATEMENTS}, "
            f"got {shown(value)}",
            hint=f"It bounds how many statements are analysed one by one (default {DEFAULT_STATEMENTS}).",
        )
    return count


def _epoch(plpy: Any, timestamp: str) -> float:
    plan = plpy.prepare("SELECT EXTRACT(epoch FROM $1::timestamptz)::float8 AS e", ["text"])
    return float(plpy.execute(plan, [timestamp])[0]["e"])


def _series(row: dict[str, Any], start: float) -> list[Any]:
    """Rates per hour from the buckets: calls and time scaled by the seconds the captures covered (so an
    irregular cadence does not read as a change of load), mean time as time over calls."""
    import numpy as np

    from pganalytics_ml.patterns.detectors import Series

    def array(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    covered, calls, total = array(row["covered_seconds"]), array(row["calls"]), array(row["total_ms"])
    with np.errstate(invalid="ignore", divide="ignore"):
        per_hour = np.where(covered > 0, 3600 / covered, np.nan)
        mean = np.where(calls > 0, total / calls, np.nan)
    # How much an hour's value is worth next to a fully captured one: captured in part, or by fewer
    # captures per hour covered than usual (after an outage one capture covers hours, yet it is one
    # interval's mean, and it outweighs the hour's other captures).
    captures = array(row["captures"])
    with np.errstate(invalid="ignore", divide="ignore"):
        per_covered_hour = np.where(covered > 0, captures * 3600 / covered, np.nan)
    typical = float(np.nanmedian(per_covered_hour)) if np.isfinite(per_covered_hour).any() else 1.0
    share = np.minimum(covered / 3600, 1.0) * np.minimum(per_covered_hour / typical, 1.0)
    if row["query_hash"] is None:
        return [Series("calls", calls * per_hour, start, share), Series("total_time", total * per_hour, start, share)]
    # A mean time weighs its intervals by their calls: it is worth (sum of calls)^2 / (sum of calls^2)
    # intervals, fewer than its captures when one interval holds most of the calls.
    with np.errstate(invalid="ignore", divide="ignore"):
        effective = np.where(calls > 0, calls**2 / array(row["calls_squared"]), np.nan)
    typical_effective = float(np.nanmedian(effective)) if np.isfinite(effective).any() else 1.0
    mean_share = np.minimum(share, np.minimum(effective / typical_effective, 1.0))
    return [Series("calls", calls * per_hour, start, share), Series("mean_time", mean, start, mean_share)]


def _pattern(found: Any, row: dict[str, Any]) -> dict[str, Any]:
    query_hash = row["query_hash"]
    text = row["statement"]
    shown_text = ""
    if text:
        flat = " ".join(text.split())
        shown_text = f" ({flat[:STATEMENT_TEXT]}{'...' if len(flat) > STATEMENT_TEXT else ''})"
    subject = SUBJECTS[(query_hash is None, found.metric)].format(hash=query_hash, text=shown_text)
    return {
        "type": found.type,
        "query_hash": query_hash,
        "statement": text,
        "metric": found.metric,
        "description": f"{subject} {found.summary}.",
        "confidence": float(found.confidence),
        "metadata": {"metric": found.metric, "query_hash": query_hash, **found.metadata},
    }


def plan_changes(plpy: Any, server_id: str, since: str) -> list[dict[str, Any]]:
    """Plan changes in the window, from pganalytics_ml.plan_changes if the plans stage is installed (the
    view is looked up in the catalog at each call). A plan change is observed, not inferred: its
    confidence is the view's own if it has one, else 1."""
    columns = [
        r["attname"]
        for r in plpy.execute(
            "SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = "
            "pg_catalog.to_regclass('pganalytics_ml.plan_changes') AND a.attnum > 0 AND NOT a.attisdropped"
        )
    ]
    if not columns:
        return []
    hash_column = next((c for c in ("queryid", "query_hash") if c in columns), None)
    time_column = next((c for c in TIME_COLUMNS if c in columns), None)
    if hash_column is None or time_column is None:
        return []
    where = [f"{_ident(time_column)} >= $2::timestamptz"]
    if "server_id" in columns:
        where.append("server_id = $1")
    rows = plpy.execute(
        plpy.prepare(
            f"SELECT to_jsonb(p) AS row FROM pganalytics_ml.plan_changes p WHERE {' AND '.join(where)}"
            f" ORDER BY {_ident(time_column)}",
            ["text", "text"],
        ),
        [server_id, since],
    )
    texts = _statement_texts(plpy, server_id)
    found = []
    for r in rows:
        change = json.loads(r["row"]) if isinstance(r["row"], str) else r["row"]
        query_hash = change.get(hash_column)
        if query_hash is None:
            continue
        query_hash = int(query_hash)
        text = texts.get(query_hash)
        flat = " ".join((text or "").split())
        shown_text = f" ({flat[:STATEMENT_TEXT]}{'...' if len(flat) > STATEMENT_TEXT else ''})" if flat else ""
        confidence = change.get("confidence")
        confidence = 1.0 if not isinstance(confidence, int | float) else min(1.0, max(0.0, float(confidence)))
        when = change.get(time_column)
        found.append(
            {
                "type": "plan_change",
                "query_hash": query_hash,
                "statement": text,
                "metric": "plan",
                "description": f"The plan of statement {query_hash}{shown_text} changed at {when}{_shapes(change)}.",
                "confidence": confidence,
                "metadata": {"metric": "plan", "query_hash": query_hash, "at": when, **change},
            }
        )
    return found


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _statement_texts(plpy: Any, server_id: str) -> dict[int, str | None]:
    plan = plpy.prepare("SELECT queryid, query FROM pganalytics_ml.statements WHERE server_id = $1", ["text"])
    return {r["queryid"]: r["query"] for r in plpy.execute(plan, [server_id])}


def _sql_row(p: dict[str, Any]) -> dict[str, Any]:
    return {**p, "metadata": json.dumps(p["metadata"], default=_finite)}


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _rfc3339(timestamp: str) -> str:
    """PostgreSQL's text of a timestamptz ('2026-12-01 22:22:00+00') as RFC 3339, which Go's time.Time reads."""
    return datetime.fromisoformat(timestamp).isoformat()


def _document(result: dict[str, Any], server_id: str, lookback_days: int) -> dict[str, Any]:
    """The Go backend's document: patterns_detected, patterns [{type, description, confidence, metadata}],
    timestamp; plus the statement and the window, which its decoder may ignore."""
    window = result["window"]
    return {
        "patterns_detected": len(result["patterns"]),
        "patterns": [
            {
                "type": p["type"],
                "description": p["description"],
                "confidence": p["confidence"],
                "metadata": p["metadata"],
                "query_hash": p["query_hash"],
                "metric": p["metric"],
            }
            for p in result["patterns"]
        ],
        "timestamp": datetime.now(UTC).isoformat(),
        "server_id": server_id,
        "lookback_days": lookback_days,
        "window_start": _rfc3339(window[0]) if window else None,
        "window_end": _rfc3339(window[1]) if window else None,
    }


# The 'patterns' job: refreshes pganalytics_ml.patterns and seasonal_profiles for one server, or for every
# server captured in the window.
JOB_ARGUMENTS = ("lookback_days", "server_id")
DEFAULT_JOB_LOOKBACK = 7


def check_job_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    unknown = set(arguments) - set(JOB_ARGUMENTS)
    if unknown:
        raise invalid(
            f"unknown patterns arguments: {', '.join(sorted(unknown))}",
            hint=f"Patterns arguments: {', '.join(JOB_ARGUMENTS)}.",
        )
    days = arguments.get("lookback_days", DEFAULT_JOB_LOOKBACK)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_LOOKBACK_DAYS:
        raise invalid(
            f"lookback_days must be an integer from 1 to {MAX_LOOKBACK_DAYS}, got {shown(days)}",
            hint='For example {"lookback_days": 7}.',
        )
    if "server_id" in arguments and not isinstance(arguments["server_id"], str):
        raise invalid("server_id must be text", hint="Leave it out to refresh every server captured in the window.")
    return arguments


def refresh(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    days = int(arguments.get("lookback_days", DEFAULT_JOB_LOOKBACK))
    if "server_id" in arguments:
        check_arguments(plpy, days, arguments["server_id"])
        servers = [arguments["server_id"]]
    else:
        plan = plpy.prepare(
            "SELECT server_id FROM pganalytics_ml.snapshots GROUP BY server_id "
            "HAVING max(captured_at) > now() - make_interval(days => $1) ORDER BY server_id",
            ["integer"],
        )
        servers = [r["server_id"] for r in plpy.execute(plan, [days])]
    counts = {}
    for k, server_id in enumerate(servers):
        result = detect(
            plpy,
            days,
            server_id,
            progress=lambda phase, pct, k=k, server=server_id: checkpoint(
                f"{phase} ({server})", (k + pct / 100) * 100 / len(servers)
            ),
        )
        _store(plpy, server_id, days, result)
        counts[server_id] = len(result["patterns"])
    return {"lookback_days": days, "patterns": counts}


def _store(plpy: Any, server_id: str, days: int, result: dict[str, Any]) -> None:
    plpy.execute(plpy.prepare("DELETE FROM pganalytics_ml.patterns WHERE server_id = $1", ["text"]), [server_id])
    if result["window"] is None:
        return
    start, end = result["window"]
    insert = plpy.prepare(
        "INSERT INTO pganalytics_ml.patterns (server_id, type, query_hash, statement, metric, description, "
        "confidence, metadata, lookback_days, window_start, window_end, detected_at) "
        "SELECT $1, p.type, p.query_hash, p.statement, p.metric, p.description, p.confidence, p.metadata, $3, "
        "$4::timestamptz, $5::timestamptz, now() FROM jsonb_to_recordset($2::jsonb) AS p(type text, "
        "query_hash bigint, statement text, metric text, description text, confidence float8, metadata jsonb)",
        ["text", "text", "integer", "text", "text"],
    )
    plpy.execute(insert, [server_id, json.dumps(result["patterns"], default=_finite), days, start, end])
    upsert = plpy.prepare(
        "INSERT INTO pganalytics_ml.seasonal_profiles AS s (server_id, query_hash, metric, period_hours, factors, "
        "strength, lookback_days, window_end, detected_at) "
        "SELECT $1, p.query_hash, p.metric, p.period_hours, p.factors, p.strength, $3, $4::timestamptz, now() "
        "FROM jsonb_to_recordset($2::jsonb) AS p(query_hash bigint, metric text, period_hours integer, "
        "factors float8[], strength float8) "
        "ON CONFLICT (server_id, query_hash, metric) DO UPDATE SET period_hours = EXCLUDED.period_hours, "
        "factors = EXCLUDED.factors, strength = EXCLUDED.strength, lookback_days = EXCLUDED.lookback_days, "
        "window_end = EXCLUDED.window_end, detected_at = EXCLUDED.detected_at",
        ["text", "text", "integer", "text"],
    )
    plpy.execute(upsert, [server_id, json.dumps(result["profiles"]), days, end])
    # A cycle no longer found is no longer a profile: the forecaster must not keep using it.
    found = json.dumps([{"query_hash": p["query_hash"], "metric": p["metric"]} for p in result["profiles"]])
    plpy.execute(
        plpy.prepare(
            "DELETE FROM pganalytics_ml.seasonal_profiles s WHERE s.server_id = $1 AND NOT EXISTS ("
            "SELECT FROM jsonb_to_recordset($2::jsonb) AS p(query_hash bigint, metric text) "
            "WHERE p.query_hash IS NOT DISTINCT FROM s.query_hash AND p.metric = s.metric)",
            ["text", "text"],
        ),
        [server_id, found],
    )


def _shapes(change: dict[str, Any]) -> str:
    """The old and new plan shapes, when the plans stage knows them (pganalytics_ml.plan_changes)."""
    old, new = change.get("old_summary"), change.get("new_summary")
    if not old or not new:
        return ""
    return f", from {old[:80]} to {new[:80]}"
