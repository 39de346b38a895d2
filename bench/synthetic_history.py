"""Synthetic query history at any size, for the training benchmark.

A template server is ingested through ``pgml_ingest_stats`` (the real path: validation, deltas,
statement parsing): statements of a few shapes whose means follow a shared load cycle, with noise,
calls, rows, block reads and planning time. Bigger histories are copies of the template under new
queryids with every statement's level and every interval's time perturbed, written with one
INSERT ... SELECT per table: ingesting a million intervals through the validating path takes
longer than the benchmark itself.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

STEP = timedelta(minutes=5)
SHAPES = (
    "SELECT * FROM orders_{i} WHERE id = $1",
    "SELECT customer_id, sum(amount) FROM orders_{i} GROUP BY customer_id ORDER BY 2 DESC LIMIT $1",
    "SELECT o.id, c.name FROM orders_{i} o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > $1",
    "UPDATE accounts_{i} SET balance = balance + $1 WHERE id = $2",
    "INSERT INTO events_{i} (kind, payload) VALUES ($1, $2)",
    "WITH recent AS (SELECT * FROM events_{i} WHERE at > $1) SELECT kind, count(*) FROM recent GROUP BY kind",
)
COPY_STRIDE = 1 << 40  # queryid offset between copies: far apart, inside a signed 64-bit integer


def samples(statements: int, captures: int, min_history: int = 3) -> int:
    """Training samples of that history: one per interval with ``min_history`` earlier intervals."""
    return statements * max(0, captures - 1 - min_history)


def ingest_template(conn: Any, server_id: str, statements: int, captures: int, seed: int = 11) -> None:
    """``captures`` cumulative payloads, 5 minutes apart and ending now, through pgml_ingest_stats."""
    rng = np.random.default_rng(seed)
    level = np.exp(rng.uniform(-3, 4, statements))  # mean ms at average load
    sensitivity = rng.uniform(0, 1.2, statements)  # how strongly a statement slows down under load
    rate = rng.uniform(20, 400, statements)  # calls per interval at average load
    rows_per_call = np.exp(rng.uniform(0, 6, statements))
    blocks_per_call = np.exp(rng.uniform(0, 7, statements))
    hit_ratio = rng.uniform(0.6, 1.0, statements)
    plan_ms = level * rng.uniform(0.01, 0.2, statements)
    counters = {name: np.zeros(statements) for name in ("calls", "time", "rows", "hit", "read", "plans", "plan")}
    start = datetime.now(UTC).replace(microsecond=0) - captures * STEP
    for k in range(captures):
        load = 1 + 0.6 * math.sin(2 * math.pi * k / 36) + (0.8 if rng.random() < 0.05 else 0.0)
        calls = rng.poisson(rate * load) + 1
        mean = level * load**sensitivity * np.exp(rng.normal(0, 0.15, statements))
        blocks = calls * blocks_per_call
        counters["calls"] += calls
        counters["time"] += calls * mean
        counters["rows"] += np.round(calls * rows_per_call)
        counters["hit"] += np.round(blocks * hit_ratio)
        counters["read"] += np.round(blocks * (1 - hit_ratio))
        counters["plans"] += calls
        counters["plan"] += calls * plan_ms
        payload = {
            "captured_at": (start + k * STEP).isoformat(),
            "rows": [
                {
                    "queryid": template_queryid(i),
                    "query": SHAPES[i % len(SHAPES)].format(i=i),
                    "calls": int(counters["calls"][i]),
                    "total_exec_time": float(counters["time"][i]),
                    "rows": int(counters["rows"][i]),
                    "shared_blks_hit": int(counters["hit"][i]),
                    "shared_blks_read": int(counters["read"][i]),
                    "plans": int(counters["plans"][i]),
                    "total_plan_time": float(counters["plan"][i]),
                }
                for i in range(statements)
            ],
        }
        conn.execute("SELECT pgml_ingest_stats(%s, %s::jsonb)", (server_id, json.dumps(payload)))


def template_queryid(i: int) -> int:
    return (i + 1) * 7_919_000_003 - (1 << 50)


# Each copy gets its own level per statement (x0.5-2) and fresh noise per interval (x0.86-1.16).
_COPY_STATS = """
WITH factors AS (SELECT c, s.queryid, exp((random() - 0.5) * 1.4) AS level
                   FROM generate_series(0, %(copies)s - 1) c, pganalytics_ml.statements s
                  WHERE s.server_id = %(source)s)
