"""Real workloads for integration tests: pgbench scripts run against a test database."""

from __future__ import annotations

import subprocess
import tempfile

from pgcluster import PG_BIN, Cluster


def pgbench(cluster: Cluster, dbname: str, script: str, transactions: int, clients: int = 1) -> None:
    """Runs ``script`` ``transactions`` times on each of ``clients`` connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script)
        f.flush()
        result = subprocess.run(
            [PG_BIN / "pgbench", "-n", "-f", f.name, "-t", str(transactions), "-c", str(clients), dbname],
            env=cluster.libpq_env(dbname),
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip()}")
