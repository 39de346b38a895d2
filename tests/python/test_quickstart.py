"""The README's quick start, run verbatim in psql on a fresh cluster, as a first-time DBA would.

Its SQL blocks are taken from README.md, the output lines shown in them left out, and run in order with
psql in pg_cron's database. Where the README says time passes (a comment marks the place), a pgbench
workload runs in another database, with a snapshot after each part of it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgcluster import PG_BIN, Cluster
from workload import pgbench

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
WORKLOAD_MARK = "<!-- quick start test: the workload runs here"
STATEMENT_START = re.compile(r"^(SELECT|CREATE|CALL|WITH|ALTER|\\x)\b")
STATEMENT_END = re.compile(r"(;|\\gset|\\gx)\s*(--.*)?$")


def quick_start() -> list[list[str]]:
    """The statements of the quick start's SQL blocks, in parts separated by the workload marks."""
    text = README.read_text()
    section = text[text.index("## Quick start in psql") :]
    section = section[: section.index("\n## ", 1)]
    parts: list[list[str]] = [[]]
    in_block = False
    statement: list[str] = []
    for line in section.splitlines():
        if line.startswith(WORKLOAD_MARK):
            parts.append([])
        elif line.startswith("```"):
            in_block = line.strip() == "```sql"
        elif in_block:
            if statement or STATEMENT_START.match(line):
                statement.append(line)
                if STATEMENT_END.search(line) or line.startswith("\\x"):
                    parts[-1].append("\n".join(statement))
                    statement = []
    assert not statement, f"unterminated statement in the README: {statement}"
    return parts


def test_the_quick_start_is_read_as_the_statements_it_shows():
    parts = quick_start()
    statements = [s for part in parts for s in part]
    assert len(parts) == 3
    assert statements[:5] == [
        "CREATE EXTENSION pg_stat_statements;",
        "CREATE EXTENSION pg_cron;                  -- the scheduler; only in cron.database_name, skip it without "
        "pg_cron",
        "CREATE EXTENSION hypopg;                   -- optional: hypothetical indexes for what-if predictions",
        "CREATE EXTENSION pganalytics_ml CASCADE;   -- brings plpython3u",
        "SELECT * FROM pgml_schedule();             -- snapshots every 5 minutes, job queue, nightly retraining",
    ]
    assert not [s for s in statements if s.startswith(("(", "-[", " "))]  # no output line taken for SQL


@pytest.fixture
def fresh() -> Iterator[Cluster]:
    pg = Cluster(name="pganalytics_ml-quickstart").init().start()
    try:
        yield pg
    finally:
        pg.destroy()


def psql(pg: Cluster, statements: list[str]) -> str:
    result = subprocess.run(
        [PG_BIN / "psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input="\n".join(statements) + "\n",
        env=pg.libpq_env("postgres"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"the README's quick start failed:\n{result.stderr}"
    return result.stdout + result.stderr


APP_SCRIPT = (
    "\\set id random(1, 2000)\nSELECT v FROM probe WHERE id = :id;\nUPDATE probe SET v = v + 1 WHERE id = :id;\n"
    "SELECT count(*) FROM probe WHERE v > :id;\n"
)


def workload(pg: Cluster, rounds: int) -> None:
    for i in range(rounds):
        pgbench(pg, "app", APP_SCRIPT, transactions=20 + 10 * (i % 4), clients=1 + i % 2)
        pg.execute("SELECT * FROM pgml_snapshot()")


def test_the_readme_quick_start_runs_verbatim_on_a_fresh_cluster(fresh: Cluster):
    first, second, third = quick_start()
    fresh.create_database("app")
    fresh.execute("CREATE TABLE probe (id int PRIMARY KEY, v int)", dbname="app")
    fresh.execute("INSERT INTO probe SELECT g, g FROM generate_series(1, 2000) g", dbname="app")

    out = psql(fresh, first)
    # after the set-up, the status says what is missing: a first snapshot, nothing else
    assert "no snapshot yet" in out and "no scheduler" not in out and "unscheduled" not in out
    status = fresh.execute("SELECT pgml_status()")[0][0]
    assert [j["job_name"] for j in status["scheduler"]["scheduled_jobs"]] == [
        "pganalytics_ml:cleanup",
        "pganalytics_ml:drain",
        "pganalytics_ml:patterns",
        "pganalytics_ml:plans",
        "pganalytics_ml:retrain",
        "pganalytics_ml:snapshot",
        "pganalytics_ml:watchdog",
    ]

    workload(fresh, 30)
    out = psql(fresh, second)
    assert "NOTICE:  run_jobs:" in out
    assert fresh.execute("SELECT count(*) FROM pganalytics_ml.models WHERE is_active")[0][0] == 1

    workload(fresh, 2)
    out = psql(fresh, third)
    assert fresh.execute("SELECT count(*) FROM pganalytics_ml.predictions WHERE validated_at IS NOT NULL")[0][0] >= 1
    status = fresh.execute("SELECT pgml_status()")[0][0]
    assert status["status"] == "healthy", status["problems"]