INSERT INTO pganalytics_ml.query_stats
SELECT r.*
  FROM pganalytics_ml.query_stats q
  JOIN factors f USING (queryid)
 CROSS JOIN LATERAL (SELECT f.level * exp((random() - 0.5) * 0.3) AS factor) n
 CROSS JOIN LATERAL jsonb_populate_record(NULL::pganalytics_ml.query_stats, to_jsonb(q) || jsonb_build_object(
           'server_id', %(target)s::text,
           'queryid', q.queryid + f.c * %(stride)s::bigint,
           'total_exec_time', q.total_exec_time * n.factor,
           'mean_exec_time', q.mean_exec_time * n.factor,
           'stddev_exec_time', q.stddev_exec_time * n.factor)) r
 WHERE q.server_id = %(source)s
"""
_COPY_STATEMENTS = """
INSERT INTO pganalytics_ml.statements
SELECT r.*
  FROM pganalytics_ml.statements s, generate_series(0, %(copies)s - 1) c,
       LATERAL jsonb_populate_record(s, jsonb_build_object(
           'server_id', %(target)s::text, 'queryid', s.queryid + c * %(stride)s::bigint)) r
 WHERE s.server_id = %(source)s
"""
_COPY_SNAPSHOTS = """
INSERT INTO pganalytics_ml.snapshots (server_id, captured_at, interval_start, statements, new_statements,
                                      active_statements)
SELECT %(target)s, captured_at, interval_start, statements * %(copies)s, new_statements * %(copies)s,
       active_statements * %(copies)s
  FROM pganalytics_ml.snapshots WHERE server_id = %(source)s
"""


_STAT_COLUMNS = (
    "server_id, queryid, interval_start, interval_end, database, calls, total_exec_time, mean_exec_time, "
    "stddev_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, "
    "local_blks_hit, local_blks_read, local_blks_dirtied, local_blks_written, temp_blks_read, temp_blks_written, "
    "blk_read_time, blk_write_time, wal_records, wal_fpi, wal_bytes, plans, total_plan_time, mean_plan_time"
)
# One earlier stretch of time (shifted back by %(shift)s) of every statement copy; a copy's level
# (x0.5-2, from a hash of its queryid) is the same in every stretch, the noise per interval fresh.
_COPY_STATS_AT = f"""
WITH factors AS (SELECT c, s.queryid,
                        exp(((abs(hashint8extended(s.queryid + c * %(stride)s::bigint, 7)) %% 1000000) / 1e6 - 0.5)
                            * 1.4) AS level
                   FROM generate_series(0, %(copies)s - 1) c, pganalytics_ml.statements s
                  WHERE s.server_id = %(source)s)
INSERT INTO pganalytics_ml.query_stats ({_STAT_COLUMNS})
SELECT %(target)s, q.queryid + f.c * %(stride)s::bigint, q.interval_start - %(shift)s::interval,
       q.interval_end - %(shift)s::interval, q.database, q.calls, q.total_exec_time * n.factor,
       q.mean_exec_time * n.factor, q.stddev_exec_time * n.factor, q.rows, q.shared_blks_hit, q.shared_blks_read,
       q.shared_blks_dirtied, q.shared_blks_written, q.local_blks_hit, q.local_blks_read, q.local_blks_dirtied,
       q.local_blks_written, q.temp_blks_read, q.temp_blks_written, q.blk_read_time, q.blk_write_time,
       q.wal_records, q.wal_fpi, q.wal_bytes, q.plans, q.total_plan_time, q.mean_plan_time
  FROM pganalytics_ml.query_stats q
  JOIN factors f USING (queryid)
 CROSS JOIN LATERAL (SELECT f.level * exp((random() - 0.5) * 0.3) AS factor) n
 WHERE q.server_id = %(source)s
"""
_COPY_SNAPSHOTS_AT = """
INSERT INTO pganalytics_ml.snapshots (server_id, captured_at, interval_start, statements, new_statements,
                                      active_statements)
SELECT %(target)s, captured_at - %(shift)s::interval, interval_start - %(shift)s::interval,
       statements * %(copies)s, new_statements * %(copies)s, active_statements * %(copies)s
  FROM pganalytics_ml.snapshots WHERE server_id = %(source)s
"""


_FILL_TOTALS = """
UPDATE pganalytics_ml.snapshots s
   SET server_calls = t.calls, server_exec_time = t.busy, server_blks_read = t.reads
  FROM (SELECT interval_end, sum(calls)::float8 AS calls, sum(total_exec_time) AS busy,
               sum(shared_blks_read)::float8 AS reads
          FROM pganalytics_ml.query_stats WHERE server_id = %(target)s GROUP BY interval_end) t
 WHERE s.server_id = %(target)s AND s.captured_at = t.interval_end
