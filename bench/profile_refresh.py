"""Where a forecast job's time goes: one server's refresh after a push, each SQL statement and the Python
between them timed in backend CPU (time.process_time in the backend) and wall, at 500 statements per
server, on bench_fleet's synthetic history. Each refresh runs in a transaction rolled back afterwards, so
every repeat starts from the same state; with PROFILE_DUMP=path the forecasts and forecaster state the
refresh wrote are saved (JSON) to compare two versions of the code (PROFILE_COMPARE=path)."""

from __future__ import annotations

import json
import os
import statistics
import sys

import bench_fleet as bf

from benchlib import bench_cluster

SERVERS = int(os.environ.get("PROFILE_SERVERS", "8"))
REPEATS = int(os.environ.get("PROFILE_REPEATS", "5"))
EMPTY_DAYS = int(os.environ.get("PROFILE_EMPTY_DAYS", "0"))

PROFILED = r"""
DO $$
GD.get('pganalytics_ml') or plpy.execute('SELECT pganalytics_ml._load_python()')
import json, time
from pganalytics_ml.forecasting import forecasts

class Timed:
    def __init__(self, real):
        self.real, self.steps = real, {}
    def prepare(self, sql, types=None):
        return (sql, self.real.prepare(sql, types) if types is not None else self.real.prepare(sql))
    def execute(self, plan, args=None, *rest):
        c, w = time.process_time(), time.perf_counter()
        if isinstance(plan, tuple):
            sql, real = plan
            out = self.real.execute(real, args if args is not None else [], *rest)
        else:
            sql = plan
            out = self.real.execute(plan) if args is None else self.real.execute(plan, args, *rest)
        key = " ".join(sql.split())[:90]
        s = self.steps.setdefault(key, [0.0, 0.0, 0])
        s[0] += time.process_time() - c; s[1] += time.perf_counter() - w; s[2] += 1
        return out
    def __getattr__(self, name):
        return getattr(self.real, name)

t = Timed(plpy)
c, w = time.process_time(), time.perf_counter()
import cProfile, pstats, io
prof = cProfile.Profile(time.process_time) if __PY__ else None
prof and prof.enable()
n = forecasts.refresh_queued(t, __SERVER__)
prof and prof.disable()
total = [time.process_time() - c, time.perf_counter() - w]
text = ""
if prof:
    buf = io.StringIO(); pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25); text = buf.getvalue()
plpy.execute("CREATE TEMP TABLE IF NOT EXISTS profile_out (j jsonb)")
plpy.execute(plpy.prepare("INSERT INTO profile_out VALUES ($1::jsonb)", ["text"]),
             [json.dumps({"total": total, "steps": t.steps, "n": n, "py": text})])
$$ LANGUAGE plpython3u
"""

DUMP = """
SELECT json_build_object(
  'forecasts', (SELECT json_agg(f ORDER BY queryid) FROM (SELECT queryid, predicted_ms, lower_ms, upper_ms, confidence,
                 model_id, source, based_on, forecaster, expert_ms, alarm_upper_ms FROM pganalytics_ml.forecasts
                 WHERE server_id = %(s)s) f),
  'state', (SELECT json_agg(st ORDER BY queryid) FROM (SELECT queryid, based_on, updates, load_mu, rate_log,
                 load_sensitivity, rate_elasticity, encode(packed, 'base64') AS packed FROM pganalytics_ml.forecasts
                 WHERE server_id = %(s)s AND packed IS NOT NULL) st),
  'pool', (SELECT json_agg(p) FROM (SELECT weights, q, q_start, recent_scores, updates, load_level
                 FROM pganalytics_ml.forecaster_pool WHERE server_id = %(s)s) p))
"""


