"""What a value costs to pass from PL/Python to SQL, per value, by the way it is passed: the figures behind
the forecasts' writes (forecasts.float8_array, online.pack). Backend CPU of plpy.execute, medians of 9, on a
fresh cluster; ``python bench/bench_plpy_arguments.py``."""

from __future__ import annotations

import json

from benchlib import bench_cluster, print_table

VALUES = 100_000

MEASURE = r"""
DO $py$
import json, random, statistics, struct, time

n = VALUES
floats = [random.random() * 10 for _ in range(n)]
ints = [int(v * 4294967296) for v in floats]
blob = [struct.pack("<5d", *floats[i : i + 5]) for i in range(0, n, 5)]  # 40-byte values, 5 floats each


def per_value(action):
    runs = []
    for _ in range(9):
        start = time.process_time()
        action()
        runs.append((time.process_time() - start) * 1e9 / n)
    return statistics.median(runs)


def execute(sql, kind, argument):
    plan = plpy.prepare(sql, [kind])
    return lambda: plpy.execute(plan, [argument() if callable(argument) else argument])


rows = [
    ["a list of floats as float8[] (what the state's arrays were)",
     per_value(execute("SELECT cardinality($1::float8[])", "float8[]", floats))],
    ["a list of ints as int8[]", per_value(execute("SELECT cardinality($1::int8[])", "int8[]", ints))],
    ["one text literal, %.4g, formatted and parsed (forecasts.float8_array)",
     per_value(execute("SELECT cardinality($1::float8[])", "text",
                       lambda: "{" + ",".join(map("%.4g".__mod__, floats)) + "}"))],
    ["  of which the formatting in Python", per_value(lambda: ",".join(map("%.4g".__mod__, floats)))],
    ["floats packed in bytea values, 5 a value (online.pack)",
     per_value(execute("SELECT cardinality($1::bytea[])", "bytea[]", blob))],
]
plpy.notice(json.dumps(rows))
$py$ LANGUAGE plpython3u
""".replace("VALUES", str(VALUES))


def main() -> None:
    cluster = bench_cluster("plpy-arguments")
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute(MEASURE)
        rows = json.loads(notices[-1])
    finally:
        cluster.destroy()
    print(f"\nBackend CPU per value passed to plpy.execute ({VALUES:,} values, median of 9)\n")
    print_table(["how", "ns per value"], [[how, round(ns)] for how, ns in rows])


if __name__ == "__main__":
    main()
