"""A realistic, changing workload for the demo and the accuracy benchmark.

pgbench at two scales (two databases), analytical queries (joins, aggregates, sorts, a CTE) over
generated orders, and a writer that keeps the orders table growing; concurrency goes up and down in
phases, so statement times move with the load and with the data.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib import PG_BIN, Cluster

MAIN_DB = "pgml_demo"  # the extension lives here; pg_stat_statements sees every database
LARGE_DB = "pgml_large"
SMALL_SCALE, LARGE_SCALE = 2, 15

ANALYTICS = """\\set c random(1, 20000)
\\set cat random(1, 20)
\\set minimum random(1, 900)
SELECT c.region, count(*), sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id
 WHERE o.created_at > now() - interval '30 days' GROUP BY c.region ORDER BY 3 DESC;
SELECT p.category, avg(o.amount), max(o.amount) FROM orders o JOIN products p ON p.id = o.product_id
 WHERE p.category = :cat GROUP BY p.category;
SELECT o.customer_id, sum(o.amount) FROM orders o WHERE o.customer_id BETWEEN :c AND :c + 200
 GROUP BY o.customer_id ORDER BY 2 DESC LIMIT 10;
SELECT id, amount, created_at FROM orders WHERE customer_id = :c ORDER BY created_at DESC LIMIT 20;
WITH top AS (SELECT product_id, sum(amount) AS total FROM orders GROUP BY product_id ORDER BY 2 DESC LIMIT 50)
SELECT p.name, top.total FROM top JOIN products p ON p.id = top.product_id ORDER BY top.total DESC;
SELECT count(DISTINCT customer_id) FROM orders WHERE amount > :minimum;
SELECT c.region, p.category, count(*) FROM orders o JOIN customers c ON c.id = o.customer_id
 JOIN products p ON p.id = o.product_id WHERE o.amount > :minimum GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5;
"""
# Sized so the heaviest phase keeps this 2-core machine below saturation: a workload that starves itself
# of CPU measures the scheduler, not the statements. Orders grow by 40 to 160 rows a second.
GROWTH = """\\set c random(1, 20000)
\\set p random(1, 2000)
INSERT INTO orders (customer_id, product_id, amount, created_at)
SELECT (:c + g) % 20000 + 1, (:p + g) % 2000 + 1, random() * 1000, now() - random() * interval '60 days'
  FROM generate_series(1, 20) g;
"""
SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, category int NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL, product_id int NOT NULL,
                     amount numeric(10, 2) NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'region-' || (g % 12) FROM generate_series(1, 20000) g;
INSERT INTO products SELECT g, 'product-' || g, g % 20 + 1 FROM generate_series(1, 2000) g;
INSERT INTO orders (customer_id, product_id, amount, created_at)
SELECT g % 20000 + 1, g % 2000 + 1, (g * 7919 % 100000) / 100.0, now() - (g % 86400) * interval '1 minute'
  FROM generate_series(1, 50000) g;
CREATE INDEX orders_customer ON orders (customer_id, created_at);
ANALYZE;
"""


@dataclass(frozen=True)
class Phase:
    """One load level. Rates are transactions per second across the phase's clients (pgbench -R)."""

    seconds: int
    small_clients: int  # pgbench tpcb-like on the small scale
    small_tps: int
    large_clients: int  # pgbench tpcb-like on the large scale
    large_tps: int
    analytics_clients: int  # each transaction runs the seven analytical queries
    analytics_tps: float
    growth_tps: int  # inserts of 20 orders each


PHASES = (
    Phase(45, 1, 100, 1, 50, 1, 0.5, 2),
    Phase(45, 4, 400, 2, 150, 1, 0.5, 4),
    Phase(45, 2, 200, 4, 300, 2, 1.0, 4),
    Phase(45, 6, 600, 1, 50, 1, 0.5, 6),
    Phase(45, 1, 100, 3, 200, 3, 1.5, 2),
    Phase(45, 3, 300, 2, 100, 1, 0.5, 8),
    Phase(45, 2, 150, 1, 100, 2, 1.0, 4),
)


def _pgbench(cluster: Cluster, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PG_BIN / "pgbench", *args, db], env=cluster.libpq_env(db), capture_output=True, text=True, check=True
    )


PREPARE_STEPS = (
    f"pgbench data, scale {SMALL_SCALE} ({MAIN_DB})",
    f"pgbench data, scale {LARGE_SCALE} ({LARGE_DB})",
    "orders, customers, products",
)


