"""Job queue throughput and pickup latency: run_jobs against a bare SKIP LOCKED loop, and under pg_cron.

Target (jobs issue): at least 500 no-op jobs per second through claim and complete with 2 drainers.
A no-op job is a 'sleep' job of 0 seconds; each drainer is a warm session running
CALL pganalytics_ml.run_jobs(...) until the queue is empty or its time is up. The baseline is the least a queue can do
on the same table: a PL/pgSQL loop that claims a row with FOR UPDATE SKIP LOCKED, commits, marks it
completed and commits (no advisory lock, attempts, limits or progress). The cluster runs with fsync on;
every figure is measured with durable commits (synchronous_commit on: each of the two commits per job
waits for the WAL flush) and without waiting for the flush (off), so the share of the disk shows.
Pickup latency is the time from enqueue to started_at when the pganalytics_ml:drain pg_cron job (every
minute) drains the queue; the schedule's own share of it is the wait for the next minute boundary.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime

from benchlib import Cluster, bench_cluster, print_table
from pgcluster import wait_for

DB = "bench"
JOBS = 2000
DRAINER_LEVELS = (1, 2)
SYNCHRONOUS_COMMIT = ("on", "off")
TARGET_JOBS_PER_S = 500

BARE_LOOP = """
CREATE PROCEDURE public.bare_skip_locked_drain(p_seconds float8)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq      bigint;
    v_deadline timestamptz := clock_timestamp() + p_seconds * interval '1 second';
BEGIN
    WHILE clock_timestamp() < v_deadline LOOP
        SELECT job_seq INTO v_seq FROM pganalytics_ml.jobs
         WHERE status = 'pending' AND run_at <= now() ORDER BY run_at, job_seq LIMIT 1 FOR UPDATE SKIP LOCKED;
        EXIT WHEN NOT FOUND;
        UPDATE pganalytics_ml.jobs SET status = 'running', attempts = attempts + 1, started_at = now()
         WHERE job_seq = v_seq;
        COMMIT;
        UPDATE pganalytics_ml.jobs SET status = 'completed', completed_at = now() WHERE job_seq = v_seq;
        COMMIT;
    END LOOP;
