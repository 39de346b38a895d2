"""Retention of one day at a realistic size: dropping the day's partition against DELETE (issue 18).

bench_fleet measured the drop of a 6-hour day (3.6 million rows) just loaded: 1.4 s against 8.5 s for
DELETE, 6x. This measures a whole day (288 five-minute intervals) of RETENTION_SERVERS servers with 500
statements each (14.4 million rows at 100), in the state a day past retention is in: vacuumed, analyzed
and checkpointed, so that neither autovacuum nor dirty buffers are still at work on it. Each step is
timed on its own (DETACH, DROP, COMMIT; DELETE, COMMIT), then the VACUUM that DELETE leaves to do, the
checkpoint after each, and the table and index sizes before and after. Backend CPU time is given beside
the wall time, as the machine is shared.

Same data and layouts as bench_fleet (its loader): `partitioned` (this version: day partitions and a
default one) and `unpartitioned` (query_stats as one heap table, 0.2.0's indexes, retention by DELETE).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("FLEET_INTERVALS", "288")  # a whole day per server, read by bench_fleet at import

import bench_fleet as fleet

from benchlib import bench_cluster, print_table

SERVERS = int(os.environ.get("RETENTION_SERVERS", "100"))


def cpu_times(conn: Any) -> tuple[float, float]:
    """User and system CPU time of this connection's backend so far (/proc/self/stat, clock ticks of 1/100 s)."""
    fields = conn.execute("SELECT pg_read_file('/proc/self/stat')").fetchone()[0].rsplit(")", 1)[1].split()
    return int(fields[11]) / 100, int(fields[12]) / 100


def timed(conn: Any, sql: str, params: Any = None) -> tuple[float, float, float, float]:
    """Wall, backend CPU, and its user and system parts, in seconds, of one statement."""
    (user, system), start = cpu_times(conn), time.perf_counter()
    conn.execute(sql, params)
    wall = time.perf_counter() - start
    after = cpu_times(conn)
    return wall, after[0] + after[1] - user - system, after[0] - user, after[1] - system


# The relations of a partition (table, TOAST, indexes) and their files: 1 GB segments of each fork.
FILES = """
    SELECT count(*), sum(ceil(greatest(pg_relation_size(c.oid, f), 1) / (1024.0 ^ 3)))::int,
           sum(pg_relation_size(c.oid, f))
      FROM pg_class c, unnest(ARRAY['main', 'fsm', 'vm']) f
     WHERE (c.oid = %(t)s::regclass OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(t)s::regclass)
            OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %(t)s::regclass)
            OR c.oid IN (SELECT indexrelid FROM pg_index
                          WHERE indrelid = (SELECT reltoastrelid FROM pg_class WHERE oid = %(t)s::regclass)))
       AND pg_relation_size(c.oid, f) > 0
"""
RELATIONS = FILES.replace(
    "count(*), sum(ceil(greatest(pg_relation_size(c.oid, f), 1) / (1024.0 ^ 3)))::int,\n"
    "           sum(pg_relation_size(c.oid, f))",
    "count(DISTINCT c.oid)",
)


def indexes(f: fleet.Fleet, drop: bool) -> None:
    """Drops the keys and indexes of the table the day is loaded into, or builds them again: building them
    once after the load is faster than keeping them up to date through it (the loader writes in time order,
    the key is by statement)."""
    part = fleet.DAY.strftime("query_stats_p%Y%m%d")
    with f.connect() as conn:
        if f.layout == "partitioned":
            if drop:
                conn.execute(f"ALTER TABLE pganalytics_ml.{part} DROP CONSTRAINT {part}_pkey")
                conn.execute(f"DROP INDEX pganalytics_ml.{part}_server_end")
            else:
                conn.execute("SELECT pganalytics_ml._index_history_partition('query_stats', %s)", (part,))
        elif drop:
            conn.execute("ALTER TABLE pganalytics_ml.query_stats DROP CONSTRAINT query_stats_pkey")
            conn.execute("DROP INDEX pganalytics_ml.query_stats_interval_end")
        else:
            conn.execute("ALTER TABLE pganalytics_ml.query_stats ADD PRIMARY KEY (server_id, queryid, interval_end)")
            conn.execute(
                "CREATE INDEX query_stats_interval_end ON pganalytics_ml.query_stats (server_id, interval_end)"
            )