def prepare(cluster: Cluster, on_step: Callable[[int, str], None] | None = None) -> None:
    """Creates both databases, loads pgbench at two scales and the analytics data.

    ``on_step(i, name)`` is called before each of the PREPARE_STEPS.
    """
    step = on_step or (lambda i, name: None)
    for db in (MAIN_DB, LARGE_DB):
        cluster.create_database(db)
    step(0, PREPARE_STEPS[0])
    _pgbench(cluster, MAIN_DB, "-i", "-q", "-s", str(SMALL_SCALE))
    step(1, PREPARE_STEPS[1])
    _pgbench(cluster, LARGE_DB, "-i", "-q", "-s", str(LARGE_SCALE))
    step(2, PREPARE_STEPS[2])
    with cluster.connect(MAIN_DB) as conn:
        conn.execute(SCHEMA)


class Running:
    """The pgbench processes of one phase, started together, each stopping by itself after -T."""

    def __init__(self, cluster: Cluster, phase: Phase, scripts: Path):
        def start(db: str, clients: int, *args: str) -> subprocess.Popen[str] | None:
            if clients <= 0:
                return None
            return subprocess.Popen(
                [PG_BIN / "pgbench", "-n", "-T", str(phase.seconds), "-c", str(clients), *args, db],
                env=cluster.libpq_env(db),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

        candidates = (
            start(MAIN_DB, phase.small_clients, "-R", str(phase.small_tps)),
            start(LARGE_DB, phase.large_clients, "-R", str(phase.large_tps)),
            start(
                MAIN_DB, phase.analytics_clients, "-R", str(phase.analytics_tps), "-f", str(scripts / "analytics.sql")
            ),
            start(MAIN_DB, 1, "-R", str(phase.growth_tps), "-f", str(scripts / "growth.sql")),
        )
        self.processes = [p for p in candidates if p is not None]

    def wait(self) -> None:
        for process in self.processes:
            _, err = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"pgbench failed: {err.strip()}")

    def stop(self) -> None:
        """Ends the phase early, as Ctrl-C would."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def run(
    cluster: Cluster,
    phases: tuple[Phase, ...] = PHASES,
    tick_seconds: float = 5.0,
    on_tick: Callable[[float, Phase], None] | None = None,
) -> None:
    """Runs the phases one after another; ``on_tick(elapsed, phase)`` every ``tick_seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        scripts = Path(tmp)
        (scripts / "analytics.sql").write_text(ANALYTICS)
        (scripts / "growth.sql").write_text(GROWTH)
        started = time.monotonic()
        for phase in phases:
            running = Running(cluster, phase, scripts)
            phase_end = time.monotonic() + phase.seconds
            next_tick = time.monotonic() + tick_seconds
            while time.monotonic() < phase_end:
                time.sleep(max(0.0, min(next_tick, phase_end) - time.monotonic()))
                if on_tick is not None and time.monotonic() >= next_tick:
                    on_tick(time.monotonic() - started, phase)
                    next_tick += tick_seconds
            running.wait()


def total_seconds(phases: tuple[Phase, ...] = PHASES) -> int:
    return sum(p.seconds for p in phases)


class Background:
    """The phases over and over on a thread, until ``stop()``: the demo's workload runs while it works.

    ``phase`` is the phase running now and ``cycle`` how many times the phases went round.
    """

    def __init__(self, cluster: Cluster, phases: tuple[Phase, ...] = PHASES):
        self.cluster = cluster
        self.phases = phases
        self.phase: Phase = phases[0]
        self.cycle = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workload", daemon=True)
        self._tmp = tempfile.TemporaryDirectory()

    def start(self) -> Background:
        scripts = Path(self._tmp.name)
        (scripts / "analytics.sql").write_text(ANALYTICS)
        (scripts / "growth.sql").write_text(GROWTH)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the workload (again: nothing); raises what broke it, if anything did, once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._tmp.cleanup()
        error, self.error = self.error, None
        if error is not None:
            raise error

    def _loop(self) -> None:
        try:
            for i, phase in enumerate(itertools.cycle(self.phases)):
                self.phase, self.cycle = phase, i // len(self.phases)
                running = Running(self.cluster, phase, Path(self._tmp.name))
                if self._stop.wait(phase.seconds):
                    running.stop()
                    return
                running.wait()
        except BaseException as exc:  # raised again by stop(), in the demo's thread
            self.error = exc
