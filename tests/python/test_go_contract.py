"""The SQL in docs/go-integration.md, run as written through node-postgres: the contract is plain SQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import Database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "node" / "run_contract.mjs"
DOC = ROOT / "docs" / "go-integration.md"
INT4, INT8, FLOAT8, JSONB, TIMESTAMPTZ, TEXT = 23, 20, 701, 3802, 1184, 25


def run_documented(db: Database, calls: dict[str, list]) -> dict:
    result = subprocess.run(
        ["node", RUNNER, DOC, json.dumps(calls)], env=db.cluster.libpq_env(db.name), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def field_types(result: dict) -> dict[str, int]:
    return {f["name"]: f["type_oid"] for f in result["fields"]}


def test_every_documented_statement_is_exercised(db: Database):
    out = run_documented(db, {})
    assert set(out["documented"]) == {"status", "ingest"}


def test_status_and_ingest_through_node_postgres(db: Database):
    payload = {
        "captured_at": "2026-11-28T17:00:00Z",
        "rows": [{"queryid": "-4242", "calls": 10, "total_exec_time": 52.5}],
    }
    out = run_documented(
        db,
        {
            "ingest": ["db-prod-1", json.dumps(payload)],
            "ingest@bad-row": ["db-prod-1", json.dumps({"rows": [{"queryid": 1}]})],
            "ingest@not-json": ["db-prod-1", "{"],
            "status": [],
        },
    )
    assert field_types(out["ingest"]) == {"rows_ingested": INT4}
    assert out["ingest"]["rows"] == [{"rows_ingested": {"type": "number", "value": 1}}]
    assert out["ingest@bad-row"]["error"]["sqlstate"] == "22023"
    assert "stats.rows[0] has no calls" in out["ingest@bad-row"]["error"]["message"]
    assert out["ingest@not-json"]["error"]["sqlstate"] == "22P02"

    assert field_types(out["status"]) == {"status": JSONB}
    status = out["status"]["rows"][0]["status"]
    assert status["type"] == "object"
    assert status["value"]["database_connected"] is True
    assert status["value"]["statements_tracked"] == 1
