"""Runs every pgTAP file in tests/pgtap with pg_prove, each in a fresh database with the extension."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import fresh_database
from pgcluster import Cluster

pytestmark = pytest.mark.integration

PGTAP_DIR = Path(__file__).resolve().parents[1] / "pgtap"
FILES = sorted(PGTAP_DIR.glob("*.sql"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_pgtap_file(cluster: Cluster, template: str, path: Path):
    name = fresh_database(cluster, template)
    try:
        with cluster.connect(name) as conn:
            conn.execute("CREATE EXTENSION pgtap")
        result = subprocess.run(
            ["pg_prove", "--ext", ".sql", "--failures", str(path)],
            env=cluster.libpq_env(name),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        cluster.drop_database(name)
