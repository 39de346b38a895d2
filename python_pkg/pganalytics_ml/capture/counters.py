"""Capture of query history: local snapshots of pg_stat_statements and rows sent by remote collectors.

The arithmetic from cumulative counters to interval deltas is one set-based SQL function
(``pganalytics_ml._capture``); this module validates what comes in and adds each new statement's
structure from the SQL parser.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pganalytics_ml import jsontext
from pganalytics_ml.capture import plans
from pganalytics_ml.capture.statements import FEATURE_NAMES, PartlyWithheld, parse_statement, redact_and_count
from pganalytics_ml.errors import PgmlError, invalid, null_argument, shown, sql_entry
from pganalytics_ml.servers import LOCAL_SERVER, SERVER_ID_PATTERN

MAX_FUTURE_SKEW = timedelta(minutes=5)
MIN_YEAR, MAX_YEAR = 1999, 9999  # exclusive bounds of a capture or reset time's year
# What one pgml_ingest_stats call may hold: 20 times pg_stat_statements' default of 5,000 entries.
MAX_PUSH_ROWS = 100_000
MAX_PUSH_BYTES = 128 * 2**20
PROGRAM_LIMIT_EXCEEDED = "54000"
PUSH_LIMIT_HINT = (
    "A push is one reading of a server's pg_stat_statements: at most 100,000 rows and 128 MB. Lower "
    "pg_stat_statements.max on that server, or send shorter statement texts."
)
PARSE_BATCH = 1000
_DIGITS = re.compile(r"-?[0-9]{1,20}")  # ASCII digits only: int() would read other scripts' digits too
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]{1,3})?")
MAX_BIGINT = 2**63 - 1
# Upper bound of one entry's counters, far beyond any real server. The entries of one statement (per
# user, database, level) are summed in SQL, which refuses a push whose sums would pass a bigint.
MAX_COUNTER = 10**15
MAX_MILLISECONDS = 1e15

# Integer counters of a pg_stat_statements row; all but calls may be absent (older versions, collectors).
INTEGER_COUNTERS = (
    "calls",
    "rows",
    "shared_blks_hit",
    "shared_blks_read",
    "shared_blks_dirtied",
    "shared_blks_written",
    "local_blks_hit",
    "local_blks_read",
    "local_blks_dirtied",
    "local_blks_written",
    "temp_blks_read",
    "temp_blks_written",
    "wal_records",
    "wal_fpi",
    "wal_bytes",
    "plans",
)
TIME_COUNTERS = ("total_exec_time", "blk_read_time", "blk_write_time", "total_plan_time")
REQUIRED = ("queryid", "calls", "total_exec_time")
UNREADABLE_TEXT = "(withheld: the text is not readable as SQL)"
ROW_HINT = (
    "Each row is one pg_stat_statements entry: queryid an integer (or a string of digits), calls and the"
    ' block counters non-negative integers, times in milliseconds, e.g. {"queryid": -4823, "calls": 12,'
    ' "total_exec_time": 30.5}.'
)

# Field order of the SQL type pganalytics_ml.stat_counters.
COUNTER_FIELDS = (
    "userid",
    "dbid",
    "toplevel",
    "queryid",
    "query",
    "datname",
    "calls",
    "total_exec_time",
    "sum_sq_exec_time",
    "rows",
    "shared_blks_hit",
    "shared_blks_read",
    "shared_blks_dirtied",
    "shared_blks_written",
    "local_blks_hit",
    "local_blks_read",
    "local_blks_dirtied",
    "local_blks_written",
    "temp_blks_read",
    "temp_blks_written",
    "blk_read_time",
    "blk_write_time",
    "wal_records",
    "wal_fpi",
    "wal_bytes",
    "plans",
    "total_plan_time",
)


@sql_entry
def snapshot(plpy: Any) -> list[dict[str, Any]]:
    """pgml_snapshot(): capture the local pg_stat_statements, then parse the statements it found."""
    result = plpy.execute("SELECT * FROM pganalytics_ml._capture_local()")
    parse_pending(plpy, LOCAL_SERVER)
    plans.queue_new(plpy)  # statements never planned: the job worker plans them (issue 14)
    note = plpy.prepare("SELECT pganalytics_ml._note_recommended_indexes($1)", ["timestamptz"])
    plpy.execute(note, [result[0]["captured_at"]])  # recommended indexes that appeared since (issue 15)
    _after_capture(plpy, LOCAL_SERVER, result[0]["captured_at"])
    return list(result)


@sql_entry
def check_push(
    plpy: Any,
    server_id: str | None,
    header: str | None,
    rows_type: str | None,
    n_rows: int | None,
    payload_bytes: int | None,
    now: datetime | None = None,
) -> dict[str, str | None]:
    """pgml_ingest_stats, first step: the server and the payload without its rows (``header``), checked.

    The rows themselves are checked one at a time by ``push_row``, as SQL reads them from the payload,
    so that no Python object holds them all. Returns the capture and reset times to use.
    """
    validate_server_id(server_id)
    received_at = now or datetime.now(UTC)
    captured_at, stats_reset = validate_header(header, rows_type, n_rows, payload_bytes, received_at)
    # A payload without captured_at is stamped by _capture (NULL here) once that holds the server's lock,
    # so that it is never stamped before a capture it waited for.
    stamped = None if captured_at is received_at else captured_at.isoformat()
    return {"captured_at": stamped, "stats_reset": stats_reset and stats_reset.isoformat()}


@sql_entry
def push_row(plpy: Any, index: int, row: str) -> dict[str, Any]:
    """pgml_ingest_stats, second step: one row of the payload (JSON text) as a stat_counters value."""
    try:
        return validate_row(index, jsontext.loads(row, f"stats.rows[{index}]", ROW_HINT))
    except PgmlError as err:
        err.hint = err.hint or ROW_HINT
        raise


@sql_entry
def check_pushed_plans(plpy: Any, items: str | None, captured_at: str | None) -> int:
    """pgml_ingest_stats, before anything is written: the plans some rows carry (issue 14), checked."""
    return len(plans.pushed_items(items, _epoch(captured_at)))


@sql_entry
def after_push(plpy: Any, server_id: str, captured_at: str, items: str | None = None) -> None:
    """pgml_ingest_stats, last step: the new statements parsed, their pushed plans stored, then what
    follows every capture."""
    parse_pending(plpy, server_id)
    plans.store_pushed(plpy, server_id, captured_at, plans.pushed_items(items, _epoch(captured_at)))
    # Refreshed here, or by a forecast job the push queues (issue 18: sql/42_forecast_queue.sql).
    queued = plpy.execute("SELECT pganalytics_ml._push_forecast_mode() AS mode")[0]["mode"] == "queued"
    _after_capture(plpy, server_id, captured_at, queue=queued)


def _epoch(timestamp: str | None) -> float:
    """Epoch seconds of a timestamptz as PL/Python hands it over (ISO: the functions pin DateStyle)."""
    return datetime.fromisoformat(timestamp).timestamp() if timestamp else datetime.now(UTC).timestamp()


def _after_capture(plpy: Any, server_id: str, captured_at: str, queue: bool = False) -> None:
    from pganalytics_ml.forecasting import forecasts  # imported here: validating input and parsing need no numpy

    forecasts.after_capture(plpy, server_id, captured_at, queue=queue)


def parse_pending(plpy: Any, server_id: str) -> int:
    """Reads the structure of every statement of ``server_id`` not parsed yet; returns how many.

    The statements are read and updated PARSE_BATCH at a time, so memory does not grow with their number.
    """
    plan = plpy.prepare(
        "SELECT queryid, query FROM pganalytics_ml.statements WHERE server_id = $1 AND parse_ok IS NULL",
        ["text"],
    )
    update = plpy.prepare(
        """
        UPDATE pganalytics_ml.statements st
           SET query = p.query, parse_ok = p.parse_ok, parse_error = p.parse_error,
               statement_kind = p.statement_kind, command = p.command, tables = p.tables,
               n_tables = p.n_tables, n_joins = p.n_joins, n_subqueries = p.n_subqueries,
               n_aggregates = p.n_aggregates, n_window_functions = p.n_window_functions,
               n_ctes = p.n_ctes, has_group_by = p.has_group_by, has_order_by = p.has_order_by,
               has_limit = p.has_limit, has_distinct = p.has_distinct, is_internal = p.is_internal
          FROM pg_catalog.jsonb_to_recordset($2::jsonb) AS p(
               queryid bigint, query text, parse_ok boolean, parse_error text, statement_kind text, command text,
               tables text[], n_tables integer, n_joins integer, n_subqueries integer,
               n_aggregates integer, n_window_functions integer, n_ctes integer,
               has_group_by boolean, has_order_by boolean, has_limit boolean, has_distinct boolean,
               is_internal boolean)
         WHERE st.server_id = $1 AND st.queryid = p.queryid
        """,
        ["text", "text"],
    )
    # The cursor reads the pending rows as they were when it opened: the updates do not move it.
    cursor = plpy.cursor(plan, [server_id])
    parsed = 0
    while batch := cursor.fetch(PARSE_BATCH):
        records = [parse_record(row["queryid"], row["query"]) for row in batch]
        plpy.execute(update, [server_id, json.dumps(records)])
        parsed += len(records)
    cursor.close()
    return parsed


def parse_record(queryid: int, query: str | None) -> dict[str, Any]:
    """The statements-table update for one statement: its text with literals redacted, and its features
    or why they are missing."""
    record: dict[str, Any] = {"queryid": queryid, "query": query, "is_internal": is_internal(query)}
    if query is None:
        return record | {"parse_ok": False, "parse_error": "no statement text was captured"}
    try:
        record["query"], operators = redact_and_count(query)
    except PartlyWithheld as exc:
        return record | {"query": exc.text, "parse_ok": False, "parse_error": str(exc)}
    except (ValueError, RecursionError) as exc:
        return record | {"query": UNREADABLE_TEXT, "parse_ok": False, "parse_error": str(exc)[:200]}
    try:
        features = parse_statement(record["query"], operators)
    except (ValueError, RecursionError) as exc:
        return record | {"parse_ok": False, "parse_error": str(exc)[:200]}
    return record | {"parse_ok": True, "parse_error": None} | {k: features[k] for k in FEATURE_NAMES}


# The extension's own statements (pgml_* calls, anything in schema pganalytics_ml: run_jobs, rescue_jobs)
# and pg_cron's bookkeeping (cron.job_run_details). The same pattern backfills the flag on upgrade.
INTERNAL_PATTERN = re.compile(r"\bpgml_\w+\s*\(|\bpganalytics_ml\.|\bcron\.\w", re.IGNORECASE)


def is_internal(query: str | None) -> bool:
    return bool(query and INTERNAL_PATTERN.search(query))


def validate_server_id(server_id: str | None) -> str:
    if server_id is None:
        raise null_argument("server_id", hint="Name the server the statistics come from, e.g. 'db-prod-1'.")
    if not SERVER_ID_PATTERN.fullmatch(server_id):
        raise invalid(
            f"invalid server_id {shown(server_id)}",
            hint="Use 1 to 63 letters, digits or . _ : @ - characters, starting with a letter or digit.",
        )
    if server_id == LOCAL_SERVER:
        raise invalid(
            "server_id 'local' is reserved for this server's own snapshots",
            hint="Give the remote server its own name; pgml_snapshot() captures the local one.",
        )
    return server_id


def validate_header(
    header: str | None, rows_type: str | None, n_rows: int | None, payload_bytes: int | None, now: datetime
) -> tuple[datetime, datetime | None]:
    """Checks a collector payload but its rows; returns its capture and reset times.

    Accepted shapes: ``{"captured_at": ..., "stats_reset": ..., "rows": [...]}`` or a bare array of
    rows (captured now). ``header`` is the payload without "rows" (``{}`` for a bare array);
    ``rows_type`` the JSON type of its rows, ``n_rows`` their number, ``payload_bytes`` the payload's size.
    """
    if header is None:
        raise null_argument("stats", hint='Send {"captured_at": "...", "rows": [...]}.')
    payload = jsontext.loads(header, "stats", 'Send {"captured_at": "...", "rows": [...]}.')
    if not isinstance(payload, dict):
        raise invalid(
            f"stats must be a JSON object or array, not {_json_type(payload)}",
            hint='Send {"captured_at": "...", "rows": [...]}.',
        )
    unknown = set(payload) - {"captured_at", "stats_reset"}
    if unknown:
        raise invalid(
            f"stats has unknown keys: {', '.join(sorted(unknown))}",
            hint="The payload keys are captured_at, stats_reset and rows.",
        )
    if payload_bytes is not None and payload_bytes > MAX_PUSH_BYTES:
        raise PgmlError(
            f"stats is {payload_bytes / 2**20:.0f} MB; one push holds at most {MAX_PUSH_BYTES // 2**20} MB",
            sqlstate=PROGRAM_LIMIT_EXCEEDED,
            hint=PUSH_LIMIT_HINT,
        )
    if rows_type != "array" or not n_rows:
        raise invalid(
            "stats.rows must be a non-empty array of pg_stat_statements rows",
            hint="Each row needs at least queryid, calls and total_exec_time.",
        )
    if n_rows > MAX_PUSH_ROWS:
        raise PgmlError(
            f"stats has {n_rows} rows; one push holds at most {MAX_PUSH_ROWS}",
            sqlstate=PROGRAM_LIMIT_EXCEEDED,
            hint=PUSH_LIMIT_HINT,
        )
    captured_at = _timestamp(payload["captured_at"], "stats.captured_at") if "captured_at" in payload else now
    if captured_at > now + MAX_FUTURE_SKEW:
        raise invalid(
            f"stats.captured_at {captured_at.isoformat()} is in the future",
            hint="Check the collector's clock; capture times must not be ahead of this server's.",
        )
    stats_reset = _timestamp(payload["stats_reset"], "stats.stats_reset") if payload.get("stats_reset") else None
    if stats_reset is not None and stats_reset > captured_at:
        raise invalid(
            f"stats.stats_reset {stats_reset.isoformat()} is after stats.captured_at {captured_at.isoformat()}",
            hint="Send pg_stat_statements_info.stats_reset as read with the rows: a reset cannot follow the capture.",
        )
    return captured_at, stats_reset


def validate_row(index: int, row: Any) -> dict[str, Any]:
    """One pg_stat_statements-shaped row, checked and completed with defaults."""
    where = f"stats.rows[{index}]"
    if not isinstance(row, dict):
        raise invalid(f"{where} must be an object, not {_json_type(row)}")
    for name in REQUIRED:
        if row.get(name) is None:
            raise invalid(f"{where} has no {name}", hint="Each row needs at least queryid, calls and total_exec_time.")
    queryid = _integer(row["queryid"], f"{where}.queryid", low=-(2**63), high=MAX_BIGINT)
    where = f"{where} (queryid {queryid})"
    out: dict[str, Any] = {
        "queryid": queryid,
        "userid": _integer(row.get("userid", 0), f"{where}.userid", low=0, high=2**32 - 1),
        "dbid": _integer(row.get("dbid", 0), f"{where}.dbid", low=0, high=2**32 - 1),
        "toplevel": row.get("toplevel", True),
        "query": row.get("query"),
        "datname": row.get("datname"),
    }
    if not isinstance(out["toplevel"], bool):
        raise invalid(f"{where}.toplevel must be true or false")
    for name in ("query", "datname"):
        if out[name] is not None and not isinstance(out[name], str):
            raise invalid(f"{where}.{name} must be a string")
        if out[name] is not None and "\x00" in out[name]:
            raise invalid(f"{where}.{name} must not contain a NUL character")
    for name in INTEGER_COUNTERS:
        out[name] = _integer(row.get(name, 0), f"{where}.{name}", low=0, high=MAX_COUNTER)
    for name in TIME_COUNTERS:
        out[name] = _milliseconds(row.get(name, 0.0), f"{where}.{name}")
    mean, stddev = row.get("mean_exec_time"), row.get("stddev_exec_time")
    out["sum_sq_exec_time"] = None
    if stddev is not None:
        stddev = _milliseconds(stddev, f"{where}.stddev_exec_time")
        mean = _milliseconds(mean, f"{where}.mean_exec_time") if mean is not None else None
        if mean is None:
            mean = out["total_exec_time"] / out["calls"] if out["calls"] else 0.0
        out["sum_sq_exec_time"] = out["calls"] * (stddev**2 + mean**2)
    return out


def _json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _integer(value: Any, where: str, *, low: int, high: int) -> int:
    # Integers may come as JSON strings: a 64-bit queryid does not survive a JSON number in many clients.
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, float) and math.isinf(value):  # a JSON integer too long to read as one
        raise invalid(f"{where} is out of range (a number past 1e308); expected {low} to {high}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{where} must be an integer, got {json.dumps(value)[:40]}")
    if not low <= value <= high:
        raise invalid(f"{where} is out of range ({shown(value)}); expected {low} to {high}")
    return value


def _milliseconds(value: Any, where: str) -> float:
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{where} must be a number of milliseconds, got {json.dumps(value)[:40]}")
    if not math.isfinite(value) or not 0 <= value <= MAX_MILLISECONDS:
        raise invalid(f"{where} must be a number of milliseconds from 0 to {MAX_MILLISECONDS:g}, got {shown(value)}")
    # Below a picosecond is noise; rounding keeps squares and quotients clear of float underflow in SQL.
    return round(float(value), 9)


def _timestamp(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise invalid(f"{where} must be an ISO 8601 timestamp string", hint='e.g. "2026-11-28T17:00:00Z"')
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            f"{where} is not an ISO 8601 timestamp: {value[:40]!r}", hint='e.g. "2026-11-28T17:00:00Z"'
        ) from None
    if parsed.tzinfo is None:
        raise invalid(f"{where} has no time zone: {value[:40]!r}", hint='Add "Z" or an offset such as "+00:00".')
    # Years from 2000 to 9998 in any time zone are years from 1999 to 9999 in UTC, which every
    # later step (SQL, Python's datetime, training) reads alike.
    if not MIN_YEAR < parsed.year < MAX_YEAR:
        raise invalid(
            f"{where} {value[:40]!r} is out of range: years {MIN_YEAR + 1} to {MAX_YEAR - 1} are accepted",
            hint="Check the collector's clock; times are read from the server the statistics come from.",
        )
    return parsed