def main() -> None:
    cluster = bench_cluster("profile", shared_buffers="1GB", max_wal_size="16GB", checkpoint_timeout="30min")
    try:
        fleet = bf.Fleet(cluster, "partitioned")
        fleet.setup()
        print(f"loaded {SERVERS} servers in {fleet.grow(SERVERS):.0f} s", flush=True)
        if EMPTY_DAYS:
            fleet.add_empty_days(EMPTY_DAYS)
        with fleet.connect() as conn:  # one queued push per server: each has a forecast job's worth to refresh
            conn.execute("SELECT set_config('pganalytics_ml.push_forecasts', 'queued', false)")
            for s in range(SERVERS):
                conn.execute(
                    "SELECT pgml_ingest_stats(%s, %s::jsonb)", (bf.server_name(s), fleet.payload(bf.server_name(s)))
                )
            conn.execute("DELETE FROM pganalytics_ml.jobs WHERE kind = 'forecast'")
            conn.execute("VACUUM ANALYZE")
        if os.environ.get("PROFILE_PUSHES"):  # where a push's time goes: pg_stat_user_functions, self time
            with fleet.connect() as conn:
                conn.execute("SET track_functions = 'all'")
                conn.execute("SELECT set_config('pganalytics_ml.push_forecasts', 'queued', false)")
                conn.execute("SELECT pg_stat_reset()")
                bodies = [(bf.server_name(s), fleet.payload(bf.server_name(s))) for s in range(SERVERS)]
                cpu = bf.cpu_seconds(conn)
                for body in bodies:
                    conn.execute("SELECT pgml_ingest_stats(%s, %s::jsonb)", body)
                cpu = (bf.cpu_seconds(conn) - cpu) / len(bodies)
                conn.execute("SELECT pg_stat_force_next_flush()")
                conn.execute("SELECT 1")
                print(
                    f"\npushes of {bf.STATEMENTS} rows: backend CPU {cpu * 1000:.0f} ms per push; per function"
                    " (calls, total ms, self ms per push):"
                )
                for name, calls, total, own in conn.execute(
                    "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"
                    " ORDER BY self_time DESC LIMIT 15"
                ):
                    print(f"  {calls / len(bodies):6.0f} {total / len(bodies):7.1f} {own / len(bodies):7.1f}  {name}")
                conn.execute("DELETE FROM pganalytics_ml.jobs WHERE kind = 'forecast'")
        runs = []
        dump = None
        with fleet.connect() as conn:
            conn.autocommit = False
            for r in range(REPEATS):
                server = bf.server_name(r % SERVERS)
                conn.execute(
                    PROFILED.replace("__SERVER__", repr(server)).replace(
                        "__PY__", str(bool(os.environ.get("PROFILE_PY")))
                    )
                )
                out = conn.execute("SELECT j FROM profile_out").fetchone()[0]
                if r == 0:
                    dump = {server: conn.execute(DUMP, {"s": server}).fetchone()[0]}
                runs.append(out)
                conn.rollback()
        keys = sorted(
            {k for r in runs for k in r["steps"]},
            key=lambda k: -statistics.median([r["steps"].get(k, [0, 0, 0])[0] for r in runs]),
        )
        print(f"\nrefresh_queued of one server ({bf.STATEMENTS} statements), {REPEATS} runs, median ms:")
        print(
            f"  total: CPU {statistics.median(r['total'][0] for r in runs) * 1000:.0f}"
            f"  wall {statistics.median(r['total'][1] for r in runs) * 1000:.0f}  (refreshed {runs[0]['n']})"
        )
        sql_cpu = statistics.median(sum(v[0] for v in r["steps"].values()) for r in runs)
        print(
            f"  all SQL: CPU {sql_cpu * 1000:.0f}; Python between: "
            f"{(statistics.median(r['total'][0] for r in runs) - sql_cpu) * 1000:.0f}"
        )
        for k in keys:
            cpu = statistics.median(r["steps"].get(k, [0, 0, 0])[0] for r in runs) * 1000
            wall = statistics.median(r["steps"].get(k, [0, 0, 0])[1] for r in runs) * 1000
            calls = runs[0]["steps"].get(k, [0, 0, 0])[2]
            print(f"  {cpu:7.1f} {wall:7.1f} x{calls}  {k}")
        if runs[-1]["py"]:
            print(runs[-1]["py"])
        print("load:", open("/proc/loadavg").read().strip())
        for sql in filter(None, os.environ.get("PROFILE_EXPLAIN", "").split(";;")):
            with fleet.connect() as conn:
                for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace("$1", "'srv-0000'")):
                    print(line)
        path = os.environ.get("PROFILE_DUMP")
        if path:
            with open(path, "w") as f:
                json.dump(dump, f, sort_keys=True)
        cmp = os.environ.get("PROFILE_COMPARE")
        if cmp:
            with open(cmp) as f:
                before = json.load(f)
            same = json.dumps(before, sort_keys=True) == json.dumps(dump, sort_keys=True)
            print("identical to", cmp, ":", same)
            if not same:
                sys.exit(1)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
