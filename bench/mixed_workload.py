"""A realistic, changing workload for the demo and the accuracy benchmark.

pgbench at two scales (two databases), analytical queries (joins, aggregates, sorts, a CTE) over
generated orders, and a writer that keeps the orders table growing; concurrency goes up and down in
phases, so statement times move with the load and with the data.
"""

from __future__ import annotations

import subprocess
import tempfile
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
GROWTH = """\\set c random(1, 20000)
\\set p random(1, 2000)
INSERT INTO orders (customer_id, product_id, amount, created_at)
SELECT (:c + g) % 20000 + 1, (:p + g) % 2000 + 1, random() * 1000, now() - random() * interval '60 days'
  FROM generate_series(1, 200) g;
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
  FROM generate_series(1, 250000) g;
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
    growth_tps: int  # inserts of 200 orders each


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


def prepare(cluster: Cluster) -> None:
    """Creates both databases, loads pgbench at two scales and the analytics data."""
    for db in (MAIN_DB, LARGE_DB):
        cluster.create_database(db)
    _pgbench(cluster, MAIN_DB, "-i", "-q", "-s", str(SMALL_SCALE))
    _pgbench(cluster, LARGE_DB, "-i", "-q", "-s", str(LARGE_SCALE))
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