END
$$
"""
# Each drainer stops claiming after {seconds}, so that a slow disk cannot stretch the run.
DRAINERS = {
    "run_jobs": "CALL pganalytics_ml.run_jobs(max_jobs => 1000000, max_seconds => {seconds})",
    "bare SKIP LOCKED loop (baseline)": "CALL public.bare_skip_locked_drain({seconds})",
}


def enqueue_noops(cluster: Cluster, jobs: int) -> None:
    with cluster.connect(DB) as conn:
        conn.execute("TRUNCATE pganalytics_ml.jobs")
        conn.execute(
            f"DO $$ BEGIN FOR i IN 1..{int(jobs)} LOOP"
            " PERFORM pgml_job_enqueue('sleep', '{\"seconds\": 0}'); END LOOP; END $$"
        )
        conn.execute("VACUUM ANALYZE pganalytics_ml.jobs")


def drain_rate(cluster: Cluster, call: str, drainers: int, jobs: int, synchronous_commit: str) -> float:
    """Jobs per second of ``drainers`` warm sessions draining a queue of ``jobs`` no-op jobs (until empty or
    their time is up), after checking that every job claimed completed, once."""
    sessions = [cluster.connect(DB) for _ in range(drainers)]
    try:
        for conn in sessions:  # warm: Python and the package loaded, plans cached
            conn.execute("SELECT set_config('synchronous_commit', %s, false)", (synchronous_commit,))
            conn.execute(call)
        enqueue_noops(cluster, jobs)
        barrier = threading.Barrier(drainers + 1)
        errors: list[BaseException] = []

        def drain(conn) -> None:
            barrier.wait()
            try:
                conn.execute(call)
            except BaseException as exc:  # reported after the run
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(conn,)) for conn in sessions]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        if errors:
            raise errors[0]
    finally:
        for conn in sessions:
            conn.close()
    with cluster.connect(DB) as conn:
        done, claimed, pending = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed' AND attempts = 1),"
            " count(*) FILTER (WHERE attempts > 0), count(*) FILTER (WHERE status = 'pending' AND attempts = 0)"
            " FROM pganalytics_ml.jobs"
        ).fetchone()
    if done != claimed or done + pending != jobs or not done:
        raise RuntimeError(f"{done} jobs completed once, {claimed} claimed, {pending} left of {jobs}")
    return done / seconds


def pickup_latency(cluster: Cluster, rounds: int, offsets: tuple[int, ...]) -> list[tuple[float, float]]:
    """(latency, wait for the next minute boundary) in seconds, for jobs queued at ``offsets`` into a minute."""
    samples = []
    with cluster.connect(DB) as conn:
        conn.execute("TRUNCATE pganalytics_ml.jobs")
        conn.execute("SELECT count(*) FROM pgml_schedule()")
        for _ in range(rounds):
            now = time.time()
            minute = now - now % 60 + 60  # the next whole minute: offsets count from it
            job_ids = []
            for offset in offsets:
                time.sleep(max(0.0, minute + offset - time.time()))
                job_ids.append(
                    conn.execute("SELECT job_id FROM pgml_job_enqueue('sleep', '{\"seconds\": 0}')").fetchone()[0]
                )
            wait_for(
                lambda ids=job_ids: conn.execute(
                    "SELECT bool_and(status = 'completed') FROM pganalytics_ml.jobs WHERE job_id = ANY (%s)", (ids,)
                ).fetchone()[0],
                timeout=150,
                interval=1,
                what="the pg_cron drain job to run the queued jobs",
            )
            for created, started in conn.execute(
                "SELECT created_at, started_at FROM pganalytics_ml.jobs WHERE job_id = ANY (%s)", (job_ids,)
            ).fetchall():
                samples.append(((started - created).total_seconds(), _to_next_minute(created)))
        conn.execute("SELECT count(*) FROM pgml_unschedule()")
    return samples


def _to_next_minute(at: datetime) -> float:
    return 60 - (at.second + at.microsecond / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs queued for each measurement")
    parser.add_argument("--seconds", type=int, default=5, help="drainers stop claiming after this long")
    parser.add_argument("--latency-rounds", type=int, default=2, help="minutes of pg_cron pickup to measure")
    args = parser.parse_args()
    cluster = bench_cluster("jobs", **{"cron.database_name": DB, "fsync": "on", "full_page_writes": "on"})
    rates: dict[tuple[str, str, int], list[float]] = {}
    try:
        cluster.create_database(DB)
        with cluster.connect(DB) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pg_cron")
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            conn.execute(BARE_LOOP)
        for _ in range(args.runs):  # alternating, so all see the same machine
            for sync in SYNCHRONOUS_COMMIT:
                for drainers in DRAINER_LEVELS:
                    for name, call in DRAINERS.items():
                        rate = drain_rate(cluster, call.format(seconds=args.seconds), drainers, args.jobs, sync)
                        rates.setdefault((sync, name, drainers), []).append(rate)
        latency = pickup_latency(cluster, args.latency_rounds, (5, 15, 25, 35, 45, 55)) if args.latency_rounds else []
    finally:
        cluster.destroy()

    print(
        f"\nNo-op jobs through claim and complete: {args.jobs:,} jobs queued per run, drained until empty or for "
        f"{args.seconds} s; median of {args.runs} runs\n"
    )
    rows = [
        [name, sync, drainers, statistics.median(r), min(r), max(r)]
        for (sync, name, drainers), r in sorted(
            rates.items(), key=lambda kv: (SYNCHRONOUS_COMMIT.index(kv[0][0]), kv[0][2], kv[0][1] != "run_jobs")
        )
    ]
    print_table(["drainer", "synchronous_commit", "sessions", "jobs/s (median)", "min", "max"], rows)
    two = statistics.median(rates[("on", "run_jobs", 2)])
    two_async = statistics.median(rates[("off", "run_jobs", 2)])
    if latency:
        waits = [w for _, w in latency]
        lat = [s for s, _ in latency]
        overhead = [s - w for s, w in latency]
        print(f"\nPickup latency under pg_cron (drain every minute), {len(latency)} jobs queued across the minute\n")
        print_table(
            ["measure", "median s", "min s", "max s"],
            [
                ["enqueue -> started_at", statistics.median(lat), min(lat), max(lat)],
                ["wait for the next minute boundary (schedule)", statistics.median(waits), min(waits), max(waits)],
                ["rest: pg_cron start, new backend, Python, rescue, claim", *_stats(overhead)],
            ],
        )
    verdict = "meets" if two >= TARGET_JOBS_PER_S else "MISSES"
    print(
        f"\n  {verdict}: >= {TARGET_JOBS_PER_S} jobs/s with 2 drainers, durable commits (measured {two:,.0f} jobs/s; "
        f"{two_async:,.0f} with synchronous_commit off)"
    )


def _stats(values: list[float]) -> list[float]:
    return [statistics.median(values), min(values), max(values)]


if __name__ == "__main__":
    main()