"""


def clone_history(conn: Any, source: str, target: str, copies: int, stretches: int, progress: Any = None) -> int:
    """``copies`` perturbed copies of ``source``'s statements over ``stretches`` back-to-back copies of its
    time span, as server ``target``: statements x copies, intervals x copies x stretches. Returns intervals."""
    span = conn.execute(
        "SELECT max(captured_at) - min(captured_at) + interval '5 minutes' FROM pganalytics_ml.snapshots"
        " WHERE server_id = %s",
        (source,),
    ).fetchone()[0]
    params = {"source": source, "target": target, "copies": copies, "stride": COPY_STRIDE}
    with conn.transaction():
        conn.execute(_COPY_STATEMENTS, params)
    for k in range(stretches):
        with conn.transaction():
            conn.execute(_COPY_SNAPSHOTS_AT, params | {"shift": span * k})
            conn.execute(_COPY_STATS_AT, params | {"shift": span * k})
        if progress:
            progress(k + 1, stretches)
    with conn.transaction():  # the server's totals per capture, as a capture records them
        conn.execute(_FILL_TOTALS, params)
    conn.execute("ANALYZE pganalytics_ml.query_stats")
    conn.execute("ANALYZE pganalytics_ml.snapshots")
    return conn.execute("SELECT count(*) FROM pganalytics_ml.query_stats WHERE server_id = %s", (target,)).fetchone()[0]


_EXTEND_SNAPSHOTS = """
INSERT INTO pganalytics_ml.snapshots (server_id, captured_at, interval_start, statements, new_statements,
                                      active_statements, server_calls, server_exec_time, server_blks_read)
SELECT server_id, captured_at - %(shift)s::interval, interval_start - %(shift)s::interval, statements,
       new_statements, active_statements, server_calls, server_exec_time, server_blks_read
  FROM pganalytics_ml.snapshots WHERE server_id = %(server)s AND captured_at >= %(since)s
"""
# One more stretch of the server's own first span, shifted back: the same statements and levels, fresh
# noise per interval (x0.86-1.16), as clone_history's copies.
_EXTEND_STATS = f"""
INSERT INTO pganalytics_ml.query_stats ({_STAT_COLUMNS})
SELECT q.server_id, q.queryid, q.interval_start - %(shift)s::interval, q.interval_end - %(shift)s::interval,
       q.database, q.calls, q.total_exec_time * n.factor, q.mean_exec_time * n.factor,
       q.stddev_exec_time * n.factor, q.rows, q.shared_blks_hit, q.shared_blks_read, q.shared_blks_dirtied,
       q.shared_blks_written, q.local_blks_hit, q.local_blks_read, q.local_blks_dirtied, q.local_blks_written,
       q.temp_blks_read, q.temp_blks_written, q.blk_read_time, q.blk_write_time, q.wal_records, q.wal_fpi,
       q.wal_bytes, q.plans, q.total_plan_time, q.mean_plan_time
  FROM pganalytics_ml.query_stats q
 CROSS JOIN LATERAL (SELECT exp((random() - 0.5) * 0.3) AS factor) n
 WHERE q.server_id = %(server)s AND q.interval_end >= %(since)s
"""


def extend_back(conn: Any, server: str, times: int, progress: Any = None) -> int:
    """``times`` more copies of ``server``'s whole span of history before it, each with fresh noise:
    intervals x (times + 1), the statements unchanged. Returns intervals."""
    since, span = conn.execute(
        "SELECT min(captured_at), max(captured_at) - min(captured_at) + interval '5 minutes'"
        " FROM pganalytics_ml.snapshots WHERE server_id = %s",
        (server,),
    ).fetchone()
    for k in range(1, times + 1):
        params = {"server": server, "since": since, "shift": span * k}
        with conn.transaction():
            conn.execute(_EXTEND_SNAPSHOTS, params)
            conn.execute(_EXTEND_STATS, params)
        if progress:
            progress(k, times)
    conn.execute("ANALYZE pganalytics_ml.query_stats")
    conn.execute("ANALYZE pganalytics_ml.snapshots")
    return conn.execute("SELECT count(*) FROM pganalytics_ml.query_stats WHERE server_id = %s", (server,)).fetchone()[0]


def clone_server(conn: Any, source: str, target: str, copies: int) -> None:
    """``copies`` perturbed copies of ``source``'s history as server ``target`` (statements x copies)."""
    params = {"source": source, "target": target, "copies": copies, "stride": COPY_STRIDE}
    with conn.transaction():
        for statement in (_COPY_STATEMENTS, _COPY_SNAPSHOTS, _COPY_STATS, _FILL_TOTALS):
            conn.execute(statement, params)
    conn.execute("ANALYZE pganalytics_ml.query_stats")