def retire(f: fleet.Fleet) -> dict[str, Any]:
    with f.connect() as conn:
        conn.execute("VACUUM (ANALYZE) pganalytics_ml.query_stats")
        conn.execute("CHECKPOINT")
        before = f.history_size()
        steps: dict[str, tuple[float, float]] = {}
        conn.execute("BEGIN")
        if f.layout == "partitioned":
            part = fleet.DAY.strftime("query_stats_p%Y%m%d")
            files = conn.execute(FILES, {"t": f"pganalytics_ml.{part}"}).fetchone()
            relations = conn.execute(RELATIONS, {"t": f"pganalytics_ml.{part}"}).fetchone()[0]
            steps["detach"] = timed(
                conn, f"ALTER TABLE pganalytics_ml.query_stats DETACH PARTITION pganalytics_ml.{part}"
            )
            steps["drop"] = timed(conn, f"DROP TABLE pganalytics_ml.{part}")
        else:
            steps["delete"] = timed(
                conn, "DELETE FROM pganalytics_ml.query_stats WHERE interval_end < %s", (fleet.HISTORY_END,)
            )
        steps["commit"] = timed(conn, "COMMIT")
        after_commit = f.history_size()
        steps["checkpoint"] = timed(conn, "CHECKPOINT")
        if f.layout == "unpartitioned":
            steps["vacuum"] = timed(conn, "VACUUM pganalytics_ml.query_stats")
            steps["checkpoint after vacuum"] = timed(conn, "CHECKPOINT")
        if f.layout == "partitioned":
            # What a commit that unlinks nothing costs here: the scan of shared_buffers for the dropped
            # relations' pages (DropRelationsAllBuffers) happens whatever their size.
            conn.execute("CREATE TABLE pganalytics_ml.empty_day (LIKE pganalytics_ml.query_stats)")
            conn.execute("BEGIN")
            conn.execute("DROP TABLE pganalytics_ml.empty_day")
            steps["COMMIT of an empty table's drop"] = timed(conn, "COMMIT")
        out = {"before": before, "after": after_commit, "after_all": f.history_size(), "steps": steps}
        if f.layout == "partitioned":
            out["files"], out["relations"] = files, relations
        return out


# The day of servers [LOAD_BATCH, SERVERS), copied from the first LOAD_BATCH servers' rows under new names:
# the same sizes, without computing every row's values again (computing them took most of the 33 minutes
# the first run spent loading).
COPY_SQL = """
INSERT INTO pganalytics_ml.query_stats
SELECT format('srv-%%s', lpad((substr(q.server_id, 5)::integer + %(offset)s)::text, 4, '0')),
       q.queryid, q.interval_start, q.interval_end, q.database, q.calls, q.total_exec_time, q.mean_exec_time,
       q.stddev_exec_time, q.rows, q.shared_blks_hit, q.shared_blks_read, q.shared_blks_dirtied,
       q.shared_blks_written, q.local_blks_hit, q.local_blks_read, q.local_blks_dirtied, q.local_blks_written,
       q.temp_blks_read, q.temp_blks_written, q.blk_read_time, q.blk_write_time, q.wal_records, q.wal_fpi,
       q.wal_bytes, q.plans, q.total_plan_time, q.mean_plan_time
  FROM pganalytics_ml.query_stats q
 WHERE q.server_id = ANY (%(first)s) AND q.interval_end < %(end)s
"""


def load(f: fleet.Fleet) -> float:
    """Writes the synthetic day of SERVERS servers; returns seconds."""
    started = time.perf_counter()
    batch = min(fleet.LOAD_BATCH, SERVERS)
    f.grow(batch, steady=False)
    first = [fleet.server_name(s) for s in range(batch)]
    with f.connect() as conn:
        for offset in range(batch, SERVERS, batch):
            if offset + batch > SERVERS:
                raise ValueError(f"RETENTION_SERVERS must be a multiple of {batch}")
            conn.execute(COPY_SQL, {"offset": offset, "first": first, "end": fleet.HISTORY_END})
        conn.execute("ANALYZE pganalytics_ml.query_stats")
    return time.perf_counter() - started


