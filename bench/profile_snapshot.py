"""Where a snapshot's time goes: each SQL statement of one pgml_snapshot(), timed by the cluster's own
pg_stat_statements (track = all, read before and after), on bench_snapshot's workload with a model
active. ``python bench/profile_snapshot.py 1000 4000`` profiles 5,000 then 20,000 statements and prints,
for the statements both have, how much each grew."""

from __future__ import annotations

import sys

import bench_snapshot
from bench_statements import workload_cluster

from benchlib import time_ms

OWN_STATEMENTS = """
    SELECT queryid, calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
      FROM pg_stat_statements WHERE query ~* 'pganalytics_ml|pgml_'
"""


def profile(tables: int) -> dict[str, float]:
    """Milliseconds per statement text of one snapshot at ``tables`` tables (5 statements each)."""
    cluster = workload_cluster(f"profile-{tables}", tables)
    try:
        with cluster.connect() as conn:
            workload = bench_snapshot.workload_sql()
            for _ in range(6):
                conn.execute(workload)
                conn.execute("SELECT * FROM pgml_snapshot()")
            conn.execute("SELECT * FROM pgml_train(1, 'linear_regression')")
            for _ in range(3):
                conn.execute(workload)
                conn.execute("SELECT * FROM pgml_snapshot()")
            conn.execute(workload)
            before = {r[0]: r for r in conn.execute(OWN_STATEMENTS).fetchall()}
            wall = time_ms(lambda: conn.execute("SELECT * FROM pgml_snapshot()").fetchall())
            spent = {"pgml_snapshot(), the whole call": wall}
            for queryid, calls, total, text in conn.execute(OWN_STATEMENTS).fetchall():
                old = before.get(queryid)
                if calls > (old[1] if old else 0) and "pgml_snapshot()" not in text:
                    spent[text] = total - (old[2] if old else 0)
            return spent
    finally:
        cluster.destroy()


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000]
    profiles = [profile(t) for t in sizes]
    for tables, spent in zip(sizes, profiles, strict=True):
        print(f"\n{tables * 5:,} workload statements: ms per statement of one snapshot\n")
        for text, ms in sorted(spent.items(), key=lambda kv: -kv[1])[:20]:
            print(f"{ms:9.1f}  {text}")
    if len(profiles) == 2:
        small, large = profiles
        print(f"\nGrowth from {sizes[0] * 5:,} to {sizes[1] * 5:,} statements (x{sizes[1] / sizes[0]:g} is linear)\n")
        for text in sorted(small, key=lambda t: -large.get(t, 0)):
            if text in large and small[text] >= 3:
                print(f"x{large[text] / small[text]:5.2f} {small[text]:8.1f} {large[text]:8.1f}  {text}")


if __name__ == "__main__":
    main()