def main() -> None:
    started = time.perf_counter()
    cluster = bench_cluster(
        "retention", shared_buffers="1GB", max_wal_size="16GB", checkpoint_timeout="30min", maintenance_work_mem="256MB"
    )
    try:
        results = {}
        for layout in fleet.LAYOUTS:
            f = fleet.Fleet(cluster, layout)
            f.setup()
            indexes(f, drop=True)
            load_s = load(f)
            started_index = time.perf_counter()
            indexes(f, drop=False)
            index_s = time.perf_counter() - started_index
            print(
                f"  {layout}: {SERVERS} servers x {fleet.INTERVALS} intervals loaded in {load_s:.0f} s,"
                f" indexed in {index_s:.0f} s",
                flush=True,
            )
            results[layout] = retire(f)
            print(f"  {layout}: {results[layout]['steps']}", flush=True)
        print(
            f"\nRetention of one day of {SERVERS} servers ({SERVERS * fleet.STATEMENTS * fleet.INTERVALS:,} rows of"
            f" query_stats), vacuumed and checkpointed first; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
            f" load average {os.getloadavg()[0]:.1f} at the end:\n"
        )
        rows = []
        for layout, r in results.items():
            for step, (wall, cpu, user, system) in r["steps"].items():
                rows.append([layout, step, f"{wall:.3f}", f"{cpu:.2f}", f"{user:.2f}", f"{system:.2f}"])
        print_table(["layout", "step", "wall s", "backend CPU s", "user s", "system s"], rows)
        count, segments, size = results["partitioned"]["files"]
        print(
            f"\nThe day partition dropped: {results['partitioned']['relations']} relations with data (of the table,"
            f" its TOAST table and index, its two indexes), {count} forks with data in {segments} segment files,"
            f" {size / 2**30:.2f} GiB."
        )
        print()
        rows = []
        for layout, r in results.items():
            keep = [s for s in r["steps"] if s in ("detach", "drop", "delete", "commit")]
            rows.append(
                [
                    layout,
                    f"{sum(r['steps'][s][0] for s in keep):.3f}",
                    f"{sum(r['steps'][s][0] for s in r['steps'] if not s.startswith('COMMIT of')):.3f}",
                    f"{r['before'][0]:,}",
                    f"{r['after'][0]:,}",
                    fleet.mib(r["before"][1]),
                    fleet.mib(r["before"][2]),
                    fleet.mib(r["after"][1]),
                    fleet.mib(r["after"][2]),
                    fleet.mib(r["after_all"][1]),
                    fleet.mib(r["after_all"][2]),
                ]
            )
        print_table(
            [
                "layout",
                "retention s (to commit)",
                "with checkpoint and vacuum s",
                "rows before",
                "rows after",
                "table MiB before",
                "index MiB before",
                "table MiB after",
                "index MiB after",
                "table MiB after vacuum",
                "index MiB after vacuum",
            ],
            rows,
        )
        part = results["partitioned"]["steps"]
        dele = results["unpartitioned"]["steps"]
        to_commit = (part["detach"][0] + part["drop"][0] + part["commit"][0], dele["delete"][0] + dele["commit"][0])
        ratio = to_commit[1] / to_commit[0]
        verdict = "meets" if ratio >= 100 else "MISSES"
        print(
            f"\n  {verdict}: retention of one day by partition >= 100x faster than DELETE"
            f" (measured {to_commit[0]:.3f} s against {to_commit[1]:.1f} s to commit: {ratio:,.0f}x;"
            " with the VACUUM DELETE leaves:"
            f" {(to_commit[1] + dele['vacuum'][0]) / to_commit[0]:,.0f}x)"
        )
        print(f"\nWhole benchmark: {(time.perf_counter() - started) / 60:.1f} minutes.")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
